"""A short tour of the storage layer, run by ``make run`` until the example application lands.

It declares users, posts and tags, writes through nested creates and re-links, reads through
nested attribute queries and prints the mutation events every write caused.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from storage import Field, Index, LinkType, MatchExp, RecordType, Schema, SQLiteStorage

SCHEMA = Schema(
    records=[
        RecordType(
            "User", [Field("name"), Field("karma", "number")], [Index(["name"], unique=True)]
        ),
        RecordType("Post", [Field("title"), Field("published", "boolean")]),
        RecordType("Tag", [Field("label")]),
    ],
    links=[
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
    ],
)


async def main(path: str) -> None:
    storage = SQLiteStorage(path)
    await storage.setup(SCHEMA)
    print(f"storage: SQLite at {path}\n")

    ada = await storage.create(
        "User",
        {
            "name": "ada",
            "karma": 10,
            "posts": [
                {
                    "title": "Engines",
                    "published": True,
                    "tags": [{"label": "math", "&": {"weight": 3}}],
                },
                {"title": "Notes", "published": False},
            ],
        },
    )
    print("create User with nested posts and tags -> events:")
    for event in ada.events:
        print(f"  {event.type:6} {event.record_name:24} {event.record}")

    bob = await storage.create("User", {"name": "bob", "karma": 2})
    moved = await storage.update(
        "Post", {"title": "Notes"}, {"author": {"id": bob.record["id"]}, "published": True}
    )
    print("\nre-point Post.author to bob -> events:")
    for event in moved.events:
        print(f"  {event.type:6} {event.record_name:24} {event.record}")

    published_by_ada = await storage.find(
        "Post",
        MatchExp.atom("author.name", "=", "ada") & MatchExp.atom("published", "=", True),
        ["title", ("author", ["name"]), ("tags", ["label", ("&", ["weight"])])],
    )
    print("\nposts published by ada:", published_by_ada)

    users = await storage.find(
        "User", None, ["name", ("posts", ["title"])], order_by={"karma": "desc"}
    )
    print("users by karma:", users)
    await storage.close()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "demo.db")
    asyncio.run(main(target))
