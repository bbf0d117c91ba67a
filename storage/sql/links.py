"""Links between records: inserting them (displacing the link an exclusive side held),
re-linking a relation to new records, and deleting a record with its links and cascades.

A link to a record that does not exist fails on the link table's foreign key; which end is
missing is looked up only after the failed statement is undone (on SQLite it undoes itself; where
the dialect says a failure aborts the transaction, the INSERT runs under a savepoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.errors import MissingReferenceError, StorageError
from storage.events import MutationEvent, Record
from storage.schema import LinkType, RelationAttribute
from storage.sql.plans import CreatePlan, Item
from storage.sql.statements import Statements

FRESH_SOURCE = frozenset({"source"})
FRESH_TARGET = frozenset({"target"})


class Links(Statements):
    """Link writes; :class:`~storage.sql.writer.Writer` adds the record writes."""

    __slots__ = ()

    def _create(self, plan: CreatePlan) -> Record:
        """Create a planned record (and its nested ones): the writer's."""
        raise NotImplementedError

    def _link_refs(
        self, name: str, record: Record, refs: list[tuple[RelationAttribute, int]], start: int
    ) -> None:
        """Link a record just inserted to existing records. Instead of a savepoint around the
        whole create, a failed link (a missing record) undoes the rows inserted so far: they
        are all new, so deleting them restores every table as it was (only the id sequence has
        moved on, and ids are never reused anyway). Where a failed statement aborts the
        transaction, the links go under a savepoint instead (see :meth:`_insert_link`)."""
        if self.dialect.failed_statement_aborts:
            try:
                with self.atomic(True):
                    self._link_each(name, record, refs)
            except BaseException:
                self.run(f"DELETE FROM {self.dialect.quote(name)} WHERE id = ?", (record["id"],))
                del self.events[start:]
                raise
            return
        inserted: list[tuple[str, Any]] = [(name, record["id"])]
        try:
            for attribute, ref in refs:
                link = attribute.link
                if attribute.side == "source":
                    row = self._insert_link(
                        link, record["id"], ref, {}, (name, attribute.name), FRESH_SOURCE
                    )
                else:
                    row = self._insert_link(
                        link, ref, record["id"], {}, (name, attribute.name), FRESH_TARGET
                    )
                inserted.append((link.name, row["id"]))
                record[attribute.name] = {"id": ref}
        except BaseException:
            for table, row_id in reversed(inserted):
                self.run(f"DELETE FROM {self.dialect.quote(table)} WHERE id = ?", (row_id,))
            del self.events[start:]
            raise

    def _link_each(
        self, name: str, record: Record, refs: list[tuple[RelationAttribute, int]]
    ) -> None:
        for attribute, ref in refs:
            if attribute.side == "source":
                self._insert_link(
                    attribute.link, record["id"], ref, {}, (name, attribute.name), FRESH_SOURCE
                )
            else:
                self._insert_link(
                    attribute.link, ref, record["id"], {}, (name, attribute.name), FRESH_TARGET
                )
            record[attribute.name] = {"id": ref}

    def _simple_refs(self, name: str) -> dict[str, RelationAttribute]:
        """Relation attributes of ``name`` that a new record can be linked through with one
        INSERT: to-one, not symmetric, and not exclusive on the related record's side (the new
        record's own side holds no link yet)."""
        found: dict[str, RelationAttribute] | None = self._cache.simple_refs.get(name)
        if found is None:
            found = {}
            for attribute in self.schema.attributes(name).values():
                link = attribute.link
                other_exclusive = (
                    link.source_is_exclusive
                    if attribute.other == "target"
                    else link.target_is_exclusive
                )
                if (
                    attribute.via_link
                    and not attribute.to_many
                    and not attribute.symmetric
                    and not other_exclusive
                ):
                    found[attribute.name] = attribute
            self._cache.simple_refs[name] = found
        return found

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
        fresh_sides: set[str] = set()
        if not attribute.symmetric:
            if fresh:
                fresh_sides.add(attribute.side)
            if other_fresh:
                fresh_sides.add(attribute.other)
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
        fresh_sides: set[str] | frozenset[str] = frozenset(),
    ) -> Record:
        # The "1" side is exclusive: a new link displaces the one holding that slot. A record
        # created in this very write holds no link yet, so its side needs no look-up.
        if link.source_is_exclusive and "target" not in fresh_sides:
            self._unlink_where(link, "target", target)
        if link.target_is_exclusive and "source" not in fresh_sides:
            self._unlink_where(link, "source", source)
        columns = {"source": source, "target": target, **values}
        sql = self._insert_sql(link.name, tuple(columns))
        if self.dialect.failed_statement_aborts:
            link_id = self._insert_link_guarded(link, sql, columns, values, origin)
        else:
            try:
                link_id = self._inserted_id(self.run(sql, list(columns.values())))
            except self.dialect.integrity_errors as exc:
                raise self._link_error(link, exc, columns, values, origin) from None
        record = {
            "id": link_id,
            "source": {"id": source},
            "target": {"id": target},
            **self._plain(link.name, values),
        }
        self.events.append(MutationEvent(link.name, "create", dict(record)))
        return record

    def _insert_link_guarded(
        self,
        link: LinkType,
        sql: str,
        columns: dict[str, Any],
        values: Mapping[str, Any],
        origin: tuple[str, str | None],
    ) -> Any:
        """The link INSERT under a savepoint, for databases where a failed statement aborts
        the transaction: the endpoints are looked up only after it was rolled back."""
        try:
            with self.atomic(True):
                link_id = self._inserted_id(self.run(sql, list(columns.values())))
        except self.dialect.integrity_errors as exc:
            # The savepoint is rolled back by now: the transaction can read again.
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
        if self.dialect.violation(exc).kind == "foreign key":
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


def _other_end(row: Record, record_id: Any) -> Any:
    source, target = row["source"]["id"], row["target"]["id"]
    return target if source == record_id else source
