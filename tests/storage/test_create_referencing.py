"""A create that links the new record to one existing record (a comment on a post, an item on
an order): on PostgreSQL the row and its link are one statement (``Writer._create_referencing``),
elsewhere two; the records, events and errors are the same on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from storage import (
    MissingReferenceError,
    MutationEvent,
    PostgresStorage,
    SQLiteStorage,
    UniqueViolationError,
)

from .helpers import created_id, statement_log

POSTS = "User_posts_author_Post"
COMMENTS = "Post_comments_post_Comment"
PROFILE = "User_profile_owner_Profile"


def _writes(log: list[str]) -> list[str]:
    return [sql for sql in log if sql.startswith(("INSERT", "WITH", "DELETE", "UPDATE"))]


async def test_a_create_with_one_reference_is_one_statement_on_postgresql(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    author = created_id(await storage.create("User", {"name": "ada"}))
    with statement_log(storage, monkeypatch) as log:
        result = await storage.create("Post", {"title": "t", "author": {"id": author}})
    post = created_id(result)
    assert result.records == [{"id": post, "title": "t", "author": {"id": author}}]
    link = result.events[1].record["id"]
    assert result.events == [
        MutationEvent("Post", "create", {"id": post, "title": "t"}),
        MutationEvent(
            POSTS, "create", {"id": link, "source": {"id": author}, "target": {"id": post}}
        ),
    ]
    expected = 1 if isinstance(storage, PostgresStorage) else 2
    assert len(_writes(log)) == expected, log
    assert await storage.find("Post", {"id": post}, ["title", ("author", ["name"])]) == [
        {"id": post, "title": "t", "author": {"id": author, "name": "ada"}}
    ]


async def test_the_reference_on_the_source_side_too(storage: SQLiteStorage) -> None:
    """The new record as the link's source (a user created with one post of its many)."""
    post = created_id(await storage.create("Post", {"title": "t"}))
    result = await storage.create("User", {"name": "bo", "posts": [{"id": post}]})
    user = created_id(result)
    assert result.records == [{"id": user, "name": "bo", "posts": [{"id": post}]}]
    assert [(e.record_name, e.type) for e in result.events] == [
        ("User", "create"),
        (POSTS, "create"),
    ]
    assert result.events[1].record["source"] == {"id": user}
    assert await storage.find("Post", {"id": post}, [("author", ["name"])]) == [
        {"id": post, "author": {"id": user, "name": "bo"}}
    ]


async def test_a_missing_reference_names_the_field_and_stores_nothing(
    storage: SQLiteStorage,
) -> None:
    before = await storage.count("Post")
    with pytest.raises(MissingReferenceError) as info:
        await storage.create("Post", {"title": "t", "author": {"id": 999}})
    assert "author" in str(info.value) and "999" in str(info.value)
    assert await storage.count("Post") == before
    assert await storage.count(POSTS) == 0


async def test_the_records_own_unique_violation_is_the_records(storage: SQLiteStorage) -> None:
    await storage.create("User", {"name": "ada"})
    post = created_id(await storage.create("Post", {"title": "t"}))
    with pytest.raises(UniqueViolationError) as info:
        await storage.create("User", {"name": "ada", "posts": [{"id": post}]})
    assert info.value.record == "User"
    assert await storage.count("User") == 1
    assert await storage.count(POSTS) == 0


async def test_a_reference_that_displaces_a_link_keeps_the_two_statement_path(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1:1 end already linked: the new link displaces the old one (its delete event first),
    which one statement could not say."""
    first = created_id(await storage.create("User", {"name": "u1"}))
    profile = created_id(await storage.create("Profile", {"bio": "b", "owner": {"id": first}}))
    with statement_log(storage, monkeypatch) as log:
        result = await storage.create("User", {"name": "u2", "profile": {"id": profile}})
    second = created_id(result)
    assert [(e.record_name, e.type) for e in result.events] == [
        ("User", "create"),
        (PROFILE, "delete"),
        (PROFILE, "create"),
    ]
    assert not any(sql.startswith("WITH") for sql in log), log
    assert await storage.find("Profile", {"id": profile}, [("owner", ["name"])]) == [
        {"id": profile, "owner": {"id": second, "name": "u2"}}
    ]


async def test_inside_a_transaction_the_link_is_seen_by_the_next_read(
    storage: SQLiteStorage,
) -> None:
    post = created_id(await storage.create("Post", {"title": "t"}))

    def body(tx: Any) -> list[Any]:
        tx.create("Comment", {"body": "c", "post": {"id": post}})
        tx.create("Comment", {"body": "d", "post": {"id": post}})
        return tx.find("Post", {"id": post}, [("comments", ["body"])])  # type: ignore[no-any-return]

    found = await storage.run(body)
    assert [c["body"] for c in found[0]["comments"]] == ["c", "d"]
    assert await storage.count(COMMENTS) == 2
