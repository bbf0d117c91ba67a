"""What a backend remembers about one schema: statement texts, parsed queries, row decoders.

Owned by the backend instance (one per bound schema, made anew when a migration binds another),
never by the schema: two backends on one schema render different SQL. Everything here is
derived from the schema and the dialect alone, so every session of the storage shares it. The
memories keyed by caller-chosen shapes (payload keys, dict matches) are bounded by starting
over when full (see ``SHAPES_KEPT``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SHAPES_KEPT", "StatementCache"]

SHAPES_KEPT = 4096
"""How many caller-chosen shapes one memory keeps before it starts over."""


class StatementCache:
    """One dict per kind of derived thing (the key of each is named beside it)."""

    __slots__ = (
        "decoders",
        "deferrable",
        "deltas",
        "dict_wheres",
        "encoders",
        "gets",
        "id_selects",
        "inserts",
        "linked",
        "order_bys",
        "plains",
        "planner",
        "queries",
        "selects",
        "shapes",
        "snapshot_selects",
        "snapshots",
        "updates",
        "wheres",
    )

    def __init__(self) -> None:
        # reads (storage.sql.reader)
        self.selects: dict[Any, Any] = {}  # (record, parsed query) -> (SELECT, columns)
        self.id_selects: dict[Any, str] = {}  # (record, where, paged) -> SELECT t.id ...
        self.wheres: dict[Any, str] = {}  # (record, alias, keys) -> WHERE of equalities
        self.dict_wheres: dict[Any, str] = {}  # (record, alias, keys, value types) -> WHERE
        self.snapshot_selects: dict[str, tuple[str, list[str]]] = {}  # record -> (SELECT, cols)
        self.snapshots: dict[str, Any] = {}  # record -> (SELECT by id, [(column, decoder)])
        self.gets: dict[Any, str] = {}  # (record, fields) -> SELECT by id
        self.queries: dict[Any, Any] = {}  # (record, frozen attribute query) -> parsed
        self.decoders: dict[Any, list[Any]] = {}  # (record, columns) -> decoder or None each
        self.order_bys: dict[Any, str] = {}  # (record, order items) -> ORDER BY
        # writes (storage.sql.writer)
        self.shapes: dict[Any, Any] = {}  # (kind, record, payload keys) -> plans.Shape
        # (record, columns) -> INSERT; a link's name -> the INSERT of its two ends alone;
        # (record, keys, "lease_until") -> the INSERT of a leased row (storage.sql.leases)
        self.inserts: dict[Any, str] = {}
        self.linked: dict[Any, str] = {}  # (record, columns, link, side) -> INSERT ... WITH
        self.updates: dict[Any, str] = {}  # (record, columns) -> UPDATE ... WHERE id = ?
        self.plains: dict[Any, Any] = {}  # (record, columns) -> decoders (() for none)
        self.encoders: dict[str, dict[str, Any]] = {}  # record -> {field: encoder}
        self.deltas: dict[Any, Any] = {}  # (record, delta fields, derived items) -> DeltaShape
        self.deferrable: dict[Any, bool] = {}  # (record, columns) -> an UPDATE that can't fail
        self.planner: Any = None  # the storage.sql.plans.Planner over this memory (made once)
