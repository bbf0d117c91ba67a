"""Fixtures: a blog schema on aiosqlite, on a real file and on ``:memory:``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Field, Index, LinkType, RecordType, Schema, SQLiteStorage
from tests.conftest import dispose_postgres, open_postgres
from tests.storage.standard import StandardStorage


def blog_schema() -> Schema:
    """Users, posts, tags and comments, with every link cardinality and a symmetric link."""
    return Schema(
        records=[
            RecordType(
                "User",
                [
                    Field("name"),
                    Field("age", "number"),
                    Field("active", "boolean"),
                    Field("meta", "json"),
                    Field("joined", "timestamp"),
                ],
                [Index(["name"], unique=True)],
            ),
            RecordType("Profile", [Field("bio")]),
            RecordType("Post", [Field("title"), Field("score", "number")]),
            RecordType("Tag", [Field("label")]),
            RecordType("Comment", [Field("body")]),
        ],
        links=[
            LinkType("User_profile_owner_Profile", "User", "profile", "Profile", "owner", "1:1"),
            LinkType("User_posts_author_Post", "User", "posts", "Post", "author", "1:n"),
            LinkType(
                "Post_tags_posts_Tag",
                "Post",
                "tags",
                "Tag",
                "posts",
                "n:n",
                fields=[Field("weight", "number")],
            ),
            LinkType(
                "Post_comments_post_Comment",
                "Post",
                "comments",
                "Comment",
                "post",
                "1:n",
                cascade=True,
            ),
            LinkType(
                "Comment_author_comments_User", "Comment", "author", "User", "comments", "n:1"
            ),
            LinkType(
                "User_friends_friends_User",
                "User",
                "friends",
                "User",
                "friends",
                "n:n",
                symmetric=True,
            ),
        ],
    )


@pytest.fixture(params=["file", "memory", "standard", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """The blog schema on a file, on ``:memory:``, on a file through the neutral layer with
    standard-SQL rendering and PostgreSQL's failure rule (see tests.storage.standard), and on
    PostgreSQL in a schema of its own (skipped when the server cannot be reached; see
    tests/conftest.py)."""
    if request.param == "postgres":
        pg = await open_postgres(request.getfixturevalue("postgres_url"))
        try:
            await pg.setup(blog_schema())
            yield pg  # type: ignore[misc]  # the same interface: storage.abc.Storage
        finally:
            await dispose_postgres(pg)
        return
    path = str(tmp_path / "test.db") if request.param != "memory" else ":memory:"
    store = StandardStorage(path) if request.param == "standard" else SQLiteStorage(path)
    await store.setup(blog_schema())
    yield store
    await store.close()


@pytest.fixture(params=["loop", "thread"])
async def executor_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteStorage]:
    """The blog schema on a file, once per executor: the default ``"loop"`` and ``"thread"``."""
    store = SQLiteStorage(str(tmp_path / "executor.db"), executor=request.param)
    await store.setup(blog_schema())
    yield store
    await store.close()
