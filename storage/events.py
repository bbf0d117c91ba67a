"""Mutation events: what every write reports about the records it changed."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import attrs

Record: TypeAlias = dict[str, Any]
MutationType: TypeAlias = Literal["create", "update", "delete"]


@attrs.frozen
class MutationEvent:
    """One record created, updated or deleted.

    - ``create``: ``record`` is the written record with its ``id`` (link records carry
      ``source``/``target`` as ``{"id": ...}``).
    - ``update``: ``record`` holds ``id`` and only the fields this update wrote, ``keys`` their
      names, ``old_record`` the full value snapshot before the update.
    - ``delete``: ``record`` is the full value snapshot before deletion (links with endpoints).
    """

    record_name: str
    type: MutationType
    record: Record
    old_record: Record | None = None
    keys: tuple[str, ...] | None = None

    @property
    def merged(self) -> Record:
        """The record's state after the event: ``old_record`` overlaid with ``record``."""
        if self.old_record is None:
            return dict(self.record)
        return {**self.old_record, **self.record}


@attrs.frozen
class WriteResult:
    """What a write returns: the records it affected and the events it caused, in order.

    Event order: for a create, the record's own ``create`` first, then for each relation
    attribute in payload order the nested records' events, any link it displaced (``delete``)
    and the new link (``create``). For an update, per matched record the ``update`` event then
    its link changes. For a delete, per matched record the deletion of its links (and of
    cascaded records), then the record's own ``delete``.
    """

    records: list[Record]
    events: list[MutationEvent]

    @property
    def record(self) -> Record | None:
        """The first affected record (the created one, for ``create``), or None."""
        return self.records[0] if self.records else None
