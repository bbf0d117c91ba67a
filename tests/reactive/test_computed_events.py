"""One write, one event: a user's update of a field that a ``computed=`` property reads writes
the computed value in the same statement, and its one update event carries both (``record``
and ``keys``), exactly as a computation's write does.

``Account.isActive`` is computed from ``status``. Before, updating ``status`` gave two events:
``{status: "inactive"}`` with the old ``isActive`` (a state that never existed), then
``isActive`` alone; a trigger on ``keys=["status", "isActive"]`` matched neither.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

import reactive as r
from storage import MatchExp, StorageError
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

from .conftest import MakeController

STATES = ("active", "inactive", "banned")


def is_active(account: dict[str, Any]) -> bool:
    return account.get("status") == "active"


def strictly_active(account: dict[str, Any]) -> bool:
    """``is_active`` that refuses a status it does not know."""
    if account.get("status") not in STATES:
        raise ValueError(f"unknown status {account.get('status')!r}")
    return is_active(account)


def account_entity(computed: Any = is_active) -> r.Entity:
    return r.Entity(
        "Account",
        [
            r.Property("name"),
            r.Property("status", default="active"),
            r.Property("isActive", "boolean", computed=computed),
        ],
    )


def watched(c: r.Controller) -> list[r.MutationEvent]:
    """Every committed event of the controller, from now on."""
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)
    return seen


def shape(events: list[r.MutationEvent]) -> list[tuple[str, str, dict[str, Any], set[str]]]:
    return [(e.record_name, e.type, dict(e.record), set(e.keys or ())) for e in events]


async def test_an_update_through_controller_storage_is_one_event(make: MakeController) -> None:
    c = await make([account_entity()])
    ada = await c.storage.create("Account", {"name": "ada"})
    seen = watched(c)

    returned = await c.storage.update("Account", {"id": ada["id"]}, {"status": "inactive"})

    assert returned == [{"id": ada["id"], "name": "ada", "status": "inactive", "isActive": False}]
    assert shape(seen) == [
        (
            "Account",
            "update",
            {"id": ada["id"], "status": "inactive", "isActive": False},
            {"status", "isActive"},
        )
    ]
    assert seen[0].old_record is not None
    assert (seen[0].old_record["status"], seen[0].old_record["isActive"]) == ("active", True)
    assert await c.storage.find("Account", None, ["status", "isActive"]) == [
        {"id": ada["id"], "status": "inactive", "isActive": False}
    ]


async def test_an_update_that_leaves_the_computed_value_alone_does_not_write_it(
    make: MakeController,
) -> None:
    c = await make([account_entity()])
    ada = await c.storage.create("Account", {"name": "ada"})
    seen = watched(c)

    await c.storage.update("Account", {"id": ada["id"]}, {"name": "lovelace"})
    await c.storage.update("Account", {"id": ada["id"]}, {"status": "active"})  # same value

    assert shape(seen) == [
        ("Account", "update", {"id": ada["id"], "name": "lovelace"}, {"name"}),
        ("Account", "update", {"id": ada["id"], "status": "active"}, {"status"}),
    ]


@pytest.mark.parametrize(
    "match",
    [None, {"name": "x"}, MatchExp.atom("id", "in", [1, 2, 3])],
    ids=["all", "dict", "match_exp"],
)
async def test_a_multi_record_update_is_one_event_per_record(
    make: MakeController, match: Any
) -> None:
    c = await make([account_entity()])
    for status in ("active", "banned", "active"):
        await c.storage.create("Account", {"name": "x", "status": status})
    seen = watched(c)

    returned = await c.storage.update("Account", match, {"status": "inactive"})

    assert [(a["id"], a["status"], a["isActive"]) for a in returned] == [
        (1, "inactive", False),
        (2, "inactive", False),
        (3, "inactive", False),
    ]
    assert shape(seen) == [
        (
            "Account",
            "update",
            {"id": 1, "status": "inactive", "isActive": False},
            {"status", "isActive"},
        ),
        ("Account", "update", {"id": 2, "status": "inactive"}, {"status"}),  # was already False
        (
            "Account",
            "update",
            {"id": 3, "status": "inactive", "isActive": False},
            {"status", "isActive"},
        ),
    ]
    stored = await c.storage.find("Account", None, ["isActive"])
    assert [a["isActive"] for a in stored] == [False, False, False]


async def test_writes_inside_a_transaction_each_give_one_event(make: MakeController) -> None:
    c = await make([account_entity()])
    seen = watched(c)

    def body(ctx: r.TransactionContext) -> None:
        ada = ctx.storage.create("Account", {"name": "ada"})
        ctx.storage.update("Account", {"id": ada["id"]}, {"status": "inactive"})
        ctx.storage.update("Account", {"id": ada["id"]}, {"status": "active"})

    _, events = await c.transact(body)

    expected = [
        (
            "Account",
            "create",
            {"id": 1, "name": "ada", "status": "active", "isActive": True},
            set(),
        ),
        (
            "Account",
            "update",
            {"id": 1, "status": "inactive", "isActive": False},
            {"status", "isActive"},
        ),
        (
            "Account",
            "update",
            {"id": 1, "status": "active", "isActive": True},
            {"status", "isActive"},
        ),
    ]
    assert shape(events) == expected
    assert shape(seen) == expected
    # Each event's old record is the state the one before it left.
    assert events[2].old_record is not None and events[2].old_record["isActive"] is False


async def test_an_update_made_by_a_dispatch_is_one_event(make: MakeController) -> None:
    deactivate = r.Interaction(
        "Deactivate",
        r.Payload([r.PayloadItem("account", "number", required=True)]),
        resolve=lambda ev, ctx: ctx.storage.update(
            "Account", {"id": ev["payload"]["account"]}, {"status": "inactive"}
        ),
    )
    c = await make([account_entity()], interactions=[deactivate])
    ada = await c.storage.create("Account", {"name": "ada"})

    result = await c.dispatch("Deactivate", {"id": "u"}, {"account": ada["id"]})

    assert result.error is None
    accounts = [e for e in result.effects if e.record_name == "Account"]
    assert shape(accounts) == [
        (
            "Account",
            "update",
            {"id": ada["id"], "status": "inactive", "isActive": False},
            {"status", "isActive"},
        )
    ]


async def test_a_create_is_one_event_with_the_computed_value(make: MakeController) -> None:
    account = account_entity()
    team = r.Entity("Team", [r.Property("title")])
    members = r.Relation(team, "members", account, "team", "1:n")
    c = await make([account, team], [members])
    seen = watched(c)

    await c.storage.create("Account", {"name": "ada", "status": "banned"})
    await c.storage.create("Team", {"title": "t", "members": [{"name": "bob"}]})

    accounts = [e for e in seen if e.record_name == "Account"]
    assert shape(accounts) == [
        (
            "Account",
            "create",
            {"id": 1, "name": "ada", "status": "banned", "isActive": False},
            set(),
        ),
        (
            "Account",
            "create",
            {"id": 2, "name": "bob", "status": "active", "isActive": True},
            set(),
        ),
    ]


def _watchers(states_seen: list[tuple[Any, Any]]) -> list[r.Dictionary]:
    watching = r.StateNode("watching")
    deactivated = r.StateNode("deactivated")
    both_keys = r.Trigger(
        "Account", "update", fields={"isActive": False}, keys=["status", "isActive"]
    )
    machine = r.StateMachine(
        states=[watching, deactivated],
        transfers=[r.StateTransfer(watching, deactivated, both_keys)],
        initial_state=watching,
    )

    def note(last: Any, event: r.MutationEvent) -> Any:
        merged = event.merged
        states_seen.append((merged["status"], merged["isActive"]))
        return (last or 0) + 1

    seen_states = r.Custom(note, triggers=[r.Trigger("Account", "update")], initial=0)
    return [
        r.Dictionary("watch", "string", computation=machine),
        r.Dictionary("updates", "number", computation=seen_states),
    ]


async def test_a_trigger_on_the_field_and_its_computed_field_matches(
    make: MakeController,
) -> None:
    states_seen: list[tuple[Any, Any]] = []
    c = await make([account_entity()], dictionaries=_watchers(states_seen))
    ada = await c.storage.create("Account", {"name": "ada"})
    assert await c.storage.get_dict("watch") == "watching"

    await c.storage.update("Account", {"id": ada["id"]}, {"status": "inactive"})

    assert await c.storage.get_dict("watch") == "deactivated"
    # Computations saw one update, in a state that existed; never (inactive, True).
    assert states_seen == [("inactive", False)]
    assert await c.storage.get_dict("updates") == 1


async def test_a_failing_computed_property_on_a_user_update_changes_nothing(
    make: MakeController,
) -> None:
    c = await make([account_entity(strictly_active)])
    await c.storage.create("Account", {})
    await c.storage.create("Account", {})
    seen = watched(c)

    with pytest.raises(r.ComputationError, match="unknown status 'gone'"):
        await c.storage.update("Account", None, {"status": "gone"})

    assert seen == []
    assert await c.storage.find("Account", None, ["status", "isActive"]) == [
        {"id": 1, "status": "active", "isActive": True},
        {"id": 2, "status": "active", "isActive": True},
    ]


# -- random writes: every event describes a state that existed -------------------------------

WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(STATES), st.none()),
        st.tuples(st.just("one"), st.integers(0, 5), st.sampled_from(STATES)),
        st.tuples(st.just("many"), st.sampled_from(STATES), st.sampled_from(STATES)),
        st.tuples(st.just("rename"), st.integers(0, 5), st.none()),
        st.tuples(st.just("both"), st.integers(0, 5), st.sampled_from(STATES)),
    ),
    max_size=20,
)


async def events_describe_states(backend: str, writes: list[tuple[str, Any, Any]]) -> None:
    """Run ``writes``; one event per record touched, each a state that existed."""
    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, [account_entity()])
        await c.setup()
        seen = watched(c)
        try:
            for op, x, y in writes:
                ids = [a["id"] for a in await c.storage.find("Account")]
                before = len(seen)
                if op == "create":
                    await c.storage.create("Account", {"name": "n", "status": x})
                    wanted = 1
                elif op == "many":
                    wanted = await c.storage.count("Account", {"status": x})
                    await c.storage.update("Account", {"status": x}, {"status": y})
                elif ids:
                    data = {"rename": {"name": "r"}, "one": {"status": y}}.get(
                        op, {"name": "b", "status": y}
                    )
                    await c.storage.update("Account", {"id": ids[x % len(ids)]}, data)
                    wanted = 1
                else:
                    wanted = 0
                # One event per record a write touched ...
                assert len(seen) - before == wanted
            stored = {a["id"]: a for a in await c.storage.find("Account", None, ["*"])}
            for event in seen:
                # ... and each one a consistent state, whose keys name what it wrote.
                merged = event.merged
                assert merged["isActive"] == (merged["status"] == "active"), event
                assert set(event.keys or event.record) - {"id"} == set(event.record) - {"id"}
            for account in stored.values():
                assert account["isActive"] == (account["status"] == "active")
        finally:
            await c.close()


(
    test_every_event_describes_a_state_that_existed,
    test_every_event_describes_a_state_that_existed_on_postgresql,
) = on_both_backends(
    "test_every_event_describes_a_state_that_existed",
    events_describe_states,
    examples=60,
    pg_examples=30,
    writes=WRITES,
)


async def test_an_update_with_a_relation_writes_the_record_then_links(
    make: MakeController,
) -> None:
    account = account_entity()
    team = r.Entity("Team", [r.Property("title")])
    members = r.Relation(team, "members", account, "team", "1:n")
    c = await make([account, team], [members])
    t = await c.storage.create("Team", {"title": "t"})
    ada = await c.storage.create("Account", {"name": "ada"})
    seen = watched(c)

    await c.storage.update("Account", {"id": ada["id"]}, {"team": {"id": t["id"]}})  # links only
    await c.storage.update("Account", {"id": ada["id"]}, {"status": "banned", "team": None})

    assert [(e.record_name, e.type) for e in seen] == [
        (members.relation_name, "create"),
        ("Account", "update"),
        (members.relation_name, "delete"),
    ]
    assert dict(seen[1].record) == {"id": ada["id"], "status": "banned", "isActive": False}


async def test_a_caught_computed_failure_leaves_the_record_as_it_was(
    make: MakeController,
) -> None:
    c = await make([account_entity(strictly_active)])
    await c.storage.create("Account", {})

    def body(ctx: r.TransactionContext) -> str:
        try:
            ctx.storage.update("Account", {"id": 1}, {"status": "gone"})
        except r.ComputationError as exc:
            return str(exc)
        return "written"

    message, events = await c.transact(body)

    assert "unknown status 'gone'" in message
    assert events == []
    assert await c.storage.find("Account", None, ["status", "isActive"]) == [
        {"id": 1, "status": "active", "isActive": True}
    ]


async def test_bad_update_data_is_refused_naming_the_field(make: MakeController) -> None:
    c = await make([account_entity()])
    await c.storage.create("Account", {"name": "ada"})

    for match in ({"id": 1}, {"id": 99}, None):
        with pytest.raises(StorageError, match="nope"):
            await c.storage.update("Account", match, {"status": "inactive", "nope": 1})

    assert await c.storage.find("Account", None, ["status", "isActive"]) == [
        {"id": 1, "status": "active", "isActive": True}
    ]
