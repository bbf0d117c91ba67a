"""Links: every cardinality seen from both ends, symmetric links, link fields, link records
written directly, and a link whose endpoint is another link (a relation of a relation)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import (
    Field,
    InvalidDataError,
    LinkType,
    MatchExp,
    MutationEvent,
    RecordType,
    Schema,
    SQLiteStorage,
)

from .helpers import COMMENT_AUTHOR, FRIENDS, POSTS, PROFILE, TAGS, created_id, kinds


async def test_one_to_one_from_both_ends(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada", "profile": {"bio": "b"}}))
    lone = created_id(await storage.create("Profile", {"bio": "lone"}))
    assert await storage.find("User", None, [("profile", ["bio"])]) == [
        {"id": ada, "profile": {"id": 1, "bio": "b"}}
    ]
    assert await storage.find("Profile", None, [("owner", ["name"])], order_by={"id": "asc"}) == [
        {"id": 1, "owner": {"id": ada, "name": "ada"}},
        {"id": lone, "owner": None},
    ]
    assert await storage.find(PROFILE, None, ["source", "target"]) == [
        {"id": 1, "source": {"id": ada}, "target": {"id": 1}}
    ]


async def test_one_to_many_from_both_ends(storage: SQLiteStorage) -> None:
    ada = created_id(
        await storage.create("User", {"name": "ada", "posts": [{"title": "a"}, {"title": "b"}]})
    )
    orphan = created_id(await storage.create("Post", {"title": "orphan"}))
    assert await storage.find("User", None, [("posts", ["title"])]) == [
        {"id": ada, "posts": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]}
    ]
    assert await storage.find("Post", None, [("author", ["name"])], order_by={"id": "asc"}) == [
        {"id": 1, "author": {"id": ada, "name": "ada"}},
        {"id": 2, "author": {"id": ada, "name": "ada"}},
        {"id": orphan, "author": None},
    ]


async def test_many_to_one_from_both_ends(storage: SQLiteStorage) -> None:
    ada = created_id(await storage.create("User", {"name": "ada"}))
    await storage.create("Comment", {"body": "c1", "author": {"id": ada}})
    await storage.create("Comment", {"body": "c2", "author": {"id": ada}})
    await storage.create("Comment", {"body": "c3"})
    assert await storage.find("User", None, [("comments", ["body"])]) == [
        {"id": ada, "comments": [{"id": 1, "body": "c1"}, {"id": 2, "body": "c2"}]}
    ]
    assert await storage.find("Comment", None, ["author"], order_by={"id": "asc"}) == [
        {"id": 1, "author": {"id": ada}},
        {"id": 2, "author": {"id": ada}},
        {"id": 3, "author": None},
    ]
    assert await storage.count(COMMENT_AUTHOR) == 2


async def test_many_to_many_from_both_ends(storage: SQLiteStorage) -> None:
    await storage.create("Post", {"title": "p1", "tags": [{"label": "x"}, {"label": "y"}]})
    await storage.create("Post", {"title": "p2", "tags": [{"id": 2}]})
    assert await storage.find("Post", None, [("tags", ["label"])], order_by={"id": "asc"}) == [
        {"id": 1, "tags": [{"id": 1, "label": "x"}, {"id": 2, "label": "y"}]},
        {"id": 2, "tags": [{"id": 2, "label": "y"}]},
    ]
    assert await storage.find("Tag", None, [("posts", ["title"])], order_by={"id": "asc"}) == [
        {"id": 1, "posts": [{"id": 1, "title": "p1"}]},
        {"id": 2, "posts": [{"id": 1, "title": "p1"}, {"id": 2, "title": "p2"}]},
    ]


async def test_symmetric_link_is_seen_from_both_endpoints(storage: SQLiteStorage) -> None:
    a = created_id(await storage.create("User", {"name": "a"}))
    result = await storage.create("User", {"name": "b", "friends": [{"id": a}, {"name": "c"}]})
    b = created_id(result)
    c = 3
    assert result.events == [
        MutationEvent("User", "create", {"id": b, "name": "b"}),
        MutationEvent(FRIENDS, "create", {"id": 1, "source": {"id": b}, "target": {"id": a}}),
        MutationEvent("User", "create", {"id": c, "name": "c"}),
        MutationEvent(FRIENDS, "create", {"id": 2, "source": {"id": b}, "target": {"id": c}}),
    ]
    # the same attribute from the source and from the target side
    assert await storage.find("User", None, [("friends", ["name"])], order_by={"id": "asc"}) == [
        {"id": a, "friends": [{"id": b, "name": "b"}]},
        {"id": b, "friends": [{"id": a, "name": "a"}, {"id": c, "name": "c"}]},
        {"id": c, "friends": [{"id": b, "name": "b"}]},
    ]
    # linking from the other end adds to the same relation
    await storage.update("User", {"id": c}, {"friends": [{"id": b}, {"id": a}]})
    assert await storage.find("User", {"id": a}, [("friends", ["name"])]) == [
        {"id": a, "friends": [{"id": b, "name": "b"}, {"id": c, "name": "c"}]}
    ]
    # a self-link shows up once
    await storage.create(FRIENDS, {"source": {"id": a}, "target": {"id": a}})
    found = await storage.find_one("User", {"id": a}, ["friends"])
    assert found == {"id": a, "friends": [{"id": b}, {"id": c}, {"id": a}]}


async def test_link_fields_through_the_ampersand(storage: SQLiteStorage) -> None:
    tag = created_id(await storage.create("Tag", {"label": "t"}))
    await storage.create("Post", {"title": "p", "tags": [{"id": tag, "&": {"weight": 7}}]})
    post = await storage.find_one("Post", None, [("tags", ["label", ("&", ["weight"])])])
    assert post == {"id": 1, "tags": [{"id": tag, "label": "t", "&": {"id": 1, "weight": 7}}]}
    # from the other end, with "*" for the link's fields and a bare "&" query for just its id
    assert await storage.find("Tag", None, [("posts", [("&", ["*"])])]) == [
        {"id": tag, "posts": [{"id": 1, "&": {"id": 1, "weight": 7}}]}
    ]
    assert await storage.find("Tag", None, [("posts", [("&", [])])]) == [
        {"id": tag, "posts": [{"id": 1, "&": {"id": 1}}]}
    ]
    # and as a link record of its own
    assert await storage.find(TAGS, None, ["*", ("source", ["title"]), ("target", ["label"])]) == [
        {
            "id": 1,
            "weight": 7,
            "source": {"id": 1, "title": "p"},
            "target": {"id": tag, "label": "t"},
        }
    ]


async def test_link_record_written_directly(storage: SQLiteStorage) -> None:
    post = created_id(await storage.create("Post", {"title": "p"}))
    tag = created_id(await storage.create("Tag", {"label": "t"}))
    result = await storage.create(
        TAGS, {"source": {"id": post}, "target": {"id": tag}, "weight": 4}
    )
    assert result.records == [{"id": 1, "source": {"id": post}, "target": {"id": tag}, "weight": 4}]
    assert result.events == [MutationEvent(TAGS, "create", result.records[0])]
    assert await storage.find("Post", None, [("tags", ["label", ("&", ["weight"])])]) == [
        {"id": post, "tags": [{"id": tag, "label": "t", "&": {"id": 1, "weight": 4}}]}
    ]
    # an endpoint may be created on the way
    result = await storage.create(TAGS, {"source": {"title": "new"}, "target": {"id": tag}})
    assert kinds(result) == [("create", "Post"), ("create", TAGS)]
    assert result.records == [{"id": 2, "source": {"id": 2}, "target": {"id": tag}}]
    # matched, updated and deleted like any record
    assert await storage.find(TAGS, MatchExp.atom("source.title", "=", "new")) == [{"id": 2}]
    updated = await storage.update(TAGS, {"id": 1}, {"weight": 5})
    assert updated.events == [
        MutationEvent(
            TAGS,
            "update",
            {"id": 1, "weight": 5},
            {"id": 1, "source": {"id": post}, "target": {"id": tag}, "weight": 4},
            ("weight",),
        )
    ]
    deleted = await storage.delete(TAGS, {"id": 1})
    assert deleted.events == [
        MutationEvent(
            TAGS, "delete", {"id": 1, "source": {"id": post}, "target": {"id": tag}, "weight": 5}
        )
    ]
    assert await storage.count("Post") == 2 and await storage.count("Tag") == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"target": {"id": 1}}, None),
        ({"source": {"id": 1}}, None),
        ({"source": None, "target": {"id": 1}}, "source"),
        ({"source": {"id": 1, "&": {"weight": 1}}, "target": {"id": 1}}, "source"),
        ({"source": [{"id": 1}], "target": {"id": 1}}, "source"),
    ],
)
async def test_link_record_needs_both_endpoints(
    storage: SQLiteStorage, data: dict[str, object], field: str | None
) -> None:
    await storage.create("Post", {"title": "p"})
    await storage.create("Tag", {"label": "t"})
    with pytest.raises(InvalidDataError) as info:
        await storage.create(TAGS, data)
    assert (info.value.record, info.value.field) == (TAGS, field)
    assert await storage.count(TAGS) == 0


async def test_one_to_many_link_record_has_one_source_per_target(storage: SQLiteStorage) -> None:
    u1 = created_id(await storage.create("User", {"name": "u1"}))
    u2 = created_id(await storage.create("User", {"name": "u2"}))
    post = created_id(await storage.create("Post", {}))
    await storage.create(POSTS, {"source": {"id": u1}, "target": {"id": post}})
    result = await storage.create(POSTS, {"source": {"id": u2}, "target": {"id": post}})
    assert kinds(result) == [("delete", POSTS), ("create", POSTS)]
    assert await storage.find(POSTS, None, ["source", "target"]) == [
        {"id": 2, "source": {"id": u2}, "target": {"id": post}}
    ]


# -- a relation of a relation --------------------------------------------------------------------

MEMBERSHIP = "User_teams_members_Team"
BADGES = "Membership_badges_membership_Badge"


def membership_schema(cascade: bool = False) -> Schema:
    """Users in teams (a link with a role); each membership has badges (a link on a link)."""
    return Schema(
        records=[
            RecordType("User", [Field("name")]),
            RecordType("Team", [Field("name")]),
            RecordType("Badge", [Field("label")]),
        ],
        links=[
            LinkType(MEMBERSHIP, "User", "teams", "Team", "members", "n:n", fields=[Field("role")]),
            LinkType(BADGES, MEMBERSHIP, "badges", "Badge", "membership", "1:n", cascade=cascade),
        ],
    )


@pytest.fixture(params=[False, True], ids=["plain", "cascade"])
async def teams(request: pytest.FixtureRequest) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage()
    await store.setup(membership_schema(cascade=request.param))
    yield store
    await store.close()


async def test_relation_of_a_relation(teams: SQLiteStorage) -> None:
    ada = created_id(await teams.create("User", {"name": "ada"}))
    team = created_id(await teams.create("Team", {"name": "core"}))
    result = await teams.create(
        MEMBERSHIP,
        {
            "source": {"id": ada},
            "target": {"id": team},
            "role": "lead",
            "badges": [{"label": "gold"}],
        },
    )
    membership = created_id(result)
    assert result.records == [
        {
            "id": membership,
            "source": {"id": ada},
            "target": {"id": team},
            "role": "lead",
            "badges": [{"id": 1}],
        }
    ]
    assert kinds(result) == [("create", MEMBERSHIP), ("create", "Badge"), ("create", BADGES)]
    # read from the link record, from the badge, and through "&" from a user
    assert await teams.find(
        MEMBERSHIP, None, ["role", ("badges", ["label"]), ("source", ["name"])]
    ) == [
        {
            "id": membership,
            "role": "lead",
            "badges": [{"id": 1, "label": "gold"}],
            "source": {"id": ada, "name": "ada"},
        }
    ]
    assert await teams.find(
        "Badge", None, ["label", ("membership", ["role", ("target", ["name"])])]
    ) == [
        {
            "id": 1,
            "label": "gold",
            "membership": {
                "id": membership,
                "role": "lead",
                "target": {"id": team, "name": "core"},
            },
        }
    ]
    assert await teams.find(
        "User", None, [("teams", ["name", ("&", ["role", ("badges", ["label"])])])]
    ) == [
        {
            "id": ada,
            "teams": [
                {
                    "id": team,
                    "name": "core",
                    "&": {"id": membership, "role": "lead", "badges": [{"id": 1, "label": "gold"}]},
                }
            ],
        }
    ]
    # matches through it
    assert await teams.find("Badge", MatchExp.atom("membership.source.name", "=", "ada")) == [
        {"id": 1}
    ]
    assert await teams.find("User", MatchExp.atom("teams.&.badges.label", "=", "gold")) == [
        {"id": ada}
    ]
    assert await teams.find("User", MatchExp.atom("teams.&.badges.label", "=", "tin")) == []
    # an update of the membership's badges
    await teams.update(MEMBERSHIP, {"id": membership}, {"badges": [{"label": "silver"}]})
    assert await teams.find(MEMBERSHIP, None, [("badges", ["label"])]) == [
        {"id": membership, "badges": [{"id": 2, "label": "silver"}]}
    ]


async def test_deleting_an_endpoint_removes_the_link_and_its_links(teams: SQLiteStorage) -> None:
    cascade = teams.schema.links[BADGES].cascade
    ada = created_id(await teams.create("User", {"name": "ada"}))
    await teams.create(
        "Team",
        {"name": "core", "members": [{"id": ada, "&": {"role": "lead"}}]},
    )
    await teams.create(BADGES, {"source": {"id": 1}, "target": {"label": "gold"}})
    result = await teams.delete("User", {"id": ada})
    expected = [("delete", BADGES)]
    if cascade:
        expected.append(("delete", "Badge"))
    expected += [("delete", MEMBERSHIP), ("delete", "User")]
    assert kinds(result) == expected
    assert await teams.count(MEMBERSHIP) == 0
    assert await teams.count(BADGES) == 0
    assert await teams.count("Team") == 1
    assert await teams.count("Badge") == (0 if cascade else 1)
