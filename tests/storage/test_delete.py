"""delete by match: links go with the record, cascades only where declared, symmetric links."""

from __future__ import annotations

from storage import Field, LinkType, MatchExp, MutationEvent, RecordType, Schema, SQLiteStorage

from .helpers import (
    COMMENT_AUTHOR,
    COMMENTS,
    FRIENDS,
    POSTS,
    PROFILE,
    TAGS,
    counts,
    created_id,
    dump,
    kinds,
)


async def _ada_with_everything(storage: SQLiteStorage) -> tuple[int, int]:
    """ada: a profile, two posts, a comment she wrote and a friend; returns (ada, friend)."""
    friend = created_id(await storage.create("User", {"name": "friend"}))
    ada = created_id(
        await storage.create(
            "User",
            {
                "name": "ada",
                "profile": {"bio": "b"},
                "posts": [{"title": "p1"}, {"title": "p2"}],
                "friends": [{"id": friend}],
            },
        )
    )
    await storage.create("Comment", {"body": "c", "author": {"id": ada}})
    return ada, friend


async def test_links_go_with_the_record(storage: SQLiteStorage) -> None:
    ada, friend = await _ada_with_everything(storage)
    snapshot = await storage.find_one("User", {"id": ada}, ["*"])
    assert snapshot is not None
    result = await storage.delete("User", {"id": ada})
    assert result.records == [snapshot]
    # first every link of the record (full snapshots with endpoints), then the record
    assert result.events == [
        MutationEvent(PROFILE, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": 1}}),
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": 1}}),
        MutationEvent(POSTS, "delete", {"id": 2, "source": {"id": ada}, "target": {"id": 2}}),
        MutationEvent(
            COMMENT_AUTHOR, "delete", {"id": 1, "source": {"id": 1}, "target": {"id": ada}}
        ),
        MutationEvent(
            FRIENDS, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": friend}}
        ),
        MutationEvent("User", "delete", snapshot),
    ]
    # relations without cascade leave the other side alive, unlinked
    assert await counts(storage) == {
        "User": 1,
        "Profile": 1,
        "Post": 2,
        "Tag": 0,
        "Comment": 1,
        PROFILE: 0,
        POSTS: 0,
        TAGS: 0,
        COMMENTS: 0,
        COMMENT_AUTHOR: 0,
        FRIENDS: 0,
    }
    assert await storage.find("Post", None, ["title", "author"], order_by={"id": "asc"}) == [
        {"id": 1, "title": "p1", "author": None},
        {"id": 2, "title": "p2", "author": None},
    ]
    assert await storage.find("User", None, ["friends"]) == [{"id": friend, "friends": []}]


async def test_cascade_deletes_the_comments_of_a_post(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    post = created_id(
        await storage.create(
            "Post",
            {
                "title": "p",
                "author": {"id": ada},
                "tags": [{"label": "t"}],
                "comments": [{"body": "c1", "author": {"id": ada}}, {"body": "c2"}],
            },
        )
    )
    other = created_id(
        await storage.create("Post", {"title": "other", "comments": [{"body": "c3"}]})
    )
    result = await storage.delete("Post", {"id": post})
    assert result.events == [
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": post}}),
        MutationEvent(
            TAGS, "delete", {"id": 1, "source": {"id": post}, "target": {"id": 1}, "weight": None}
        ),
        MutationEvent(COMMENTS, "delete", {"id": 1, "source": {"id": post}, "target": {"id": 1}}),
        MutationEvent(COMMENTS, "delete", {"id": 2, "source": {"id": post}, "target": {"id": 2}}),
        MutationEvent(
            COMMENT_AUTHOR, "delete", {"id": 1, "source": {"id": 1}, "target": {"id": ada}}
        ),
        MutationEvent("Comment", "delete", {"id": 1, "body": "c1"}),
        MutationEvent("Comment", "delete", {"id": 2, "body": "c2"}),
        MutationEvent("Post", "delete", {"id": post, "title": "p", "score": None}),
    ]
    assert result.records == [{"id": post, "title": "p", "score": None}]
    # only the deleted post's comments went; the author and the tag stay
    assert await storage.find("Comment", None, ["body", "post"]) == [
        {"id": 3, "body": "c3", "post": {"id": other}}
    ]
    assert await storage.count("User") == 1 and await storage.count("Tag") == 1
    assert await storage.find("User", None, ["posts", "comments"]) == [
        {"id": ada, "posts": [], "comments": []}
    ]


async def test_no_cascade_in_the_other_direction(storage: SQLiteStorage) -> None:
    post = created_id(
        await storage.create("Post", {"title": "p", "comments": [{"body": "c1"}, {"body": "c2"}]})
    )
    result = await storage.delete("Comment", {"body": "c1"})
    assert kinds(result) == [("delete", COMMENTS), ("delete", "Comment")]
    assert await storage.find("Post", None, ["title", ("comments", ["body"])]) == [
        {"id": post, "title": "p", "comments": [{"id": 2, "body": "c2"}]}
    ]


async def test_deleting_a_user_does_not_delete_posts_or_comments(storage: SQLiteStorage) -> None:
    ada = created_id(
        await storage.create(
            "User", {"name": "ada", "posts": [{"title": "p", "comments": [{"body": "c"}]}]}
        )
    )
    await storage.update("Comment", {"id": 1}, {"author": {"id": ada}})
    await storage.delete("User", {"id": ada})
    assert await storage.count("Post") == 1
    assert await storage.count("Comment") == 1
    assert await storage.find("Post", None, [("comments", ["body", "author"])]) == [
        {"id": 1, "comments": [{"id": 1, "body": "c", "author": None}]}
    ]


async def test_symmetric_links_go_from_either_end(storage: SQLiteStorage) -> None:
    a = created_id(await storage.create("User", {"name": "a"}))
    b = created_id(await storage.create("User", {"name": "b", "friends": [{"id": a}]}))
    c = created_id(await storage.create("User", {"name": "c", "friends": [{"id": a}, {"id": b}]}))
    d = created_id(await storage.create("User", {"name": "d"}))
    await storage.create(FRIENDS, {"source": {"id": b}, "target": {"id": d}})
    # b is the source of one link and the target of another
    result = await storage.delete("User", {"id": b})
    assert result.events == [
        MutationEvent(FRIENDS, "delete", {"id": 1, "source": {"id": b}, "target": {"id": a}}),
        MutationEvent(FRIENDS, "delete", {"id": 4, "source": {"id": b}, "target": {"id": d}}),
        MutationEvent(FRIENDS, "delete", {"id": 3, "source": {"id": c}, "target": {"id": b}}),
        MutationEvent(
            "User",
            "delete",
            {"id": b, "name": "b", "age": None, "active": None, "meta": None, "joined": None},
        ),
    ]
    assert await storage.find("User", None, ["friends"], order_by={"id": "asc"}) == [
        {"id": a, "friends": [{"id": c}]},
        {"id": c, "friends": [{"id": a}]},
        {"id": d, "friends": []},
    ]
    # a self-link goes once
    await storage.create(FRIENDS, {"source": {"id": d}, "target": {"id": d}})
    result = await storage.delete("User", {"id": d})
    assert kinds(result) == [("delete", FRIENDS), ("delete", "User")]
    assert await storage.count(FRIENDS) == 1


async def test_deleting_a_link_record_keeps_both_endpoints(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada", "posts": [{"title": "p"}]}))
    result = await storage.delete(POSTS, {"target": {"id": 1}})
    assert result.events == [
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": ada}, "target": {"id": 1}})
    ]
    assert await storage.find("User", None, ["posts"]) == [{"id": ada, "posts": []}]
    assert await storage.count("Post") == 1


async def test_delete_by_match_of_several_records(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    bob = created_id(await storage.create("User", {"name": "bob"}))
    for title, author in [("a1", ada), ("b1", bob), ("a2", ada)]:
        await storage.create("Post", {"title": title, "author": {"id": author}})
    result = await storage.delete("Post", MatchExp.atom("author.name", "=", "ada"))
    assert [r["title"] for r in result.records] == ["a1", "a2"]
    # per record: its links, then the record
    assert kinds(result) == [
        ("delete", POSTS),
        ("delete", "Post"),
        ("delete", POSTS),
        ("delete", "Post"),
    ]
    assert [e.record["id"] for e in result.events if e.record_name == "Post"] == [1, 3]
    assert await storage.find("Post", None, ["title"]) == [{"id": 2, "title": "b1"}]


async def test_delete_without_a_match_changes_nothing(storage: SQLiteStorage) -> None:
    await storage.create("User", {"name": "ada", "posts": [{"title": "p"}]})
    before = await dump(storage)
    result = await storage.delete("User", {"name": "nobody"})
    assert result.records == [] and result.events == []
    assert await dump(storage) == before


async def test_delete_everything(storage: SQLiteStorage) -> None:
    await storage.create(
        "Post", {"title": "a", "comments": [{"body": "c"}], "tags": [{"label": "t"}]}
    )
    await storage.create("Post", {"title": "b"})
    result = await storage.delete("Post", None)
    assert [r["id"] for r in result.records] == [1, 2]
    assert await storage.count("Post") == 0 and await storage.count("Comment") == 0
    assert await storage.count(TAGS) == 0 and await storage.count("Tag") == 1


async def test_deleted_ids_are_never_reused(storage: SQLiteStorage) -> None:
    await storage.create("Tag", {"label": "a"})
    await storage.create("Tag", {"label": "b"})
    await storage.delete("Tag", {"id": 2})
    assert created_id(await storage.create("Tag", {"label": "c"})) == 3


async def test_cascade_through_a_tree_and_a_one_to_one() -> None:
    schema = Schema(
        [RecordType("Node", [Field("name")]), RecordType("Extra")],
        [
            LinkType(
                "Node_children_parent_Node",
                "Node",
                "children",
                "Node",
                "parent",
                "1:n",
                cascade=True,
            ),
            LinkType(
                "Node_extra_node_Extra", "Node", "extra", "Extra", "node", "1:1", cascade=True
            ),
        ],
    )
    storage = SQLiteStorage()
    await storage.setup(schema)
    try:
        await storage.create(
            "Node",
            {
                "name": "root",
                "extra": {},
                "children": [
                    {"name": "a", "children": [{"name": "a1", "extra": {}}]},
                    {"name": "b"},
                ],
            },
        )
        await storage.create("Node", {"name": "other", "extra": {}})
        # deleting a child takes its subtree, not its parent
        result = await storage.delete("Node", {"name": "a"})
        assert [(e.type, e.record_name, e.record["id"]) for e in result.events] == [
            ("delete", "Node_children_parent_Node", 1),  # a -> a1
            ("delete", "Node_children_parent_Node", 2),  # root -> a
            ("delete", "Node_extra_node_Extra", 2),  # a1's extra
            ("delete", "Extra", 2),
            ("delete", "Node", 3),  # a1
            ("delete", "Node", 2),  # a
        ]
        assert await storage.find("Node", None, ["name"], order_by={"id": "asc"}) == [
            {"id": 1, "name": "root"},
            {"id": 4, "name": "b"},
            {"id": 5, "name": "other"},
        ]
        # a match that selects a record and its cascaded dependants deletes each once
        result = await storage.delete("Node", MatchExp.atom("name", "in", ["root", "b"]))
        deleted = [(e.record_name, e.record["id"]) for e in result.events]
        assert len(deleted) == len(set(deleted))
        assert ("Node", 4) in deleted and ("Extra", 1) in deleted
        assert await storage.find("Node", None, ["name", ("extra", [])]) == [
            {"id": 5, "name": "other", "extra": {"id": 3}}
        ]
        assert await storage.count("Extra") == 1
    finally:
        await storage.close()
