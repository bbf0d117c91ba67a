"""Writes: create, update and delete, with nested references and creates, re-linking of
exclusive relations, cascades, and the mutation events each write causes.

One path per write: the planner (:mod:`storage.sql.plans`) turns the payload into a typed plan
through the shape it remembers for the payload's keys, and the plan is executed; a payload of a
known shape is the fast path, with no code of its own. How a create is made atomic follows from
its plan: one INSERT is atomic by itself; a create whose links are plain INSERTs (``direct``)
undoes its rows if a link fails; anything else (nested creates, displaced links, to-many
relations, link fields) runs under a savepoint. An update takes a savepoint when it re-links or
writes several records. Where the dialect chains INSERTs (PostgreSQL), a create linked to one
existing record (an item on an order) is one statement, its row and its link (one round trip
instead of two), and a nested create with its link to the new record likewise. Where a failed
statement aborts the transaction and the dialect's errors name a missing reference
(PostgreSQL), no write takes a savepoint of its own: the writer never runs a statement after a
failure there, and the aborted transaction can only be rolled back whole or to a savepoint its
caller took, either of which undoes the write whole.

Every payload is validated completely before the first statement runs, so bad input changes
nothing; errors that only the database can see (a unique violation) roll back the write's
savepoint.

Backend-neutral: statements go through the dialect (``INSERT`` and how its id comes back,
constraint failures, codecs) and run on the driver interface of :mod:`storage.sql.driver`.
A failed statement is never followed by another statement in the same transaction unless a
savepoint was rolled back first, where the dialect says a failure aborts the transaction
(PostgreSQL); on SQLite a failed statement undoes only itself, which the link compensation
below relies on (one savepoint fewer per create).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage.errors import StorageError
from storage.events import MutationEvent, Record, WriteResult
from storage.match import MatchExp
from storage.schema import RelationAttribute
from storage.sql.deltas import Deltas
from storage.sql.plans import INT64_MAX, INT64_MIN, Item, Plan
from storage.sql.reader import chunks, placeholders


class Writer(Deltas):
    """Synchronous writes over one connection; events go to ``events`` in order."""

    __slots__ = ()

    def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        plan = self.planner.plan("create", name, data)
        start = len(self.events)
        if self._whole:
            record = self._create(plan)  # a failure aborts the transaction: whole anyway
        elif not plan.direct:
            with self.atomic(True):
                record = self._create(plan)
        elif plan.relations:
            record = self._create_undoable(plan, start)
        else:
            record = self._insert_row(plan)  # one INSERT: atomic by itself
        return WriteResult([record], self.events[start:])

    def _create_undoable(self, plan: Plan, start: int) -> Record:
        """A create whose links are plain INSERTs (``plan.direct``): instead of a savepoint
        around it, a failed link (a missing record) undoes the rows inserted so far (see
        :meth:`_undo_creates`). Where a failed statement aborts the transaction, the links go
        under a savepoint instead and only the record's own row is undone."""
        if self.dialect.failed_statement_aborts:
            record = self._insert_row(plan)
            try:
                with self.atomic(True):
                    self._link_relations(plan, record)
            except BaseException:
                self._undo_creates(start)
                raise
            return record
        try:
            record = self._insert_row(plan)
            self._link_relations(plan, record)
        except BaseException:
            self._undo_creates(start)
            raise
        return record

    def _create(self, plan: Plan) -> Record:
        if plan.relations:
            if self._whole and self._references_in_one(plan):
                return self._create_referencing(plan)
            record = self._insert_row(plan)
            self._link_relations(plan, record)
            return record
        return self._insert_row(plan)

    def _references_in_one(self, plan: Plan) -> bool:
        """Whether a create and its one link to an existing record can be one statement
        (:meth:`_create_referencing`): the dialect chains INSERTs (and no write here takes a
        savepoint: the caller checked ``_whole``), the record is a plain entity, its payload
        names one relation with one reference and no link fields, and the link displaces
        nothing (the side the new record takes is the only exclusive one, if any)."""
        if len(plan.relations) != 1 or not self.dialect.chains_inserts:
            return False
        attribute, items = plan.relations[0]
        if not items or len(items) != 1 or attribute.symmetric:
            return False
        item = items[0]
        if item.nested is not None or item.link_values:
            return False
        shape = plan.shape
        if shape.link is not None or shape.sql is None:
            return False
        link = attribute.link
        # The existing end would lose its link to another record when it may hold only one:
        # a target holds one source when the source side is exclusive, and the reverse.
        if attribute.side == "source":
            return not link.source_is_exclusive
        return not link.target_is_exclusive

    def _create_referencing(self, plan: Plan) -> Record:
        """A create and its link to an existing record in one statement (see
        :meth:`_references_in_one` for when, :meth:`_insert_with_link` for how)."""
        attribute, items = plan.relations[0]
        assert items is not None
        ref = items[0].ref
        record = self._insert_with_link(plan, attribute, attribute.side, ref)
        record[attribute.name] = [{"id": ref}] if attribute.to_many else {"id": ref}
        return record

    def _insert_with_link(
        self, plan: Plan, attribute: RelationAttribute, side: str, other_id: Any
    ) -> Record:
        """The planned record's row and its link to ``other_id``, the record taking ``side``
        of ``attribute``'s link, in one statement: ``WITH r AS (INSERT <record> RETURNING id)
        INSERT INTO <link> ... SELECT ... FROM r``. The record's create event, then the
        link's, and the same errors, as two statements would give them (a missing
        ``other_id`` is the link's foreign key, named from the error; the record's own
        constraints are its). The record comes back with its id and values."""
        shape = plan.shape
        name = shape.name
        link = attribute.link
        other = "target" if side == "source" else "source"
        key = (name, shape.value_keys, link.name, side)
        sql = self._cache.linked.get(key)
        if sql is None:
            quote = self.dialect.quote
            ends = "r.id, ?" if side == "source" else "?, r.id"
            sql = self._cache.linked[key] = (
                f"WITH r AS ({shape.sql}) INSERT INTO {quote(link.name)} (source, target) "
                f"SELECT {ends} FROM r RETURNING id, {quote(side)}"
            )
        params = plan.params
        try:
            link_id, record_id = self.run(sql, [*params, other_id]).fetchone()
        except self.dialect.integrity_errors as exc:
            violation = self.dialect.violation(exc)
            # Only link tables have foreign keys; a record's own constraints are its.
            if violation.kind == "foreign key" or violation.table == link.name:
                columns: dict[str, Any] = {side: None, other: other_id}
                origin = (attribute.owner, attribute.name)
                raise self._link_error(link, exc, columns, {}, origin) from None
            raise self._integrity_error(name, exc, plan.values) from None
        record: Record = {"id": record_id}
        _read_back(record, plan.values, params, shape.plains)
        self.events.append(MutationEvent(name, "create", dict(record)))
        ends_of = {side: {"id": record_id}, other: {"id": other_id}}
        link_record = {"id": link_id, "source": ends_of["source"], "target": ends_of["target"]}
        self.events.append(MutationEvent(link.name, "create", link_record))
        return record

    def _insert_row(self, plan: Plan) -> Record:
        """The planned record's own row (a link record's ends created first when nested) and
        its create event."""
        shape = plan.shape
        if shape.link is not None:
            source, target = plan.source, plan.target
            assert source is not None and target is not None
            return self._insert_link(
                shape.link,
                self._resolve(source) if type(source) is Item else source,
                self._resolve(target) if type(target) is Item else target,
                plan.encoded if plan.params else _NO_VALUES,
                (shape.name, None),
            )
        name = shape.name
        assert shape.sql is not None
        params = plan.params
        # A row of its own, no foreign key: pending updates of other tables need not go first.
        direct = bool(self._pending) and not self.pending_in(name)
        record: Record = {
            "id": self._inserted_id(self._execute(name, shape.sql, params, plan.values, direct))
        }
        _read_back(record, plan.values, params, shape.plains)
        self.events.append(MutationEvent(name, "create", dict(record)))
        return record

    def _create_linked(self, attribute: RelationAttribute, record_id: Any, nested: Plan) -> Any:
        """A nested create and its link to the new record ``record_id`` in one statement (see
        ``Links._joins_in_one`` for when, :meth:`_insert_with_link` for how): the nested
        record takes the other side of ``attribute``'s link."""
        return self._insert_with_link(nested, attribute, attribute.other, record_id)["id"]

    def update_record(self, name: str, old: Record, data: Mapping[str, Any]) -> WriteResult:
        """Update one record whose full snapshot the caller has just read (saves a read)."""
        plan = self.planner.plan("update", name, data)
        start = len(self.events)
        if plan.relations:
            with self.atomic(not self._whole):
                records = self._update_rows(name, plan, [old])
        else:
            records = [self._update_one(name, plan, old)]
        return WriteResult(records, self.events[start:])

    def update(
        self, name: str, match: MatchExp | Mapping[str, Any] | None, data: Mapping[str, Any]
    ) -> WriteResult:
        plan = self.planner.plan("update", name, data)  # bad input fails before anything is read
        start = len(self.events)
        record_id = match.get("id") if type(match) is dict and len(match) == 1 else None
        # The rows are read locked where writers run at once (PostgreSQL: FOR UPDATE, the lock
        # the UPDATE takes anyway, taken at the read): the event's old values are the row as
        # it is when written, not as another transaction left it before committing a change
        # (a view's membership and every delta are judged from them).
        if type(record_id) is int and INT64_MIN <= record_id <= INT64_MAX:
            # One record named by its id: one read of its snapshot (other ids: the match
            # compiler's error).
            old = self.reader.snapshot(name, record_id, lock=True)
            old_rows = [old] if old is not None else []
        else:
            old_rows = self.reader.snapshots(name, match, lock=True)
        if not old_rows:
            return WriteResult([], [])
        if len(old_rows) > 1 or plan.relations:
            with self.atomic(not self._whole):
                records = self._update_rows(name, plan, old_rows)
        else:
            records = [self._update_one(name, plan, old_rows[0])]
        return WriteResult(records, self.events[start:])

    def _update_one(self, name: str, plan: Plan, old: Record) -> Record:
        """The value fields of one record (a plan without relations): one UPDATE, one event."""
        shape = plan.shape
        if shape.sql is None:
            return {**old}
        params, values = plan.params, plan.values
        record_id = old["id"]
        if self.deferrable(name, shape.value_keys):
            # Nothing reads the statement's result: kept pending, sent before anything that
            # could see it (see storage.sql.statements).
            self.defer(name, record_id, shape.value_keys, params, values)
        else:
            self._execute(name, shape.sql, [*params, record_id], values)
        written: Record = {"id": record_id}
        _read_back(written, values, params, shape.plains)
        self.events.append(MutationEvent(name, "update", written, old, shape.value_keys))
        return {**old, **written}

    def _update_rows(self, name: str, plan: Plan, old_rows: list[Record]) -> list[Record]:
        shape = plan.shape
        params, values = plan.params, plan.values
        if shape.sql is not None:
            if len(old_rows) == 1:
                self._execute(name, shape.sql, [*params, old_rows[0]["id"]], values)
            else:
                quote = self.dialect.quote
                assignments = ", ".join(f"{quote(k)} = ?" for k in shape.value_keys)
                for batch in chunks([row["id"] for row in old_rows]):
                    self._execute(
                        name,
                        f"UPDATE {quote(name)} SET {assignments} "
                        f"WHERE id IN ({placeholders(len(batch))})",
                        [*params, *batch],
                        values,
                    )
        keys = shape.value_keys
        written: Record = {}
        if keys:
            _read_back(written, values, params, shape.plains)
        records: list[Record] = []
        for old in old_rows:
            if keys:
                self.events.append(
                    MutationEvent(name, "update", {"id": old["id"], **written}, old, keys)
                )
            for attribute, items in plan.relations:
                self._relink(attribute, old["id"], items)
            records.append({**old, **written})
        return records

    def delete(self, name: str, match: MatchExp | Mapping[str, Any] | None) -> WriteResult:
        start = len(self.events)
        rows = self.reader.snapshots(name, match, lock=True)  # locked, as update's (above)
        deleted: set[tuple[str, Any]] = set()
        # One row of a record type no link touches is a single DELETE: atomic by itself.
        several = len(rows) > 1 or (bool(rows) and bool(self.schema.links_touching(name)))
        with self.atomic(several and not self._whole):
            for row in rows:
                self._delete_record(name, row, deleted)
        return WriteResult(rows, self.events[start:])

    def _encode_internal(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        encoders = self.planner.encoders(name)  # every field's (an unknown record raises)
        encoded: dict[str, Any] = {}
        for key, value in values.items():
            encoder = encoders.get(key)
            if encoder is None:
                self.schema.field(name, key)  # raises UnknownFieldError naming the fields
                raise AssertionError(key)  # (not reached: every field has an encoder)
            encoded[key] = None if value is None else encoder(name, key, value)
        return encoded

    def insert_internal(self, name: str, values: Mapping[str, Any]) -> Any:
        if name in self.schema.links:
            raise StorageError(
                f"{name} is a link: create it with create(), which reports the link", record=name
            )
        encoded = self._encode_internal(name, values)
        sql = self.planner.insert_sql(name, tuple(encoded))
        # Not a link (refused above): no foreign key; pending updates of other tables stay.
        direct = bool(self._pending) and not self.pending_in(name)
        cursor = self._execute(name, sql, list(encoded.values()), encoded, direct)
        return self._inserted_id(cursor)

    def write_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        encoded = self._encode_internal(name, values)
        if not encoded:
            return
        sql = self.planner.update_sql(name, tuple(encoded))
        self._execute(name, sql, [*encoded.values(), record_id], values)

    def delete_internal(self, name: str, record_id: Any) -> None:
        self._refuse_links(name)
        self.run(f"DELETE FROM {self.dialect.quote(name)} WHERE id = ?", (record_id,))

    def write_internal_where(
        self, name: str, match: MatchExp | Mapping[str, Any], values: Mapping[str, Any]
    ) -> int:
        encoded = self._encode_internal(name, values)
        if not encoded:
            raise StorageError(f"write_internal_where on {name}: nothing to write", record=name)
        where, params = self.reader.where(name, match, self.dialect.quote(name))
        assignments = ", ".join(f"{self.dialect.quote(k)} = ?" for k in encoded)
        sql = f"UPDATE {self.dialect.quote(name)} SET {assignments}{where}"
        return self._execute(name, sql, [*encoded.values(), *params], values).rowcount

    def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        self._refuse_links(name)
        where, params = self.reader.where(name, match, self.dialect.quote(name))
        return self.run(f"DELETE FROM {self.dialect.quote(name)}{where}", params).rowcount

    def _refuse_links(self, name: str) -> None:
        if self.schema.links_touching(name):
            raise StorageError(
                f"{name} has links: delete it with delete(), which removes them too", record=name
            )


_NO_VALUES: Mapping[str, Any] = {}  # never written to


def _read_back(
    record: Record, data: Mapping[str, Any], params: list[Any], plains: list[Any] | None
) -> None:
    """Add the written fields to ``record`` as a read would return them (json normalised,
    timestamps in UTC), so that events and results equal what a read returns."""
    if plains is None:
        record.update(data)
        return
    for (key, value), stored, plain in zip(data.items(), params, plains, strict=False):
        record[key] = value if plain is None or value is None else plain(value, stored)
