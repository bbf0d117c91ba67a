"""Payload bounds at dispatch (no HTTP): a value is accepted exactly when it has the item's type
and lies within its bounds; a refused dispatch stores nothing and names the item."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactive as r
from storage import SQLiteStorage

LOW, HIGH = -50, 10**12
MAX_NOTE = 5


def _controller() -> r.Controller:
    give = r.Interaction(
        "Give",
        r.Payload(
            [
                r.PayloadItem("cents", "integer", required=True, minimum=LOW, maximum=HIGH),
                r.PayloadItem("note", min_length=1, max_length=MAX_NOTE),
            ]
        ),
    )
    return r.Controller(SQLiteStorage(":memory:"), interactions=[give])


VALUES = st.one_of(
    st.integers(),
    st.integers(LOW - 3, LOW + 3),
    st.integers(HIGH - 3, HIGH + 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
)
NOTES = st.one_of(st.none(), st.text(max_size=MAX_NOTE + 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends=st.lists(st.tuples(VALUES, NOTES), min_size=1, max_size=10))
def test_a_payload_is_accepted_exactly_within_its_type_and_bounds(
    sends: list[tuple[Any, str | None]],
) -> None:
    async def scenario() -> None:
        controller = _controller()
        await controller.setup()
        try:
            accepted = []
            for cents, note in sends:
                payload: dict[str, Any] = {"cents": cents}
                if note is not None:
                    payload["note"] = note
                result = await controller.dispatch("Give", payload=payload)
                cents_ok = type(cents) is int and LOW <= cents <= HIGH
                note_ok = note is None or 1 <= len(note) <= MAX_NOTE
                if cents_ok and note_ok:
                    assert result.error is None, result.error
                    accepted.append(cents)
                else:
                    assert result.error is not None
                    assert result.error.code == "payload_type"
                    item = "cents" if not cents_ok else "note"
                    assert result.error.details == {"item": item}
                    assert f"payload item '{item}' must be" in result.error.message
            events = await controller.storage.find(
                r.INTERACTION_EVENT, None, ["payload"], order_by={"id": "asc"}
            )
            assert [e["payload"]["cents"] for e in events] == accepted
        finally:
            await controller.close()

    asyncio.run(scenario())
