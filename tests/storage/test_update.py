"""update by match: value fields, re-pointing and replacing relations, unlinking, several rows,
no match, link records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from storage import (
    FieldTypeError,
    InvalidDataError,
    MatchError,
    MatchExp,
    MutationEvent,
    SQLiteStorage,
    UnknownFieldError,
)

from .helpers import FRIENDS, POSTS, PROFILE, TAGS, created_id, dump, kinds


async def test_value_fields(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada", "age": 1, "meta": {"x": [1]}}))
    joined = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    result = await storage.update(
        "User", {"id": ada}, {"age": 2.5, "active": True, "joined": joined}
    )
    old = {"id": ada, "name": "ada", "age": 1, "active": None, "meta": {"x": [1]}, "joined": None}
    new = {**old, "age": 2.5, "active": True, "joined": joined}
    assert result.records == [new]
    assert result.events == [
        MutationEvent(
            "User",
            "update",
            {"id": ada, "age": 2.5, "active": True, "joined": joined},
            old,
            ("age", "active", "joined"),
        )
    ]
    assert result.events[0].merged == new
    assert await storage.find("User", None, ["*"]) == [new]


async def test_writing_none_clears_a_field(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada", "age": 3}))
    result = await storage.update("User", {"id": ada}, {"age": None})
    assert result.events[0].record == {"id": ada, "age": None}
    assert result.events[0].old_record is not None
    assert result.events[0].old_record["age"] == 3
    assert await storage.find("User", None, ["age"]) == [{"id": ada, "age": None}]


async def test_several_matched_rows(storage: SQLiteStorage) -> None:
    for name, age in [("a", 10), ("b", 20), ("c", 30), ("d", 40)]:
        await storage.create("User", {"name": name, "age": age})
    result = await storage.update("User", MatchExp.atom("age", "in", [20, 40, 99]), {"age": 0})
    assert [r["id"] for r in result.records] == [2, 4]
    assert [r["name"] for r in result.records] == ["b", "d"]
    assert [
        (e.type, e.record, e.old_record["age"] if e.old_record else None) for e in result.events
    ] == [
        ("update", {"id": 2, "age": 0}, 20),
        ("update", {"id": 4, "age": 0}, 40),
    ]
    assert await storage.find("User", None, ["age"], order_by={"id": "asc"}) == [
        {"id": 1, "age": 10},
        {"id": 2, "age": 0},
        {"id": 3, "age": 30},
        {"id": 4, "age": 0},
    ]
    # a None match means every record
    result = await storage.update("User", None, {"active": False})
    assert len(result.records) == 4 and len(result.events) == 4
    assert await storage.count("User", {"active": False}) == 4


async def test_no_match_changes_nothing(storage: SQLiteStorage) -> None:
    await storage.create("User", {"name": "ada", "posts": [{"title": "p"}]})
    before = await dump(storage)
    result = await storage.update("User", {"name": "nobody"}, {"age": 1, "posts": [{"title": "x"}]})
    assert result.records == [] and result.events == [] and result.record is None
    # references are not even looked at when nothing matches
    result = await storage.update("Post", {"id": 99}, {"author": {"id": 12345}})
    assert result.events == []
    assert await dump(storage) == before


async def test_an_update_by_id_checks_its_values_before_looking_for_the_record(
    storage: SQLiteStorage,
) -> None:
    """Bad values are an error whether or not the record exists (as for any other match)."""
    ada = created_id(await storage.create("User", {"name": "ada", "age": 3}))
    before = await dump(storage)
    for record_id in (ada, 999):
        with pytest.raises(FieldTypeError, match="age"):
            await storage.update("User", {"id": record_id}, {"age": "old"})
        with pytest.raises(UnknownFieldError, match="agee"):
            await storage.update("User", {"id": record_id}, {"agee": 4})
        with pytest.raises(InvalidDataError, match="'id' cannot be changed"):
            await storage.update("User", {"id": record_id}, {"id": 5})
    assert await dump(storage) == before
    missing = await storage.update("User", {"id": 999}, {"age": 4})
    assert missing.records == [] and missing.events == []


async def test_match_on_the_field_being_written(storage: SQLiteStorage) -> None:
    await storage.create("Post", {"title": "a", "score": 1})
    await storage.create("Post", {"title": "b", "score": 2})
    result = await storage.update("Post", MatchExp.atom("score", "<", 2), {"score": 5})
    assert [r["id"] for r in result.records] == [1]
    assert await storage.find("Post", None, ["score"], order_by={"id": "asc"}) == [
        {"id": 1, "score": 5},
        {"id": 2, "score": 2},
    ]


async def test_repointing_a_to_one_reference_replaces_the_link(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    u2 = created_id(await storage.create("User", {"name": "u2"}))
    post = created_id(await storage.create("Post", {"title": "p", "author": {"id": u1}}))
    result = await storage.update("Post", {"id": post}, {"title": "q", "author": {"id": u2}})
    assert result.records == [{"id": post, "title": "q", "score": None}]
    assert result.events == [
        MutationEvent(
            "Post",
            "update",
            {"id": post, "title": "q"},
            {"id": post, "title": "p", "score": None},
            ("title",),
        ),
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": post}}),
        MutationEvent(POSTS, "create", {"id": 2, "source": {"id": u2}, "target": {"id": post}}),
    ]
    assert await storage.find("User", None, ["posts"], order_by={"id": "asc"}) == [
        {"id": u1, "posts": []},
        {"id": u2, "posts": [{"id": post}]},
    ]
    # the same reference again: nothing to do
    again = await storage.update("Post", {"id": post}, {"author": {"id": u2}})
    assert again.events == []
    assert await storage.count(POSTS) == 1


async def test_repointing_a_one_to_one_takes_it_from_its_owner(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1", "profile": {"bio": "b"}}))
    u2 = created_id(await storage.create("User", {"name": "u2"}))
    result = await storage.update("User", {"id": u2}, {"profile": {"id": 1}})
    assert result.events == [
        MutationEvent(PROFILE, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": 1}}),
        MutationEvent(PROFILE, "create", {"id": 2, "source": {"id": u2}, "target": {"id": 1}}),
    ]
    assert await storage.find("User", None, ["profile"], order_by={"id": "asc"}) == [
        {"id": u1, "profile": None},
        {"id": u2, "profile": {"id": 1}},
    ]


async def test_to_many_list_replaces_the_set(storage: SQLiteStorage) -> None:
    t1, t2, t3 = [created_id(await storage.create("Tag", {"label": x})) for x in "abc"]
    post = created_id(
        await storage.create("Post", {"tags": [{"id": t1}, {"id": t2, "&": {"weight": 2}}]})
    )
    result = await storage.update("Post", {"id": post}, {"tags": [{"id": t2}, {"id": t3}]})
    assert result.records == [{"id": post, "title": None, "score": None}]
    assert result.events == [
        MutationEvent(
            TAGS, "delete", {"id": 1, "source": {"id": post}, "target": {"id": t1}, "weight": None}
        ),
        MutationEvent(
            TAGS, "delete", {"id": 2, "source": {"id": post}, "target": {"id": t2}, "weight": 2}
        ),
        MutationEvent(TAGS, "create", {"id": 3, "source": {"id": post}, "target": {"id": t2}}),
        MutationEvent(TAGS, "create", {"id": 4, "source": {"id": post}, "target": {"id": t3}}),
    ]
    assert await storage.find("Post", None, [("tags", ["label", ("&", ["weight"])])]) == [
        {
            "id": post,
            "tags": [
                {"id": t2, "label": "b", "&": {"id": 3, "weight": None}},
                {"id": t3, "label": "c", "&": {"id": 4, "weight": None}},
            ],
        }
    ]
    assert await storage.count("Tag") == 3  # the unlinked tag lives on
    # the very same list: nothing changes
    assert (
        await storage.update("Post", {"id": post}, {"tags": [{"id": t2}, {"id": t3}]})
    ).events == []
    # with link values: re-linked with them
    result = await storage.update("Post", {"id": post}, {"tags": [{"id": t3, "&": {"weight": 9}}]})
    assert kinds(result) == [("delete", TAGS), ("delete", TAGS), ("create", TAGS)]
    assert result.events[-1].record == {
        "id": 5,
        "source": {"id": post},
        "target": {"id": t3},
        "weight": 9,
    }


async def test_to_many_with_nested_creates(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada", "posts": [{"title": "old"}]}))
    result = await storage.update("User", {"id": ada}, {"posts": [{"title": "new"}, {"id": 1}]})
    # nested records are created before the relation is re-linked
    assert kinds(result) == [
        ("create", "Post"),
        ("delete", POSTS),
        ("create", POSTS),
        ("create", POSTS),
    ]
    assert await storage.find("User", None, [("posts", ["title"])]) == [
        {"id": ada, "posts": [{"id": 2, "title": "new"}, {"id": 1, "title": "old"}]}
    ]


async def test_replacing_a_to_many_takes_records_from_their_owner(storage: SQLiteStorage) -> None:
    u1 = created_id(
        await storage.create("User", {"name": "u1", "posts": [{"title": "a"}, {"title": "b"}]})
    )
    u2 = created_id(await storage.create("User", {"name": "u2", "posts": [{"title": "c"}]}))
    result = await storage.update("User", {"id": u1}, {"posts": [{"id": 3}]})
    assert result.events == [
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": 1}}),
        MutationEvent(POSTS, "delete", {"id": 2, "source": {"id": u1}, "target": {"id": 2}}),
        MutationEvent(POSTS, "delete", {"id": 3, "source": {"id": u2}, "target": {"id": 3}}),
        MutationEvent(POSTS, "create", {"id": 4, "source": {"id": u1}, "target": {"id": 3}}),
    ]
    assert await storage.find("Post", None, ["author"], order_by={"id": "asc"}) == [
        {"id": 1, "author": None},
        {"id": 2, "author": None},
        {"id": 3, "author": {"id": u1}},
    ]


@pytest.mark.parametrize("empty", [None, []])
async def test_none_or_empty_unlinks(storage: SQLiteStorage, empty: list[object] | None) -> None:
    ada = created_id(
        await storage.create("User", {"name": "ada", "posts": [{"title": "a"}, {"title": "b"}]})
    )
    result = await storage.update("User", {"id": ada}, {"posts": empty})
    assert kinds(result) == [("delete", POSTS), ("delete", POSTS)]
    assert await storage.count("Post") == 2
    assert await storage.find("User", None, ["posts"]) == [{"id": ada, "posts": []}]


async def test_none_unlinks_a_to_one(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    post = created_id(await storage.create("Post", {"author": {"id": ada}}))
    result = await storage.update("Post", {"id": post}, {"author": None})
    assert result.events == [
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": post}})
    ]
    assert await storage.find("Post", None, ["author"]) == [{"id": post, "author": None}]
    assert await storage.count("User") == 1
    # unlinking what is not linked does nothing
    assert (await storage.update("Post", {"id": post}, {"author": None})).events == []


async def test_relation_change_on_several_rows(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    await storage.create("Post", {"title": "a", "score": 1})
    await storage.create("Post", {"title": "b", "score": 1})
    await storage.create("Post", {"title": "c", "score": 2})
    result = await storage.update("Post", {"score": 1}, {"score": 3, "author": {"id": ada}})
    # per matched record: its update, then its link changes
    assert kinds(result) == [
        ("update", "Post"),
        ("create", POSTS),
        ("update", "Post"),
        ("create", POSTS),
    ]
    assert [e.record["id"] for e in result.events if e.record_name == "Post"] == [1, 2]
    assert await storage.find("User", None, ["posts"]) == [
        {"id": ada, "posts": [{"id": 1}, {"id": 2}]}
    ]


async def test_symmetric_relation_update_from_either_end(storage: SQLiteStorage) -> None:
    a = created_id(await storage.create("User", {"name": "a"}))
    b = created_id(await storage.create("User", {"name": "b"}))
    c = created_id(await storage.create("User", {"name": "c", "friends": [{"id": a}, {"id": b}]}))
    # b is the link's target: emptying b's friends removes the c-b link all the same
    result = await storage.update("User", {"id": b}, {"friends": []})
    assert result.events == [
        MutationEvent(FRIENDS, "delete", {"id": 2, "source": {"id": c}, "target": {"id": b}})
    ]
    assert await storage.find("User", None, ["friends"], order_by={"id": "asc"}) == [
        {"id": a, "friends": [{"id": c}]},
        {"id": b, "friends": []},
        {"id": c, "friends": [{"id": a}]},
    ]
    # a's friends listed from a's side: the same friend set, nothing changes
    assert (await storage.update("User", {"id": a}, {"friends": [{"id": c}]})).events == []


async def test_link_record_fields(storage: SQLiteStorage) -> None:
    await storage.create("Post", {"title": "p", "tags": [{"label": "x", "&": {"weight": 1}}]})
    result = await storage.update(TAGS, {"source": {"id": 1}}, {"weight": 2})
    assert result.records == [{"id": 1, "source": {"id": 1}, "target": {"id": 1}, "weight": 2}]
    assert result.events == [
        MutationEvent(
            TAGS,
            "update",
            {"id": 1, "weight": 2},
            {"id": 1, "source": {"id": 1}, "target": {"id": 1}, "weight": 1},
            ("weight",),
        )
    ]
    assert await storage.find("Post", None, [("tags", [("&", ["weight"])])]) == [
        {"id": 1, "tags": [{"id": 1, "&": {"id": 1, "weight": 2}}]}
    ]


@pytest.mark.parametrize("endpoint", ["source", "target"])
async def test_changing_a_links_endpoint_is_refused(storage: SQLiteStorage, endpoint: str) -> None:
    await storage.create("Post", {"title": "p", "tags": [{"label": "x"}]})
    await storage.create("Post", {"title": "q"})
    await storage.create("Tag", {"label": "y"})
    before = await dump(storage)
    with pytest.raises(InvalidDataError, match="cannot be changed") as info:
        await storage.update(TAGS, {"id": 1}, {endpoint: {"id": 2}, "weight": 3})
    assert (info.value.record, info.value.field) == (TAGS, endpoint)
    assert await dump(storage) == before


async def test_changing_the_id_is_refused(storage: SQLiteStorage) -> None:
    await storage.create("User", {"name": "ada"})
    with pytest.raises(InvalidDataError, match="'id' cannot be changed") as info:
        await storage.update("User", {"id": 1}, {"id": 5})
    assert (info.value.record, info.value.field) == ("User", "id")
    assert await storage.find("User") == [{"id": 1}]


async def test_nested_create_in_an_update_that_links_back(storage: SQLiteStorage) -> None:
    """The nested user takes the profile first; the re-link must not delete that link twice."""
    u1 = created_id(await storage.create("User", {"name": "u1", "profile": {"bio": "b"}}))
    result = await storage.update(
        "Profile", {"id": 1}, {"owner": {"name": "u2", "profile": {"id": 1}}}
    )
    deleted = [e.record["id"] for e in result.events if e.type == "delete"]
    assert len(deleted) == len(set(deleted))
    assert result.events[:3] == [
        MutationEvent("User", "create", {"id": 2, "name": "u2"}),
        MutationEvent(PROFILE, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": 1}}),
        MutationEvent(PROFILE, "create", {"id": 2, "source": {"id": 2}, "target": {"id": 1}}),
    ]
    assert await storage.find("Profile", None, [("owner", ["name"])]) == [
        {"id": 1, "owner": {"id": 2, "name": "u2"}}
    ]
    assert await storage.count(PROFILE) == 1
    # the same through a to-many relation
    await storage.create("Post", {"title": "p", "author": {"id": u1}})
    result = await storage.update(
        "User", {"id": u1}, {"posts": [{"title": "n", "author": {"id": u1}}]}
    )
    deleted = [e.record["id"] for e in result.events if e.type == "delete"]
    assert len(deleted) == len(set(deleted))
    assert await storage.find("User", {"id": u1}, [("posts", ["title"])]) == [
        {"id": u1, "posts": [{"id": 2, "title": "n"}]}
    ]
    assert await storage.count(POSTS) == 1


@pytest.mark.parametrize("data", [{"score": 1}, {"tags": []}, {}])
async def test_an_id_beyond_64_bits_is_a_match_error_whatever_the_payload(
    storage: SQLiteStorage, data: dict[str, Any]
) -> None:
    """Every payload takes the one update path: an id no column can hold is the match's error
    (it was sqlite3's OverflowError for payloads of value fields), and nothing changes."""
    await storage.create("Post", {"title": "p", "score": 0})
    before = await dump(storage)
    with pytest.raises(MatchError, match=r"Post\.id"):
        await storage.update("Post", {"id": 2**70}, data)
    assert await dump(storage) == before
