"""A whole record (a dict with an ``"id"``, as ``find`` returns it) given where a reference is
expected is that reference: its other keys are ignored, as the original framework does. Checked
in creates, updates, link-record ends, to-many lists and matches, on every backend."""

from __future__ import annotations

from storage import MatchExp, MutationEvent, SQLiteStorage

from .helpers import POSTS, TAGS, created_id, dump


async def test_create_with_a_whole_record_as_the_to_one_end(storage: SQLiteStorage) -> None:
    ada = (await storage.create("User", {"name": "ada", "age": 36})).record
    assert ada is not None
    # the other keys, even ones that disagree with the stored record, change nothing
    whole = {**ada, "name": "not-ada", "age": 99, "posts": [{"title": "ignored"}]}
    result = await storage.create("Post", {"title": "t", "author": whole})
    post = created_id(result)
    assert result.events == [
        MutationEvent("Post", "create", {"id": post, "title": "t"}),
        MutationEvent(
            POSTS, "create", {"id": 1, "source": {"id": ada["id"]}, "target": {"id": post}}
        ),
    ]
    assert await storage.find("User", None, ["name", "age", ("posts", ["title"])]) == [
        {"id": ada["id"], "name": "ada", "age": 36, "posts": [{"id": post, "title": "t"}]}
    ]
    assert await storage.count("Post") == 1


async def test_update_with_whole_records_in_a_to_many_list(storage: SQLiteStorage) -> None:
    post = created_id(await storage.create("Post", {"title": "p"}))
    tags = [(await storage.create("Tag", {"label": f"t{i}"})).record for i in range(2)]
    assert all(t is not None for t in tags)
    read = await storage.find("Tag", None, ["*"], order_by={"id": "asc"})
    given = [{**read[0], "label": "x"}, {**read[1], "&": {"weight": 7}}]
    await storage.update("Post", {"id": post}, {"tags": given})
    assert await storage.find("Post", {"id": post}, [("tags", ["label", ("&", ["weight"])])]) == [
        {
            "id": post,
            "tags": [
                {"id": read[0]["id"], "label": "t0", "&": {"id": 1, "weight": None}},
                {"id": read[1]["id"], "label": "t1", "&": {"id": 2, "weight": 7}},
            ],
        }
    ]
    assert [t["label"] for t in (await dump(storage))["Tag"]] == ["t0", "t1"]


async def test_link_record_ends_given_as_whole_records(storage: SQLiteStorage) -> None:
    post = (await storage.create("Post", {"title": "p", "score": 3})).record
    tag = (await storage.create("Tag", {"label": "t"})).record
    assert post is not None and tag is not None
    result = await storage.create(
        TAGS, {"source": {**post, "title": "zzz"}, "target": {**tag, "label": "q"}, "weight": 2}
    )
    assert result.record is not None
    assert await storage.find(TAGS, None, ["weight", "source", "target"]) == [
        {
            "id": result.record["id"],
            "weight": 2,
            "source": {"id": post["id"]},
            "target": {"id": tag["id"]},
        }
    ]
    assert (await dump(storage))["Post"] == [{"id": post["id"], "title": "p", "score": 3}]


async def test_match_on_a_relation_with_a_whole_record(storage: SQLiteStorage) -> None:
    ada = (await storage.create("User", {"name": "ada"})).record
    bob = (await storage.create("User", {"name": "bob"})).record
    assert ada is not None and bob is not None
    await storage.create("Post", {"title": "a", "author": {"id": ada["id"]}})
    await storage.create("Post", {"title": "b", "author": {"id": bob["id"]}})
    found = await storage.find("Post", {"author": {**ada, "name": "bob"}}, ["title"])
    assert [p["title"] for p in found] == ["a"]
    both = await storage.find(
        "Post",
        MatchExp.atom("author", "in", [ada, {**bob, "age": 1}]),
        ["title"],
        order_by={"title": "asc"},
    )
    assert [p["title"] for p in both] == ["a", "b"]
