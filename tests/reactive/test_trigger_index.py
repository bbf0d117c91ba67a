"""TriggerIndex picks, for an event, exactly the triggers a full scan would match.

The index sorts a route's triggers by a field every pattern names with a str value; these
properties compare it with matching every trigger, on random patterns and events (values of
several types, nested patterns, update events that do not write the sorted field)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reactive as r
from reactive.handles.triggers import TriggerIndex, matches
from storage import MutationEvent, MutationType

FIELDS = ["kind", "status", "n"]
VALUES = st.one_of(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([0, 1, 1.0, True, False, None]),
    st.fixed_dictionaries({"x": st.sampled_from(["a", 1])}),
)
RECORD = r.Entity("Thing", [r.Property(f) for f in FIELDS])


def patterns(shared: bool) -> st.SearchStrategy[dict[str, Any] | None]:
    free = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)
    if not shared:
        return st.one_of(st.none(), free)
    # Every pattern names status with a str: the case the index sorts by.
    return st.builds(lambda rest, status: {**rest, "status": status}, free, st.sampled_from("abc"))


def triggers(event_type: MutationType, shared: bool) -> st.SearchStrategy[list[r.Trigger]]:
    # keys= (fields the update must write) exists for update triggers only.
    keys = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True)
    keyed = st.builds(
        lambda fields, keys: r.Trigger(RECORD, event_type, fields=fields, keys=keys),
        patterns(shared),
        st.one_of(st.none(), keys) if event_type == "update" else st.none(),
    )
    return st.lists(keyed, min_size=1, max_size=6)


def records() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(FIELDS), VALUES).map(lambda d: {"id": 1, **d})


def events(event_type: MutationType) -> st.SearchStrategy[MutationEvent]:
    if event_type != "update":
        return records().map(lambda rec: MutationEvent("Thing", event_type, rec))
    return st.builds(
        lambda old, written: MutationEvent(
            "Thing", "update", written, old, tuple(k for k in written if k != "id")
        ),
        records(),
        records(),
    )


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_index_matches_exactly_what_a_full_scan_matches(data: st.DataObject) -> None:
    event_type: MutationType = data.draw(st.sampled_from(["create", "update", "delete"]))
    declared = data.draw(triggers(event_type, shared=data.draw(st.booleans())))
    event = data.draw(events(event_type))
    index = TriggerIndex([(trigger, position) for position, trigger in enumerate(declared)])

    expected = [position for position, trigger in enumerate(declared) if matches(trigger, event)]
    assert index.matching(event) == expected


def test_str_patterns_on_one_field_are_sorted_by_it() -> None:
    declared = [
        r.Trigger(RECORD, "update", fields={"status": "paid", "kind": "a"}),
        r.Trigger(RECORD, "update", fields={"status": "failed"}),
        r.Trigger(RECORD, "update", fields={"status": "paid"}),
    ]
    index = TriggerIndex([(t, i) for i, t in enumerate(declared)])
    assert index.key == "status"
    assert set(index.by_value) == {"paid", "failed"}
    # The update does not write status: the value comes from the record as it was.
    event = MutationEvent(
        "Thing", "update", {"id": 1, "kind": "a"}, {"id": 1, "status": "paid"}, ("kind",)
    )
    assert index.matching(event) == [0, 2]


def test_without_a_shared_str_field_every_trigger_is_a_candidate() -> None:
    declared = [
        r.Trigger(RECORD, "create", fields={"status": "paid"}),
        r.Trigger(RECORD, "create", fields={"n": 1}),
        r.Trigger(RECORD, "create"),
    ]
    index = TriggerIndex([(t, i) for i, t in enumerate(declared)])
    assert index.key is None
    assert index.matching(MutationEvent("Thing", "create", {"id": 1, "status": "paid"})) == [0, 2]
