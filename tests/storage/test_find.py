"""find, find_one and count: attribute queries (nested through relations in both directions,
"*", "&"), ordering with a deterministic tie-break, limit and offset."""

from __future__ import annotations

import pytest

from storage import MatchExp, QueryError, SQLiteStorage, UnknownFieldError

from .helpers import TAGS, created_id


async def _blog(storage: SQLiteStorage) -> None:
    """ada (profile, posts p1 and p2), bob (post p3); tags x, y; comments on p1."""
    await storage.create(
        "User",
        {
            "name": "ada",
            "age": 36,
            "profile": {"bio": "engines"},
            "posts": [
                {
                    "title": "p1",
                    "score": 5,
                    "tags": [
                        {"label": "x", "&": {"weight": 1}},
                        {"label": "y", "&": {"weight": 2}},
                    ],
                },
                {"title": "p2", "score": 3},
            ],
        },
    )
    await storage.create(
        "User",
        {
            "name": "bob",
            "age": 20,
            "posts": [{"title": "p3", "score": 5, "tags": [{"id": 2, "&": {"weight": 9}}]}],
        },
    )
    await storage.create("Comment", {"body": "nice", "post": {"id": 1}, "author": {"id": 2}})
    await storage.create("Comment", {"body": "thanks", "post": {"id": 1}, "author": {"id": 1}})


async def test_without_attribute_query_only_ids(storage: SQLiteStorage) -> None:
    await _blog(storage)
    assert await storage.find("User", order_by={"id": "asc"}) == [{"id": 1}, {"id": 2}]
    assert await storage.find("Post", {"title": "p2"}) == [{"id": 2}]
    assert await storage.find("Post", {"title": "none"}) == []
    assert await storage.find_one("User", {"name": "bob"}) == {"id": 2}
    assert await storage.find("User", None, []) == [{"id": 1}, {"id": 2}]
    assert await storage.find("User", None, ["id"]) == [{"id": 1}, {"id": 2}]


async def test_star_and_field_lists(storage: SQLiteStorage) -> None:
    await _blog(storage)
    assert await storage.find("User", {"id": 1}, ["*"]) == [
        {"id": 1, "name": "ada", "age": 36, "active": None, "meta": None, "joined": None}
    ]
    assert await storage.find("User", {"id": 1}, ["age", "name"]) == [
        {"id": 1, "age": 36, "name": "ada"}
    ]
    # repeating a field or adding "*" does not repeat columns
    found = await storage.find("User", {"id": 1}, ["name", "*", "name"])
    assert found == [
        {"id": 1, "name": "ada", "age": 36, "active": None, "meta": None, "joined": None}
    ]
    # a relation attribute alone gives the related ids
    assert await storage.find("User", {"id": 1}, ["posts", "profile"]) == [
        {"id": 1, "posts": [{"id": 1}, {"id": 2}], "profile": {"id": 1}}
    ]
    # a relation named twice: its nested queries are merged
    assert await storage.find(
        "User", {"id": 1}, ["posts", ("posts", ["title"]), ("posts", ["score"])]
    ) == [
        {
            "id": 1,
            "posts": [{"id": 1, "title": "p1", "score": 5}, {"id": 2, "title": "p2", "score": 3}],
        }
    ]


async def test_to_one_is_a_dict_or_none(storage: SQLiteStorage) -> None:
    await _blog(storage)
    await storage.create("Post", {"title": "orphan"})
    assert await storage.find(
        "Post", None, ["title", ("author", ["name"])], order_by={"id": "asc"}
    ) == [
        {"id": 1, "title": "p1", "author": {"id": 1, "name": "ada"}},
        {"id": 2, "title": "p2", "author": {"id": 1, "name": "ada"}},
        {"id": 3, "title": "p3", "author": {"id": 2, "name": "bob"}},
        {"id": 4, "title": "orphan", "author": None},
    ]
    assert await storage.find("User", None, [("profile", ["bio"])], order_by={"id": "asc"}) == [
        {"id": 1, "profile": {"id": 1, "bio": "engines"}},
        {"id": 2, "profile": None},
    ]


async def test_to_many_is_a_list_ordered_by_link_creation(storage: SQLiteStorage) -> None:
    for label in "abc":
        await storage.create("Tag", {"label": label})
    await storage.create("Post", {"title": "p", "tags": [{"id": 3}, {"id": 1}]})
    await storage.create(TAGS, {"source": {"id": 1}, "target": {"id": 2}})
    assert await storage.find("Post", None, [("tags", ["label"])]) == [
        {
            "id": 1,
            "tags": [{"id": 3, "label": "c"}, {"id": 1, "label": "a"}, {"id": 2, "label": "b"}],
        }
    ]
    await storage.create("Post", {"title": "empty"})
    assert await storage.find("Post", {"title": "empty"}, ["tags"]) == [{"id": 2, "tags": []}]


async def test_nested_both_directions(storage: SQLiteStorage) -> None:
    await _blog(storage)
    # down: user -> posts -> tags -> posts -> author
    user = await storage.find_one(
        "User",
        {"name": "bob"},
        [
            "name",
            ("posts", ["title", ("tags", ["label", ("posts", ["title", ("author", ["name"])])])]),
        ],
    )
    assert user == {
        "id": 2,
        "name": "bob",
        "posts": [
            {
                "id": 3,
                "title": "p3",
                "tags": [
                    {
                        "id": 2,
                        "label": "y",
                        "posts": [
                            {"id": 1, "title": "p1", "author": {"id": 1, "name": "ada"}},
                            {"id": 3, "title": "p3", "author": {"id": 2, "name": "bob"}},
                        ],
                    }
                ],
            }
        ],
    }
    # up: comment -> post -> author -> profile, and comment -> author -> posts
    comment = await storage.find_one(
        "Comment",
        {"body": "nice"},
        [
            "body",
            ("post", ["title", ("author", ["name", ("profile", ["bio"])])]),
            ("author", [("posts", ["title"])]),
        ],
    )
    assert comment == {
        "id": 1,
        "body": "nice",
        "post": {
            "id": 1,
            "title": "p1",
            "author": {"id": 1, "name": "ada", "profile": {"id": 1, "bio": "engines"}},
        },
        "author": {"id": 2, "posts": [{"id": 3, "title": "p3"}]},
    }


async def test_related_records_are_independent_dicts(storage: SQLiteStorage) -> None:
    await _blog(storage)
    tags = await storage.find("Tag", {"label": "y"}, [("posts", ["title", ("author", ["name"])])])
    found = await storage.find(
        "Post", MatchExp.atom("tags.label", "=", "y"), [("tags", ["label"])], order_by={"id": "asc"}
    )
    assert [p["tags"][-1] for p in found] == [{"id": 2, "label": "y"}, {"id": 2, "label": "y"}]
    found[0]["tags"][-1]["label"] = "changed"
    assert found[1]["tags"][-1]["label"] == "y"
    assert tags[0]["posts"][0]["author"] == {"id": 1, "name": "ada"}


async def test_link_fields_with_ampersand(storage: SQLiteStorage) -> None:
    await _blog(storage)
    assert await storage.find("Post", {"id": 1}, [("tags", ["label", ("&", ["weight"])])]) == [
        {
            "id": 1,
            "tags": [
                {"id": 1, "label": "x", "&": {"id": 1, "weight": 1}},
                {"id": 2, "label": "y", "&": {"id": 2, "weight": 2}},
            ],
        }
    ]
    assert await storage.find("Tag", {"id": 2}, [("posts", ["title", ("&", ["*"])])]) == [
        {
            "id": 2,
            "posts": [
                {"id": 1, "title": "p1", "&": {"id": 2, "weight": 2}},
                {"id": 3, "title": "p3", "&": {"id": 3, "weight": 9}},
            ],
        }
    ]
    # the link record's own endpoints, reached through "&"
    assert await storage.find(
        "Tag", {"id": 1}, [("posts", [("&", ["weight", ("source", ["title"])])])]
    ) == [
        {
            "id": 1,
            "posts": [{"id": 1, "&": {"id": 1, "weight": 1, "source": {"id": 1, "title": "p1"}}}],
        }
    ]


async def test_link_records_with_their_endpoints(storage: SQLiteStorage) -> None:
    await _blog(storage)
    found = await storage.find(
        TAGS,
        MatchExp.atom("weight", ">", 1),
        ["weight", "source", ("target", ["label", ("posts", ["title"])])],
        order_by={"weight": "desc"},
    )
    assert found == [
        {
            "id": 3,
            "weight": 9,
            "source": {"id": 3},
            "target": {
                "id": 2,
                "label": "y",
                "posts": [{"id": 1, "title": "p1"}, {"id": 3, "title": "p3"}],
            },
        },
        {
            "id": 2,
            "weight": 2,
            "source": {"id": 1},
            "target": {
                "id": 2,
                "label": "y",
                "posts": [{"id": 1, "title": "p1"}, {"id": 3, "title": "p3"}],
            },
        },
    ]


async def test_symmetric_nested(storage: SQLiteStorage) -> None:
    a = created_id(await storage.create("User", {"name": "a"}))
    await storage.create("User", {"name": "b", "friends": [{"id": a}, {"name": "c"}]})
    assert await storage.find(
        "User", {"id": a}, [("friends", ["name", ("friends", ["name"])])]
    ) == [
        {
            "id": a,
            "friends": [
                {"id": 2, "name": "b", "friends": [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}]}
            ],
        }
    ]


async def test_order_by_with_deterministic_tie_break(storage: SQLiteStorage) -> None:
    for title, score in [("e", 2), ("a", 1), ("d", 2), ("b", 1), ("c", 3)]:
        await storage.create("Post", {"title": title, "score": score})
    asc = await storage.find("Post", None, ["score"], order_by={"score": "asc"})
    assert [(r["score"], r["id"]) for r in asc] == [(1, 2), (1, 4), (2, 1), (2, 3), (3, 5)]
    # ties stay in id order under desc too
    desc = await storage.find("Post", None, ["score"], order_by={"score": "desc"})
    assert [(r["score"], r["id"]) for r in desc] == [(3, 5), (2, 1), (2, 3), (1, 2), (1, 4)]
    by_title = await storage.find("Post", None, ["title"], order_by={"title": "DESC"})
    assert [r["title"] for r in by_title] == ["e", "d", "c", "b", "a"]
    two_keys = await storage.find(
        "Post", None, ["title"], order_by={"score": "asc", "title": "desc"}
    )
    assert [r["title"] for r in two_keys] == ["b", "a", "e", "d", "c"]
    by_id = await storage.find("Post", None, order_by={"id": "desc"})
    assert [r["id"] for r in by_id] == [5, 4, 3, 2, 1]


async def test_limit_and_offset(storage: SQLiteStorage) -> None:
    for i in range(7):
        await storage.create("Post", {"title": f"t{i}", "score": i % 3})
    order = {"score": "asc"}
    everything = [r["id"] for r in await storage.find("Post", None, order_by=order)]
    pages = [
        [r["id"] for r in await storage.find("Post", None, order_by=order, limit=3, offset=offset)]
        for offset in (0, 3, 6)
    ]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == everything
    assert await storage.find("Post", None, limit=0) == []
    assert await storage.find("Post", None, order_by=order, offset=100) == []
    assert [
        r["id"] for r in await storage.find("Post", None, order_by=order, offset=5)
    ] == everything[5:]
    assert [
        r["id"] for r in await storage.find("Post", None, order_by=order, limit=2)
    ] == everything[:2]
    # paging applies after the match
    page = await storage.find(
        "Post", {"score": 1}, ["title"], order_by={"id": "desc"}, limit=1, offset=1
    )
    assert page == [{"id": 2, "title": "t1"}]


async def test_find_one_and_count(storage: SQLiteStorage) -> None:
    await _blog(storage)
    assert await storage.find_one("Post", None, ["title"], order_by={"score": "asc"}) == {
        "id": 2,
        "title": "p2",
    }
    assert await storage.find_one("Post", {"score": 5}, ["title"], order_by={"id": "desc"}) == {
        "id": 3,
        "title": "p3",
    }
    assert await storage.find_one("Post", {"score": 100}) is None
    assert await storage.count("Post") == 3
    assert await storage.count("Post", {"score": 5}) == 2
    assert await storage.count("Post", MatchExp.atom("author.name", "=", "ada")) == 2
    assert await storage.count("Post", {"title": "nothing"}) == 0
    assert await storage.count(TAGS) == 3


async def test_reads_are_the_same_on_both_executors(executor_storage: SQLiteStorage) -> None:
    await _blog(executor_storage)
    found = await executor_storage.find(
        "User",
        None,
        ["name", ("posts", ["title", ("tags", ["label", ("&", ["weight"])])])],
        order_by={"name": "desc"},
    )
    assert [u["name"] for u in found] == ["bob", "ada"]
    assert found[0]["posts"] == [
        {"id": 3, "title": "p3", "tags": [{"id": 2, "label": "y", "&": {"id": 3, "weight": 9}}]}
    ]


async def test_order_by_a_field_reached_through_to_one_relations(storage: SQLiteStorage) -> None:
    """Posts by their author's name, comments by their post's author's age, link records by
    an endpoint's field; a record without the related one sorts as NULL (first when
    ascending), and ties still break by id."""
    await _blog(storage)
    await storage.create("Post", {"title": "orphan", "score": 1})  # id 4, no author
    await storage.create("User", {"name": "cyd", "age": 50, "posts": [{"title": "p5"}]})

    def titles(found: list[dict[str, object]]) -> list[object]:
        return [r["title"] for r in found]

    by_author = await storage.find("Post", None, ["title"], order_by={"author.name": "desc"})
    assert titles(by_author) == ["p5", "p3", "p1", "p2", "orphan"]
    by_author = await storage.find(
        "Post", None, ["title"], order_by={"author.name": "asc", "score": "asc"}
    )
    assert titles(by_author) == ["orphan", "p2", "p1", "p3", "p5"]
    by_author_id = await storage.find("Post", None, ["title"], order_by={"author.id": "desc"})
    assert titles(by_author_id) == ["p5", "p3", "p1", "p2", "orphan"]

    # two hops: a comment's post's author
    comments = await storage.find(
        "Comment", None, ["body"], order_by={"post.author.age": "asc", "author.name": "desc"}
    )
    assert [c["body"] for c in comments] == ["nice", "thanks"]

    # a link record by a field of one of its endpoints
    links = await storage.find(TAGS, None, ["weight"], order_by={"target.label": "desc"})
    assert [link["weight"] for link in links] == [2, 9, 1]
    links = await storage.find(TAGS, None, ["weight"], order_by={"source.title": "desc"})
    assert [link["weight"] for link in links] == [9, 1, 2]


async def test_order_by_paths_that_cannot_order(storage: SQLiteStorage) -> None:
    await _blog(storage)
    with pytest.raises(QueryError, match="tags holds many records"):
        await storage.find("Post", None, order_by={"tags.label": "asc"})
    with pytest.raises(QueryError, match=r"name one of its fields \(post.author.id"):
        await storage.find("Comment", None, order_by={"post.author": "asc"})
    with pytest.raises(UnknownFieldError, match="writer"):
        await storage.find("Post", None, order_by={"writer.name": "asc"})
    with pytest.raises(UnknownFieldError, match="nick"):
        await storage.find("Post", None, order_by={"author.nick": "asc"})
    with pytest.raises(QueryError, match="direction"):
        await storage.find("Post", None, order_by={"author.name": "sideways"})
    with pytest.raises(QueryError, match="direction"):
        await storage.find("Post", None, order_by={"author.name": ["asc"]})  # type: ignore[dict-item]


async def test_without_order_by_records_come_in_id_order(storage: SQLiteStorage) -> None:
    """The same records in the same order on every backend: PostgreSQL returns rows in the
    order it finds them on disk, and an updated row moves (a new row version), so a find
    without ``order_by`` (or with a limit) is ordered by id."""
    ids = [created_id(await storage.create("Post", {"title": t})) for t in ("a", "b", "c")]
    await storage.update("Post", {"id": ids[0]}, {"title": "a2"})
    await storage.update("Post", {"id": ids[1]}, {"score": 1})
    assert [p["id"] for p in await storage.find("Post")] == ids
    assert [p["id"] for p in await storage.find("Post", {"score": None})] == [ids[0], ids[2]]
    assert [p["id"] for p in await storage.find("Post", None, ["title"], limit=2)] == ids[:2]
    assert [p["id"] for p in await storage.find("Post", {"author": None}, limit=1)] == ids[:1]
