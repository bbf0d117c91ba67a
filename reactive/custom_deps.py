"""The data a :class:`~reactive.Custom` computation declares it reads (``data_deps``).

Each dependency names data whose *current* value is passed to ``compute`` (in a dict, under the
name it is declared with) and whose changes re-run ``compute``:

- :class:`RecordsDep` — every record of an entity or relation (a list of dicts, by id).
- :class:`~reactive.deps.DictionaryDep` — one dictionary's value (the same declaration the
  aggregates' ``data_deps`` take).
- :class:`OwnFieldsDep` — fields of the host record itself (a Custom on a property only).
- :class:`RelatedDep` — the host's related records through one of its relation attributes
  (a Custom on a property only).

Costs, per change of a dependency: a dictionary Custom reads each of its dependencies once and
runs ``compute`` once. A property Custom recomputes only its host when an own field changes,
and the hosts linked to a related record when it (or a link) changes, but *every* host record
when a records or dictionary dependency changes (one read of the
dependencies, then one ``compute`` and at most one write per host): put such values in a
dictionary where the hosts are many. A :class:`RecordsDep` reads all records of its source on
each run (O(n)); prefer an aggregate (Count, Summation, ...) for sums and counts, which is
O(1) per change.

"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from reactive.deps import DictionaryDep
from reactive.errors import ModelError
from reactive.model import Entity, Relation


def _fields(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ModelError(f"data dependency fields must be a list of field names, got {value!r}")
    if not all(isinstance(f, str) for f in value):
        raise ModelError(f"data dependency fields must be field names, got {value!r}")
    return list(value)


@attrs.define(eq=False)
class RecordsDep:
    """Every record of ``record`` (an entity, relation or view), as a list of dicts ordered by
    id, each with ``id`` and ``fields`` (default: every field users declared). Re-runs the
    computation when a record is created or deleted, or one of ``fields`` changes."""

    record: Entity | Relation | str
    fields: list[str] | None = attrs.field(default=None, converter=_fields)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.record, Entity | Relation | str):
            raise ModelError(
                f"RecordsDep record must be an Entity, a Relation or a name, got {self.record!r}"
            )


@attrs.define(eq=False)
class OwnFieldsDep:
    """Fields of the host record itself, as a dict (with ``id``); a Custom on a property only.
    Re-runs the computation of that host when one of them changes."""

    fields: list[str] = attrs.field(converter=_fields)

    def __attrs_post_init__(self) -> None:
        if not self.fields:
            raise ModelError("OwnFieldsDep needs at least one field name")


@attrs.define(eq=False)
class RelatedDep:
    """The host's related records through its relation attribute ``attribute`` (a Custom on a
    property only): a list of dicts (``id`` and ``fields``) for a to-many attribute, a dict or
    None for a to-one. Re-runs the computation of the hosts concerned when a link of that
    relation is created or deleted, or one of ``fields`` of a related record changes (cost:
    one read of the links of the changed record, then one run per linked host)."""

    attribute: str
    fields: list[str] = attrs.field(factory=list, converter=_fields)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise ModelError(f"RelatedDep needs a relation attribute name, got {self.attribute!r}")


DataDep = RecordsDep | DictionaryDep | OwnFieldsDep | RelatedDep
"""One declared data dependency of a Custom."""

__all__ = ["DataDep", "OwnFieldsDep", "RecordsDep", "RelatedDep"]
