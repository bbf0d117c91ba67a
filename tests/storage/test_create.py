"""create: the returned record, the exact ordered events, nested references and creates, to-many
lists, link fields and the exclusivity of the ``1`` side of a link."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from storage import (
    MissingReferenceError,
    MutationEvent,
    PostgresStorage,
    SQLiteSession,
    SQLiteStorage,
    StorageError,
    UniqueViolationError,
    WriteResult,
)

from .conftest import blog_schema
from .helpers import COMMENT_AUTHOR, COMMENTS, POSTS, PROFILE, TAGS, created_id, dump, kinds


async def test_plain_create_returns_the_record_and_one_event(storage: SQLiteStorage) -> None:
    result = await storage.create("User", {"name": "ada", "age": 36, "active": True})
    assert result.records == [{"id": 1, "name": "ada", "age": 36, "active": True}]
    assert result.record == result.records[0]
    assert result.events == [
        MutationEvent("User", "create", {"id": 1, "name": "ada", "age": 36, "active": True})
    ]
    event = result.events[0]
    assert event.old_record is None and event.keys is None
    assert event.merged == {"id": 1, "name": "ada", "age": 36, "active": True}
    # ids are handed out in order
    assert created_id(await storage.create("User", {"name": "bob"})) == 2


async def test_empty_create(storage: SQLiteStorage) -> None:
    result = await storage.create("Tag", {})
    assert result.records == [{"id": 1}]
    assert kinds(result) == [("create", "Tag")]
    assert await storage.find("Tag", None, ["*"]) == [{"id": 1, "label": None}]


async def test_returned_record_is_not_shared_with_the_event(storage: SQLiteStorage) -> None:
    result = await storage.create("User", {"name": "ada"})
    assert result.record is not None
    result.record["name"] = "changed"
    assert result.events[0].record == {"id": 1, "name": "ada"}


async def test_reference_to_an_existing_record(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    result = await storage.create("Post", {"title": "t", "author": {"id": ada}})
    post = created_id(result)
    assert result.records == [{"id": post, "title": "t", "author": {"id": ada}}]
    assert result.events == [
        MutationEvent("Post", "create", {"id": post, "title": "t"}),
        MutationEvent(POSTS, "create", {"id": 1, "source": {"id": ada}, "target": {"id": post}}),
    ]
    assert await storage.find("Post", None, ["title", ("author", ["name"])]) == [
        {"id": post, "title": "t", "author": {"id": ada, "name": "ada"}}
    ]
    assert await storage.find("User", None, [("posts", ["title"])]) == [
        {"id": ada, "posts": [{"id": post, "title": "t"}]}
    ]


async def test_references_given_as_string_ids(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    post = created_id(await storage.create("Post", {"author": {"id": str(ada)}}))
    assert await storage.find("Post", {"id": post}, [("author", ["name"])]) == [
        {"id": post, "author": {"id": ada, "name": "ada"}}
    ]


async def test_nested_creates_several_levels_deep(storage: SQLiteStorage) -> None:
    other = created_id(await storage.create("User", {"name": "other"}))
    existing_tag = created_id(await storage.create("Tag", {"label": "existing"}))
    result = await storage.create(
        "User",
        {
            "name": "ada",
            "profile": {"bio": "engines"},
            "posts": [
                {
                    "title": "p1",
                    "tags": [{"label": "math", "&": {"weight": 3}}, {"id": existing_tag}],
                    "comments": [{"body": "c1", "author": {"id": other}}],
                },
                {"title": "p2", "score": 1.5},
            ],
        },
    )
    ada = created_id(result)
    assert result.records == [
        {"id": ada, "name": "ada", "profile": {"id": 1}, "posts": [{"id": 1}, {"id": 2}]}
    ]
    # the record's own create first; then per relation attribute, in payload order, the nested
    # record's events and then the link that attaches it
    assert result.events == [
        MutationEvent("User", "create", {"id": ada, "name": "ada"}),
        MutationEvent("Profile", "create", {"id": 1, "bio": "engines"}),
        MutationEvent(PROFILE, "create", {"id": 1, "source": {"id": ada}, "target": {"id": 1}}),
        MutationEvent("Post", "create", {"id": 1, "title": "p1"}),
        MutationEvent("Tag", "create", {"id": 2, "label": "math"}),
        MutationEvent(
            TAGS, "create", {"id": 1, "source": {"id": 1}, "target": {"id": 2}, "weight": 3}
        ),
        MutationEvent(
            TAGS, "create", {"id": 2, "source": {"id": 1}, "target": {"id": existing_tag}}
        ),
        MutationEvent("Comment", "create", {"id": 1, "body": "c1"}),
        MutationEvent(
            COMMENT_AUTHOR, "create", {"id": 1, "source": {"id": 1}, "target": {"id": other}}
        ),
        MutationEvent(COMMENTS, "create", {"id": 1, "source": {"id": 1}, "target": {"id": 1}}),
        MutationEvent(POSTS, "create", {"id": 1, "source": {"id": ada}, "target": {"id": 1}}),
        MutationEvent("Post", "create", {"id": 2, "title": "p2", "score": 1.5}),
        MutationEvent(POSTS, "create", {"id": 2, "source": {"id": ada}, "target": {"id": 2}}),
    ]
    found = await storage.find_one(
        "User",
        {"id": ada},
        [
            "name",
            ("profile", ["bio"]),
            (
                "posts",
                [
                    "title",
                    "score",
                    ("tags", ["label", ("&", ["weight"])]),
                    ("comments", ["body", ("author", ["name"])]),
                ],
            ),
        ],
    )
    assert found == {
        "id": ada,
        "name": "ada",
        "profile": {"id": 1, "bio": "engines"},
        "posts": [
            {
                "id": 1,
                "title": "p1",
                "score": None,
                "tags": [
                    {"id": 2, "label": "math", "&": {"id": 1, "weight": 3}},
                    {"id": existing_tag, "label": "existing", "&": {"id": 2, "weight": None}},
                ],
                "comments": [{"id": 1, "body": "c1", "author": {"id": other, "name": "other"}}],
            },
            {"id": 2, "title": "p2", "score": 1.5, "tags": [], "comments": []},
        ],
    }


async def test_nested_create_through_the_reverse_side(storage: SQLiteStorage) -> None:
    result = await storage.create(
        "Comment", {"body": "c", "post": {"title": "p", "author": {"name": "ada"}}}
    )
    assert kinds(result) == [
        ("create", "Comment"),
        ("create", "Post"),
        ("create", "User"),
        ("create", POSTS),
        ("create", COMMENTS),
    ]
    assert await storage.find(
        "Comment", None, ["body", ("post", ["title", ("author", ["name"])])]
    ) == [
        {"id": 1, "body": "c", "post": {"id": 1, "title": "p", "author": {"id": 1, "name": "ada"}}}
    ]


async def test_to_many_lists_keep_their_order(storage: SQLiteStorage) -> None:
    t1 = created_id(await storage.create("Tag", {"label": "one"}))
    t2 = created_id(await storage.create("Tag", {"label": "two"}))
    result = await storage.create(
        "Post", {"title": "p", "tags": [{"id": t2}, {"label": "three"}, {"id": t1}]}
    )
    assert result.record is not None
    assert result.record["tags"] == [{"id": t2}, {"id": 3}, {"id": t1}]
    assert await storage.find("Post", None, [("tags", ["label"])]) == [
        {
            "id": 1,
            "tags": [
                {"id": t2, "label": "two"},
                {"id": 3, "label": "three"},
                {"id": t1, "label": "one"},
            ],
        }
    ]


async def test_empty_and_none_relations_create_no_links(storage: SQLiteStorage) -> None:
    result = await storage.create(
        "User", {"name": "ada", "posts": [], "profile": None, "friends": None}
    )
    assert result.records == [{"id": 1, "name": "ada", "posts": [], "profile": None, "friends": []}]
    assert kinds(result) == [("create", "User")]
    assert await storage.count(POSTS) == 0 and await storage.count(PROFILE) == 0


async def test_link_fields_on_nested_and_referenced_records(storage: SQLiteStorage) -> None:
    tag = created_id(await storage.create("Tag", {"label": "old"}))
    result = await storage.create(
        "Post",
        {"tags": [{"label": "new", "&": {"weight": 2.5}}, {"id": tag, "&": {"weight": 1}}]},
    )
    link_events = [e.record for e in result.events if e.record_name == TAGS]
    assert link_events == [
        {"id": 1, "source": {"id": 1}, "target": {"id": 2}, "weight": 2.5},
        {"id": 2, "source": {"id": 1}, "target": {"id": tag}, "weight": 1},
    ]
    assert await storage.find(
        "Tag", None, ["label", ("posts", [("&", ["*"])])], order_by={"id": "asc"}
    ) == [
        {"id": tag, "label": "old", "posts": [{"id": 1, "&": {"id": 2, "weight": 1}}]},
        {"id": 2, "label": "new", "posts": [{"id": 1, "&": {"id": 1, "weight": 2.5}}]},
    ]


# -- exclusivity of the "1" side -------------------------------------------------------------------


async def test_one_to_many_link_displaces_the_old_author(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    post = created_id(await storage.create("Post", {"title": "p", "author": {"id": u1}}))
    result = await storage.create("User", {"name": "u2", "posts": [{"id": post}]})
    u2 = created_id(result)
    assert result.events == [
        MutationEvent("User", "create", {"id": u2, "name": "u2"}),
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": post}}),
        MutationEvent(POSTS, "create", {"id": 2, "source": {"id": u2}, "target": {"id": post}}),
    ]
    assert await storage.find("Post", None, [("author", ["name"])]) == [
        {"id": post, "author": {"id": u2, "name": "u2"}}
    ]
    assert await storage.find("User", {"id": u1}, ["posts"]) == [{"id": u1, "posts": []}]
    assert await storage.count(POSTS) == 1


async def test_link_record_created_directly_displaces_too(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    u2 = created_id(await storage.create("User", {"name": "u2"}))
    post = created_id(await storage.create("Post", {"author": {"id": u1}}))
    result = await storage.create(POSTS, {"source": {"id": u2}, "target": {"id": post}})
    assert result.records == [{"id": 2, "source": {"id": u2}, "target": {"id": post}}]
    assert result.events == [
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": post}}),
        MutationEvent(POSTS, "create", {"id": 2, "source": {"id": u2}, "target": {"id": post}}),
    ]
    assert await storage.find("Post", None, ["author"]) == [{"id": post, "author": {"id": u2}}]


async def test_one_to_one_is_exclusive_on_both_sides(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1", "profile": {"bio": "first"}}))
    # a new user takes the profile: the old owner loses it
    result = await storage.create("User", {"name": "u2", "profile": {"id": 1}})
    u2 = created_id(result)
    assert kinds(result) == [("create", "User"), ("delete", PROFILE), ("create", PROFILE)]
    assert result.events[1].record == {"id": 1, "source": {"id": u1}, "target": {"id": 1}}
    # a new profile for u2: its old profile is let go
    result = await storage.create("Profile", {"bio": "second", "owner": {"id": u2}})
    assert result.events == [
        MutationEvent("Profile", "create", {"id": 2, "bio": "second"}),
        MutationEvent(PROFILE, "delete", {"id": 2, "source": {"id": u2}, "target": {"id": 1}}),
        MutationEvent(PROFILE, "create", {"id": 3, "source": {"id": u2}, "target": {"id": 2}}),
    ]
    assert await storage.find("User", None, [("profile", ["bio"])], order_by={"id": "asc"}) == [
        {"id": u1, "profile": None},
        {"id": u2, "profile": {"id": 2, "bio": "second"}},
    ]
    assert await storage.find("Profile", None, ["owner"], order_by={"id": "asc"}) == [
        {"id": 1, "owner": None},
        {"id": 2, "owner": {"id": u2}},
    ]


async def test_many_to_one_is_exclusive_on_the_many_side(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    comment = created_id(await storage.create("Comment", {"body": "c", "author": {"id": u1}}))
    result = await storage.create("User", {"name": "u2", "comments": [{"id": comment}]})
    u2 = created_id(result)
    assert result.events == [
        MutationEvent("User", "create", {"id": u2, "name": "u2"}),
        MutationEvent(
            COMMENT_AUTHOR, "delete", {"id": 1, "source": {"id": comment}, "target": {"id": u1}}
        ),
        MutationEvent(
            COMMENT_AUTHOR, "create", {"id": 2, "source": {"id": comment}, "target": {"id": u2}}
        ),
    ]
    assert await storage.find("Comment", None, ["author"]) == [
        {"id": comment, "author": {"id": u2}}
    ]


async def test_many_to_many_is_not_exclusive(storage: SQLiteStorage) -> None:
    tag = created_id(await storage.create("Tag", {"label": "t"}))
    await storage.create("Post", {"title": "a", "tags": [{"id": tag}]})
    result = await storage.create("Post", {"title": "b", "tags": [{"id": tag}]})
    assert kinds(result) == [("create", "Post"), ("create", TAGS)]
    assert await storage.find("Tag", None, [("posts", ["title"])]) == [
        {"id": tag, "posts": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]}
    ]


async def test_nested_create_that_links_back_is_displaced(storage: SQLiteStorage) -> None:
    """A nested post naming another author first: the outer link then takes the 1 slot."""
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    result = await storage.create(
        "User", {"name": "u2", "posts": [{"title": "p", "author": {"id": u1}}]}
    )
    u2 = created_id(result)
    assert result.events == [
        MutationEvent("User", "create", {"id": u2, "name": "u2"}),
        MutationEvent("Post", "create", {"id": 1, "title": "p"}),
        MutationEvent(POSTS, "create", {"id": 1, "source": {"id": u1}, "target": {"id": 1}}),
        MutationEvent(POSTS, "delete", {"id": 1, "source": {"id": u1}, "target": {"id": 1}}),
        MutationEvent(POSTS, "create", {"id": 2, "source": {"id": u2}, "target": {"id": 1}}),
    ]
    assert await storage.find("Post", None, ["author"]) == [{"id": 1, "author": {"id": u2}}]
    # the same through a 1:1 link
    result = await storage.create(
        "User", {"name": "u3", "profile": {"bio": "b", "owner": {"id": u1}}}
    )
    assert kinds(result) == [
        ("create", "User"),
        ("create", "Profile"),
        ("create", PROFILE),
        ("delete", PROFILE),
        ("create", PROFILE),
    ]
    assert await storage.find("Profile", None, ["owner"]) == [{"id": 1, "owner": {"id": 3}}]
    assert await storage.find("User", {"id": u1}, ["profile"]) == [{"id": u1, "profile": None}]


async def test_a_failed_create_leaves_nothing(storage: SQLiteStorage) -> None:
    await storage.create("User", {"name": "ada"})
    before = await dump(storage)
    # the unique name is only seen by the database, after the Post and Tag were written
    with pytest.raises(UniqueViolationError):
        await storage.create(
            "Post", {"title": "p", "tags": [{"label": "t"}], "author": {"name": "ada"}}
        )
    assert await dump(storage) == before
    tag = created_id(await storage.create("Tag", {"label": "x"}))
    if isinstance(storage, PostgresStorage):
        # PostgreSQL's sequences are not transactional: the rolled-back Tag's id stays used
        # (never given twice); the rows are gone all the same.
        assert tag == 2
    else:
        # ids of the rolled-back records are not consumed
        assert tag == 1


async def test_statements_worked_out_per_payload_shape_stay_right_when_the_cache_is_full(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every create and update plans through a shape remembered per payload shape (value fields,
    references, nested creates alike); the memory is bounded by starting over, which must not
    change a single result."""
    from storage.sql import plans

    monkeypatch.setattr(plans, "SHAPES_KEPT", 2)
    shapes: list[dict[str, Any]] = [
        {"name": "a"},
        {"age": 1},
        {"name": "b", "age": 2},
        {"age": 3, "name": "c"},
    ]
    ids: list[int] = []
    for data in shapes * 2:
        result = await storage.create("User", {**data, "name": f"{data.get('name')}{len(ids)}"})
        ids.append(created_id(result))
        assert len(storage._statements.shapes) <= 2
    for record_id in ids:

        def age(tx: SQLiteSession, i: int = record_id) -> WriteResult:
            return tx.update_record(
                "User", tx.snapshot("User", i) or {}, {"age": i * 10, "active": True}
            )

        await storage.run(age)
    found = await storage.find("User", None, ["name", "age", "active"], order_by={"id": "asc"})
    assert [(u["name"], u["age"], u["active"]) for u in found] == [
        (f"{data.get('name')}{n}", ids[n] * 10, True) for n, data in enumerate(shapes * 2)
    ]
    for round in range(2):
        posts: list[dict[str, Any]] = [
            {"title": "p", "author": {"id": ids[0]}},
            {"title": "q", "author": {"name": f"nested{round}"}},
            {"author": {"id": ids[1]}, "title": "r", "score": 2},
            {"title": "s", "tags": [{"label": "t"}]},
        ]
        for data in posts:
            await storage.create("Post", data)
            assert len(storage._statements.shapes) <= 2
    found = await storage.find(
        "Post", None, ["title", ("author", ["name"]), ("tags", ["label"])], order_by={"id": "asc"}
    )
    assert [
        (p["title"], (p["author"] or {}).get("name"), [t["label"] for t in p["tags"]])
        for p in found
    ] == [
        (title, name, tags)
        for round in range(2)
        for title, name, tags in [
            ("p", "a0", []),
            ("q", f"nested{round}", []),
            ("r", "None1", []),
            ("s", None, ["t"]),
        ]
    ]


class _Payload(Mapping[str, Any]):
    """A payload that is a Mapping but not a dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


async def _traced(storage: SQLiteStorage, write: Any) -> tuple[list[str], Any]:
    """The statements one write runs (SQLite's trace), and its result or its error."""
    statements: list[str] = []

    def body(tx: Any) -> Any:
        tx.connection.set_trace_callback(statements.append)
        try:
            return write(tx)
        except StorageError as exc:
            return exc
        finally:
            tx.connection.set_trace_callback(None)

    return statements, await storage.run(body)


async def test_one_create_path_whatever_carries_the_payload(tmp_path: Path) -> None:
    """One create path: a payload's statements depend on what it holds, not on whether a dict
    or another Mapping carries it, and a to-one reference set to None links nothing (one
    INSERT, no savepoint). Records, events and errors are the same either way."""
    storage = SQLiteStorage(str(tmp_path / "t.db"))
    await storage.setup(blog_schema())
    try:
        author = created_id(await storage.create("User", {"name": "ada"}))
        statements, result = await _traced(
            storage, lambda tx: tx.create("Post", {"title": "a", "author": None})
        )
        assert [s.split(" (")[0] for s in statements] == ['INSERT INTO "Post"']
        assert result.records == [{"id": 1, "title": "a", "author": None}]
        assert kinds(result) == [("create", "Post")]
        for data in (
            {"title": "b", "author": {"id": author}},
            {"title": "c", "author": {"id": 99}},
            {"title": "d", "author": {"age": 3}},
        ):
            as_dict, by_dict = await _traced(storage, lambda tx, d=data: tx.create("Post", d))
            before = await dump(storage)
            as_mapping, by_mapping = await _traced(
                storage, lambda tx, d=data: tx.create("Post", _Payload(d))
            )
            assert len(as_mapping) == len(as_dict), data
            if isinstance(by_dict, StorageError):
                assert type(by_mapping) is type(by_dict) and str(by_mapping) == str(by_dict)
                assert isinstance(by_dict, MissingReferenceError)
                assert await dump(storage) == before  # nothing written
            else:
                assert [e.record_name for e in by_mapping.events] == [
                    e.record_name for e in by_dict.events
                ]
                assert by_mapping.record["title"] == by_dict.record["title"]
    finally:
        await storage.close()
