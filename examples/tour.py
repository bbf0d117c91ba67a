"""A tour of the engine alone, run by ``make tour`` (``.venv/bin/python -m examples.tour [path]``;
the database is a temporary file unless ``path`` is given).

A tiny blog: dispatching ``CreatePost`` records an interaction event, a Transform turns it into a
Post, a Count keeps ``like_count``, a StateMachine moves ``status`` on publish, a Dictionary counts
every post, a durable side effect "notifies" after commit, and the committed events stream out.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import reactive as r
from storage import SQLiteStorage


def model() -> dict[str, Any]:
    user = r.Entity("User", [r.Property("name")])
    draft, live = r.StateNode("draft"), r.StateNode("live")
    publish = r.Trigger(r.INTERACTION_EVENT, fields={"interaction_name": "Publish"})
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("like_count", "number", computation=r.Count(property="liked_by")),
            r.Property(
                "status",
                computation=r.StateMachine(
                    states=[draft, live],
                    transfers=[
                        r.StateTransfer(
                            draft, live, publish, lambda event: event.record["payload"]["post"]
                        )
                    ],
                    initial_state=draft,
                ),
            ),
        ],
        computation=r.Transform(
            r.INTERACTION_EVENT,
            lambda event: (
                {"title": event["payload"]["title"], "author": event["user"]}
                if event["interaction_name"] == "CreatePost"
                else None
            ),
        ),
    )
    authored = r.Relation(user, "posts", post, "author", "1:n")
    likes = r.Relation(post, "liked_by", user, "likes", "n:n")
    posts = r.Dictionary("post_count", "number", computation=r.Count(record=post))
    create_post = r.Interaction(
        "CreatePost",
        r.Payload([r.PayloadItem("title", required=True)]),
        conditions=[r.Condition("signed in", lambda event: event["user"] is not None)],
    )
    publish_post = r.Interaction(
        "Publish", r.Payload([r.PayloadItem("post", "json", required=True, base=post, is_ref=True)])
    )
    return {
        "entities": [user, post],
        "relations": [authored, likes],
        "dictionaries": [posts],
        "interactions": [create_post, publish_post],
    }


async def notify(event: r.MutationEvent, controller: r.Controller, run: r.SideEffectRun) -> None:
    print(
        f"  side effect after commit: new post {event.record['title']!r} "
        f"(idempotency key {run.idempotency_key})"
    )


async def main(path: str) -> None:
    controller = r.Controller(
        SQLiteStorage(path),
        **model(),
        side_effects=[r.RecordMutationSideEffect("notify", "Post", notify, on=("create",))],
    )
    await controller.setup()
    print(f"engine on SQLite at {path}\n")
    controller.stream("Post").subscribe(lambda e: print(f"  stream: {e.type} Post {e.record}"))

    ada = await controller.storage.create("User", {"name": "ada"})
    bob = await controller.storage.create("User", {"name": "bob"})

    print("dispatch CreatePost without a user (the condition rejects it):")
    rejected = await controller.dispatch("CreatePost", None, {"title": "anonymous"})
    print(f"  error: {rejected.error.code if rejected.error else None}\n")

    print("dispatch CreatePost as ada:")
    created = await controller.dispatch("CreatePost", {"id": ada["id"]}, {"title": "Engines"})
    await controller.drain()
    post = await controller.storage.find_one("Post", {"title": "Engines"}, ["*"])
    assert post is not None
    print(f"  effects: {[f'{e.type} {e.record_name}' for e in created.effects]}\n")

    print("bob likes it (a relation record; the Count follows):")
    await controller.storage.create(
        "Post_liked_by_likes_User", {"source": {"id": post["id"]}, "target": {"id": bob["id"]}}
    )
    print("\ndispatch Publish (the StateMachine moves draft -> live):")
    await controller.dispatch("Publish", {"id": ada["id"]}, {"post": {"id": post["id"]}})

    final = await controller.storage.find(
        "Post", None, ["title", "like_count", "status", ("author", ["name"])]
    )
    print(f"\nposts now: {final}")
    print(f"post_count dictionary: {await controller.storage.get_dict('post_count')}")
    await controller.close()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "tour.db")
    asyncio.run(main(target))
