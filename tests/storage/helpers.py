"""Shared helpers for the storage tests: link names of the blog schema, whole-database dumps,
the statements a storage sends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from storage import MutationEvent, PostgresStorage, Schema, SQLiteStorage, Storage, WriteResult
from storage.postgres.connection import Connection

PROFILE = "User_profile_owner_Profile"  # 1:1
POSTS = "User_posts_author_Post"  # 1:n
TAGS = "Post_tags_posts_Tag"  # n:n, link field "weight"
COMMENTS = "Post_comments_post_Comment"  # 1:n, cascade
COMMENT_AUTHOR = "Comment_author_comments_User"  # n:1
FRIENDS = "User_friends_friends_User"  # symmetric n:n


async def dump(storage: SQLiteStorage) -> dict[str, list[dict[str, Any]]]:
    """Every record of every type (links with their endpoints), ordered by id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in storage.schema.records:
        query = ["*", "source", "target"] if storage.schema.is_link(name) else ["*"]
        out[name] = await storage.find(name, None, query, order_by={"id": "asc"})
    return out


async def counts(storage: SQLiteStorage) -> dict[str, int]:
    """How many records of each type there are."""
    return {name: await storage.count(name) for name in storage.schema.records}


def kinds(events: WriteResult | Iterable[MutationEvent]) -> list[tuple[str, str]]:
    """``(type, record_name)`` of each event, in order."""
    if isinstance(events, WriteResult):
        events = events.events
    return [(e.type, e.record_name) for e in events]


def created_id(result: WriteResult) -> Any:
    """The id of the record a create returned."""
    assert result.record is not None
    return result.record["id"]


@contextmanager
def statement_log(store: Storage, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements the storage's sessions send while open (whitespace collapsed; BEGIN,
    COMMIT and ROLLBACK left out): SQLite's trace callback, or PostgreSQL's connection."""
    log: list[str] = []

    def note(sql: str) -> None:
        text = " ".join(sql.split())
        if not text.startswith(("BEGIN", "COMMIT", "ROLLBACK")) or text.startswith("ROLLBACK TO"):
            log.append(text)

    if isinstance(store, PostgresStorage):
        execute = Connection.execute

        def logged(self: Connection, sql: str, params: Any = (), /) -> Any:
            note(sql)
            return execute(self, sql, params)

        monkeypatch.setattr(Connection, "execute", logged)
        yield log
        monkeypatch.setattr(Connection, "execute", execute)
        return
    make = store._session  # type: ignore[attr-defined]
    traced: list[Any] = []

    def traced_note(sql: str) -> None:
        # SQLite's trace shows a statement that fires triggers (the non-null ones) twice.
        if not log or " ".join(sql.split()) != log[-1]:
            note(sql)

    def session(schema: Schema, conn: Any, statements: Any) -> Any:
        conn.set_trace_callback(traced_note)
        traced.append(conn)
        return make(schema, conn, statements)

    monkeypatch.setattr(store, "_session", session)
    try:
        yield log
    finally:
        for conn in traced:
            conn.set_trace_callback(None)
        monkeypatch.setattr(store, "_session", make)
