"""Links between records: inserting them (displacing the link an exclusive side held),
re-linking a relation to new records, and deleting a record with its links and cascades.

A link to a record that does not exist fails on the link table's foreign key; which end is
missing is read from the error where the dialect names it (PostgreSQL), else looked up only after
the failed statement is undone (on SQLite it undoes itself; where the dialect says a failure
aborts the transaction, the INSERT runs under a savepoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.errors import MissingReferenceError, StorageError
from storage.events import MutationEvent, Record
from storage.schema import LinkType, RelationAttribute
from storage.sql.plans import Item, Plan
from storage.sql.statements import Statements


class Links(Statements):
    """Link writes; :class:`~storage.sql.writer.Writer` adds the record writes."""

    __slots__ = ()

    def _create(self, plan: Plan) -> Record:
        """Create a planned record (and its nested ones): the writer's."""
        raise NotImplementedError

    def _link_relations(self, plan: Plan, record: Record) -> None:
        """Link a record just created to the records of its payload's relations, in payload
        order (nested records are created first), and put the references into ``record``.

        What :meth:`_link` works out is inlined here (every create with a relation runs this):
        the record is new, so its own side holds no link yet, only the other may. A payload's
        relations are all through links (``via_link``): symmetric is the link's."""
        record_id = record["id"]
        for attribute, items in plan.relations:
            refs: list[Record] = []
            link = attribute.link
            side = attribute.side
            symmetric = link.symmetric
            origin = (attribute.owner, attribute.name)
            for item in items or ():
                nested = item.nested
                if nested is None:
                    related = item.ref
                    fresh_sides = _NO_SIDE if symmetric else _SIDE[side]
                elif self._joins_in_one(attribute, item, nested):
                    refs.append({"id": self._create_linked(attribute, record_id, nested)})
                    continue
                else:
                    related = self._resolve(item)
                    # A nested record is new too, unless its own payload linked it already.
                    if symmetric:
                        fresh_sides = _NO_SIDE
                    elif all(a.link is not link for a, _ in nested.relations):
                        fresh_sides = _BOTH_SIDES
                    else:
                        fresh_sides = _SIDE[side]
                if side == "source":
                    self._insert_link(
                        link, record_id, related, item.link_values, origin, fresh_sides
                    )
                else:
                    self._insert_link(
                        link, related, record_id, item.link_values, origin, fresh_sides
                    )
                refs.append({"id": related})
            record[attribute.name] = refs if attribute.to_many else (refs[0] if refs else None)

    def _joins_in_one(self, attribute: RelationAttribute, item: Item, nested: Plan) -> bool:
        """Whether a nested create and its link to the record just created can be one
        statement (see :meth:`_create_linked`): the dialect chains INSERTs, no write here
        takes a savepoint, the nested record is a plain entity with no relations of its own
        and the link carries no fields; both ends are new, so the link displaces nothing and
        its foreign keys cannot fail (a symmetric link is left to the general path)."""
        return (
            self._whole
            and self.dialect.chains_inserts
            and not item.link_values
            and not nested.relations
            and nested.shape.link is None
            and nested.shape.sql is not None
            and not attribute.symmetric
        )

    def _create_linked(self, attribute: RelationAttribute, record_id: Any, nested: Plan) -> Any:
        """Create ``nested`` and link it to the new record ``record_id``: the writer's."""
        raise NotImplementedError

    def _undo_creates(self, start: int) -> None:
        """Undo a write that only created rows (the events from ``start`` on): delete them,
        newest first. They are all new, so this restores every table as it was (only the id
        sequence has moved on, and ids are never reused anyway): on SQLite, where a failed
        statement undoes only itself, a create whose links fail needs no savepoint."""
        for event in reversed(self.events[start:]):
            table = self.dialect.quote(event.record_name)
            self.run(f"DELETE FROM {table} WHERE id = ?", (event.record["id"],))
        del self.events[start:]

    def _resolve(self, item: Item) -> Any:
        # A reference is not looked up here: the link's foreign keys check it, and a failure
        # is turned into MissingReferenceError naming the field (see _insert_link).
        if item.nested is not None:
            return self._create(item.nested)["id"]
        return item.ref

    def _link(
        self,
        attribute: RelationAttribute,
        this_id: Any,
        other_id: Any,
        link_values: Mapping[str, Any],
        fresh: bool = False,
        other_fresh: bool = False,
    ) -> None:
        origin = (attribute.owner, attribute.name)
        fresh_sides = _NO_SIDE
        if not attribute.symmetric:
            if fresh:
                fresh_sides = _BOTH_SIDES if other_fresh else _SIDE[attribute.side]
            elif other_fresh:
                fresh_sides = _SIDE[attribute.other]
        if attribute.side == "source":
            self._insert_link(attribute.link, this_id, other_id, link_values, origin, fresh_sides)
        else:
            self._insert_link(attribute.link, other_id, this_id, link_values, origin, fresh_sides)

    def _insert_link(
        self,
        link: LinkType,
        source: Any,
        target: Any,
        values: Mapping[str, Any],
        origin: tuple[str, str | None],
        fresh_sides: frozenset[str] = frozenset(),
    ) -> Record:
        # The "1" side is exclusive: a new link displaces the one holding that slot. A record
        # created in this very write holds no link yet, so its side needs no look-up.
        if link.source_is_exclusive and "target" not in fresh_sides:
            self._unlink_where(link, "target", target)
        if link.target_is_exclusive and "source" not in fresh_sides:
            self._unlink_where(link, "source", source)
        if values:
            params = [source, target, *values.values()]
            sql = self.planner.insert_sql(link.name, ("source", "target", *values))
        else:  # the common link, its two ends alone
            params = [source, target]
            sql = self._cache.inserts.get(link.name) or self._ends_insert(link.name)
        if self.dialect.failed_statement_aborts and not self._whole:
            link_id = self._insert_link_guarded(link, sql, params, values, origin)
        else:
            try:
                link_id = self._inserted_id(self.run(sql, params))
            except self.dialect.integrity_errors as exc:
                columns = {"source": source, "target": target, **values}
                raise self._link_error(link, exc, columns, values, origin) from None
        record = {"id": link_id, "source": {"id": source}, "target": {"id": target}}
        if values:
            record.update(self._plain(link.name, values))
        self.events.append(MutationEvent(link.name, "create", dict(record)))
        return record

    def _ends_insert(self, link: str) -> str:
        """The INSERT of a link's two ends alone, remembered under the link's name (the key
        the common link's write looks up, no tuple to build)."""
        sql = self._cache.inserts[link] = self.planner.insert_sql(link, _ENDS)
        return sql

    def _insert_link_guarded(
        self,
        link: LinkType,
        sql: str,
        params: list[Any],
        values: Mapping[str, Any],
        origin: tuple[str, str | None],
    ) -> Any:
        """The link INSERT under a savepoint, for databases where a failed statement aborts
        the transaction: the endpoints are looked up only after it was rolled back."""
        try:
            with self.atomic(True):
                link_id = self._inserted_id(self.run(sql, params))
        except self.dialect.integrity_errors as exc:
            # The savepoint is rolled back by now: the transaction can read again.
            columns = {"source": params[0], "target": params[1], **values}
            raise self._link_error(link, exc, columns, values, origin) from None
        return link_id

    def _link_error(
        self,
        link: LinkType,
        exc: BaseException,
        columns: dict[str, Any],
        values: Mapping[str, Any],
        origin: tuple[str, str | None],
    ) -> StorageError:
        violation = self.dialect.violation(exc)
        if violation.kind == "foreign key":
            if violation.fields:  # the database named the missing end: no look-up
                column = violation.fields[0]
                owner, field = origin
                end = link.source if column == "source" else link.target
                return MissingReferenceError(owner, field or column, end, columns[column])
            if self._whole:  # no statement may follow the failure: nothing to look up with
                return StorageError(
                    f"{link.name}: a record it links to does not exist ({violation.message})",
                    record=link.name,
                )
            return self._missing_endpoint(link, columns["source"], columns["target"], origin)
        return self._integrity_error(link.name, exc, values)

    def _missing_endpoint(
        self, link: LinkType, source: Any, target: Any, origin: tuple[str, str | None]
    ) -> StorageError:
        owner, field = origin
        for end, record_id, side in (
            (link.source, source, "source"),
            (link.target, target, "target"),
        ):
            if not self.reader.exists(end, record_id):
                return MissingReferenceError(owner, field or side, end, record_id)
        return StorageError(f"{link.name}: a foreign key failed", record=link.name)

    def _unlink_where(self, link: LinkType, column: str, value: Any) -> None:
        for row in self.reader.snapshots_by_column(link.name, column, value):
            self._delete_record(link.name, row, set())

    def _relink(
        self, attribute: RelationAttribute, record_id: Any, items: list[Item] | None
    ) -> None:
        """Replace the records ``record_id`` reaches through ``attribute`` with ``items``."""
        current = self._links_of(attribute, record_id)
        resolved = [(self._resolve(item), item) for item in items or []]
        if any(item.nested is not None for _, item in resolved):
            # A nested create may have displaced some of these links already: delete them once.
            link = attribute.link.name
            current = [row for row in current if self.reader.exists(link, row["id"])]
        wanted = [(other, item.link_values) for other, item in resolved]
        now: list[tuple[Any, dict[str, Any]]] = [
            (
                row[attribute.other]["id"]
                if not attribute.symmetric
                else _other_end(row, record_id),
                {},
            )
            for row in current
        ]
        if not any(values for _, values in wanted) and now == [(o, {}) for o, _ in wanted]:
            return  # same related records, nothing to re-link
        for row in current:
            self._delete_record(attribute.link.name, row, set())
        for other, item in resolved:
            self._link(attribute, record_id, other, item.link_values)

    def _links_of(self, attribute: RelationAttribute, record_id: Any) -> list[Record]:
        rows = self.reader.snapshots_by_column(attribute.link.name, attribute.side, record_id)
        if attribute.symmetric:
            seen = {r["id"] for r in rows}
            rows += [
                r
                for r in self.reader.snapshots_by_column(
                    attribute.link.name, attribute.other, record_id
                )
                if r["id"] not in seen
            ]
            rows.sort(key=lambda r: r["id"])
        return rows

    def _delete_record(self, name: str, row: Record, deleted: set[tuple[str, Any]]) -> None:
        key = (name, row["id"])
        if key in deleted:
            return
        deleted.add(key)
        cascaded: list[tuple[str, Record]] = []
        for link in self.schema.links_touching(name):
            for side in ("source", "target"):
                if getattr(link, side) != name:
                    continue
                for link_row in self.reader.snapshots_by_column(link.name, side, row["id"]):
                    if (link.name, link_row["id"]) in deleted:
                        continue
                    if link.cascade and side == "source":
                        cascaded.extend(
                            (link.target, dependent)
                            for dependent in self.reader.snapshots(
                                link.target, {"id": link_row["target"]["id"]}
                            )
                        )
                    self._delete_record(link.name, link_row, deleted)
        # Cascaded records go after their links, before the record that owned them.
        for dependent_name, dependent in cascaded:
            self._delete_record(dependent_name, dependent, deleted)
        self.run(f"DELETE FROM {self.dialect.quote(name)} WHERE id = ?", (row["id"],))
        self.events.append(MutationEvent(name, "delete", row))


_NO_SIDE: frozenset[str] = frozenset()
_SIDE = {"source": frozenset({"source"}), "target": frozenset({"target"})}
_BOTH_SIDES = frozenset({"source", "target"})
_ENDS = ("source", "target")  # the columns of a link without fields


def _other_end(row: Record, record_id: Any) -> Any:
    source, target = row["source"]["id"], row["target"]["id"]
    return target if source == record_id else source
