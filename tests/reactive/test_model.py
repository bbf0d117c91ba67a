"""The model: entities, properties (defaults, computed), relations, dictionaries."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from storage import SQLiteStorage, StorageError
from tests.conftest import StorageFactory

from .conftest import MakeController

# -- entities and properties -----------------------------------------------------------------


async def test_create_returns_the_record_with_its_id_and_find_without_query_returns_ids(
    make: MakeController,
) -> None:
    user = r.Entity("User", [r.Property("name"), r.Property("age", "number")])
    c = await make([user])

    ada = await c.storage.create("User", {"name": "ada", "age": 36})
    bob = await c.storage.create(user, {"name": "bob", "age": 40})

    assert ada["id"] != bob["id"]
    assert ada["name"] == "ada"
    assert await c.storage.find("User") == [{"id": ada["id"]}, {"id": bob["id"]}]
    assert await c.storage.find("User", {"name": "bob"}, ["*"]) == [
        {"id": bob["id"], "name": "bob", "age": 40}
    ]
    assert await c.storage.find_one("User", {"name": "nobody"}, ["*"]) is None
    assert await c.storage.count("User") == 2


async def test_update_and_delete_return_the_affected_records(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name"), r.Property("age", "number")])
    c = await make([user])
    ada = await c.storage.create("User", {"name": "ada", "age": 36})
    await c.storage.create("User", {"name": "bob", "age": 40})

    updated = await c.storage.update("User", {"id": ada["id"]}, {"age": 37})
    assert [(u["id"], u["age"]) for u in updated] == [(ada["id"], 37)]

    deleted = await c.storage.delete("User", {"name": "bob"})
    assert [d["name"] for d in deleted] == ["bob"]
    assert await c.storage.find("User", None, ["name", "age"]) == [
        {"id": ada["id"], "name": "ada", "age": 37}
    ]


async def test_default_value_and_callable_default(make: MakeController) -> None:
    serial = itertools.count(1)
    task = r.Entity(
        "Task",
        [
            r.Property("title"),
            r.Property("status", default="open"),
            r.Property("priority", "number", default=3),
            r.Property("ticket", "number", default=lambda: next(serial)),
            r.Property("tags", "json", default=list),
        ],
    )
    c = await make([task])

    first = await c.storage.create("Task", {"title": "a"})
    second = await c.storage.create("Task", {"title": "b", "status": "done", "priority": 1})

    rows = await c.storage.find("Task", None, ["*"], order_by={"id": "asc"})
    assert rows == [
        {"id": first["id"], "title": "a", "status": "open", "priority": 3, "ticket": 1, "tags": []},
        {
            "id": second["id"],
            "title": "b",
            "status": "done",
            "priority": 1,
            "ticket": 2,
            "tags": [],
        },
    ]


async def test_default_is_not_applied_to_an_explicit_none(make: MakeController) -> None:
    task = r.Entity("Task", [r.Property("title"), r.Property("status", default="open")])
    c = await make([task])

    created = await c.storage.create("Task", {"title": "a", "status": None})

    row = await c.storage.find_one("Task", {"id": created["id"]}, ["status"])
    assert row == {"id": created["id"], "status": None}


async def test_default_fields_are_in_the_create_event(make: MakeController) -> None:
    task = r.Entity("Task", [r.Property("title"), r.Property("status", default="open")])
    c = await make([task])
    events: list[r.MutationEvent] = []
    c.mutations.subscribe(events.append)

    await c.storage.create("Task", {"title": "a"})

    assert [(e.record_name, e.type) for e in events] == [("Task", "create")]
    assert events[0].record["status"] == "open"


async def test_computed_property_is_persisted_and_recomputed_on_update(
    make: MakeController,
) -> None:
    calls: list[dict[str, object]] = []

    def full_name(record: dict[str, object]) -> str:
        calls.append(dict(record))
        return f"{record['first']} {record['last']}"

    person = r.Entity(
        "Person",
        [
            r.Property("first"),
            r.Property("last"),
            r.Property("full", computed=full_name),
            r.Property("age", "number"),
        ],
    )
    c = await make([person])

    ada = await c.storage.create("Person", {"first": "Ada", "last": "Byron", "age": 20})
    assert ada["full"] == "Ada Byron"
    # persisted: readable by a plain match on the column
    assert await c.storage.count("Person", {"full": "Ada Byron"}) == 1

    await c.storage.update("Person", {"id": ada["id"]}, {"last": "Lovelace"})
    row = await c.storage.find_one("Person", {"id": ada["id"]}, ["first", "last", "full"])
    assert row == {"id": ada["id"], "first": "Ada", "last": "Lovelace", "full": "Ada Lovelace"}
    assert await c.storage.count("Person", {"full": "Ada Lovelace"}) == 1

    # an update of another field keeps the computed value (recomputed to the same thing)
    await c.storage.update("Person", {"id": ada["id"]}, {"age": 21})
    row = await c.storage.find_one("Person", {"id": ada["id"]}, ["full", "age"])
    assert row == {"id": ada["id"], "full": "Ada Lovelace", "age": 21}


async def test_computed_property_with_ctx_argument(make: MakeController) -> None:
    seen: list[object] = []

    def upper(record: dict[str, object], ctx: r.TransactionContext) -> str:
        seen.append(ctx)
        return str(record["name"]).upper()

    tag = r.Entity("Tag", [r.Property("name"), r.Property("shout", computed=upper)])
    c = await make([tag])

    created = await c.storage.create("Tag", {"name": "py"})

    assert created["shout"] == "PY"
    assert len(seen) == 1 and isinstance(seen[0], r.TransactionContext)


async def test_writing_a_computed_field_directly_is_refused(make: MakeController) -> None:
    person = r.Entity(
        "Person",
        [r.Property("name"), r.Property("shout", computed=lambda p: str(p["name"]).upper())],
    )
    c = await make([person])
    ada = await c.storage.create("Person", {"name": "ada"})

    with pytest.raises(r.ModelError):
        await c.storage.create("Person", {"name": "bob", "shout": "x"})
    with pytest.raises(r.ModelError):
        await c.storage.update("Person", {"id": ada["id"]}, {"shout": "x"})

    assert await c.storage.find("Person", None, ["name", "shout"]) == [
        {"id": ada["id"], "name": "ada", "shout": "ADA"}
    ]


async def test_writing_an_aggregate_property_directly_is_refused(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("likes_n", "number", computation=r.Count(property="fans")),
        ],
    )
    likes = r.Relation(post, "fans", user, "liked", "n:n")
    c = await make([user, post], [likes])
    p = await c.storage.create("Post", {"title": "x"})

    with pytest.raises(r.ModelError):
        await c.storage.create("Post", {"title": "y", "likes_n": 5})
    with pytest.raises(r.ModelError):
        await c.storage.update("Post", {"id": p["id"]}, {"likes_n": 5})

    assert await c.storage.find("Post", None, ["title", "likes_n"]) == [
        {"id": p["id"], "title": "x", "likes_n": 0}
    ]


def test_property_with_default_and_aggregate_computation_is_a_model_error() -> None:
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [r.Property("n", "number", default=0, computation=r.Count(property="fans"))],
    )
    likes = r.Relation(post, "fans", user, "liked", "n:n")

    with pytest.raises(r.ModelError, match="default"):
        r.Controller(SQLiteStorage(":memory:"), [user, post], [likes])


@pytest.mark.parametrize(
    "build",
    [
        lambda: r.Entity("1bad"),
        lambda: r.Entity("has space"),
        lambda: r.Property("x", "decimal"),  # type: ignore[arg-type]
        lambda: r.Property("bad-name"),
        lambda: r.Entity("E", [r.Property("id")]),
        lambda: r.Entity("E", [r.Property("a"), r.Property("a")]),
        lambda: r.Property("x", computed=lambda rec: 1, computation=r.Count(property="p")),
        lambda: r.Dictionary("d", "decimal"),  # type: ignore[arg-type]
    ],
)
def test_invalid_declarations_are_model_errors(build: Callable[[], object]) -> None:
    with pytest.raises(r.ModelError):
        build()


def test_controller_rejects_duplicates_and_dangling_relations() -> None:
    a = r.Entity("A")
    b = r.Entity("B")
    with pytest.raises(r.ModelError):
        r.Controller(SQLiteStorage(":memory:"), [a, r.Entity("A")])
    with pytest.raises(r.ModelError):
        r.Controller(SQLiteStorage(":memory:"), [a], [r.Relation(a, "bs", b, "a", "1:n")])
    with pytest.raises(r.ModelError):
        r.Controller(SQLiteStorage(":memory:"), [r.Entity("_Interaction_")])


async def test_unknown_record_is_a_storage_error(make: MakeController) -> None:
    c = await make([r.Entity("User", [r.Property("name")])])
    with pytest.raises(StorageError):
        await c.storage.create("Nope", {"name": "x"})
    with pytest.raises(StorageError):
        await c.storage.create("User", {"unknown_field": "x"})
    assert await c.storage.count("User") == 0


# -- relations -------------------------------------------------------------------------------


def test_relation_default_name() -> None:
    user = r.Entity("User")
    post = r.Entity("Post")
    assert r.Relation(user, "posts", post, "author", "1:n").name == "User_posts_author_Post"
    assert r.Relation(user, "posts", post, "author", "1:n", name="Authorship").name == "Authorship"


async def test_one_to_many_relation_by_reference_and_by_relation_record(
    make: MakeController,
) -> None:
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity("Post", [r.Property("title")])
    authors = r.Relation(user, "posts", post, "author", "1:n")
    c = await make([user, post], [authors])
    ada = await c.storage.create("User", {"name": "ada"})
    bob = await c.storage.create("User", {"name": "bob"})

    p1 = await c.storage.create("Post", {"title": "p1", "author": {"id": ada["id"]}})
    p2 = await c.storage.create("Post", {"title": "p2"})
    await c.storage.create(authors, {"source": {"id": ada["id"]}, "target": {"id": p2["id"]}})

    found = await c.storage.find_one("User", {"id": ada["id"]}, ["name", ("posts", ["title"])])
    assert found is not None
    assert sorted(p["title"] for p in found["posts"]) == ["p1", "p2"]
    one = await c.storage.find_one("Post", {"id": p1["id"]}, [("author", ["name"])])
    assert one == {"id": p1["id"], "author": {"id": ada["id"], "name": "ada"}}
    assert await c.storage.count("User_posts_author_Post") == 2

    # re-pointing the x:1 end replaces the link
    events: list[r.MutationEvent] = []
    c.mutations.subscribe(events.append)
    await c.storage.update("Post", {"id": p1["id"]}, {"author": {"id": bob["id"]}})
    assert [(e.record_name, e.type) for e in events] == [
        ("User_posts_author_Post", "delete"),
        ("User_posts_author_Post", "create"),
    ]
    assert await c.storage.count("User_posts_author_Post") == 2
    moved = await c.storage.find_one("Post", {"id": p1["id"]}, [("author", ["name"])])
    assert moved is not None and moved["author"]["name"] == "bob"


async def test_one_to_one_relation_is_exclusive_on_both_ends(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    profile = r.Entity("Profile", [r.Property("bio")])
    rel = r.Relation(user, "profile", profile, "owner", "1:1")
    c = await make([user, profile], [rel])
    ada = await c.storage.create("User", {"name": "ada"})
    first = await c.storage.create("Profile", {"bio": "one", "owner": {"id": ada["id"]}})
    second = await c.storage.create("Profile", {"bio": "two", "owner": {"id": ada["id"]}})

    assert await c.storage.count(rel) == 1
    found = await c.storage.find_one("User", {"id": ada["id"]}, [("profile", ["bio"])])
    assert found == {"id": ada["id"], "profile": {"id": second["id"], "bio": "two"}}
    orphan = await c.storage.find_one("Profile", {"id": first["id"]}, [("owner", ["name"])])
    assert orphan == {"id": first["id"], "owner": None}


async def test_many_to_one_relation(make: MakeController) -> None:
    comment = r.Entity("Comment", [r.Property("body")])
    user = r.Entity("User", [r.Property("name")])
    rel = r.Relation(comment, "author", user, "comments", "n:1")
    c = await make([comment, user], [rel])
    ada = await c.storage.create("User", {"name": "ada"})
    await c.storage.create("Comment", {"body": "a", "author": {"id": ada["id"]}})
    await c.storage.create("Comment", {"body": "b", "author": {"id": ada["id"]}})

    found = await c.storage.find_one("User", {"id": ada["id"]}, [("comments", ["body"])])
    assert found is not None and sorted(x["body"] for x in found["comments"]) == ["a", "b"]
    assert rel.name == "Comment_author_comments_User"
    assert await c.storage.count(rel) == 2


async def test_many_to_many_relation_with_properties(make: MakeController) -> None:
    post = r.Entity("Post", [r.Property("title")])
    tag = r.Entity("Tag", [r.Property("label")])
    rel = r.Relation(
        post, "tags", tag, "posts", "n:n", properties=[r.Property("weight", "number", default=1)]
    )
    c = await make([post, tag], [rel])
    t1 = await c.storage.create("Tag", {"label": "a"})
    t2 = await c.storage.create("Tag", {"label": "b"})
    p = await c.storage.create(
        "Post", {"title": "x", "tags": [{"id": t1["id"], "&": {"weight": 5}}, {"id": t2["id"]}]}
    )

    found = await c.storage.find_one(
        "Post", {"id": p["id"]}, [("tags", ["label", ("&", ["weight"])])]
    )
    assert found is not None
    assert sorted((t["label"], t["&"]["weight"]) for t in found["tags"]) == [("a", 5), ("b", 1)]
    links = await c.storage.find(rel, None, ["weight", "source", "target"])
    assert sorted((link["target"]["id"], link["weight"]) for link in links) == [
        (t1["id"], 5),
        (t2["id"], 1),
    ]
    tagged = await c.storage.find_one("Tag", {"id": t1["id"]}, [("posts", ["title"])])
    assert tagged == {"id": t1["id"], "posts": [{"id": p["id"], "title": "x"}]}


async def test_symmetric_relation_is_visible_from_both_ends(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    friends = r.Relation(user, "friends", user, "friends", "n:n")
    assert friends.symmetric
    c = await make([user], [friends])
    ada = await c.storage.create("User", {"name": "ada"})
    bob = await c.storage.create("User", {"name": "bob", "friends": [{"id": ada["id"]}]})

    assert await c.storage.count(friends) == 1
    a = await c.storage.find_one("User", {"id": ada["id"]}, [("friends", ["name"])])
    b = await c.storage.find_one("User", {"id": bob["id"]}, [("friends", ["name"])])
    assert a == {"id": ada["id"], "friends": [{"id": bob["id"], "name": "bob"}]}
    assert b == {"id": bob["id"], "friends": [{"id": ada["id"], "name": "ada"}]}


def test_symmetric_relation_must_be_many_to_many() -> None:
    user = r.Entity("User")
    with pytest.raises(r.ModelError):
        r.Relation(user, "friend", user, "friend", "1:1")
    with pytest.raises(r.ModelError):
        r.Relation(user, "a", user, "b", "1:n", symmetric=True)
    with pytest.raises(r.ModelError):
        r.Relation(user, "a", user, "b", "2:n")  # type: ignore[arg-type]


async def test_deleting_an_entity_deletes_its_links_first_and_keeps_the_other_end(
    make: MakeController,
) -> None:
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity("Post", [r.Property("title")])
    rel = r.Relation(user, "posts", post, "author", "1:n")
    c = await make([user, post], [rel])
    ada = await c.storage.create("User", {"name": "ada"})
    await c.storage.create("Post", {"title": "p", "author": {"id": ada["id"]}})
    events: list[r.MutationEvent] = []
    c.mutations.subscribe(events.append)

    await c.storage.delete("User", {"id": ada["id"]})

    assert [(e.record_name, e.type) for e in events] == [
        ("User_posts_author_Post", "delete"),
        ("User", "delete"),
    ]
    assert await c.storage.count("Post") == 1
    assert await c.storage.count(rel) == 0


async def test_cascade_relation_deletes_the_dependent_records(make: MakeController) -> None:
    post = r.Entity("Post", [r.Property("title")])
    comment = r.Entity("Comment", [r.Property("body")])
    rel = r.Relation(post, "comments", comment, "post", "1:n", cascade=True)
    c = await make([post, comment], [rel])
    p = await c.storage.create("Post", {"title": "p", "comments": [{"body": "a"}, {"body": "b"}]})
    other = await c.storage.create("Post", {"title": "q", "comments": [{"body": "c"}]})

    await c.storage.delete("Post", {"id": p["id"]})

    assert [row["body"] for row in await c.storage.find("Comment", None, ["body"])] == ["c"]
    assert await c.storage.count(rel) == 1
    assert await c.storage.count("Post", {"id": other["id"]}) == 1


# -- dictionaries ----------------------------------------------------------------------------


async def test_dictionary_default_get_and_set(make: MakeController) -> None:
    limit = r.Dictionary("limit", "number", default=10)
    flags = r.Dictionary("flags", "json", default=lambda: {"beta": False})
    empty = r.Dictionary("empty", "string")
    c = await make(dictionaries=[limit, flags, empty])

    assert await c.storage.get_dict("limit") == 10
    assert await c.storage.get_dict("flags") == {"beta": False}
    assert await c.storage.get_dict("empty") is None

    events: list[r.MutationEvent] = []
    c.mutations.subscribe(events.append)
    await c.storage.set_dict("limit", 20)
    await c.storage.set_dict("empty", "now set")
    await c.storage.set_dict("limit", 30)

    assert await c.storage.get_dict("limit") == 30
    assert await c.storage.get_dict("empty") == "now set"
    assert [(e.record_name, e.type) for e in events] == [
        (DICTIONARY_RECORD, "update"),
        (DICTIONARY_RECORD, "create"),
        (DICTIONARY_RECORD, "update"),
    ]
    assert events[0].record["value"] == 20


async def test_dictionary_value_survives_a_new_controller(
    make: MakeController, db_path: str
) -> None:
    limit = r.Dictionary("limit", "number", default=10)
    c = await make(dictionaries=[limit])
    await c.storage.set_dict("limit", 99)
    await c.close()

    again = await make(dictionaries=[limit], install=False)
    assert await again.storage.get_dict("limit") == 99


async def test_unknown_dictionary_is_an_error(make: MakeController) -> None:
    c = await make(dictionaries=[r.Dictionary("known", "number", default=1)])
    with pytest.raises(r.ModelError, match="unknown dictionary"):
        await c.storage.get_dict("nope")
    with pytest.raises(r.ModelError, match="unknown dictionary"):
        await c.storage.set_dict("nope", 1)
    assert await c.storage.count(DICTIONARY_RECORD) == 1


async def test_a_computed_dictionary_cannot_be_set(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    total = r.Dictionary("users", "number", computation=r.Count(record=user))
    c = await make([user], dictionaries=[total])
    await c.storage.create("User", {"name": "a"})

    with pytest.raises(r.ModelError):
        await c.storage.set_dict("users", 100)
    assert await c.storage.get_dict("users") == 1


async def test_records_and_links_created_by_a_nested_create_get_defaults(
    make: MakeController,
) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("role", default="member"),
            r.Property("shout", computed=lambda u: str(u["name"]).upper()),
        ],
    )
    post = r.Entity("Post", [r.Property("title")])
    fans = r.Relation(
        post, "fans", user, "liked", "n:n", properties=[r.Property("weight", "number", default=1)]
    )
    c = await make([user, post], [fans])

    await c.storage.create("Post", {"title": "p", "fans": [{"name": "nested"}]})

    assert await c.storage.find("User", None, ["name", "role", "shout"]) == [
        {"id": 1, "name": "nested", "role": "member", "shout": "NESTED"}
    ]
    assert [link["weight"] for link in await c.storage.find(fans, None, ["weight"])] == [1]


async def test_records_and_links_created_by_a_nested_update_get_defaults(
    make: MakeController,
) -> None:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("role", default="member"),
            r.Property("shout", computed=lambda u: str(u["name"]).upper()),
        ],
    )
    post = r.Entity("Post", [r.Property("title")])
    fans = r.Relation(
        post, "fans", user, "liked", "n:n", properties=[r.Property("weight", "number", default=1)]
    )
    c = await make([user, post], [fans])
    p = await c.storage.create("Post", {"title": "p"})

    await c.storage.update("Post", {"id": p["id"]}, {"fans": [{"name": "nested"}]})

    assert await c.storage.find("User", None, ["name", "role", "shout"]) == [
        {"id": 1, "name": "nested", "role": "member", "shout": "NESTED"}
    ]
    assert [link["weight"] for link in await c.storage.find(fans, None, ["weight"])] == [1]


async def test_a_lookup_by_an_unindexed_field_inside_a_transaction_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make_storage: StorageFactory
) -> None:
    item = r.Entity("Item", [r.Property("code"), r.Property("sku", index=True)])
    controller = r.Controller(make_storage("ix.db"), [item])
    await controller.setup()
    try:
        await controller.storage.create("Item", {"code": "a", "sku": "s"})

        def look(ctx: r.TransactionContext) -> None:
            for _ in range(3):
                assert ctx.storage.find_one("Item", {"code": "a"}) is not None
                assert ctx.storage.find_one("Item", {"sku": "s"}) is not None

        with caplog.at_level("WARNING", logger="reactive.engine"):
            await controller.transact(look)
        warnings = [r.getMessage() for r in caplog.records if r.name == "reactive.engine"]
        assert len(warnings) == 1 and "Item is looked up by code" in warnings[0]
    finally:
        await controller.close()


def _tally_model(computed: Any) -> tuple[list[r.Entity], list[r.Relation]]:
    """A Post whose Count feeds a computed property."""
    fan = r.Entity("Fan", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property("likes", "number", computation=r.Count(property="liked_by")),
            r.Property("badge", "json", computed=computed),
        ],
    )
    return [fan, post], [r.Relation(post, "liked_by", fan, "liked", "n:n")]


async def test_a_computed_property_fed_by_a_computation_is_written_in_the_same_event(
    make: MakeController,
) -> None:
    entities, relations = _tally_model(lambda p: "popular" if p["likes"] >= 2 else "new")
    c = await make(entities, relations)
    link = relations[0].relation_name
    post = await c.storage.create("Post", {})
    fan = await c.storage.create("Fan", {"name": "f"})
    seen: list[r.MutationEvent] = []
    c.stream("Post", "update").subscribe(seen.append)

    for _ in range(2):
        await c.storage.create(link, {"source": {"id": post["id"]}, "target": {"id": fan["id"]}})

    assert [(e.record.get("likes"), e.record.get("badge")) for e in seen] == [
        (1, None),  # the badge did not change: not written
        (2, "popular"),
    ]
    assert seen[1].keys is not None and {"likes", "badge"} <= set(seen[1].keys)
    assert await c.storage.find("Post", None, ["likes", "badge"]) == [
        {"id": post["id"], "likes": 2, "badge": "popular"}
    ]


async def test_a_computed_property_sees_stored_values_in_the_end(make: MakeController) -> None:
    """Worked out first from the values as written, then checked against them as stored: a
    computed value that depends on the difference (a tuple, stored as a JSON list) ends up as
    computed from the stored record, like a read would compute it."""
    fan = r.Entity("Fan", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property(
                "pair",
                "json",
                computation=r.Custom(
                    lambda last, ev: ("liked by", ev.record["target"]["id"]),  # a tuple
                    triggers=[r.Trigger("Post_liked_by_liked_Fan", "create")],
                    compute_target=lambda ev: {"id": ev.record["source"]["id"]},
                ),
            ),
            r.Property("pair_kind", computed=lambda p: type(p.get("pair")).__name__),
        ],
    )
    likes = r.Relation(post, "liked_by", fan, "liked", "n:n")
    c = await make([fan, post], [likes])
    the_post = await c.storage.create("Post", {})
    the_fan = await c.storage.create("Fan", {"name": "f"})
    await c.storage.create(
        likes, {"source": {"id": the_post["id"]}, "target": {"id": the_fan["id"]}}
    )

    found = await c.storage.find_one("Post", {"id": the_post["id"]}, ["pair", "pair_kind"])
    assert found == {"id": the_post["id"], "pair": ["liked by", the_fan["id"]], "pair_kind": "list"}


async def test_a_failing_computed_property_fails_the_computation_write(
    make: MakeController,
) -> None:
    def fragile(post: dict[str, Any]) -> str:
        if post["likes"] > 1:
            raise ValueError("too popular")
        return "ok"

    entities, relations = _tally_model(fragile)
    c = await make(entities, relations)
    link = relations[0].relation_name
    post = await c.storage.create("Post", {})
    fan = await c.storage.create("Fan", {"name": "f"})
    await c.storage.create(link, {"source": {"id": post["id"]}, "target": {"id": fan["id"]}})

    with pytest.raises(r.ComputationError, match="too popular"):
        await c.storage.create(link, {"source": {"id": post["id"]}, "target": {"id": fan["id"]}})
    assert await c.storage.count(link) == 1
    assert await c.storage.find("Post", None, ["likes", "badge"]) == [
        {"id": post["id"], "likes": 1, "badge": "ok"}
    ]
