"""Shared helpers for the storage tests: link names of the blog schema, whole-database dumps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from storage import MutationEvent, SQLiteStorage, WriteResult

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
