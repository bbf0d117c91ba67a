"""Ported code passes whole records (as read back) where a reference is expected: an
interaction's ``is_ref`` payload item, and the payload handed on to a create by a Transform.
The record's ``id`` is the reference and its other keys are ignored, as in the original
framework; aggregates over the relation follow. Runs on both backends."""

from __future__ import annotations

from typing import Any

import reactive as r

from .conftest import MakeController


async def test_whole_records_in_a_payload_and_in_a_transform_create(make: MakeController) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("posts_n", "number", computation=r.Count(property="posts")),
        ],
    )

    def publish(event: dict[str, Any]) -> Any:
        if event["interaction_name"] != "Publish":
            return None
        # the payload's author is handed on as given: a whole record with stale fields
        return {"title": event["payload"]["title"], "author": event["payload"]["author"]}

    post = r.Entity(
        "Post", [r.Property("title")], computation=r.Transform(r.INTERACTION_EVENT, publish)
    )
    authors = r.Relation(user, "posts", post, "author", "1:n")
    publish_it = r.Interaction(
        "Publish",
        r.Payload(
            [r.PayloadItem("title", required=True), r.PayloadItem("author", base=user, is_ref=True)]
        ),
    )
    c = await make([user, post], [authors], interactions=[publish_it])
    ada = await c.storage.create("User", {"name": "ada"})
    whole = {**ada, "name": "someone else", "posts_n": 99}
    result = await c.dispatch(publish_it, user={"id": 1}, payload={"title": "t", "author": whole})
    assert result.error is None
    rows = await c.storage.find("User", None, ["name", "posts_n", ("posts", ["title"])])
    assert [(u["name"], u["posts_n"], [p["title"] for p in u["posts"]]) for u in rows] == [
        ("ada", 1, ["t"])
    ]
    # a whole record whose id does not exist is still refused, naming the payload item
    missing = {**ada, "id": 10_000}
    refused = await c.dispatch(
        publish_it, user={"id": 1}, payload={"title": "u", "author": missing}
    )
    assert refused.error is not None and "author" in str(refused.error)
    assert await c.storage.count("Post") == 1
    # the storage's own write takes a whole record in an update too
    bob = await c.storage.create("User", {"name": "bob"})
    first = (await c.storage.find("Post", None, ["title"]))[0]
    await c.storage.update("Post", {"id": first["id"]}, {"author": {**bob, "name": "x"}})
    rows = await c.storage.find("User", None, ["name", "posts_n"], order_by={"id": "asc"})
    assert [(u["name"], u["posts_n"]) for u in rows] == [("ada", 0), ("bob", 1)]
