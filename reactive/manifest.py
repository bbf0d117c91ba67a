"""The model manifest: what the database was last set up for, stored in the database itself.

``setup(install=True)`` writes one system record, ``_Model_``, whose ``manifest`` field holds:

- ``schema``: the storage schema (records, links with their ends, cardinality, symmetric and
  cascade flags, fields with types, indexes), hidden computation fields included;
- ``system``: the names of the engine's own records (their changes are the engine's);
- ``records``: per entity and relation, its kind, its computation's identity (Transform), and
  per property its type, default, ``unique``, ``index``, the identity of its computation and
  the fingerprint of its ``computed`` function;
- ``dictionaries``: per dictionary its type, default and computation identity.

A computation's *identity* is its kind, its declared arguments (record, property, attribute
query, direction, states, transfers, triggers, ...) and the fingerprint of each callback
(``reactive.fingerprint``): two identities differ exactly when ``setup()`` must treat the
computation as changed. Everything here is plain JSON, compared as canonical text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from reactive.computations import (
    Computation,
    Custom,
    StateMachine,
    Transform,
    Trigger,
    _Aggregate,
)
from reactive.computations import Every as EveryDecl
from reactive.custom_deps import DataDep, RecordsDep, RelatedDep
from reactive.deps import DictionaryDep
from reactive.fingerprint import fingerprint
from reactive.model import Dictionary, Entity, Property, Relation, record_name
from storage import Field, RecordType, Schema
from storage.migration import schema_to_json

MANIFEST_RECORD = "_Model_"
"""The system record holding the manifest (one row)."""
MANIFEST_RECORD_TYPE = RecordType(MANIFEST_RECORD, [Field("manifest", "json")])
VERSION = 1


def canonical(value: Any) -> str:
    """The canonical JSON text of a manifest (or part of one): equal texts, equal models."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _plain(value: Any) -> Any:
    """``value`` as JSON: tuples become lists, callables their fingerprints, other objects
    their repr (a manifest never fails to build)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(value):
        return {"callable": fingerprint(value)}
    return {"repr": repr(value)}


def _name(record: Any) -> Any:
    """A computation's record: its name, or for a view its definition too (a changed match
    changes what every computation over the view computes)."""
    if record is None:
        return None
    if isinstance(record, Entity | Relation) and record.is_view:
        if record.base is not None:
            return {
                "view": record_name(record),
                "base": _name(record.base),
                "match": repr(record.match),
            }
        return {"view": record_name(record), "inputs": [_name(i) for i in record.inputs or ()]}
    return record_name(record)


def _trigger(trigger: Trigger) -> dict[str, Any]:
    return {
        "record": trigger.record_name,
        "type": trigger.type,
        "fields": _plain(dict(trigger.fields) if trigger.fields is not None else None),
        "keys": None if trigger.keys is None else list(trigger.keys),
    }


def _data_dep(dep: DataDep) -> dict[str, Any]:
    if isinstance(dep, RecordsDep):
        return {"records": _name(dep.record), "fields": dep.fields}
    if isinstance(dep, DictionaryDep):
        return {"dictionary": dep.dictionary}
    if isinstance(dep, RelatedDep):
        return {"related": dep.attribute, "fields": list(dep.fields)}
    return {"own": list(dep.fields)}


def identity(computation: Computation | None) -> dict[str, Any] | None:
    """The identity of a computation (None for none): kind, arguments, callback fingerprints."""
    if computation is None:
        return None
    out: dict[str, Any] = {"kind": computation.kind}
    if isinstance(computation, _Aggregate):
        out.update(
            record=_name(computation.record),
            property=computation.property,
            attribute_query=_plain(computation.attribute_query),
            direction=computation.direction,
            callback=fingerprint(computation.callback),
        )
        if isinstance(computation, EveryDecl):
            out["not_empty"] = computation.not_empty
        if computation.data_deps:  # only when declared: older manifests stay as they were
            out["data_deps"] = {
                str(alias): getattr(dep, "dictionary", repr(dep))
                for alias, dep in computation.data_deps.items()
            }
    elif isinstance(computation, Transform):
        out.update(
            record=_name(computation.record),
            attribute_query=_plain(computation.attribute_query),
            callback=fingerprint(computation.callback),
        )
        if computation.event_deps is not None:
            out["event_deps"] = [_trigger(t) for t in computation.event_deps]
    elif isinstance(computation, StateMachine):
        out.update(
            states=[[s.name, fingerprint(s.compute_value)] for s in computation.states],
            transfers=[
                {
                    "current": t.current.name,
                    "next": t.next.name,
                    "trigger": _trigger(t.trigger),
                    "compute_target": fingerprint(t.compute_target),
                }
                for t in computation.transfers
            ],
            initial_state=computation.initial_state.name,
            initial=fingerprint(computation.initial),
        )
    elif isinstance(computation, Custom):
        out.update(
            triggers=[_trigger(t) for t in computation.triggers],
            compute=fingerprint(computation.compute),
            compute_target=fingerprint(computation.compute_target),
            initial=_plain(computation.initial),
            with_record=computation.with_record,
        )
        if computation.data_deps is not None:
            out["data_deps"] = {k: _data_dep(v) for k, v in computation.data_deps.items()}
        if computation.state is not None:
            out["state"] = _plain(computation.state)
    else:
        out["repr"] = repr(computation)
    return out


def _fingerprint_or_none(fn: Callable[..., Any] | None) -> str | None:
    return fingerprint(fn)


def _property(prop: Property) -> dict[str, Any]:
    return {
        "type": prop.type,
        "default": _plain(prop.default),
        "unique": prop.unique,
        "index": prop.index,
        "computation": identity(prop.computation),
        "computed": _fingerprint_or_none(prop.computed),
    }


def build(
    schema: Schema,
    entities: Sequence[Entity],
    relations: Sequence[Relation],
    dictionaries: Sequence[Dictionary],
    system: list[str],
) -> dict[str, Any]:
    """The manifest of a model (as JSON-compatible data, canonical)."""
    records: dict[str, Any] = {}
    owners: list[Entity | Relation] = [*entities, *relations]
    for owner in owners:
        records[record_name(owner)] = {
            "kind": "entity" if isinstance(owner, Entity) else "relation",
            "computation": identity(owner.computation),
            "properties": {p.name: _property(p) for p in owner.properties},
        }
    manifest = {
        "version": VERSION,
        "schema": schema_to_json(schema),
        "system": sorted(system),
        "records": records,
        "dictionaries": {
            d.name: {
                "type": d.type,
                "default": _plain(d.default),
                "computation": identity(d.computation),
            }
            for d in dictionaries
        },
    }
    parsed: dict[str, Any] = json.loads(canonical(manifest))
    return parsed
