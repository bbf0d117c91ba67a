"""MatchExp: every operator against a plain-Python oracle, None semantics, ``~`` as an exact
complement, dotted paths through relations in both directions, combinators and shorthands.
The original framework's ``between``, ``contains`` (strings and json arrays), ``exist`` (a
related record matches a nested match) and reference-value comparison (:class:`FieldRef`) are
in the same oracle and the same random-expression test."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from storage import FieldRef, MatchError, MatchExp, SQLiteStorage

from .helpers import FRIENDS, TAGS

T1 = datetime(2020, 1, 1, tzinfo=UTC)
T2 = datetime(2021, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=3)))

USERS: list[dict[str, Any]] = [
    {"name": "ada", "age": 36, "active": True, "meta": {"k": 1}, "joined": T1},
    {"name": "bob", "age": 20, "active": False},
    {"name": "Cyd", "active": None, "meta": [1, 2], "joined": T2},
    {"age": 20.5, "active": True, "meta": ["ada", True, 2.0, None, [1], "1"]},
    {"name": "adam", "age": 0, "active": False, "meta": {"k": 2}},
]


async def _data(storage: SQLiteStorage) -> None:
    """Users 1-5 above; posts 1-4; tags x, y; ada-bob and bob-Cyd are friends."""
    for user in USERS:
        await storage.create("User", user)
    await storage.create(
        "Post",
        {
            "title": "Alpha",
            "score": 5,
            "author": {"id": 1},
            "tags": [{"label": "x", "&": {"weight": 1}}, {"label": "y", "&": {"weight": 2}}],
        },
    )
    await storage.create("Post", {"title": "beta", "author": {"id": 1}})
    await storage.create(
        "Post",
        {
            "title": "gamma",
            "score": 1,
            "author": {"id": 2},
            "tags": [{"id": 2, "&": {"weight": 9}}],
        },
    )
    await storage.create("Post", {"title": "delta", "score": 5})
    await storage.create("Comment", {"body": "c1", "post": {"id": 1}, "author": {"id": 2}})
    await storage.create(FRIENDS, {"source": {"id": 1}, "target": {"id": 2}})
    await storage.create(FRIENDS, {"source": {"id": 3}, "target": {"id": 2}})


async def ids(
    storage: SQLiteStorage, record: str, match: MatchExp | Mapping[str, Any] | None
) -> set[int]:
    return {r["id"] for r in await storage.find(record, match)}


# -- every operator on value fields, against Python semantics -------------------------------------


def _like(pattern: str) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 are equal, true and 1 are not."""
    return (type(a) is bool) == (type(b) is bool) and bool(a == b)


def oracle(value: Any, op: str, operand: Any) -> bool:
    """What an atom means, in plain Python (``None`` compares like Python's ``None``)."""
    if op == "between":
        return value is not None and bool(operand[0] <= value <= operand[1])
    if op == "contains":
        if isinstance(value, str):
            return operand in value
        return isinstance(value, list) and any(_json_equal(e, operand) for e in value)
    if op in ("<", "<=", ">", ">=") and operand is None:
        return False  # a FieldRef to a None: ordering never holds
    if op == "is null":
        return value is None
    if op == "is not null":
        return value is not None
    if op == "=":
        return bool(value == operand)
    if op == "!=":
        return bool(value != operand)
    if op == "in":
        return value in operand
    if op == "not in":
        return value not in operand
    if op == "like":
        return value is not None and _like(operand).fullmatch(value) is not None
    if value is None:
        return False
    return bool(
        {
            "<": value < operand,
            "<=": value <= operand,
            ">": value > operand,
            ">=": value >= operand,
        }[op]
    )


VALUE_ATOMS: list[tuple[str, str, Any]] = [
    ("name", "=", "ada"),
    ("name", "!=", "ada"),
    ("name", "<", "bob"),
    ("name", "<=", "bob"),
    ("name", ">", "Cyd"),
    ("name", ">=", "adam"),
    ("name", "in", ["ada", "Cyd"]),
    ("name", "in", ["ada", None]),
    ("name", "not in", ["ada"]),
    ("name", "not in", ["ada", None]),
    ("name", "like", "ad%"),
    ("name", "like", "AD%"),
    ("name", "like", "_yd"),
    ("name", "like", "%d%"),
    ("name", "like", "c%"),
    ("name", "is null", None),
    ("name", "is not null", None),
    ("age", "=", 20),
    ("age", "=", 20.5),
    ("age", "!=", 20),
    ("age", "<", 20.5),
    ("age", "<=", 20),
    ("age", ">", 0),
    ("age", ">=", 0),
    ("age", ">", 20.25),
    ("age", "in", [0, 36]),
    ("age", "in", []),
    ("age", "not in", []),
    ("age", "not in", [20, None]),
    ("age", "is null", None),
    ("active", "=", True),
    ("active", "=", False),
    ("active", "!=", True),
    ("active", "in", [False, None]),
    ("meta", "=", {"k": 1}),
    ("meta", "=", [1, 2]),
    ("meta", "!=", [1, 2]),
    ("meta", "in", [{"k": 2}, [1, 2]]),
    ("meta", "is null", None),
    ("joined", "=", T1),
    ("joined", "=", T2.astimezone(UTC)),
    ("joined", "!=", T1),
    ("joined", "<", T2),
    ("joined", ">=", T1),
    ("joined", ">", datetime(2021, 6, 1, 9, 0, tzinfo=UTC)),
    ("id", "=", 3),
    ("id", "!=", 2),
    ("id", ">", 2),
    ("id", "in", [1, 3, 99]),
    ("id", "not in", [1, 3]),
    ("age", "between", [0, 20]),
    ("age", "between", [20.25, 36]),
    ("age", "between", [5, 1]),
    ("id", "between", [2, 4]),
    ("name", "between", ["Cyd", "adam"]),
    ("joined", "between", [T1, T2]),
    ("name", "contains", "d"),
    ("name", "contains", "ad"),
    ("name", "contains", "D"),
    ("name", "contains", ""),
    ("meta", "contains", 1),
    ("meta", "contains", 2),
    ("meta", "contains", "ada"),
    ("meta", "contains", "1"),
    ("meta", "contains", True),
    ("meta", "contains", None),
    ("meta", "contains", "k"),
    ("age", "=", FieldRef("age")),
    ("age", "!=", FieldRef("age")),
    ("name", ">=", FieldRef("name")),
    ("joined", "<", FieldRef("joined")),
]


@pytest.mark.parametrize(
    ("key", "op", "value"), VALUE_ATOMS, ids=[f"{k} {o} {v!r}" for k, o, v in VALUE_ATOMS]
)
async def test_operator_matches_python_semantics(
    storage: SQLiteStorage, key: str, op: str, value: Any
) -> None:
    await _data(storage)
    rows = await storage.find("User", None, ["*"])
    assert len(rows) == len(USERS)
    expected = {r["id"] for r in rows if oracle(r[key], op, _operand(value, r))}
    atom = MatchExp.atom(key, op, value)
    assert await ids(storage, "User", atom) == expected
    # ~ is the exact complement
    assert await ids(storage, "User", ~atom) == {r["id"] for r in rows} - expected
    assert await storage.count("User", atom) + await storage.count("User", ~atom) == len(USERS)


async def test_none_semantics_spelled_out(storage: SQLiteStorage) -> None:
    await _data(storage)
    # None != 20 is true, None < 30 and None > 0 are false
    assert await ids(storage, "User", MatchExp.atom("age", "!=", 20)) == {1, 3, 4, 5}
    assert await ids(storage, "User", MatchExp.atom("age", "<", 30)) == {2, 4, 5}
    assert await ids(storage, "User", ~MatchExp.atom("age", "<", 30)) == {1, 3}
    # = None is "is null", != None is "is not null"
    assert MatchExp.atom("age", "=", None) == MatchExp.atom("age", "is null")
    assert MatchExp.atom("age", "!=", None) == MatchExp.atom("age", "is not null")
    assert await ids(storage, "User", {"age": None}) == {3}
    assert await ids(storage, "User", {"name": None}) == {4}
    # like never matches None, and its complement includes it
    assert await ids(storage, "User", ~MatchExp.atom("name", "like", "%")) == {4}


async def test_like_is_case_sensitive(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "User", MatchExp.atom("name", "like", "cyd")) == set()
    assert await ids(storage, "User", MatchExp.atom("name", "like", "Cyd")) == {3}
    assert await ids(storage, "User", MatchExp.atom("name", "like", "C%")) == {3}
    assert await ids(storage, "Post", MatchExp.atom("title", "like", "a%")) == set()
    assert await ids(storage, "Post", MatchExp.atom("title", "like", "%a")) == {1, 2, 3, 4}


async def test_operators_are_case_and_space_insensitive(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert MatchExp.atom("name", "IN", ["ada"]) == MatchExp.atom("name", "in", ["ada"])
    assert await ids(storage, "User", MatchExp.atom("name", "Is   Null")) == {4}
    assert await ids(storage, "User", MatchExp.atom("name", "NOT IN", ("ada", "bob"))) == {3, 4, 5}
    assert await ids(storage, "User", MatchExp.atom("name", "LIKE", "a%")) == {1, 5}


# -- ~ is an exact complement, also through relations and combinators ------------------------------

PARTITION_CASES: list[tuple[str, MatchExp]] = [
    ("Post", MatchExp.atom("author.name", "=", "ada")),
    ("Post", MatchExp.atom("author.name", "!=", "ada")),
    ("Post", MatchExp.atom("author.age", "<", 30)),
    ("Post", MatchExp.atom("author", "is null")),
    ("Post", MatchExp.atom("author", "=", 1)),
    ("Post", MatchExp.atom("author", "!=", 1)),
    ("Post", MatchExp.atom("tags.label", "=", "y")),
    ("Post", MatchExp.atom("tags.label", "in", ["x", None])),
    ("Post", MatchExp.atom("tags.&.weight", ">", 1)),
    ("Post", MatchExp.atom("tags.&.weight", "!=", 9)),
    ("Post", MatchExp.atom("comments.author.name", "=", "bob")),
    ("Post", MatchExp.atom("score", "=", 5) & MatchExp.atom("author", "is not null")),
    ("Post", MatchExp.atom("score", "<", 5) | MatchExp.atom("title", "like", "%a")),
    ("Post", ~(MatchExp.atom("score", "=", 5) | MatchExp.atom("tags.label", "=", "x"))),
    ("Post", MatchExp.from_dict({})),
    ("User", MatchExp.atom("posts.title", "like", "%a")),
    ("User", MatchExp.atom("posts.tags.label", "=", "y")),
    ("User", MatchExp.atom("posts", "is null")),
    ("User", MatchExp.atom("friends.name", "=", "bob")),
    ("User", MatchExp.atom("friends.age", ">=", 20)),
    ("User", MatchExp.atom("comments.post.title", "=", "Alpha")),
    ("User", MatchExp.atom("profile", "is not null")),
    ("Tag", MatchExp.atom("posts.author.name", "=", "bob")),
    ("Tag", MatchExp.atom("posts.&.weight", "<", 2)),
    (TAGS, MatchExp.atom("source.title", "=", "gamma")),
    (TAGS, MatchExp.atom("target.label", "!=", "x")),
    (TAGS, MatchExp.atom("source.author.name", "=", "ada")),
]


@pytest.mark.parametrize(
    ("record", "match"), PARTITION_CASES, ids=[repr(m) for _, m in PARTITION_CASES]
)
async def test_a_match_and_its_negation_partition_all_records(
    storage: SQLiteStorage, record: str, match: MatchExp
) -> None:
    await _data(storage)
    everything = await ids(storage, record, None)
    matched = await ids(storage, record, match)
    negated = await ids(storage, record, ~match)
    assert matched & negated == set()
    assert matched | negated == everything
    assert await ids(storage, record, ~~match) == matched


async def test_partition_holds_for_every_value_atom_and_pair(storage: SQLiteStorage) -> None:
    await _data(storage)
    everything = await ids(storage, "User", None)
    atoms = [MatchExp.atom(k, o, v) for k, o, v in VALUE_ATOMS]
    for a, b in zip(atoms, atoms[7:] + atoms[:7], strict=True):
        for match in (a & b, a | b, a & ~b, ~a | b):
            matched = await ids(storage, "User", match)
            assert matched | await ids(storage, "User", ~match) == everything
            assert matched & await ids(storage, "User", ~match) == set()


# -- relation paths -----------------------------------------------------------------------------


async def test_to_one_path(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "Post", MatchExp.atom("author.name", "=", "ada")) == {1, 2}
    assert await ids(storage, "Post", {"author.name": "bob"}) == {3}
    # existential: a post without an author has no author named anything
    assert await ids(storage, "Post", MatchExp.atom("author.name", "!=", "ada")) == {3}
    assert await ids(storage, "Post", ~MatchExp.atom("author.name", "=", "ada")) == {3, 4}
    assert await ids(storage, "Post", MatchExp.atom("author", "is null")) == {4}
    assert await ids(storage, "Post", {"author": None}) == {4}
    assert await ids(storage, "Post", MatchExp.atom("author", "is not null")) == {1, 2, 3}


async def test_to_many_path_is_existential(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "User", MatchExp.atom("posts.title", "=", "beta")) == {1}
    assert await ids(storage, "User", MatchExp.atom("posts.score", ">", 0)) == {1, 2}
    # "no post with a score > 0" (users without posts included)
    assert await ids(storage, "User", ~MatchExp.atom("posts.score", ">", 0)) == {3, 4, 5}
    assert await ids(storage, "User", MatchExp.atom("posts", "is null")) == {3, 4, 5}
    assert await ids(storage, "Post", MatchExp.atom("tags.label", "=", "y")) == {1, 3}
    assert await ids(storage, "Post", MatchExp.atom("tags", "is null")) == {2, 4}


async def test_multi_level_paths_both_directions(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "User", MatchExp.atom("posts.tags.label", "=", "x")) == {1}
    assert await ids(storage, "User", MatchExp.atom("posts.tags.label", "=", "y")) == {1, 2}
    assert await ids(storage, "Tag", MatchExp.atom("posts.author.name", "=", "bob")) == {2}
    assert await ids(storage, "Comment", MatchExp.atom("post.author.name", "=", "ada")) == {1}
    assert await ids(storage, "User", MatchExp.atom("comments.post.tags.label", "=", "x")) == {2}
    assert await ids(
        storage, "Tag", MatchExp.atom("posts.comments.author.posts.title", "=", "gamma")
    ) == {1, 2}


async def test_link_field_paths(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "Post", MatchExp.atom("tags.&.weight", ">", 1)) == {1, 3}
    assert await ids(storage, "Post", MatchExp.atom("tags.&.weight", "=", 1)) == {1}
    assert await ids(storage, "Tag", MatchExp.atom("posts.&.weight", "=", 9)) == {2}
    assert await ids(storage, "Post", ~MatchExp.atom("tags.&.weight", "<", 2)) == {2, 3, 4}
    # link field and related field in one atom each, combined
    both = MatchExp.atom("tags.label", "=", "y") & MatchExp.atom("tags.&.weight", "<", 5)
    assert await ids(storage, "Post", both) == {1}


async def test_symmetric_paths_from_either_end(storage: SQLiteStorage) -> None:
    await _data(storage)
    # bob is the target of both links, ada and Cyd the sources
    assert await ids(storage, "User", MatchExp.atom("friends.name", "=", "bob")) == {1, 3}
    assert await ids(storage, "User", MatchExp.atom("friends.name", "=", "ada")) == {2}
    assert await ids(storage, "User", MatchExp.atom("friends.name", "in", ["ada", "Cyd"])) == {2}
    assert await ids(storage, "User", MatchExp.atom("friends", "is null")) == {4, 5}
    assert await ids(storage, "User", {"friends": {"id": 2}}) == {1, 3}
    assert await ids(storage, "User", MatchExp.atom("friends.friends.name", "=", "Cyd")) == {1, 3}


async def test_link_record_endpoint_paths(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, TAGS, MatchExp.atom("source.title", "=", "Alpha")) == {1, 2}
    assert await ids(storage, TAGS, {"target": {"id": 2}}) == {2, 3}
    assert await ids(storage, TAGS, {"source.id": 3}) == {3}
    assert await ids(storage, TAGS, MatchExp.atom("target", "in", [{"id": 1}, 2])) == {1, 2, 3}
    assert await ids(storage, TAGS, MatchExp.atom("source.author.name", "=", "bob")) == {3}


# -- combinators and shorthands --------------------------------------------------------------------


async def test_and_or_not(storage: SQLiteStorage) -> None:
    await _data(storage)
    ada_posts = MatchExp.atom("author.name", "=", "ada")
    high = MatchExp.atom("score", ">=", 5)
    assert await ids(storage, "Post", ada_posts & high) == {1}
    assert await ids(storage, "Post", ada_posts | high) == {1, 2, 4}
    assert await ids(storage, "Post", ada_posts & ~high) == {2}
    assert await ids(storage, "Post", ~(ada_posts | high)) == {3}
    assert await ids(
        storage, "Post", (ada_posts | high) & MatchExp.atom("title", "like", "%t%")
    ) == {2, 4}
    # combining flattens
    three = ada_posts & high & MatchExp.atom("title", "=", "Alpha")
    assert three.kind == "and" and len(three.children) == 3
    assert await ids(storage, "Post", three) == {1}


async def test_dict_shorthand(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "User", {"name": "bob", "age": 20}) == {2}
    assert await ids(storage, "User", {"name": "bob", "age": 21}) == set()
    assert await ids(storage, "User", {"active": False}) == {2, 5}
    assert await ids(storage, "User", {"meta": {"k": 2}}) == {5}
    assert await ids(storage, "User", {"joined": T2}) == {3}
    assert await ids(storage, "User", {}) == {1, 2, 3, 4, 5}
    assert await ids(storage, "User", {"id": 4}) == {4}
    assert await ids(storage, "User", {"id": "4"}) == {4}
    # a dict combines with a MatchExp from either side
    assert await ids(storage, "User", MatchExp.atom("age", ">", 10) & {"active": False}) == {2}
    assert await ids(storage, "User", {"active": False} & MatchExp.atom("age", ">", 10)) == {2}
    assert await ids(storage, "User", {"name": "ada"} | MatchExp.atom("age", "=", 0)) == {1, 5}


async def test_reference_shorthand(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "Post", {"author": {"id": 1}}) == {1, 2}
    assert await ids(storage, "Post", {"author.id": 1}) == {1, 2}
    assert await ids(storage, "Post", MatchExp.atom("author", "=", 2)) == {3}
    assert await ids(storage, "Post", MatchExp.atom("author", "in", [{"id": 1}, {"id": 2}])) == {
        1,
        2,
        3,
    }
    assert await ids(storage, "Post", MatchExp.atom("author", "not in", [{"id": 1}])) == {3}
    assert await ids(storage, "Post", {"tags": {"id": 2}}) == {1, 3}
    assert await ids(storage, "Comment", {"post": {"id": 1}, "author": {"id": 2}}) == {1}
    assert await ids(storage, "Comment", {"post": {"id": 1}, "author": {"id": 1}}) == set()


async def test_matches_work_the_same_in_update_delete_and_count(storage: SQLiteStorage) -> None:
    await _data(storage)
    match = MatchExp.atom("tags.&.weight", ">", 1) & ~MatchExp.atom("author.name", "=", "bob")
    assert await storage.count("Post", match) == 1
    result = await storage.update("Post", match, {"score": 0})
    assert [r["id"] for r in result.records] == [1]
    result = await storage.delete("Post", match)
    assert [r["id"] for r in result.records] == [1]
    assert await storage.count("Post") == 3


def test_match_repr_and_no_truth_value() -> None:
    match = MatchExp.atom("a", "=", 1) & ~MatchExp.atom("b.c", "in", [1, 2])
    assert repr(match) == "(MatchExp.atom('a', '=', 1) & ~MatchExp.atom('b.c', 'in', (1, 2)))"
    with pytest.raises(TypeError, match="no truth value"):
        bool(match)
    with pytest.raises(TypeError):
        if MatchExp.atom("a", "=", 1) and MatchExp.atom("b", "=", 2):
            pass


def _operand(value: Any, row: Mapping[str, Any]) -> Any:
    return row[value.field] if isinstance(value, FieldRef) else value


def _evaluate(match: MatchExp, row: Mapping[str, Any]) -> bool:
    if match.kind == "atom":
        assert match.key is not None and match.op is not None
        if match.op == "exist":
            return any(_evaluate(match.value, related) for related in row[match.key])
        return oracle(row[match.key], match.op, _operand(match.value, row))
    if match.kind == "not":
        return not _evaluate(match.children[0], row)
    results = [_evaluate(child, row) for child in match.children]
    return all(results) if match.kind == "and" else any(results)


POST_ATOMS: list[tuple[str, str, Any]] = [
    ("title", "contains", "a"),
    ("title", "=", "beta"),
    ("title", ">=", FieldRef("title")),
    ("score", "between", [1, 5]),
    ("score", ">", 2),
    ("score", "is null", None),
]


def _random_post_match(rng: random.Random, depth: int) -> MatchExp:
    if depth == 0 or rng.random() < 0.4:
        return MatchExp.atom(*rng.choice(POST_ATOMS))
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return ~_random_post_match(rng, depth - 1)
    left, right = _random_post_match(rng, depth - 1), _random_post_match(rng, depth - 1)
    return left & right if kind == "and" else left | right


def _random_match(rng: random.Random, depth: int) -> MatchExp:
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.15:
            # a user has a post matching a random nested match (None: any post)
            inner = None if rng.random() < 0.2 else _random_post_match(rng, 2)
            return MatchExp.atom("posts", "exist", inner)
        key, op, value = rng.choice(VALUE_ATOMS)
        return MatchExp.atom(key, op, value)
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return ~_random_match(rng, depth - 1)
    left, right = _random_match(rng, depth - 1), _random_match(rng, depth - 1)
    return left & right if kind == "and" else left | right


async def test_random_expressions_agree_with_python(storage: SQLiteStorage) -> None:
    await _data(storage)
    rows = await storage.find("User", None, ["*", ("posts", ["*"])])
    rng = random.Random(20240501)
    for _ in range(150):
        match = _random_match(rng, 3)
        expected = {r["id"] for r in rows if _evaluate(match, r)}
        assert await ids(storage, "User", match) == expected, repr(match)
        assert await ids(storage, "User", ~match) == {r["id"] for r in rows} - expected


async def test_dict_matches_through_relations_agree_with_expressions_for_any_values(
    storage: SQLiteStorage,
) -> None:
    """A dict match of plain values is compiled once per shape and reused with other values;
    every reuse must find what the same match written as an expression (never reused) finds."""
    await _data(storage)
    for name, meta in (("m1", 1), ("mx", "x"), ("m2", 2)):
        user = (await storage.create("User", {"name": name, "meta": meta})).record
        assert user is not None
        await storage.create("Post", {"title": f"by {name}", "author": {"id": user["id"]}})
    shapes: list[tuple[str, list[str]]] = [
        ("Post", ["author.name"]),
        ("Post", ["author.id"]),
        ("Post", ["tags.label", "author.name"]),
        ("Post", ["tags.id", "score"]),
        ("Post", ["score", "author.name"]),
        ("User", ["posts.title"]),
        ("User", ["friends.id"]),  # symmetric: the value appears twice in the statement
        ("Tag", ["posts.author.name"]),
        ("Comment", ["post.tags.label"]),
        ("User", ["meta", "name"]),  # a json field: compared as JSON text
        ("Post", ["author.meta"]),
    ]
    values: dict[str, list[Any]] = {
        "name": ["ada", "bob", "Cyd", "nobody"],
        "id": [1, 2, 3, 99],
        "label": ["x", "y", "z"],
        "score": [1, 5, 7, None],
        "title": ["Alpha", "gamma", "none"],
        "meta": [1, 2, "x", None],
    }
    rng = random.Random(7)
    for _ in range(120):
        record, paths = rng.choice(shapes)
        match = {path: rng.choice(values[path.rsplit(".", 1)[-1]]) for path in paths}
        expression = MatchExp.from_dict(match)
        assert await ids(storage, record, match) == await ids(storage, record, expression), match


async def test_a_remembered_dict_shape_still_refuses_bad_values(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "Post", {"author.name": "ada"}) == {1, 2}
    with pytest.raises(MatchError, match="expects a string"):
        await ids(storage, "Post", {"author.name": 5})
    with pytest.raises(MatchError, match="surrogate"):
        await ids(storage, "Post", {"author.name": "\ud800"})
    assert await ids(storage, "Post", {"author.name": "bob"}) == {3}


async def test_remembered_dict_shapes_stay_right_when_the_memory_starts_over(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage.sql import reader

    monkeypatch.setattr(reader, "_SHAPES_KEPT", 1)
    await _data(storage)
    matches: list[tuple[str, dict[str, Any]]] = [
        ("Post", {"author.name": "ada"}),
        ("Post", {"tags.label": "y"}),
        ("Post", {"author.name": "bob"}),
        ("User", {"posts.title": "Alpha"}),
        ("Post", {"tags.label": "x"}),
    ]
    for record, match in matches * 2:
        assert await ids(storage, record, match) == await ids(
            storage, record, MatchExp.from_dict(match)
        ), match


# -- the original framework's between / contains / exist / reference values, spelled out ---------


async def test_exist_quantifies_per_record_and_nests(storage: SQLiteStorage) -> None:
    await _data(storage)
    # ada (1) has Alpha (score 5) and beta; bob (2) has gamma (score 1)
    assert await ids(storage, "User", MatchExp.atom("posts", "exist", {"score": 5})) == {1}
    assert await ids(storage, "User", MatchExp.atom("posts", "exist", None)) == {1, 2}
    both = MatchExp.atom("title", "=", "beta") & MatchExp.atom("score", "is null")
    assert await ids(storage, "User", MatchExp.atom("posts", "exist", both)) == {1}
    # negation is "no related record matches": users without posts included
    assert await ids(storage, "User", ~MatchExp.atom("posts", "exist", {"score": 5})) == {
        2,
        3,
        4,
        5,
    }
    # nested: a user with a post that has a tag of weight 9 on its link
    tagged = MatchExp.atom("tags", "exist", MatchExp.atom("label", "=", "y"))
    assert await ids(storage, "User", MatchExp.atom("posts", "exist", tagged)) == {1, 2}
    # at the end of a path: posts whose author has a post scored 1
    path = MatchExp.atom("author.posts", "exist", {"score": 1})
    assert await ids(storage, "Post", path) == {3}
    # a symmetric relation, from either end
    assert await ids(storage, "User", MatchExp.atom("friends", "exist", {"name": "Cyd"})) == {2}


async def test_between_contains_and_field_refs_spelled_out(storage: SQLiteStorage) -> None:
    await _data(storage)
    assert await ids(storage, "User", MatchExp.atom("age", "between", (20, 20.5))) == {2, 4}
    assert await ids(storage, "User", ~MatchExp.atom("age", "between", [20, 20.5])) == {1, 3, 5}
    assert await ids(storage, "Post", MatchExp.atom("title", "contains", "lph")) == {1}
    # a json array holds "1" and 2.0 but not the number 1 (only inside a nested array)
    assert await ids(storage, "User", MatchExp.atom("meta", "contains", "1")) == {4}
    assert await ids(storage, "User", MatchExp.atom("meta", "contains", 2)) == {3, 4}
    assert await ids(storage, "User", MatchExp.atom("meta", "contains", 1)) == {3}
    # a json object is no array: {"k": 1} contains nothing
    assert 1 not in await ids(storage, "User", MatchExp.atom("meta", "contains", "k"))
    # a reference value: ``=`` holds for two None, ordering never with a None
    assert await ids(storage, "User", MatchExp.atom("age", "=", FieldRef("age"))) == {1, 2, 3, 4, 5}
    assert await ids(storage, "User", MatchExp.atom("age", "<=", FieldRef("age"))) == {1, 2, 4, 5}
    assert await ids(storage, "Post", {"tags.&.weight": 9}) == {3}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: MatchExp.atom("age", "between", [1]), "between needs [low, high]"),
        (lambda: MatchExp.atom("age", "between", [None, 3]), "neither None"),
        (lambda: MatchExp.atom("age", "between", 3), "between needs"),
        (lambda: MatchExp.atom("meta", "contains", {"k": 1}), "contains needs a string"),
        (lambda: MatchExp.atom("posts", "exist", 3), "exist needs a match"),
        (lambda: MatchExp.atom("age", "in", FieldRef("age")), "FieldRef operand needs"),
        (lambda: FieldRef("author.name"), "FieldRef names one value field"),
    ],
)
def test_new_operators_refuse_bad_operands(make: Any, fragment: str) -> None:
    with pytest.raises(MatchError, match=re.escape(fragment)):
        make()


@pytest.mark.parametrize(
    ("match", "fragment"),
    [
        (MatchExp.atom("age", "contains", 3), "'contains' needs a string or json field"),
        (MatchExp.atom("name", "contains", 3), "contains on a string field needs a string"),
        (MatchExp.atom("name", "exist", None), "'exist' needs a relation"),
        (MatchExp.atom("posts", "between", [1, 2]), "does not apply to a relation"),
        (MatchExp.atom("age", "<", FieldRef("name")), "is a string field"),
        (MatchExp.atom("age", "<", FieldRef("nope")), "is no such field"),
        (MatchExp.atom("meta", "=", FieldRef("meta")), "not json"),
        (MatchExp.atom("id", "contains", 1), "does not apply to an id"),
        (MatchExp.atom("posts", "exist", {"nope": 1}), "nope"),
    ],
)
async def test_new_operators_refuse_what_the_schema_rules_out(
    storage: SQLiteStorage, match: MatchExp, fragment: str
) -> None:
    await _data(storage)
    with pytest.raises(MatchError, match=re.escape(fragment)):
        await storage.find("User", match)
