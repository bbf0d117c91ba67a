"""Hypothesis strategies drawn from an application's own declarations.

- :func:`payloads` draws valid payloads of an interaction from its ``PayloadItem``
  declarations: the item's type (``"integer"`` within 64 bits, finite numbers, strings,
  booleans, JSON, aware timestamps), its bounds (``minimum``/``maximum``,
  ``min_length``/``max_length``), ``required`` (optional items are sometimes left out),
  collections (lists of up to three values) and references to records that exist.
- :func:`invalid_payloads` draws the near misses a dispatch must refuse: a required item left
  out, an unknown item, a value of the wrong type or one past a bound, a reference to a record
  that does not exist, a single value where a list is declared.
- :func:`writes` draws creates, updates and deletes of the *plain* records of a model (records
  no computation produces, fields no computation or ``computed=`` derives) and links between
  them (relations without a computation): :class:`~reactive.testing.steps.Step` objects.

References need the database: strategies are synchronous, the database is not, so every
strategy takes ``existing`` (record name -> ids that exist now), read with
``await existing_ids(controller)``. A strategy that needs a reference to a record type with no
rows draws nothing (``st.nothing()``); :func:`drawable` says beforehand whether it can.

Needs the ``testing`` extra (``hypothesis``). Costs: drawing is O(size of the payload);
:func:`existing_ids` reads the ids of every plain record type (one query each, at most
``limit`` ids each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from reactive.bounds import INT64_MAX, INT64_MIN
from reactive.interaction import Interaction, PayloadItem
from reactive.model import Entity, Property, Relation, record_name
from reactive.testing.steps import Create, Delete, Step, Update

if TYPE_CHECKING:
    from reactive.controller import Controller

Existing = Mapping[str, Sequence[Any]]
"""Record name -> ids of the records that exist (see :func:`existing_ids`)."""

_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
_MAX_DRAWN_TEXT = 12  # long strings cost time and find nothing short ones do not


def _text(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    top = min_size + _MAX_DRAWN_TEXT if max_size is None else min(max_size, min_size + 40)
    return st.text(_TEXT, min_size=min_size, max_size=max(top, min_size))


def _json() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers(-1000, 1000) | _text(max_size=6)
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(_text(max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    )


def values(
    type_name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> st.SearchStrategy[Any]:
    """Valid values of a declared type within its bounds (small ones more often)."""
    if type_name == "integer":
        low = INT64_MIN if minimum is None else max(int(-(-minimum // 1)), INT64_MIN)
        high = INT64_MAX if maximum is None else min(int(maximum // 1), INT64_MAX)
        small = (
            st.integers(max(low, -1000), min(high, 1000))
            if low <= 1000 and high >= -1000
            else st.nothing()
        )
        return small | st.integers(low, high)
    if type_name == "number":
        # Cents-like floats within a million: sums in another order stay within the
        # rounding verify() allows (huge or many-digit floats cancel differently per order).
        floats = st.floats(
            -1e6 if minimum is None else minimum,
            1e6 if maximum is None else maximum,
            allow_nan=False,
            allow_infinity=False,
        ).map(lambda x: round(x, 2))
        floats = floats.filter(
            lambda x: (minimum is None or x >= minimum) and (maximum is None or x <= maximum)
        )
        lo: int | None = None if minimum is None else int(-(-minimum // 1))
        hi: int | None = None if maximum is None else int(maximum // 1)
        ints = st.integers(lo, hi) if lo is None or hi is None or lo <= hi else st.nothing()
        return ints | floats
    if type_name == "boolean":
        return st.booleans()
    if type_name == "json":
        return _json()
    if type_name == "timestamp":
        return st.datetimes(timezones=st.just(UTC))
    return _text(min_length or 0, max_length)


def _item_values(item: PayloadItem, existing: Existing) -> st.SearchStrategy[Any]:
    if item.is_ref:
        assert item.base is not None
        ids = list(existing.get(record_name(item.base), ()))
        return st.sampled_from(ids).map(lambda i: {"id": i}) if ids else st.nothing()
    if item.base is not None and isinstance(item.base, Entity):
        return record_data(item.base)
    return values(item.type, item.minimum, item.maximum, item.min_length, item.max_length)


def _item(item: PayloadItem, existing: Existing) -> st.SearchStrategy[Any]:
    one = _item_values(item, existing)
    if item.is_collection:
        return st.lists(one, min_size=1 if item.required else 0, max_size=3)
    return one


def drawable(interaction: Interaction, existing: Existing) -> bool:
    """Whether :func:`payloads` can draw: every required reference has a record to name."""
    for item in interaction.payload.items:
        if (
            item.required
            and item.is_ref
            and item.base is not None
            and not existing.get(record_name(item.base))
        ):
            return False
    return True


@st.composite
def payloads(
    draw: st.DrawFn, interaction: Interaction, existing: Existing | None = None
) -> dict[str, Any]:
    """A valid payload of ``interaction`` (references name records in ``existing``)."""
    existing = existing or {}
    out: dict[str, Any] = {}
    for item in interaction.payload.items:
        strategy = _item(item, existing)
        if not item.required:
            if item.is_ref and not existing.get(record_name(item.base or "")):
                continue  # nothing to refer to: left out
            if draw(st.booleans()):
                continue
        out[item.name] = draw(strategy)
    return out


def _wrong_values(item: PayloadItem) -> list[Any]:
    """Values of the wrong type or past a bound for ``item`` (empty for json items)."""
    if item.is_ref:
        return ["1", 1, [], {"no_id": 1}, {"id": 1.5}]
    if item.base is not None:
        return []  # a nested record: the storage judges its fields
    wrong: list[Any] = []
    if item.type == "integer":
        wrong += [1.5, "1", True, 2**63, 1e300]
    elif item.type == "number":
        wrong += ["1", True, [1]]
    elif item.type == "string":
        wrong += [1, True, ["a"], {"a": 1}]
    elif item.type == "boolean":
        wrong += [1, "true", 0.0]
    elif item.type == "timestamp":
        wrong += ["2020-01-01T00:00:00", "yesterday", 1]
    if item.minimum is not None and item.type in ("integer", "number"):
        wrong.append(item.minimum - 1)
    if item.maximum is not None and item.type in ("integer", "number"):
        wrong.append(item.maximum + 1)
    if item.min_length is not None and item.min_length > 0:
        wrong.append("a" * (item.min_length - 1))
    if item.max_length is not None:
        wrong.append("a" * (item.max_length + 1))
    return [w for w in wrong if w is not None]


@st.composite
def invalid_payloads(
    draw: st.DrawFn, interaction: Interaction, existing: Existing | None = None
) -> dict[str, Any]:
    """A near miss of a valid payload that a dispatch must refuse (code ``payload_*``): one
    thing wrong, the rest valid."""
    existing = existing or {}
    items = interaction.payload.items
    base: dict[str, Any] = (
        draw(payloads(interaction, existing)) if drawable(interaction, existing) else {}
    )
    names = {i.name for i in items}
    misses: list[tuple[str, Any]] = [("unknown", None)]
    misses += [("missing", i) for i in items if i.required]
    misses += [("wrong", (i, w)) for i in items for w in _wrong_values(i)]
    misses += [("dangling", i) for i in items if i.is_ref]
    misses += [("not a list", i) for i in items if i.is_collection]
    # the kind of miss first (each equally likely), then which item and value
    kind = draw(st.sampled_from(list(dict.fromkeys(k for k, _ in misses))))
    what = draw(st.sampled_from([w for k, w in misses if k == kind]))
    out = dict(base)
    if kind == "unknown":
        out[draw(_text(1, 8).filter(lambda k: k not in names))] = 1
    elif kind == "missing":
        out.pop(what.name, None)
    elif kind == "wrong":
        item, value = what
        out[item.name] = [value] if item.is_collection and not isinstance(value, list) else value
        if item.is_collection and isinstance(value, list):
            out[item.name] = [value]
    elif kind == "dangling":
        ids = [i for i in existing.get(record_name(what.base), ()) if isinstance(i, int)]
        missing = {"id": max(ids, default=0) + 10**6}
        out[what.name] = [missing] if what.is_collection else missing
    else:  # one value where a list is declared
        refs = existing.get(record_name(what.base)) if what.is_ref and what.base else None
        if what.is_ref:
            out[what.name] = {"id": refs[0]} if refs else "x"
        else:
            scalar = _item_values(what, existing).filter(lambda v: not isinstance(v, list))
            out[what.name] = draw(scalar)
    return out


# -- plain writes ---------------------------------------------------------------------------


def plain_properties(record: Entity | Relation) -> list[Property]:
    """The properties a write may give: no computation, not ``computed=``."""
    return [p for p in record.properties if p.computation is None and p.computed is None]


def plain_entities(entities: Sequence[Entity]) -> list[Entity]:
    """The entities no computation produces."""
    return [e for e in entities if e.computation is None and not e.name.startswith("_")]


def plain_relations(entities: Sequence[Entity], relations: Sequence[Relation]) -> list[Relation]:
    """Relations without a computation between plain entities."""
    plain = {id(e) for e in plain_entities(entities)}
    return [
        rel
        for rel in relations
        if rel.computation is None and id(rel.source) in plain and id(rel.target) in plain
    ]


def record_data(
    record: Entity | Relation, partial: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Values for the plain fields of ``record`` (``partial``: any subset, for an update)."""
    fields = {p.name: values(p.type) for p in plain_properties(record)}
    if partial:
        return st.fixed_dictionaries({}, optional=fields)
    return st.fixed_dictionaries(fields)


@st.composite
def writes(
    draw: st.DrawFn,
    entities: Sequence[Entity],
    relations: Sequence[Relation] = (),
    existing: Existing | None = None,
) -> Step:
    """A create, update or delete of a plain record, or a link (or unlink) between plain
    records that exist (see the module docstring)."""
    existing = existing or {}
    choices: list[tuple[str, Any]] = []
    for entity in plain_entities(entities):
        choices.append(("create", entity))
        if existing.get(entity.name):
            if plain_properties(entity):
                choices.append(("update", entity))
            choices.append(("delete", entity))
    for rel in plain_relations(entities, relations):
        if existing.get(record_name(rel.source)) and existing.get(record_name(rel.target)):
            choices.append(("link", rel))
        if existing.get(rel.relation_name):
            choices.append(("delete", rel))
    if not choices:
        return draw(st.nothing())
    kind, record = draw(st.sampled_from(choices))
    name = record_name(record)
    if kind == "create":
        return Create(name, draw(record_data(record)))
    if kind == "update":
        return Update(
            name,
            draw(st.sampled_from(list(existing[name]))),
            draw(record_data(record, partial=True)),
        )
    if kind == "delete":
        return Delete(name, draw(st.sampled_from(list(existing[name]))))
    data = draw(record_data(record))
    data["source"] = {"id": draw(st.sampled_from(list(existing[record_name(record.source)])))}
    data["target"] = {"id": draw(st.sampled_from(list(existing[record_name(record.target)])))}
    return Create(name, data)


async def existing_ids(
    controller: Controller, records: Sequence[str], limit: int = 200
) -> dict[str, list[Any]]:
    """The ids of ``records`` that exist now (the newest ``limit`` of each)."""
    out: dict[str, list[Any]] = {}
    for name in records:
        rows = await controller.storage.find(name, None, ["id"], {"id": "desc"}, limit)
        out[name] = sorted(r["id"] for r in rows)
    return out


__all__ = [
    "Existing",
    "drawable",
    "existing_ids",
    "invalid_payloads",
    "payloads",
    "plain_entities",
    "plain_properties",
    "plain_relations",
    "record_data",
    "values",
    "writes",
]
