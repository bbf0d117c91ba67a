"""A stateful model test: SQLiteStorage against a plain in-memory Python model of the same data.

Hypothesis drives random sequences of writes (creates with nested references, nested creates and
``"&"`` link fields; updates of value fields and relations; deletes; direct writes of link
records; transactions with a rolled-back savepoint) against a real aiosqlite-backed
``SQLiteStorage`` on a temporary file, and applies the same writes to :class:`Model`, which
implements the documented semantics in plain Python:

- the ``1`` side of a link is exclusive: a new link displaces the one holding that slot;
- deleting a record deletes its links (and, for ``cascade`` links, the targets);
- a symmetric link is seen from both endpoints through its one attribute;
- in matches ``None`` compares like in Python, ``~`` is an exact complement and a dotted path
  through a relation is existential;
- a write that fails leaves no trace (and a rolled-back savepoint only undoes its own part).

After every step the whole database is read back through ``find`` with nested attribute queries
and compared with the model *exactly*, ids included; a set of fixed matches (dotted paths through
to-one, to-many and symmetric relations, link fields, negations) must select exactly the ids the
model selects. Every write's ``events`` must be the model's events (same multiset, payloads
included) in an order consistent with the one ``WriteResult`` documents, and its ``records``
must be the model's.

Where the contract leaves a choice open the model follows the SQLite backend, and says so:

- ids: the backend's ids are ``INTEGER PRIMARY KEY AUTOINCREMENT`` (``ddl.py``): 1, 2, 3, ... per
  table, never reused, and a rolled-back write consumes none. The model predicts them, which lets
  the test compare reads and events exactly.
- to-many lists are ordered by link id, i.e. by link creation order (``reader.py``); top-level
  reads are ordered by ``order_by={"id": "asc"}``.
- replacing a relation with the very same related records, without ``"&"`` values, changes
  nothing (no events, link fields kept). Otherwise the old links are deleted and new ones created
  in list order. An update resolves (and nested-creates) all related items of one relation before
  it re-links, which fixes the order in which ids are handed out.
- an update that matches nothing writes nothing (nested creates and references are not even
  looked at); an update that matches several records applies relation changes (nested creates
  included) once per record, in id order. ``None`` items in a to-many list are skipped.
- a write with several problems may report any of them (references are checked when the link
  is inserted, so a missing reference can surface after a unique violation met later on).

Besides, writes with a bad value somewhere in a nested payload must fail with the error naming
it and store nothing, and matches generated at random (atoms over fields, ids, references and
dotted paths, combined with ``&``, ``|``, ``~``, or given as dicts) must select the model's ids,
also through ``count`` and through ``order_by``/``limit``/``offset``.

Not on ``reactive.testing``'s ModelMachine, on purpose: the machine works a level up (a
Controller: interactions, computations, side effects) and its oracle is ``verify()``, which
recomputes derived values. This test is about the storage below the engine (no controller, no
computation, so ``verify()`` would check nothing) and its oracle is :class:`Model`, an exact
Python model of the storage contract (ids, displaced links, cascades, events, matches) that
every step updates; a ModelMachine invariant sees only the controller, never such a model,
and its write strategies (``strategies.writes``) draw plain creates, updates, deletes and
links, not the nested creates, ``"&"`` link fields, savepoints, bad values and random matches
this test needs. The engine's own oracle (tests/reactive/test_oracle.py) is the stateful test
that fits the toolkit, and checks ``reactive.testing.verify`` after every step.

Runs in about 20-30 s (100 examples of up to 30 steps); to hunt for bugs, run it with more
examples, e.g. ``settings(max_examples=1000, stateful_step_count=60)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage import (
    Field,
    FieldTypeError,
    Index,
    LinkType,
    MatchExp,
    MissingReferenceError,
    MutationEvent,
    RecordType,
    Schema,
    SQLiteSession,
    SQLiteStorage,
    StorageError,
    UniqueViolationError,
    UnknownFieldError,
)
from storage.schema import RelationAttribute

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# The schema under test
# ---------------------------------------------------------------------------------------------

POSTS = "User_posts_author_Post"  # 1:n
TAGS = "Post_tags_posts_Tag"  # n:n with a link field
FRIENDS = "User_friends_friends_User"  # symmetric n:n
PROFILE = "User_profile_owner_Profile"  # 1:1
COMMENTS = "Post_comments_post_Comment"  # 1:n, cascade
WROTE = "Comment_author_comments_User"  # n:1


def model_schema() -> Schema:
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
            ),
            RecordType("Profile", [Field("bio")]),
            RecordType("Post", [Field("title"), Field("score", "number")]),
            RecordType("Tag", [Field("label")], [Index(["label"], unique=True)]),
            RecordType("Comment", [Field("body")]),
        ],
        links=[
            LinkType(POSTS, "User", "posts", "Post", "author", "1:n"),
            LinkType(TAGS, "Post", "tags", "Tag", "posts", "n:n", [Field("weight", "number")]),
            LinkType(FRIENDS, "User", "friends", "User", "friends", "n:n", symmetric=True),
            LinkType(PROFILE, "User", "profile", "Profile", "owner", "1:1"),
            LinkType(COMMENTS, "Post", "comments", "Comment", "post", "1:n", cascade=True),
            LinkType(WROTE, "Comment", "author", "User", "comments", "n:1"),
        ],
    )


SCHEMA = model_schema()
ENTITIES = [name for name in SCHEMA.records if not SCHEMA.is_link(name)]
LINKS = list(SCHEMA.links)

# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

Event = tuple[str, str, dict[str, Any], dict[str, Any] | None, tuple[str, ...] | None]
"""(type, record_name, record, old_record, keys): a MutationEvent as plain data."""


class ModelError(Exception):
    """The model's verdict that a write fails; ``kinds`` are the storage errors it may raise.

    The contract does not say which error a write with several problems reports, and the
    backend checks references late (when it inserts the link), so a missing reference may be
    reported before or after a unique violation further on: every error the model meets on its
    way through the write is allowed.
    """

    def __init__(self, kinds: frozenset[type[StorageError]]):
        super().__init__(", ".join(sorted(k.__name__ for k in kinds)))
        self.kinds = kinds


def _like(value: str, pattern: str) -> bool:
    # SQL LIKE, case-sensitive (the backend sets case_sensitive_like): % any run, _ one char.
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _same(value: Any, other: Any) -> bool:
    if other is None or value is None:
        return value is None and other is None
    return bool(value == other)


def compare(value: Any, op: str, operand: Any) -> bool:
    """One atom on one value, with None comparing like in Python."""
    if op == "is null":
        return value is None
    if op == "is not null":
        return value is not None
    if op == "in":
        return any(_same(value, x) for x in operand)
    if op == "not in":
        return not any(_same(value, x) for x in operand)
    if value is None:
        return op == "!="  # None != x is true; None = x, None < x, None like p are false
    if op == "=":
        return bool(value == operand)
    if op == "!=":
        return bool(value != operand)
    if op == "<":
        return bool(value < operand)
    if op == "<=":
        return bool(value <= operand)
    if op == ">":
        return bool(value > operand)
    if op == ">=":
        return bool(value >= operand)
    if op == "like":
        return _like(value, operand)
    raise AssertionError(f"unknown op {op}")


def _unref(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_unref(v) for v in value)
    if isinstance(value, dict):
        return value["id"]
    return value


class Model:
    """The same data as plain dicts: ``rows[type][id]`` is a record's values (for a link record
    also ``source`` and ``target`` ids). Writes append to ``events``; a write that must fail
    raises :class:`ModelError` (run writes on a :meth:`clone` and keep it only on success)."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.rows: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in schema.records}
        self.next_id: dict[str, int] = dict.fromkeys(schema.records, 1)
        self.events: list[Event] = []
        self.missing = False  # the running write refers to a record that does not exist
        # Records the last write touched: generated payloads refer to them more often, so that
        # writes interact (a nested create pointing back at the record being updated, ...).
        self.focus: dict[str, list[int]] = {}

    def clone(self) -> Model:
        other = Model.__new__(Model)
        other.schema = self.schema
        other.rows = copy.deepcopy(self.rows)
        other.next_id = dict(self.next_id)
        other.events = list(self.events)
        other.missing = False
        other.focus = {k: list(v) for k, v in self.focus.items()}
        return other

    # -- plain data ----------------------------------------------------------------------------

    def fields(self, name: str) -> list[str]:
        return list(self.schema.fields(name))

    def snapshot(self, name: str, rid: int) -> dict[str, Any]:
        row = self.rows[name][rid]
        values = {f: row[f] for f in self.fields(name)}
        if self.schema.is_link(name):
            return {
                "id": rid,
                "source": {"id": row["source"]},
                "target": {"id": row["target"]},
                **values,
            }
        return {"id": rid, **values}

    def related(self, name: str, rid: int, attr: RelationAttribute) -> list[tuple[int | None, int]]:
        """(link id, related id) pairs, in link id order."""
        if not attr.via_link:
            return [(None, self.rows[name][rid][attr.name])]
        out: list[tuple[int | None, int]] = []
        for lid, row in sorted(self.rows[attr.link.name].items()):
            if attr.symmetric:
                if row["source"] == rid:
                    out.append((lid, row["target"]))
                elif row["target"] == rid:
                    out.append((lid, row["source"]))
            elif row[attr.side] == rid:
                out.append((lid, row[attr.other]))
        return out

    def _link_ids(self, link: str, column: str, value: int) -> list[int]:
        return sorted(lid for lid, row in self.rows[link].items() if row[column] == value)

    # -- matches -------------------------------------------------------------------------------

    def matches(self, name: str, rid: int, match: MatchExp | Mapping[str, Any] | None) -> bool:
        if match is None:
            return True
        if isinstance(match, Mapping):
            return all(
                self._atom(name, rid, key.split("."), "is null" if v is None else "=", v)
                for key, v in match.items()
            )
        if match.kind == "atom":
            assert match.key is not None and match.op is not None
            return self._atom(name, rid, match.key.split("."), match.op, match.value)
        if match.kind == "and":
            return all(self.matches(name, rid, c) for c in match.children)
        if match.kind == "or":
            return any(self.matches(name, rid, c) for c in match.children)
        return not self.matches(name, rid, match.children[0])

    def _atom(self, name: str, rid: int, path: list[str], op: str, operand: Any) -> bool:
        head, rest = path[0], path[1:]
        if head == "id" and not rest:
            return compare(rid, op, operand)
        if head in self.schema.fields(name) and not rest:
            return compare(self.rows[name][rid][head], op, operand)
        attr = self.schema.attribute(name, head)
        related = self.related(name, rid, attr)
        if not rest:
            if op == "is null":
                return not related
            if op == "is not null":
                return bool(related)
            rest, operand = ["id"], _unref(operand)
        for lid, other in related:  # existential
            if rest[0] == "&":
                assert lid is not None
                if self._atom(attr.link.name, lid, rest[1:], op, operand):
                    return True
            elif self._atom(attr.related, other, rest, op, operand):
                return True
        return False

    def select(self, name: str, match: MatchExp | Mapping[str, Any] | None) -> list[int]:
        return [rid for rid in sorted(self.rows[name]) if self.matches(name, rid, match)]

    def ordered(self, name: str, ids: list[int], order_by: Mapping[str, str]) -> list[int]:
        # SQLite: NULL sorts first ascending; ties broken by id ascending.
        result = sorted(ids)
        for field, direction in reversed(list(order_by.items())):

            def key(rid: int, field: str = field) -> tuple[int, Any]:
                value = rid if field == "id" else self.rows[name][rid][field]
                return (0, 0) if value is None else (1, value)

            result = sorted(result, key=key, reverse=direction == "desc")
        return result

    # -- reads ---------------------------------------------------------------------------------

    def read(
        self, name: str, rid: int, query: Sequence[Any], via: tuple[str, int] | None = None
    ) -> dict[str, Any]:
        """What ``find(name, ..., query)`` returns for one record; ``via`` is the link record
        (type, id) through which it was reached, for ``("&", [...])``."""
        fields = self.fields(name)
        attributes = self.schema.attributes(name)
        row = self.rows[name][rid]
        out: dict[str, Any] = {"id": rid}
        relations: dict[str, list[Any]] = {}
        for item in query:
            if item == "*":
                out.update({f: row[f] for f in fields})
            elif isinstance(item, str) and item in fields:
                out[item] = row[item]
            elif isinstance(item, str):
                relations.setdefault(item, [])
            elif item[0] == "&":
                assert via is not None
                out["&"] = self.read(via[0], via[1], item[1])
            else:
                relations.setdefault(item[0], []).extend(item[1])
        for key, nested in relations.items():
            attr = attributes[key]
            if not attr.via_link:
                out[key] = self.read(attr.related, row[key], nested)
                continue
            items = [
                self.read(attr.related, other, nested, (attr.link.name, lid))
                for lid, other in self.related(name, rid, attr)
                if lid is not None
            ]
            out[key] = items if attr.to_many else (items[0] if items else None)
        return out

    # -- writes --------------------------------------------------------------------------------

    def _check_unique(self, name: str, rid: int) -> None:
        row = self.rows[name][rid]
        for index in self.schema.record(name).indexes:
            if not index.unique:
                continue
            key = tuple(row[f] for f in index.fields)
            if any(v is None for v in key):
                continue
            for other, other_row in self.rows[name].items():
                if other != rid and tuple(other_row[f] for f in index.fields) == key:
                    raise ModelError(frozenset({UniqueViolationError}))

    def _new_id(self, name: str) -> int:
        rid = self.next_id[name]
        self.next_id[name] += 1
        return rid

    def _insert(self, name: str, values: dict[str, Any]) -> int:
        rid = self._new_id(name)
        self.rows[name][rid] = {f: values.get(f) for f in self.fields(name)}
        self._check_unique(name, rid)
        self.events.append(("create", name, {"id": rid, **values}, None, None))
        return rid

    def _insert_link(
        self, link: LinkType, source: int, target: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        # The "1" side is exclusive: the new link displaces the one holding the slot.
        if link.source_is_exclusive:
            for lid in self._link_ids(link.name, "target", target):
                self._delete(link.name, lid)
        if link.target_is_exclusive:
            for lid in self._link_ids(link.name, "source", source):
                self._delete(link.name, lid)
        lid = self._new_id(link.name)
        self.rows[link.name][lid] = {
            "source": source,
            "target": target,
            **{f: values.get(f) for f in self.fields(link.name)},
        }
        record = {"id": lid, "source": {"id": source}, "target": {"id": target}, **values}
        self.events.append(("create", link.name, dict(record), None, None))
        return record

    def _link(self, attr: RelationAttribute, rid: int, other: int, values: dict[str, Any]) -> None:
        if attr.side == "source":
            self._insert_link(attr.link, rid, other, values)
        else:
            self._insert_link(attr.link, other, rid, values)

    def _delete(self, name: str, rid: int) -> None:
        """Delete a record (if it still exists), its links first, cascades after them."""
        if rid not in self.rows[name]:
            return
        snapshot = self.snapshot(name, rid)
        cascaded: list[tuple[str, int]] = []
        for link in self.schema.links_touching(name):
            for side in ("source", "target"):
                if getattr(link, side) != name:
                    continue
                for lid in self._link_ids(link.name, side, rid):
                    if link.cascade and side == "source":
                        cascaded.append((link.target, self.rows[link.name][lid]["target"]))
                    self._delete(link.name, lid)
        for other_name, other in cascaded:
            self._delete(other_name, other)
        del self.rows[name][rid]
        self.events.append(("delete", name, snapshot, None, None))

    @staticmethod
    def _items(attr: RelationAttribute, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if attr.to_many:
            return [v for v in value if v is not None]
        return [value]

    def _values(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The value fields of a payload, as a read returns them."""
        fields = self.schema.fields(name)
        return {
            k: datetime.fromisoformat(v)
            if fields[k].type == "timestamp" and isinstance(v, str)
            else v
            for k, v in data.items()
            if k in fields
        }

    def attempt(self, write: Callable[[], T]) -> T:
        """Run one write; raise :class:`ModelError` if it must fail."""
        self.missing = False
        try:
            result = write()
        except ModelError as exc:
            raise ModelError(exc.kinds | self._missing_kinds()) from None
        if self.missing:
            raise ModelError(self._missing_kinds())
        return result

    def _missing_kinds(self) -> frozenset[type[StorageError]]:
        return frozenset({MissingReferenceError}) if self.missing else frozenset()

    def _resolve(self, related: str, item: Mapping[str, Any]) -> int | None:
        """The id of a referenced or nested-created record; None for a missing reference (the
        write fails, but goes on here to meet the errors the backend may report first)."""
        rest = {k: v for k, v in item.items() if k != "&"}
        if "id" in rest:
            if rest["id"] not in self.rows[related]:
                self.missing = True
                return None
            return int(rest["id"])
        return int(self.create(related, rest)["id"])

    def create(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        values = self._values(name, data)
        record: dict[str, Any]
        if self.schema.is_link(name):
            link = self.schema.links[name]
            source = self._resolve(link.source, data["source"])
            target = self._resolve(link.target, data["target"])
            if source is None or target is None:
                return {}
            record = self._insert_link(link, source, target, values)
        else:
            record = {"id": self._insert(name, values), **values}
        attributes = self.schema.attributes(name)
        for key, value in data.items():
            attr = attributes.get(key)
            if attr is None or not attr.via_link:
                continue
            refs = []
            for item in self._items(attr, value):
                other = self._resolve(attr.related, item)
                if other is None:
                    continue
                self._link(attr, record["id"], other, dict(item.get("&", {})))
                refs.append({"id": other})
            record[key] = refs if attr.to_many else (refs[0] if refs else None)
        return record

    def _relink(self, attr: RelationAttribute, rid: int, items: list[dict[str, Any]]) -> None:
        current = self.related(attr.owner, rid, attr)
        resolved = [(self._resolve(attr.related, item), item) for item in items]
        if not any(item.get("&") for item in items) and [o for _, o in current] == [
            o for o, _ in resolved
        ]:
            return  # the same related records: nothing to re-link
        for lid, _ in current:
            # A nested create above may already have displaced this link: then it is gone, and
            # deleting it again must not report it again.
            assert lid is not None
            self._delete(attr.link.name, lid)
        for other, item in resolved:
            if other is not None:
                self._link(attr, rid, other, dict(item.get("&", {})))

    def update(
        self, name: str, match: MatchExp | Mapping[str, Any] | None, data: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        matched = self.select(name, match)
        if not matched:
            return []
        values = self._values(name, data)
        olds = [self.snapshot(name, rid) for rid in matched]
        for rid in matched:
            self.rows[name][rid].update(values)
        for rid in matched:
            self._check_unique(name, rid)
        attributes = self.schema.attributes(name)
        records = []
        for old in olds:
            rid = old["id"]
            if values:
                self.events.append(("update", name, {"id": rid, **values}, old, tuple(values)))
            for key, value in data.items():
                attr = attributes.get(key)
                if attr is not None and attr.via_link:
                    self._relink(attr, rid, self._items(attr, value))
            records.append({**old, **values})
        return records

    def delete(self, name: str, match: MatchExp | Mapping[str, Any] | None) -> list[dict[str, Any]]:
        matched = self.select(name, match)
        snapshots = [self.snapshot(name, rid) for rid in matched]
        for rid in matched:
            self._delete(name, rid)
        return snapshots


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

STRINGS = st.sampled_from(["a", "ab", "Ab", "b", "a_b", "%", "", "é"])
NUMBERS = st.integers(-2, 3) | st.sampled_from([0.5, -1.5, 2.0, 2**53 + 1, float(2**53)])
# json values compare by their canonical text in the backend. Python would also call 1 and 1.0
# (or True and 1) equal, the canonical texts differ; the contract does not settle which is meant,
# so the pool holds no two values that Python and the backend would disagree on.
JSONS = st.sampled_from(
    [
        None,
        {},
        [],
        {"k": 1},
        {"b": [1, "x"], "a": None},
        {"a": None, "b": [1, "x"]},
        [1, "x"],
        "s",
        3,
    ]
)
_PLUS5 = timezone(timedelta(hours=5, minutes=30))
_INSTANTS = [
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
]
TIMES = st.sampled_from([t.astimezone(tz) for t in _INSTANTS for tz in (UTC, _PLUS5)])
# Timestamps may also be written as ISO 8601 text with an offset; they read back as datetimes.
TIME_TEXTS = TIMES.map(lambda t: t.isoformat().replace("+00:00", "Z"))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.none() | STRINGS,
    "number": st.none() | NUMBERS,
    "boolean": st.none() | st.booleans(),
    "json": JSONS,
    "timestamp": st.none() | TIMES | TIME_TEXTS,
}
LIKE_PATTERNS = st.sampled_from(["a%", "%b", "_", "%", "A%", "a_b", "%\\%", "", "_b%", "é"])
REF_IDS = st.integers(1, 8)


def values_strategy(name: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = SCHEMA.fields(name)
    return st.fixed_dictionaries({}, optional={f: VALUES[fields[f].type] for f in fields})


# (path, kind) per record type, for generated matches.
PATHS: dict[str, list[tuple[str, str]]] = {
    "User": [
        ("name", "string"),
        ("age", "number"),
        ("active", "boolean"),
        ("meta", "json"),
        ("joined", "timestamp"),
        ("id", "id"),
        ("posts", "ref"),
        ("posts.title", "string"),
        ("posts.score", "number"),
        ("posts.tags.label", "string"),
        ("posts.tags.&.weight", "number"),
        ("posts.comments.body", "string"),
        ("friends", "ref"),
        ("friends.name", "string"),
        ("friends.friends.age", "number"),
        ("profile", "ref"),
        ("profile.bio", "string"),
        ("comments", "ref"),
        ("comments.post.title", "string"),
    ],
    "Post": [
        ("title", "string"),
        ("score", "number"),
        ("id", "id"),
        ("author", "ref"),
        ("author.name", "string"),
        ("author.active", "boolean"),
        ("author.friends.name", "string"),
        ("tags", "ref"),
        ("tags.label", "string"),
        ("tags.&.weight", "number"),
        ("comments.body", "string"),
    ],
    "Tag": [
        ("label", "string"),
        ("id", "id"),
        ("posts", "ref"),
        ("posts.title", "string"),
        ("posts.&.weight", "number"),
        ("posts.author.name", "string"),
    ],
    "Profile": [
        ("bio", "string"),
        ("id", "id"),
        ("owner", "ref"),
        ("owner.name", "string"),
        ("owner.age", "number"),
    ],
    "Comment": [
        ("body", "string"),
        ("id", "id"),
        ("post", "ref"),
        ("post.title", "string"),
        ("post.author.name", "string"),
        ("author", "ref"),
        ("author.name", "string"),
    ],
    TAGS: [
        ("weight", "number"),
        ("id", "id"),
        ("source", "ref"),
        ("source.title", "string"),
        ("target.label", "string"),
    ],
    FRIENDS: [
        ("id", "id"),
        ("source", "ref"),
        ("source.name", "string"),
        ("target.name", "string"),
    ],
    POSTS: [("id", "id"), ("source.name", "string"), ("target.title", "string")],
    PROFILE: [("id", "id"), ("target", "ref"), ("source.name", "string"), ("target.bio", "string")],
    COMMENTS: [("id", "id"), ("source.title", "string"), ("target.body", "string")],
    WROTE: [("id", "id"), ("source", "ref"), ("target.name", "string")],
}

OPS: dict[str, list[str]] = {
    "string": ["=", "!=", "<", ">=", "in", "not in", "like", "is null", "is not null"],
    "number": ["=", "!=", "<", "<=", ">", ">=", "in", "not in", "is null"],
    "boolean": ["=", "!=", "<", "in", "is null"],
    "json": ["=", "!=", "in", "not in", "is null", "is not null"],
    "timestamp": ["=", "!=", "<", ">=", "is null"],
    "id": ["=", "!=", "<", ">", "in", "not in"],
    "ref": ["=", "!=", "in", "not in", "is null", "is not null"],
}
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": STRINGS,
    "number": NUMBERS,
    "boolean": st.booleans(),
    "json": JSONS.filter(lambda v: v is not None),
    "timestamp": TIMES,
    "id": REF_IDS,
    "ref": REF_IDS | REF_IDS.map(lambda i: {"id": i}),
}


def operand(kind: str, op: str) -> st.SearchStrategy[Any]:
    scalar = SCALARS[kind]
    if op in ("is null", "is not null"):
        return st.none()
    if op == "like":
        return LIKE_PATTERNS
    if op in ("in", "not in"):
        return st.lists(st.none() | scalar, max_size=3)
    if op in ("=", "!="):
        return st.none() | scalar
    return scalar


def atom_strategy(name: str) -> st.SearchStrategy[MatchExp]:
    def for_path(path_kind: tuple[str, str]) -> st.SearchStrategy[MatchExp]:
        path, kind = path_kind
        return st.sampled_from(OPS[kind]).flatmap(
            lambda op: operand(kind, op).map(lambda v: MatchExp.atom(path, op, v))
        )

    return st.sampled_from(PATHS[name]).flatmap(for_path)


def dict_match_strategy(name: str) -> st.SearchStrategy[dict[str, Any]]:
    paths = [(p, k) for p, k in PATHS[name] if k != "ref"]
    pair = st.sampled_from(paths).flatmap(
        lambda pk: (st.none() | SCALARS[pk[1]]).map(lambda v: (pk[0], v))
    )
    return st.lists(pair, max_size=2, unique_by=lambda kv: kv[0]).map(dict)


_MATCHES: dict[str, st.SearchStrategy[Any]] = {}


def match_strategy(name: str) -> st.SearchStrategy[MatchExp | dict[str, Any]]:
    if name not in _MATCHES:
        tree = st.recursive(
            atom_strategy(name),
            lambda c: st.one_of(
                st.tuples(c, c).map(lambda t: t[0] & t[1]),
                st.tuples(c, c).map(lambda t: t[0] | t[1]),
                c.map(lambda m: ~m),
            ),
            max_leaves=4,
        )
        _MATCHES[name] = st.one_of(tree, dict_match_strategy(name))
    return _MATCHES[name]


def draw_item(
    data: st.DataObject, model: Model, attr: RelationAttribute, depth: int
) -> dict[str, Any]:
    """One related record of a payload: a reference, a nested create, or a missing reference."""
    existing = sorted(model.rows[attr.related])
    focus = [i for i in model.focus.get(attr.related, []) if i in model.rows[attr.related]]
    roll = data.draw(st.integers(0, 19))
    item: dict[str, Any]
    if roll == 0:
        item = {"id": model.next_id[attr.related] + 1000}  # does not exist
    elif focus and roll < 6:
        item = {"id": data.draw(st.sampled_from(focus))}
    elif existing and roll < 11:
        item = {"id": data.draw(st.sampled_from(existing))}
    else:
        item = draw_create(data, model, attr.related, depth)
    if bool(attr.link.fields) and data.draw(st.booleans()):
        item["&"] = data.draw(values_strategy(attr.link.name))
    elif data.draw(st.integers(0, 9)) == 0:
        item["&"] = {}
    return item


def draw_relation(data: st.DataObject, model: Model, attr: RelationAttribute, depth: int) -> Any:
    if attr.to_many:
        if data.draw(st.integers(0, 9)) == 0:
            return None
        items: list[Any] = [
            draw_item(data, model, attr, depth) for _ in range(data.draw(st.integers(0, 3)))
        ]
        if items and data.draw(st.integers(0, 9)) == 0:
            items.insert(data.draw(st.integers(0, len(items))), None)  # None items are skipped
        return items
    if data.draw(st.integers(0, 4)) == 0:
        return None
    return draw_item(data, model, attr, depth)


def draw_relations(
    data: st.DataObject, model: Model, name: str, depth: int, payload: dict[str, Any]
) -> dict[str, Any]:
    attributes = [a.name for a in SCHEMA.attributes(name).values() if a.via_link]
    if depth < 0 or not attributes:
        return payload
    chosen = data.draw(st.lists(st.sampled_from(attributes), max_size=2, unique=True))
    for attr_name in chosen:
        attr = SCHEMA.attribute(name, attr_name)
        payload[attr.name] = draw_relation(data, model, attr, depth - 1)
    return payload


def draw_create(data: st.DataObject, model: Model, name: str, depth: int) -> dict[str, Any]:
    return draw_relations(data, model, name, depth, data.draw(values_strategy(name)))


def draw_link_end(data: st.DataObject, model: Model, related: str) -> dict[str, Any]:
    existing = sorted(model.rows[related])
    roll = data.draw(st.integers(0, 19))
    if roll == 0:
        return {"id": model.next_id[related] + 1000}
    if existing and roll < 15:
        return {"id": data.draw(st.sampled_from(existing))}
    return draw_create(data, model, related, 0)


def record_dicts(
    name: str, payload: dict[str, Any], link: str | None = None
) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """Every record dict of a create payload (the root, nested creates): (record type, the
    dict, the link it was reached through)."""
    yield name, payload, link
    for key, value in payload.items():
        attributes = SCHEMA.attributes(name)
        if key not in attributes or value is None:
            continue
        attr = attributes[key]
        for item in value if isinstance(value, list) else [value]:
            if item is not None and "id" not in item:
                yield from record_dicts(attr.related, item, attr.link.name)


def draw_target(data: st.DataObject, model: Model, name: str) -> MatchExp | dict[str, Any]:
    """Which records a write applies to: mostly one by id, sometimes a generated match."""
    existing = sorted(model.rows[name])
    if existing and data.draw(st.integers(0, 3)) > 0:
        target = data.draw(st.sampled_from(existing))
        model.focus[name] = [target]
        return {"id": target}
    return data.draw(match_strategy(name))


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

QUERIES: dict[str, list[Any]] = {
    "User": [
        "*",
        (
            "posts",
            ["title", "score", ("tags", ["label", ("&", ["weight"])]), ("comments", ["body"])],
        ),
        ("friends", ["name", ("friends", ["name"])]),
        ("profile", ["bio", ("owner", ["name"])]),
        ("comments", ["body", ("author", ["name"])]),
    ],
    "Post": [
        "*",
        ("author", ["name", "age", ("profile", ["bio"])]),
        ("tags", ["*", ("&", ["*", ("target", ["label"])]), ("posts", ["title"])]),
        ("comments", ["*", ("post", ["title"])]),
    ],
    "Tag": ["*", ("posts", ["title", ("&", ["weight", "source"]), ("author", ["name"])])],
    "Profile": ["*", ("owner", ["*", "posts"])],
    "Comment": ["*", "post", ("author", ["name", ("comments", ["body"])])],
    TAGS: ["*", ("source", ["title"]), ("target", ["label"])],
    FRIENDS: [("source", ["name"]), "target"],
    POSTS: ["source", "target"],
    PROFILE: ["source", ("target", ["bio"])],
    COMMENTS: ["source", ("target", ["body"])],
    WROTE: [("source", ["body"]), "target"],
}

A = MatchExp.atom
FIXED_MATCHES: list[tuple[str, MatchExp | dict[str, Any]]] = [
    ("User", A("posts.title", "=", "a")),
    ("User", ~A("posts.tags.label", "like", "a%")),
    ("User", A("friends.name", "!=", "a") | A("age", "<", 1)),
    ("User", ~A("age", ">=", 1) & A("profile", "is not null")),
    ("User", ~A("friends", "is null") & ~A("meta", "=", {"k": 1})),
    ("User", A("posts.tags.&.weight", ">", 0.5)),
    ("Post", A("author.name", "in", ["a", None, "b"])),
    ("Post", ~A("tags.&.weight", ">", 0)),
    ("Post", {"author.active": True}),
    ("Post", ~A("comments.body", "!=", "a")),
    ("Tag", A("posts.author.friends.name", "=", "ab")),
    ("Tag", ~A("posts", "is null") & A("label", "not in", ["a", None])),
    ("Profile", ~A("owner.joined", "<", datetime(2020, 1, 1, tzinfo=UTC))),
    ("Comment", A("post.author", "is null")),
    (TAGS, A("source.title", "like", "%b") | A("weight", "is null")),
    (FRIENDS, A("source.name", "=", "a") | ~A("target.age", ">", 0)),
    # Negations of every operator on plain fields: each must be the exact complement.
    ("User", ~A("age", "<", 1) | ~A("name", "like", "a%")),
    ("User", ~A("active", "!=", True) & ~A("joined", ">=", datetime(2020, 1, 1, tzinfo=UTC))),
    ("User", ~A("age", "in", [1, None, 2.0]) & ~A("name", "not in", ["a", "ab"])),
    ("Post", ~A("score", "<=", 0.5) | ~A("title", ">", "a")),
    ("Post", ~(A("score", "=", 2) | A("title", "is null"))),
]
ORDERED_READS: list[tuple[str, dict[str, str], int | None, int | None]] = [
    ("User", {"age": "desc"}, 3, 1),
    ("User", {"name": "asc", "joined": "desc"}, None, 2),
    ("Post", {"score": "asc", "title": "desc"}, 4, None),
    (TAGS, {"weight": "desc"}, None, None),
]


def plain_events(events: Sequence[MutationEvent]) -> list[Event]:
    return [(e.type, e.record_name, e.record, e.old_record, e.keys) for e in events]


def _event_key(event: Event) -> tuple[str, str, Any]:
    return (event[0], event[1], event[2]["id"])


def check_events(actual_events: Sequence[MutationEvent], expected: list[Event]) -> None:
    actual = plain_events(actual_events)
    counts = Counter((e[0], e[1]) for e in actual)
    expected_counts = Counter((e[0], e[1]) for e in expected)
    assert counts == expected_counts, (
        f"event counts differ:\n storage {sorted(counts.items())}\n model   "
        f"{sorted(expected_counts.items())}\n storage events {actual}\n model events {expected}"
    )
    assert sorted(actual, key=_event_key) == sorted(expected, key=_event_key), (
        f"events differ:\n storage {actual}\n model   {expected}"
    )
    # Order, as WriteResult documents it: a deleted record's links (and cascaded records) go
    # before the record's own delete; a link is created after its endpoints.
    position = {(e[0], e[1], e[2]["id"]): i for i, e in enumerate(actual)}
    for i, (kind, name, record, _, _) in enumerate(actual):
        if SCHEMA.is_link(name) and kind != "update":
            link = SCHEMA.links[name]
            for end, end_name in (("source", link.source), ("target", link.target)):
                end_id = record[end]["id"]
                if kind == "create":
                    assert position.get(("create", end_name, end_id), -1) < i, actual
                else:
                    assert position.get(("delete", end_name, end_id), len(actual)) > i, actual


def check_create_order(
    events: Sequence[MutationEvent], name: str, record: Mapping[str, Any]
) -> None:
    first = events[0]
    assert (first.type, first.record_name, first.record["id"]) == ("create", name, record["id"])


# ---------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


class StorageModelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="storage-model-"))
        self.storage: SQLiteStorage | None = None
        self.model = Model(SCHEMA)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def store(self) -> SQLiteStorage:
        assert self.storage is not None
        return self.storage

    @initialize(executor=st.sampled_from(["loop", "loop", "thread"]))
    def open_storage(self, executor: Literal["loop", "thread"]) -> None:
        self.storage = SQLiteStorage(str(self.tmp / "model.db"), executor=executor)
        self.run(self.storage.setup(SCHEMA))

    def teardown(self) -> None:
        try:
            if self.storage is not None:
                self.run(self.storage.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- applying one write to both sides --------------------------------------------------------

    def apply(
        self,
        on_model: Callable[[Model], Any],
        on_storage: Callable[[], Coroutine[Any, Any, Any]],
    ) -> tuple[Any, Any, Model] | None:
        """Run a write on a clone of the model and on the storage. If the model says it fails,
        the storage must raise one of the errors the model met and the model stays as it was
        (the invariants then check that nothing of it was stored). Returns (model result,
        storage result, trial)."""
        trial = self.model.clone()
        trial.events = []
        try:
            expected = trial.attempt(lambda: on_model(trial))
        except ModelError as exc:
            try:
                self.run(on_storage())
            except StorageError as err:
                assert isinstance(err, tuple(exc.kinds)), f"expected {exc}, got {err!r}"
            else:
                raise AssertionError(f"the write should fail with {exc}") from None
            return None
        actual = self.run(on_storage())
        self.model = trial
        focus: dict[str, list[int]] = {}
        for kind, name, record, _, _ in trial.events:
            if kind != "delete" and not SCHEMA.is_link(name):
                focus.setdefault(name, []).append(record["id"])
        trial.focus = focus
        return expected, actual, trial

    def write(
        self,
        on_model: Callable[[Model], Any],
        on_storage: Callable[[], Coroutine[Any, Any, Any]],
        order: Callable[[Sequence[MutationEvent], list[dict[str, Any]]], None] | None = None,
    ) -> None:
        outcome = self.apply(on_model, on_storage)
        if outcome is None:
            return
        expected, actual, trial = outcome
        check_events(actual.events, trial.events)
        assert actual.records == expected, f"records: storage {actual.records}, model {expected}"
        if order is not None:
            order(actual.events, expected)

    def update(self, name: str, match: Any, payload: dict[str, Any]) -> None:
        def order(events: Sequence[MutationEvent], records: list[dict[str, Any]]) -> None:
            # Per matched record (in id order) its update event, then its link changes.
            if records and set(payload) & set(SCHEMA.fields(name)):
                updates = [e.record["id"] for e in events if e.type == "update"]
                assert updates == [r["id"] for r in records], events
                assert events[0].type == "update", events

        self.write(
            lambda m: m.update(name, match, payload),
            lambda: self.store.update(name, match, payload),
            order,
        )

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        name=st.sampled_from(["User", "User", "Post", "Post", "Tag", "Profile", "Comment"]),
    )
    def create(self, data: st.DataObject, name: str) -> None:
        payload = draw_create(data, self.model, name, 2)
        outcome = self.apply(
            lambda m: m.create(name, payload), lambda: self.store.create(name, payload)
        )
        if outcome is None:
            return
        expected, actual, trial = outcome
        check_events(actual.events, trial.events)
        check_create_order(actual.events, name, expected)
        assert actual.records == [expected], f"record: storage {actual.records}, model {expected}"

    @rule(data=st.data(), name=st.sampled_from(LINKS))
    def create_link_record(self, data: st.DataObject, name: str) -> None:
        link = SCHEMA.links[name]
        payload: dict[str, Any] = data.draw(values_strategy(name))
        payload["source"] = draw_link_end(data, self.model, link.source)
        payload["target"] = draw_link_end(data, self.model, link.target)
        self.write(lambda m: [m.create(name, payload)], lambda: self.store.create(name, payload))

    def has_records(self, names: Sequence[str] = ENTITIES) -> bool:
        return any(self.model.rows[name] for name in names)

    def draw_populated(self, data: st.DataObject, names: Sequence[str] = ENTITIES) -> str:
        """A record type that has records (writes to empty types mostly do nothing)."""
        return data.draw(st.sampled_from([n for n in names if self.model.rows[n]]))

    @precondition(lambda self: self.has_records())
    @rule(data=st.data())
    def update_values(self, data: st.DataObject) -> None:
        name = self.draw_populated(data)
        match = draw_target(data, self.model, name)
        payload = data.draw(values_strategy(name))
        self.update(name, match, payload)

    @precondition(lambda self: self.has_records())
    @rule(data=st.data())
    def update_relations(self, data: st.DataObject) -> None:
        name = self.draw_populated(data)
        match = draw_target(data, self.model, name)
        payload = data.draw(values_strategy(name)) if data.draw(st.booleans()) else {}
        attributes = [a.name for a in SCHEMA.attributes(name).values() if a.via_link]
        chosen = data.draw(
            st.lists(st.sampled_from(attributes), min_size=1, max_size=2, unique=True)
        )
        for attr_name in chosen:
            attr = SCHEMA.attribute(name, attr_name)
            payload[attr.name] = draw_relation(data, self.model, attr, 1)
        self.update(name, match, payload)

    @precondition(lambda self: self.has_records())
    @rule(data=st.data())
    def relink(self, data: st.DataObject) -> None:
        """Re-point one relation of one record to existing records (or to none)."""
        name = self.draw_populated(data)
        rid = data.draw(st.sampled_from(sorted(self.model.rows[name])))
        attributes = [a.name for a in SCHEMA.attributes(name).values() if a.via_link]
        attr = SCHEMA.attribute(name, data.draw(st.sampled_from(attributes)))
        existing = sorted(self.model.rows[attr.related])
        refs: list[dict[str, Any]] = [
            {"id": i}
            for i in data.draw(
                st.lists(st.sampled_from(existing), max_size=3) if existing else st.just([])
            )
        ]
        for ref in refs:
            if bool(attr.link.fields) and data.draw(st.booleans()):
                ref["&"] = data.draw(values_strategy(attr.link.name))
        value: Any = refs if attr.to_many else (refs[0] if refs else None)
        payload = {attr.name: value}
        self.update(name, {"id": rid}, payload)

    @precondition(lambda self: self.has_records())
    @rule(data=st.data())
    def relink_to_nested_back_reference(self, data: st.DataObject) -> None:
        """Re-point a relation to a record created in the same write whose own payload links
        it back through the same link: that nested link may displace the very links the
        update replaces."""
        name = self.draw_populated(data)
        rid = data.draw(st.sampled_from(sorted(self.model.rows[name])))
        attributes = [a.name for a in SCHEMA.attributes(name).values() if a.via_link]
        attr = SCHEMA.attribute(name, data.draw(st.sampled_from(attributes)))
        link = attr.link
        back_name = (
            attr.name
            if attr.symmetric
            else (link.target_attr if attr.side == "source" else link.source_attr)
        )
        assert back_name is not None
        back = SCHEMA.attribute(attr.related, back_name)
        nested: dict[str, Any] = data.draw(values_strategy(attr.related))
        nested[back.name] = [{"id": rid}] if back.to_many else {"id": rid}
        items = [
            nested,
            *[draw_item(data, self.model, attr, 0) for _ in range(data.draw(st.integers(0, 1)))],
        ]
        value: Any = items if attr.to_many else nested
        self.update(name, {"id": rid}, {attr.name: value})

    @precondition(lambda self: self.has_records([TAGS]))
    @rule(data=st.data())
    def update_link_fields(self, data: st.DataObject) -> None:
        match = draw_target(data, self.model, TAGS)
        payload = data.draw(values_strategy(TAGS))
        self.update(TAGS, match, payload)

    @precondition(lambda self: self.has_records([*ENTITIES, *LINKS]))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = self.draw_populated(data, [*ENTITIES, *ENTITIES, *LINKS])
        match = draw_target(data, self.model, name)

        def order(events: Sequence[MutationEvent], records: list[dict[str, Any]]) -> None:
            # Per matched record (in id order) its links and cascades, then the record itself.
            roots = [e.record["id"] for e in events if e.type == "delete" and e.record_name == name]
            assert roots == [r["id"] for r in records], events
            if records:
                last = events[-1]
                assert (last.record_name, last.record["id"]) == (name, records[-1]["id"]), events

        self.write(lambda m: m.delete(name, match), lambda: self.store.delete(name, match), order)

    @rule(data=st.data(), update=st.booleans())
    def invalid_write(self, data: st.DataObject, update: bool) -> None:
        """A payload with one bad value somewhere, possibly deep in a nested create: the write
        fails with the error that names it, and nothing of it is stored."""
        name = data.draw(st.sampled_from(ENTITIES))
        payload = draw_create(data, self.model, name, 1)
        where, record, link = data.draw(st.sampled_from(list(record_dicts(name, payload))))
        fields = SCHEMA.fields(where)
        typed = [f for f in fields if fields[f].type != "json"]
        choices = ["unknown field"] + (["wrong type"] if typed else [])
        if link is not None:
            choices.append("unknown link field")
        kind = data.draw(st.sampled_from(choices))
        if kind == "wrong type":
            field = data.draw(st.sampled_from(typed))
            record[field] = 1.5 if fields[field].type == "string" else "bad"
            error: type[StorageError] = FieldTypeError
        elif kind == "unknown field":
            record["nope"] = 1
            error = UnknownFieldError
        else:
            record["&"] = {"nope": 1}
            error = UnknownFieldError
        if update:
            write = self.store.update(name, {"id": 1}, payload)
        else:
            write = self.store.create(name, payload)
        try:
            self.run(write)
        except StorageError as exc:
            assert isinstance(exc, error), f"{kind}: expected {error.__name__}, got {exc!r}"
        else:
            raise AssertionError(f"{kind} in {payload!r} was accepted")

    @rule(data=st.data(), abort=st.booleans())
    def transaction(self, data: st.DataObject, abort: bool) -> None:
        """A create, a create in a savepoint that is rolled back, an update; or, with ``abort``,
        a transaction whose body raises after its writes: it leaves nothing behind."""
        first_name = data.draw(st.sampled_from(ENTITIES))
        first = draw_create(data, self.model, first_name, 1)
        undone_name = data.draw(st.sampled_from(ENTITIES))
        undone = draw_create(data, self.model, undone_name, 1)
        last_name = data.draw(st.sampled_from(ENTITIES))
        last_match = draw_target(data, self.model, last_name)
        last = data.draw(values_strategy(last_name))

        def body(tx: SQLiteSession) -> list[MutationEvent]:
            tx.create(first_name, first)
            try:
                with tx.savepoint():
                    tx.create(undone_name, undone)
                    raise _Rollback
            except (_Rollback, StorageError):
                pass
            tx.update(last_name, last_match, last)
            if abort:
                raise _Rollback
            return list(tx.events)

        def on_model(m: Model) -> None:
            m.attempt(lambda: m.create(first_name, first))
            saved = m.clone()
            with contextlib.suppress(ModelError):
                m.attempt(lambda: m.create(undone_name, undone))
            m.rows, m.next_id, m.events, m.missing = saved.rows, saved.next_id, saved.events, False
            m.attempt(lambda: m.update(last_name, last_match, last))

        if abort:
            try:
                self.run(self.store.run(body))
            except (_Rollback, StorageError):
                pass
            else:
                raise AssertionError("the body raised: run() must re-raise")
            return  # the invariants check that nothing was written
        outcome = self.apply(on_model, lambda: self.store.run(body))
        if outcome is not None:
            check_events(outcome[1], outcome[2].events)

    @rule(data=st.data(), name=st.sampled_from([*ENTITIES, *LINKS]))
    def generated_match(self, data: st.DataObject, name: str) -> None:
        match = data.draw(match_strategy(name))
        expected = self.model.select(name, match)
        found = self.run(self.store.find(name, match, order_by={"id": "asc"}))
        assert [r["id"] for r in found] == expected, f"{name} {match!r}"
        assert self.run(self.store.count(name, match)) == len(expected), f"count {name} {match!r}"
        fields = SCHEMA.fields(name)
        field = data.draw(st.sampled_from(["id", *(f for f in fields if fields[f].type != "json")]))
        direction = data.draw(st.sampled_from(["asc", "desc"]))
        limit = data.draw(st.none() | st.integers(0, 3))
        offset = data.draw(st.none() | st.integers(0, 2))
        page = self.run(
            self.store.find(name, match, order_by={field: direction}, limit=limit, offset=offset)
        )
        ordered = self.model.ordered(name, expected, {field: direction})
        first = self.run(self.store.find_one(name, match, order_by={field: direction}))
        assert first == ({"id": ordered[0]} if ordered else None), f"find_one {name} {match!r}"
        start = offset or 0
        ordered = ordered[start:] if limit is None else ordered[start : start + limit]
        assert [r["id"] for r in page] == ordered, f"{name} {match!r} by {field} {direction}"

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def reads_equal_model(self) -> None:
        if self.storage is None:
            return
        # One read through the async face, the rest in one read transaction (one hop).
        users = self.run(self.store.find("User", None, QUERIES["User"], order_by={"id": "asc"}))

        def reads(tx: SQLiteSession) -> dict[str, list[Any]]:
            return {
                name: tx.find(name, None, query, order_by={"id": "asc"})
                for name, query in QUERIES.items()
                if name != "User"
            }

        found = {"User": users, **self.run(self.store.run(reads, write=False))}
        for name, query in QUERIES.items():
            expected = [self.model.read(name, rid, query) for rid in sorted(self.model.rows[name])]
            assert found[name] == expected, f"{name}:\n storage {found[name]}\n model   {expected}"

    @invariant()
    def matches_equal_model(self) -> None:
        if self.storage is None:
            return

        def reads(tx: SQLiteSession) -> list[Any]:
            out: list[Any] = []
            for name, match in FIXED_MATCHES:
                out.append([r["id"] for r in tx.find(name, match, order_by={"id": "asc"})])
            for name, order_by, limit, offset in ORDERED_READS:
                found = tx.find(name, None, order_by=order_by, limit=limit, offset=offset)
                out.append([r["id"] for r in found])
            return out

        expected: list[Any] = []
        for name, match in FIXED_MATCHES:
            expected.append(self.model.select(name, match))
        for name, order_by, limit, offset in ORDERED_READS:
            ids = self.model.ordered(name, sorted(self.model.rows[name]), order_by)
            start = offset or 0
            expected.append(ids[start:] if limit is None else ids[start : start + limit])
        actual = self.run(self.store.run(reads, write=False))
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            what = (
                FIXED_MATCHES[i // 2]
                if i < 2 * len(FIXED_MATCHES)
                else ORDERED_READS[i - 2 * len(FIXED_MATCHES)]
            )
            assert got == want, f"{what}: storage {got}, model {want}"


StorageModelMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestStorageModel = StorageModelMachine.TestCase
