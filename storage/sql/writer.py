"""Writes: create, update and delete, with nested references and creates, re-linking of
exclusive relations, cascades, and the mutation events each write causes.

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
from storage.schema import LinkType, RelationAttribute
from storage.sql.links import Links
from storage.sql.plans import INT64_MAX, INT64_MIN, CreatePlan, Relations
from storage.sql.reader import chunks, placeholders


class _Shape:
    """What a payload of exactly these keys takes (worked out once per shape, then
    remembered): the statement of its value fields, per key its encoder or the :class:`_Ref`
    it links through, how each value field reads back (see ``Codecs.plain``; None when every
    value reads back as written), and whether it links."""

    __slots__ = ("links", "plains", "sql", "steps")

    def __init__(self, sql: str, steps: list[Any], plains: list[Any] | None, links: bool):
        self.sql = sql
        self.steps = steps
        self.plains = plains
        self.links = links


class Writer(Links):
    """Synchronous writes over one connection; events go to ``events`` in order."""

    __slots__ = ()

    def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        if type(data) is dict:
            link = self.schema.links.get(name)
            if link is None:
                simple = self._create_simple(name, data)
            else:
                simple = self._create_link_simple(link, data)
            if simple is not None:
                return simple
        plan = self.planner.create(name, data)
        start = len(self.events)
        if not self._several_statements(plan):
            record = self._create(plan)  # one INSERT: atomic by itself
        else:
            with self.atomic(True):
                record = self._create(plan)
        return WriteResult([record], self.events[start:])

    def _create_simple(self, name: str, data: dict[str, Any]) -> WriteResult | None:
        """The most common creates without a plan: value fields, plus references ``{"id": n}``
        through to-one relation attributes that displace no link. None when the payload needs
        the general path (anything else, or an error to report)."""
        keys = tuple(data)
        statement = self._statements.get(("insert", name, keys), _UNKNOWN)
        if statement is _UNKNOWN:
            statement = self._value_statement("insert", name, keys)
        if statement is None:
            return None
        # Worked out once per payload shape: the INSERT of the value fields, and per key its
        # encoder or the relation attribute it references through.
        sql, steps, plains = statement.sql, statement.steps, statement.plains
        if not statement.links:
            params = [
                None if value is None else encoder(name, key, value)
                for (key, value), encoder in zip(data.items(), steps, strict=True)
            ]
            record = {"id": self._inserted_id(self._execute(name, sql, params, data))}
            _read_back(record, data, params, plains)
            event = MutationEvent(name, "create", dict(record))
            self.events.append(event)
            return WriteResult([record], [event])
        values: dict[str, Any] = {}
        params = []
        refs: list[tuple[RelationAttribute, int]] = []
        for (key, value), step in zip(data.items(), steps, strict=True):
            if type(step) is _Ref:
                ref = _plain_ref(value)
                if ref is None:
                    return None
                refs.append((step.attribute, ref))
            else:
                values[key] = value
                params.append(None if value is None else step(name, key, value))
        record = {"id": self._inserted_id(self._execute(name, sql, params, values))}
        _read_back(record, values, params, plains)
        start = len(self.events)
        self.events.append(MutationEvent(name, "create", dict(record)))
        self._link_refs(name, record, refs, start)
        return WriteResult([record], self.events[start:])

    def _value_statement(self, kind: str, name: str, keys: tuple[str, ...]) -> _Shape | None:
        """The :class:`_Shape` of a payload of exactly these keys; None when a key is neither a
        value field nor (for a create) a simple reference: such payloads take the general
        path. Both answers are remembered."""
        if len(self._statements) >= _STATEMENTS_KEPT:
            self._statements.clear()  # payload shapes come from callers: keep the memory bounded
        encoders_by_field = self.planner.encoders(name)
        refs = self._simple_refs(name) if kind == "insert" else {}
        if not all(key in encoders_by_field or key in refs for key in keys):
            self._statements[(kind, name, keys)] = None
            return None
        value_keys = tuple(key for key in keys if key in encoders_by_field)
        fields = self.schema.fields(name)
        plains = [self.dialect.codecs.plain[fields[key].type] for key in value_keys]
        if kind == "insert":
            sql = self._insert_sql(name, value_keys)
        else:
            sql = self._update_sql(name, value_keys)
        steps: list[Any] = [
            encoders_by_field[key] if key in encoders_by_field else _Ref(refs[key]) for key in keys
        ]
        statement = _Shape(sql, steps, plains if any(plains) else None, len(value_keys) < len(keys))
        self._statements[(kind, name, keys)] = statement
        return statement

    def _create_link_simple(self, link: LinkType, data: dict[str, Any]) -> WriteResult | None:
        """A link record between two existing records, with no exclusive side: one INSERT."""
        if len(data) != 2 or link.source_is_exclusive or link.target_is_exclusive:
            return None
        source, target = _plain_ref(data.get("source")), _plain_ref(data.get("target"))
        if source is None or target is None:
            return None
        start = len(self.events)
        record = self._insert_link(link, source, target, {}, (link.name, None))
        return WriteResult([record], self.events[start:])

    def _several_statements(self, plan: CreatePlan) -> bool:
        if plan.relations:
            return True
        link = self.schema.links.get(plan.name)
        if link is None:
            return False
        # A link record: one INSERT, unless it displaces a link or creates its endpoints.
        return (
            link.source_is_exclusive
            or link.target_is_exclusive
            or (plan.source is not None and plan.source.nested is not None)
            or (plan.target is not None and plan.target.nested is not None)
        )

    def update_record(self, name: str, old: Record, data: Mapping[str, Any]) -> WriteResult:
        """Update one record whose full snapshot the caller has just read (saves a read)."""
        if type(data) is dict and data:
            simple = self._update_simple(name, old, data)
            if simple is not None:
                return simple
        values, relations = self.planner.update(name, data)
        start = len(self.events)
        with self.atomic(bool(relations)):
            record = self._update_rows(name, [old], values, relations, data)[0]
        return WriteResult([record], self.events[start:])

    def _update_simple(self, name: str, old: Record, data: dict[str, Any]) -> WriteResult | None:
        """Value fields of one known record: one UPDATE, no plan (None: take the general path)."""
        statement = self._update_statement(name, data)
        if statement is None:
            return None
        params = _encode_params(name, data, statement.steps)
        return self._update_known(name, old, data, statement, params)

    def _update_statement(self, name: str, data: dict[str, Any]) -> _Shape | None:
        keys = tuple(data)
        statement: Any = self._statements.get(("update", name, keys), _UNKNOWN)
        if statement is _UNKNOWN:
            return self._value_statement("update", name, keys)
        return statement  # type: ignore[no-any-return]

    def _update_known(
        self, name: str, old: Record, data: dict[str, Any], statement: _Shape, params: list[Any]
    ) -> WriteResult:
        record_id = old["id"]
        self._execute(name, statement.sql, [*params, record_id], data)
        written: Record = {"id": record_id}
        _read_back(written, data, params, statement.plains)
        event = MutationEvent(name, "update", written, old, tuple(data))
        self.events.append(event)
        return WriteResult([{**old, **written}], [event])

    def update(
        self, name: str, match: MatchExp | Mapping[str, Any] | None, data: Mapping[str, Any]
    ) -> WriteResult:
        if type(data) is dict and data and type(match) is dict and len(match) == 1:
            # The most common update: value fields of one record named by its id.
            record_id = match.get("id")
            statement = self._update_statement(name, data) if type(record_id) is int else None
            if statement is not None:
                params = _encode_params(name, data, statement.steps)  # bad values fail first
                old = self.reader.snapshot(name, record_id)
                if old is None:
                    return WriteResult([], [])
                return self._update_known(name, old, data, statement, params)
        values, relations = self.planner.update(name, data)
        start = len(self.events)
        old_rows = self.reader.snapshots(name, match)
        if not old_rows:
            return WriteResult([], [])
        with self.atomic(len(old_rows) > 1 or bool(relations)):
            records = self._update_rows(name, old_rows, values, relations, data)
        return WriteResult(records, self.events[start:])

    def _update_rows(
        self,
        name: str,
        old_rows: list[Record],
        values: dict[str, Any],
        relations: Relations,
        data: Mapping[str, Any],
    ) -> list[Record]:
        ids = [row["id"] for row in old_rows]
        if values:
            if len(ids) == 1:
                sql = self._update_sql(name, tuple(values))
                self._execute(name, sql, [*values.values(), ids[0]], data)
            else:
                assignments = ", ".join(f"{self.dialect.quote(k)} = ?" for k in values)
                for batch in chunks(ids):
                    self._execute(
                        name,
                        f"UPDATE {self.dialect.quote(name)} SET {assignments} "
                        f"WHERE id IN ({placeholders(len(batch))})",
                        [*values.values(), *batch],
                        data,
                    )
        written = self._plain(name, values)
        keys = tuple(written)
        records: list[Record] = []
        for old in old_rows:
            if written:
                self.events.append(
                    MutationEvent(name, "update", {"id": old["id"], **written}, old, keys)
                )
            for attribute, items in relations:
                self._relink(attribute, old["id"], items)
            records.append({**old, **written})
        return records

    def delete(self, name: str, match: MatchExp | Mapping[str, Any] | None) -> WriteResult:
        start = len(self.events)
        rows = self.reader.snapshots(name, match)
        deleted: set[tuple[str, Any]] = set()
        # One row of a record type no link touches is a single DELETE: atomic by itself.
        with self.atomic(len(rows) > 1 or (bool(rows) and bool(self.schema.links_touching(name)))):
            for row in rows:
                self._delete_record(name, row, deleted)
        return WriteResult(rows, self.events[start:])

    def _encode_internal(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        fields = self.schema.fields(name)
        encoded: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                self.schema.field(name, key)  # raises UnknownFieldError naming the fields
            encoded[key] = self.dialect.codecs.encode(name, key, fields[key].type, value)
        return encoded

    def insert_internal(self, name: str, values: Mapping[str, Any]) -> Any:
        if name in self.schema.links:
            raise StorageError(
                f"{name} is a link: create it with create(), which reports the link", record=name
            )
        return self._insert(name, self._encode_internal(name, values))

    def write_internal(self, name: str, record_id: Any, values: Mapping[str, Any]) -> None:
        encoded = self._encode_internal(name, values)
        if not encoded:
            return
        sql = self._update_sql(name, tuple(encoded))
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

    def _create(self, plan: CreatePlan) -> Record:
        name = plan.name
        link = self.schema.links.get(name)
        record: Record
        if link is not None:
            assert plan.source is not None and plan.target is not None
            source = self._resolve(plan.source)
            target = self._resolve(plan.target)
            record = self._insert_link(link, source, target, plan.values, (name, None))
        else:
            values = plan.values
            sql = self._insert_sql(name, tuple(values))
            record_id = self._inserted_id(self._execute(name, sql, list(values.values()), values))
            record = {"id": record_id, **self._plain(name, values)}
            self.events.append(MutationEvent(name, "create", dict(record)))
        for attribute, items in plan.relations:
            refs: list[Record] = []
            for item in items or []:
                related = self._resolve(item)
                # The record is new: its own side holds no link yet, only the other may.
                self._link(
                    attribute,
                    record["id"],
                    related,
                    item.link_values,
                    fresh=True,
                    # A nested record is new too, unless its own payload linked it already.
                    other_fresh=item.nested is not None
                    and all(a.link is not attribute.link for a, _ in item.nested.relations),
                )
                refs.append({"id": related})
            record[attribute.name] = refs if attribute.to_many else (refs[0] if refs else None)
        return record


_UNKNOWN: Any = object()


class _Ref:
    """In a remembered create statement: this key references a record through ``attribute``."""

    __slots__ = ("attribute",)

    def __init__(self, attribute: RelationAttribute):
        self.attribute = attribute


_STATEMENTS_KEPT = 4096


def _encode_params(name: str, data: dict[str, Any], encoders: list[Any]) -> list[Any]:
    return [
        None if value is None else encoder(name, key, value)
        for (key, value), encoder in zip(data.items(), encoders, strict=True)
    ]


def _read_back(
    record: Record, data: dict[str, Any], params: list[Any], plains: list[Any] | None
) -> None:
    """Add the written fields to ``record`` as a read would return them (json normalised,
    timestamps in UTC), so that events and results equal what a read returns."""
    if plains is None:
        record.update(data)
        return
    for (key, value), stored, plain in zip(data.items(), params, plains, strict=False):
        record[key] = value if plain is None or value is None else plain(value, stored)


def _plain_ref(value: Any) -> int | None:
    """The id of a plain reference ``{"id": n}`` with a 64-bit int, else None."""
    if type(value) is dict and len(value) == 1:
        ref = value.get("id")
        if type(ref) is int and INT64_MIN <= ref <= INT64_MAX:
            return ref
    return None
