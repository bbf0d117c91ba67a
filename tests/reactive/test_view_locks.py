"""A Transform over a view locks the stored row behind its source before it reads it.

A filtered view's record is its base's row, a merged view's the input's: the refresh (on an
update, and in ``recompute()``) locks that row (``SELECT ... FOR UPDATE`` on PostgreSQL),
then reads the source through the view. Two controllers on one PostgreSQL schema: one
recomputes the Transform and is held inside its callback (the source read, the derived
records not yet written) while the other moves the same record out of the view, or changes
it. The second write waits for the first transaction, so the derived records end as the
source is and ``verify()`` agrees; reading the view unlocked, the recomputation wrote back
records derived from what it had read (a badge for a user no longer active, a stale label).

Writers at once on both controllers flipping the same users need one more lock: an update
reads the row it writes ``FOR UPDATE``, so its event's old values (from which the view's
membership is judged) are the row as it changed it; read unlocked, a flip committed in between
was missed (a badge missing, or a stale label, about one run in two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import reactive as r
from reactive.views import stored_record
from storage import MatchExp, SQLiteStorage
from storage.postgres.bridge import await_

from ..conftest import PostgresFactory

_WAIT = 20.0


class _Gate:
    """Holds the callback for one source name, once, until released."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.inside = asyncio.Event()
        self.release = asyncio.Event()


GATE = _Gate()


def _label(source: dict[str, Any]) -> dict[str, Any]:
    if GATE.name is not None and source["name"] == GATE.name:
        GATE.name = None  # once
        GATE.inside.set()
        await_(asyncio.wait_for(GATE.release.wait(), _WAIT))
    return {"label": f"{source['name']}:{source['level']}"}


def _filtered() -> list[r.Entity]:
    user = r.Entity(
        "User", [r.Property("name"), r.Property("status"), r.Property("level", "number")]
    )
    active = r.Entity("ActiveUser", base=user, match={"status": "active"})
    badge = r.Entity("Badge", [r.Property("label")], computation=r.Transform(active, _label))
    return [user, active, badge]


def _merged() -> list[r.Entity]:
    person = r.Entity("Person", [r.Property("name"), r.Property("level", "number")])
    company = r.Entity("Company", [r.Property("name"), r.Property("level", "number")])
    customer = r.Entity("Customer", inputs=[person, company])
    badge = r.Entity("Badge", [r.Property("label")], computation=r.Transform(customer, _label))
    return [person, company, customer, badge]


CASES: dict[
    str, tuple[Callable[[], list[r.Entity]], str, list[dict[str, Any]], dict[str, Any], list[str]]
] = {
    # (model, the record written, its creates, the concurrent write, the labels at the end)
    "filtered": (
        _filtered,
        "User",
        [{"name": "ada", "status": "active", "level": 1}, {"name": "bob", "status": "active"}],
        {"status": "gone"},
        ["bob:None"],
    ),
    "merged": (
        _merged,
        "Person",
        [{"name": "ada", "level": 1}, {"name": "bob", "level": 5}],
        {"level": 2},
        ["ada:2", "bob:5"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_write_during_a_recompute_over_a_view_waits_and_ends_consistent(
    postgres_storage_factory: PostgresFactory, case: str
) -> None:
    model, record, creates, change, labels = CASES[case]
    first_store = await postgres_storage_factory()
    recomputing = r.Controller(first_store, model())
    await recomputing.setup()
    writer = r.Controller(await postgres_storage_factory(schema=first_store.schema_name), model())
    await writer.setup(install=False)
    made = [await writer.storage.create(record, data) for data in creates]
    global GATE
    GATE = _Gate()
    GATE.name = "ada"
    recompute = asyncio.ensure_future(recomputing.recompute("Badge"))
    await asyncio.wait_for(GATE.inside.wait(), _WAIT)
    # The recomputation has read ada through the view and holds ada's row: the write waits.
    write = asyncio.ensure_future(writer.storage.update(record, {"id": made[0]["id"]}, change))
    done, _ = await asyncio.wait([write], timeout=0.5)
    blocked = not done
    GATE.release.set()
    await asyncio.gather(recompute, write)
    assert blocked, "the write went through while the recomputation held the source's row"
    badges = await writer.storage.find("Badge", None, ["label"], order_by={"label": "asc"})
    assert [b["label"] for b in badges] == labels
    report = await writer.verify()
    assert report.ok, report.differences
    await recomputing.close()
    await writer.close()


def test_the_stored_record_behind_a_view_record() -> None:
    person = r.Entity("Person", [r.Property("name"), r.Property("level", "number")])
    company = r.Entity("Company", [r.Property("name"), r.Property("level", "number")])
    customer = r.Entity("Customer", inputs=[person, company])
    big = r.Entity("BigCustomer", base=customer, match=MatchExp.atom("level", ">", 3))
    user = r.Entity("User", [r.Property("name"), r.Property("status")])
    active = r.Entity("ActiveUser", base=user, match={"status": "active"})
    c = r.Controller(SQLiteStorage(":memory:"), [person, company, customer, big, user, active])
    views = c.engine.views
    assert stored_record("ActiveUser", 7, views) == ("User", 7)
    assert stored_record("User", 7, views) == ("User", 7)
    assert stored_record("Customer", "Company:3", views) == ("Company", 3)
    assert stored_record("BigCustomer", "Person:4", views) == ("Person", 4)
    assert stored_record("Customer", "Nobody:4", views) is None
    assert stored_record("Customer", 4, views) is None


async def test_two_controllers_flipping_membership_at_once_end_consistent(
    postgres_storage_factory: PostgresFactory,
) -> None:
    """Two controllers on one schema (each writing at once on its own pool) flip users into
    and out of ``ActiveUser`` and change their level, while a third recomputes the badges: the
    badges end as the users are, and ``verify()`` agrees."""
    first = await postgres_storage_factory(concurrent_writes=True, pool_size=4)
    controllers = [r.Controller(first, _filtered())]
    await controllers[0].setup()
    for options in ({"concurrent_writes": True, "pool_size": 4}, {}):
        store = await postgres_storage_factory(schema=first.schema_name, **options)
        controllers.append(r.Controller(store, _filtered()))
        await controllers[-1].setup(install=False)
    users = [
        await controllers[0].storage.create(
            "User", {"name": f"u{i}", "status": "active", "level": 0}
        )
        for i in range(4)
    ]

    async def writes(c: r.Controller, seed: int) -> None:
        for step in range(24):
            target = users[(seed * 3 + step) % len(users)]
            change: dict[str, Any] = (
                {"status": "active" if (step + seed) % 3 else "gone"}
                if step % 2
                else {"level": seed * 100 + step}
            )
            await c.storage.update("User", {"id": target["id"]}, change)

    async def recomputing() -> None:
        for _ in range(3):
            await controllers[2].recompute("Badge")

    tasks = [writes(controllers[k % 2], k) for k in range(6)]
    await asyncio.gather(*tasks, recomputing())
    rows = await controllers[0].storage.find("User", None, ["name", "status", "level"])
    expected = sorted(f"{u['name']}:{u['level']}" for u in rows if u["status"] == "active")
    badges = await controllers[0].storage.find("Badge", None, ["label"])
    assert sorted(b["label"] for b in badges) == expected
    report = await controllers[1].verify()
    assert report.ok, report.differences
    for c in controllers:
        await c.close()
