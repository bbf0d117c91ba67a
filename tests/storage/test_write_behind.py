"""Write-behind of updates by id (storage.sql.statements): an UPDATE of one row by id whose
columns no constraint can refuse is kept pending, merged per row, and sent before anything that
could see it. On both backends: which statements are sent (and in what order), that every read
sees the pending values, that constrained columns are written at once (their errors where they
were), that a savepoint's rollback undoes only its own pending updates, and a property test of
random updates, reads, inserts and savepoints against a dict. SQLite does not defer by default
(``Dialect.defers_updates``: a statement there costs less than keeping it pending); these tests
switch it on there too, so the mechanism is held to both databases' semantics, and one test
checks the default."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import (
    Field,
    Index,
    LinkType,
    MatchExp,
    NonNullViolationError,
    RecordType,
    Schema,
    Storage,
    UniqueViolationError,
)
from storage.sqlite.dialect import SQLiteDialect
from tests.conftest import scratch_storage
from tests.storage.helpers import statement_log

LINK = "Row_others_row_Other"


def row_schema() -> Schema:
    """Rows with free columns (``a``, ``b``, ``c``), a unique ``code``, a ``non_null`` ``must``,
    and a ``tag`` unique among rows whose ``live`` is true; others linked to a row."""
    return Schema(
        records=[
            RecordType(
                "Row",
                [
                    Field("a"),
                    Field("b", "number"),
                    Field("c", "json"),
                    Field("code"),
                    Field("must", non_null=True),
                    Field("tag"),
                    Field("live", "boolean"),
                ],
                [Index(["code"], unique=True), Index(["tag"], unique=True, where={"live": True})],
            ),
            RecordType("Other", [Field("x")]),
        ],
        links=[LinkType(LINK, "Row", "others", "Other", "row", "1:n")],
    )


@pytest.fixture(autouse=True)
def _sqlite_defers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-behind on SQLite too (off there by default), for every test of the module;
    ``test_sqlite_sends_each_update_by_default`` undoes it."""
    monkeypatch.setattr(SQLiteDialect, "defers_updates", True)


@pytest.fixture
async def store(backend: str) -> Any:
    """The row schema on ``backend``, with one row (id 1, linked to other 1)."""
    async with scratch_storage(backend) as store:
        await store.setup(row_schema())
        await store.create("Row", {"a": "a0", "b": 0, "must": "m", "others": [{"x": "x0"}]})
        yield store


def updates(log: list[str], table: str = "Row") -> list[str]:
    return [s for s in log if s.startswith(f'UPDATE "{table}"')]


async def row(store: Storage, row_id: int = 1) -> dict[str, Any]:
    found = await store.find("Row", {"id": row_id}, ["a", "b", "c", "code", "must"])
    return found[0]


async def test_updates_of_one_row_are_sent_as_one(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three updates of one row around an insert of another table: one UPDATE, at commit,
    with the columns in the order first written and the last values; the events as before."""

    def body(tx: Any) -> list[Any]:
        old = tx.snapshot("Row", 1)
        first = tx.update_record("Row", old, {"a": "a1"})
        tx.create("Other", {"x": "x1"})
        second = tx.update_record("Row", first.records[0], {"b": 2, "c": {"k": [1]}})
        third = tx.update_record("Row", second.records[0], {"a": "a2"})
        return [first.events[0].record, second.events[0].record, third.events[0].record]

    with statement_log(store, monkeypatch) as log:
        written = await store.run(body)
    assert written == [
        {"id": 1, "a": "a1"},
        {"id": 1, "b": 2, "c": {"k": [1]}},
        {"id": 1, "a": "a2"},
    ]
    assert log[1].startswith('INSERT INTO "Other"'), log
    assert updates(log) == [log[-1]] and '"a" = ' in log[-1], log
    assert log[-1].index('"a"') < log[-1].index('"b"') < log[-1].index('"c"'), log
    assert await row(store) == {
        "id": 1,
        "a": "a2",
        "b": 2,
        "c": {"k": [1]},
        "code": None,
        "must": "m",
    }


async def test_every_read_sees_a_pending_update(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of the row's table, and of another table through a relation to it, find the
    pending value: the UPDATE goes out right before the first of them, once."""

    def body(tx: Any) -> dict[str, Any]:
        old = tx.snapshot("Row", 1)
        tx.update_record("Row", old, {"a": "seen"})
        by_join = tx.find("Other", {"row.a": "seen"}, ["x"])
        tx.update_record("Row", old, {"a": "again"})
        return {
            "join": by_join,
            "find": tx.find("Row", {"a": "again"}),
            "count": tx.count("Row", {"a": "again"}),
            "get": tx.get("Row", 1, ["a"]),
            "snapshot": tx.snapshot("Row", 1)["a"],
        }

    with statement_log(store, monkeypatch) as log:
        seen = await store.run(body)
    assert seen == {
        "join": [{"id": 1, "x": "x0"}],
        "find": [{"id": 1}],
        "count": 1,
        "get": {"id": 1, "a": "again"},
        "snapshot": "again",
    }
    sent = updates(log)
    assert len(sent) == 2, log
    assert log.index(sent[0]) + 1 == next(i for i, s in enumerate(log) if '"Other"' in s), log


async def test_an_insert_into_the_same_table_sends_the_update_first(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unique column of a new row must meet the pending values: the UPDATE goes first."""

    def body(tx: Any) -> None:
        tx.update_record("Row", tx.snapshot("Row", 1), {"a": "a1"})
        tx.create("Row", {"must": "m2"})

    with statement_log(store, monkeypatch) as log:
        await store.run(body)
    kinds = [s.split(" ")[0] for s in log if '"Row"' in s]
    assert kinds == ["SELECT", "UPDATE", "INSERT"], log


@pytest.mark.parametrize(
    ("data", "error"),
    [({"code": "taken"}, UniqueViolationError), ({"must": None}, NonNullViolationError)],
)
async def test_a_constrained_column_is_written_at_once_and_fails_there(
    store: Storage,
    monkeypatch: pytest.MonkeyPatch,
    data: dict[str, Any],
    error: type[BaseException],
) -> None:
    """An update of a unique or non-null column is sent at once (after the row's pending
    update): its error comes from the call that made it, the same class as ever, and the
    transaction commits nothing."""
    await store.create("Row", {"code": "taken", "must": "m"})
    raised: list[BaseException] = []

    def body(tx: Any) -> None:
        old = tx.snapshot("Row", 1)
        tx.update_record("Row", old, {"a": "lost"})
        try:
            tx.update_record("Row", old, data)
        except error as exc:
            raised.append(exc)
            raise

    with statement_log(store, monkeypatch) as log, pytest.raises(error):
        await store.run(body)
    assert len(raised) == 1
    assert [s.split(" SET ")[1].split(" = ")[0] for s in updates(log)] == [
        '"a"',
        f'"{next(iter(data))}"',
    ]
    assert (await row(store))["a"] == "a0"


async def test_a_column_a_partial_unique_index_depends_on_is_written_at_once(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``live`` decides which rows the unique index on ``tag`` holds: not kept pending."""

    def body(tx: Any) -> None:
        tx.update_record("Row", tx.snapshot("Row", 1), {"live": True})
        tx.create("Other", {"x": "x1"})

    with statement_log(store, monkeypatch) as log:
        await store.run(body)
    assert [s.split(" ")[0] + s.split(" ")[1] for s in log[1:]] == ['UPDATE"Row"', "INSERTINTO"], (
        log
    )


async def test_a_savepoint_rolled_back_undoes_only_its_own_pending_updates(
    store: Storage,
) -> None:
    def body(tx: Any) -> list[Any]:
        old = tx.snapshot("Row", 1)
        tx.update_record("Row", old, {"a": "before"})
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.update_record("Row", old, {"a": "inside", "b": 5})
            raise RuntimeError("undo")
        inside = tx.get("Row", 1, ["a", "b"])
        with tx.savepoint():
            tx.update_record("Row", old, {"c": [1]})
        return [inside, len(tx.events)]

    inside, events = await store.run(body)
    assert inside == {"id": 1, "a": "before", "b": 0}
    assert events == 2  # the rolled-back update's event went with it
    assert await row(store) == {"id": 1, "a": "before", "b": 0, "c": [1], "code": None, "must": "m"}


async def test_a_body_that_raises_commits_no_pending_update(store: Storage) -> None:
    def body(tx: Any) -> None:
        tx.update_record("Row", tx.snapshot("Row", 1), {"a": "never"})
        raise RuntimeError("give up")

    with pytest.raises(RuntimeError):
        await store.run(body)
    assert (await row(store))["a"] == "a0"


# -- random sequences against a dict ------------------------------------------------------------

_FIELDS = st.sampled_from(["a", "b"])
_SET = st.tuples(st.just("set"), st.integers(1, 3), _FIELDS, st.integers(0, 4))
_SIMPLE = st.one_of(
    _SET,
    _SET,
    st.tuples(st.just("read"), st.integers(1, 3), st.sampled_from(["get", "find", "join"])),
    st.tuples(st.just("insert_other")),
    st.tuples(st.just("insert_row")),
)
_STEP = st.one_of(
    _SIMPLE, st.tuples(st.just("savepoint"), st.lists(_SIMPLE, max_size=5), st.booleans())
)
_STEPS = st.lists(_STEP, max_size=14)


def _value(field: str, n: int) -> Any:
    return f"v{n}" if field == "a" else n


async def _sequence(backend: str, steps: list[Any]) -> None:
    async with scratch_storage(backend) as store:
        await store.setup(row_schema())
        rows: dict[int, dict[str, Any]] = {}
        for i in range(1, 4):
            await store.create("Row", {"a": "v0", "b": 0, "must": "m", "others": [{"x": str(i)}]})
            rows[i] = {"a": "v0", "b": 0}

        def run(tx: Any, step: Any, model: dict[int, dict[str, Any]]) -> None:
            kind = step[0]
            if kind == "set":
                _, row_id, field, n = step
                old = {"id": row_id, "must": "m", **model[row_id]}
                tx.update_record("Row", old, {field: _value(field, n)})
                model[row_id][field] = _value(field, n)
            elif kind == "read":
                _, row_id, how = step
                want = model[row_id]
                if how == "get":
                    assert tx.get("Row", row_id, ["a", "b"]) == {"id": row_id, **want}
                elif how == "find":
                    found = tx.find("Row", {"a": want["a"], "b": want["b"]})
                    assert {"id": row_id} in found
                else:
                    found = tx.find("Other", {"row.a": want["a"]}, [("row", ["b"])])
                    assert any(o["row"] == {"id": row_id, "b": want["b"]} for o in found), found
            elif kind == "insert_other":
                tx.create("Other", {"x": "new"})
            elif kind == "insert_row":
                tx.create("Row", {"must": "m"})
            else:
                _, inner, fails = step
                copy = {k: dict(v) for k, v in model.items()}
                try:
                    with tx.savepoint():
                        for part in inner:
                            run(tx, part, copy)
                        if fails:
                            raise _Undo
                except _Undo:
                    return
                model.clear()
                model.update(copy)

        def body(tx: Any) -> None:
            for step in steps:
                run(tx, step, rows)

        await store.run(body)
        stored = await store.find(
            "Row", MatchExp.atom("id", "in", [1, 2, 3]), ["a", "b"], {"id": "asc"}
        )
        assert stored == [{"id": i, **rows[i]} for i in (1, 2, 3)]


class _Undo(Exception):
    """Rolls a savepoint of the property test back."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_random_updates_reads_and_savepoints_agree_with_a_dict(steps: list[Any]) -> None:
    asyncio.run(_sequence("sqlite", steps))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=_STEPS)
def test_random_updates_reads_and_savepoints_agree_with_a_dict_on_postgresql(
    postgres_url: str, steps: list[Any]
) -> None:
    """The same on PostgreSQL (each example sets up its tables on the server: fewer)."""
    asyncio.run(_sequence("postgres", steps))


async def test_sqlite_sends_each_update_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SQLiteDialect, "defers_updates", False)
    async with scratch_storage("sqlite") as store:
        await store.setup(row_schema())
        await store.create("Row", {"a": "a0", "b": 0, "must": "m"})

        def body(tx: Any) -> None:
            current = tx.snapshot("Row", 1)
            for value in ("a1", "a2", "a3"):
                current = tx.update_record("Row", current, {"a": value}).records[0]

        with statement_log(store, monkeypatch) as log:
            await store.run(body)
        assert len(updates(log)) == 3, log
        assert (await row(store))["a"] == "a3"
