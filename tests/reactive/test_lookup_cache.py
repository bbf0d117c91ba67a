"""ctx.storage.find_one remembers its answers for the rest of a transaction; any event that could
change an answer drops it. Random sequences of writes and look-ups in one transaction must give
exactly what the database says at each step."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import pytest
from hypothesis import strategies as st

import reactive as r
from storage import MatchError, SQLiteSession
from tests._backends import on_both_backends
from tests.conftest import StorageFactory, scratch_storage, sqlite_only


def _model() -> list[r.Entity]:
    return [
        r.Entity(
            "Call",
            [
                r.Property("external_id", index=True),
                r.Property("status"),
                r.Property("n", "number", index=True),
            ],
        )
    ]


KEYS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), KEYS, st.sampled_from(["new", "done"])),
        st.tuples(st.just("set_external"), st.integers(0, 5), KEYS),
        st.tuples(st.just("set_status"), st.integers(0, 5), st.sampled_from(["new", "done"])),
        st.tuples(st.just("set_n"), st.integers(0, 5), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 5), st.none()),
        st.tuples(st.just("undone_create"), KEYS, st.none()),
        st.tuples(st.just("find"), KEYS, st.none()),
        st.tuples(st.just("find_both"), KEYS, st.sampled_from(["new", "done"])),
        st.tuples(st.just("find_id"), st.integers(0, 5), st.none()),
    ),
    max_size=30,
)


async def remembered_answers(backend: str, ops: list[tuple[str, Any, Any]]) -> None:
    """Run ``ops`` in one transaction; every remembered look-up equals the database's answer."""
    async with scratch_storage(backend) as storage:
        controller = r.Controller(storage, _model())
        await controller.setup()

        def body(ctx: r.TransactionContext) -> None:
            ids: list[int] = []

            def pick(i: int) -> int | None:
                return ids[i % len(ids)] if ids else None

            for op, x, y in ops:
                if op == "create":
                    ids.append(ctx.storage.create("Call", {"external_id": x, "status": y})["id"])
                elif op in ("set_external", "set_status", "set_n", "delete"):
                    target = pick(x)
                    if target is None:
                        continue
                    if op == "delete":
                        ctx.storage.delete("Call", {"id": target})
                    else:
                        field = {"set_external": "external_id", "set_status": "status"}.get(op, "n")
                        ctx.storage.update("Call", {"id": target}, {field: y})
                elif op == "undone_create":
                    with contextlib.suppress(RuntimeError), ctx.storage.savepoint():
                        ctx.storage.create("Call", {"external_id": x, "status": "new"})
                        ctx.storage.find_one("Call", {"external_id": x})  # remembered...
                        raise RuntimeError("undo")  # ...and must be forgotten here
                else:
                    if op == "find":
                        match: dict[str, Any] = {"external_id": x}
                    elif op == "find_both":
                        match = {"external_id": x, "status": y}
                    else:
                        target = pick(x)
                        match = {"id": target if target is not None else 999}
                    # The database's own answer, asked without the engine's memory.
                    expected = ctx.session.find_one("Call", match)
                    assert ctx.storage.find_one("Call", match) == expected, (op, match)

        try:
            await controller.transact(body)
        finally:
            await controller.close()


(
    test_remembered_answers_always_equal_the_database,
    test_remembered_answers_always_equal_the_database_on_postgresql,
) = on_both_backends(
    "test_remembered_answers_always_equal_the_database",
    remembered_answers,
    examples=150,
    pg_examples=25,
    ops=OPS,
)


@sqlite_only("counts statements through sqlite3's trace callback")
async def test_a_transaction_asks_the_database_once_for_the_same_lookup(
    make_storage: StorageFactory,
) -> None:
    controller = r.Controller(make_storage("memory.db"), _model())
    await controller.setup()
    statements: list[str] = []

    def body(ctx: r.TransactionContext) -> list[Any]:
        call = ctx.storage.create("Call", {"external_id": "task-1", "status": "new"})
        session = cast(SQLiteSession, ctx.session)  # sqlite_only
        session.connection.set_trace_callback(statements.append)
        try:
            answers = [ctx.storage.find_one("Call", {"external_id": "task-1"})]
            ctx.storage.update("Call", {"id": call["id"]}, {"status": "done"})  # not matched on
            answers.append(ctx.storage.find_one("Call", {"external_id": "task-1"}))
            ctx.storage.update("Call", {"id": call["id"]}, {"external_id": "task-2"})
            answers.append(ctx.storage.find_one("Call", {"external_id": "task-1"}))
            return answers
        finally:
            session.connection.set_trace_callback(None)

    try:
        answers, _ = await controller.transact(body)
        assert answers == [{"id": 1}, {"id": 1}, None]
        # The look-ups (each reads the row whole: the context keeps it as the snapshot).
        lookups = [s for s in statements if 'FROM "Call" t WHERE t."external_id"' in s]
        assert len(lookups) == 2  # the second answer came from memory; the third was asked
    finally:
        await controller.close()


async def test_values_that_compare_equal_in_python_are_still_different_lookups(
    make_storage: StorageFactory,
) -> None:
    controller = r.Controller(make_storage("memory.db"), _model())
    await controller.setup()

    def body(ctx: r.TransactionContext) -> None:
        ctx.storage.create("Call", {"external_id": "x", "n": 1})
        assert ctx.storage.find_one("Call", {"n": 1}) == {"id": 1}
        assert ctx.storage.find_one("Call", {"n": 1.0}) == {"id": 1}
        with pytest.raises(MatchError, match="expects a number"):
            ctx.storage.find_one("Call", {"n": True})  # a bool is not a number here

    try:
        await controller.transact(body)
    finally:
        await controller.close()
