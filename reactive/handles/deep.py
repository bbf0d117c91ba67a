"""Deep paths of an aggregate's ``attribute_query``: fields of a record the item reaches.

``attribute_query=["title", ("author", ["status"])]`` gives the callback
``item["author"] == {"id": ..., "status": ...}`` (None when the item has no author). The path
goes one relation further than the item, through a to-one relation attribute of the item
(``author`` of a Post whose ``n:1`` relation joins it to one User); a to-many or symmetric one,
or a second level, is refused when the model is compiled (a ModelError naming the computation).

The aggregate then also follows the deeper record and the link to it:
- the deeper record's queried fields change: the items linked to it are re-evaluated (old
  contribution with the old fields, new with the new), each delta applied to the item's
  hosts;
- a link item -> deeper record is created or deleted (the item gets, loses or changes its
  author): the item is re-evaluated with and without it.

Every reading is *as at the event being handled*: one storage write (a nested create, a
replaced link, a cascade) happens whole before its events are handled, so the links created
later in the same write are left out and the ones deleted later are still counted, and a
deeper record updated later in the write is read with its fields as they were. That keeps
every delta relative to what the totals hold at that point.

Costs: a deeper record's update costs one read of its links to items plus, per linked item,
the reads of a direct item change (O(items linked to it)); a link change costs one item.

Concurrent writers (PostgreSQL): a write whose events create or delete a link through which
a deep path goes (an item created with an author, re-linked, unlinked, or deleted) reads the
deeper records at the other end share-locked (``SELECT ... FOR SHARE``) before any computation
runs (``Engine.deep_locks``, taken in ``TransactionContext.propagate``), the same order as a
data dep's dictionary row: the deeper record first, then the rows the aggregates lock. An
uncommitted change of that record is waited for and then read as committed; a change made
later waits for this transaction (every update reads its row ``FOR UPDATE``) and its
re-evaluation of the record's items then sees the link, or its absence. The handlers read the
locked value (it replaces any snapshot the transaction held). Cost: one statement per deeper
record type a write's link events reach, only in models with deep paths and only for the
relations they go through; share locks do not block each other, so writers linking items to
one author run at once. SQLite serialises writers: nothing is taken there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from reactive.errors import ModelError
from storage import MutationEvent, Schema

if TYPE_CHECKING:
    from reactive.context import TransactionContext


@attrs.define
class DeepPath:
    """One ``(attribute, [fields])`` entry of an attribute query: the fields of the record the
    item reaches through its relation attribute ``attribute`` (bound to the schema by
    :meth:`bind`)."""

    attribute: str
    fields: list[str]
    link: str = ""  # the relation item -> deeper record
    side: str = "source"  # the link column holding the item's id
    other: str = "target"  # the link column holding the deeper record's id
    record: str = ""  # the deeper record type

    def bind(self, schema: Schema, item_record: str, computation: str, via: str | None) -> None:
        """Check the path against ``schema`` (``via``: the aggregate's own relation, which a
        deep path may not go back through)."""
        attributes = schema.attributes(item_record)
        attribute = attributes.get(self.attribute)
        if attribute is None or not attribute.via_link:
            raise ModelError(
                f"{computation}: attribute_query names ({self.attribute!r}, {self.fields!r}), "
                f"but {item_record} has no relation attribute {self.attribute!r} (it has: "
                f"{', '.join(sorted(a for a, v in attributes.items() if v.via_link)) or 'none'})"
            )
        if attribute.to_many or attribute.symmetric:
            raise ModelError(
                f"{computation}: attribute_query reaches {item_record}.{self.attribute}, "
                "which is a to-many (or symmetric) relation; a deep path follows one to-one "
                "relation of the item (aggregate the deeper records on the item instead)"
            )
        if attribute.link.name == via:
            raise ModelError(
                f"{computation}: attribute_query reaches {item_record}.{self.attribute}, "
                "which goes back through the aggregate's own relation (the host)"
            )
        fields = schema.fields(attribute.related)
        for field in self.fields:
            if not isinstance(field, str) or field not in fields:
                raise ModelError(
                    f"{computation}: attribute_query names {item_record}.{self.attribute}."
                    f"{field}, which {attribute.related} does not have"
                )
        self.link, self.record = attribute.link.name, attribute.related
        self.side, self.other = attribute.side, attribute.other

    def query(self) -> tuple[str, list[str]]:
        """The entry as a storage attribute query (the id is always read)."""
        return (self.attribute, ["id", *self.fields])

    def value(self, record: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """What the callback sees for a deeper ``record`` (None: no record)."""
        if record is None:
            return None
        return {"id": record.get("id"), **{f: record.get(f) for f in self.fields}}

    # -- as at the event being handled -------------------------------------------------------

    def links_of(self, side: str, record_id: Any, ctx: TransactionContext) -> list[Any]:
        """The link rows with ``side`` = ``record_id`` as at the current event."""
        later = [e for e in ctx.later_in_write() if e.record_name == self.link]
        created_later = {e.record["id"] for e in later if e.type == "create"}
        rows: dict[Any, Any] = {}
        for row in ctx.find(self.link, {side: {"id": record_id}}, ["source", "target"]):
            if row["id"] not in created_later:
                rows[row["id"]] = row
        for e in later:
            if e.type == "delete" and e.record[side]["id"] == record_id:
                rows.setdefault(e.record["id"], e.record)
        return list(rows.values())

    def deeper(self, record_id: Any, ctx: TransactionContext) -> dict[str, Any] | None:
        """The deeper record ``record_id`` as at the current event (locked and read before the
        computations ran when this write linked or unlinked it: see the module's note on
        concurrent writers)."""
        found: Mapping[str, Any] | None = ctx.get(self.record, record_id, self.fields)
        if found is None:
            found = ctx.deleted.get((self.record, record_id))
        for e in ctx.later_in_write():
            if (
                e.record_name == self.record
                and e.record["id"] == record_id
                and e.type == "update"
                and e.old_record is not None
            ):
                found = {**(found or {}), **e.old_record}  # as it was before that update
                break
        return self.value(found) if found is not None else None

    def of_item(
        self, item_id: Any, ctx: TransactionContext, without: Any = None
    ) -> dict[str, Any] | None:
        """The item's value for this path as at the current event (``without``: leave that
        link out)."""
        for row in self.links_of(self.side, item_id, ctx):
            if row["id"] != without:
                return self.deeper(row[self.other]["id"], ctx)
        return None

    def items_of(self, record_id: Any, ctx: TransactionContext) -> list[Any]:
        """The ids of the items linked to the deeper record ``record_id`` at this event."""
        return [row[self.side]["id"] for row in self.links_of(self.other, record_id, ctx)]

    def changed(self, event: MutationEvent) -> bool:
        """Whether an update of a deeper record writes a field this path reads."""
        old = event.old_record
        return old is not None and any(
            f in event.record and old.get(f) != event.record[f] for f in self.fields
        )


def split_deep(item: Any) -> DeepPath | None:
    """An attribute query entry ``(attribute, [fields])`` as a deep path (None: not one)."""
    if (
        isinstance(item, tuple | list)
        and len(item) == 2
        and isinstance(item[0], str)
        and item[0] != "&"
        and isinstance(item[1], list | tuple)
        and all(isinstance(f, str) for f in item[1])
    ):
        return DeepPath(item[0], [f for f in item[1] if f != "id"])
    return None


__all__ = ["DeepPath", "split_deep"]
