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

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from storage.errors import (
    InvalidDataError,
    MissingReferenceError,
    StorageError,
    UniqueViolationError,
)
from storage.events import MutationEvent, Record, WriteResult
from storage.match import MatchExp
from storage.schema import LINK_FIELDS_KEY, LinkType, RelationAttribute
from storage.sql.cache import StatementCache
from storage.sql.dialect import Dialect
from storage.sql.driver import Cursor, Execute
from storage.sql.reader import Reader, chunks, placeholders
from storage.types import is_id

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Plan:
    """A validated create payload: encoded values and relation items, in payload order."""

    __slots__ = ("name", "relations", "source", "target", "values")

    def __init__(self, name: str):
        self.name = name
        self.values: dict[str, Any] = {}
        self.relations: list[tuple[RelationAttribute, list[_Item] | None]] = []
        self.source: _Item | None = None
        self.target: _Item | None = None


class _Item:
    """One related record in a payload: a reference by id, or a nested create."""

    __slots__ = ("link_values", "nested", "ref")

    def __init__(
        self,
        ref: Any = None,
        nested: _Plan | None = None,
        link_values: dict[str, Any] | None = None,
    ):
        self.ref = ref
        self.nested = nested
        self.link_values = link_values or {}


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


class Writer:
    """Synchronous writes over one connection; events go to ``events`` in order."""

    def __init__(self, reader: Reader, events: list[MutationEvent]) -> None:
        self.schema = reader.schema
        self.run: Execute = reader.run
        self.dialect: Dialect = reader.dialect
        self.codecs = reader.dialect.codecs
        self.reader = reader
        self.events = events
        self._savepoints = 0
        self._q = reader.dialect.quote
        self._inserted_id = reader.dialect.inserted_id
        self._integrity = reader.dialect.integrity_errors
        self._cache: StatementCache = reader._cache
        self._statements: dict[Any, _Shape | None] = self._cache.shapes

    # -- public writes -----------------------------------------------------------------------

    def create(self, name: str, data: Mapping[str, Any]) -> WriteResult:
        if type(data) is dict:
            link = self.schema.links.get(name)
            if link is None:
                simple = self._create_simple(name, data)
            else:
                simple = self._create_link_simple(link, data)
            if simple is not None:
                return simple
        plan = self._plan(name, data)
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
        encoders_by_field = self._encoders(name)
        refs = self._simple_refs(name) if kind == "insert" else {}
        if not all(key in encoders_by_field or key in refs for key in keys):
            self._statements[(kind, name, keys)] = None
            return None
        value_keys = tuple(key for key in keys if key in encoders_by_field)
        fields = self.schema.fields(name)
        plains = [self.codecs.plain[fields[key].type] for key in value_keys]
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
                self.run(f"DELETE FROM {self._q(name)} WHERE id = ?", (record["id"],))
                del self.events[start:]
                raise
            return
        inserted: list[tuple[str, Any]] = [(name, record["id"])]
        try:
            for attribute, ref in refs:
                link = attribute.link
                if attribute.side == "source":
                    row = self._insert_link(
                        link, record["id"], ref, {}, (name, attribute.name), _FRESH_SOURCE
                    )
                else:
                    row = self._insert_link(
                        link, ref, record["id"], {}, (name, attribute.name), _FRESH_TARGET
                    )
                inserted.append((link.name, row["id"]))
                record[attribute.name] = {"id": ref}
        except BaseException:
            for table, row_id in reversed(inserted):
                self.run(f"DELETE FROM {self._q(table)} WHERE id = ?", (row_id,))
            del self.events[start:]
            raise

    def _link_each(
        self, name: str, record: Record, refs: list[tuple[RelationAttribute, int]]
    ) -> None:
        for attribute, ref in refs:
            if attribute.side == "source":
                self._insert_link(
                    attribute.link, record["id"], ref, {}, (name, attribute.name), _FRESH_SOURCE
                )
            else:
                self._insert_link(
                    attribute.link, ref, record["id"], {}, (name, attribute.name), _FRESH_TARGET
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

    def _several_statements(self, plan: _Plan) -> bool:
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

    def _encoders(self, name: str) -> dict[str, Any]:
        encoders = self._cache.encoders.get(name)
        if encoders is None:
            encoders = self._cache.encoders[name] = {
                f.name: self.codecs.encoders[f.type] for f in self.schema.fields(name).values()
            }
        return encoders

    def update_record(self, name: str, old: Record, data: Mapping[str, Any]) -> WriteResult:
        """Update one record whose full snapshot the caller has just read (saves a read)."""
        if type(data) is dict and data:
            simple = self._update_simple(name, old, data)
            if simple is not None:
                return simple
        values, relations = self._plan_update(name, data)
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
        values, relations = self._plan_update(name, data)
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
        relations: list[tuple[RelationAttribute, list[_Item] | None]],
        data: Mapping[str, Any],
    ) -> list[Record]:
        ids = [row["id"] for row in old_rows]
        if values:
            if len(ids) == 1:
                sql = self._update_sql(name, tuple(values))
                self._execute(name, sql, [*values.values(), ids[0]], data)
            else:
                assignments = ", ".join(f"{self._q(k)} = ?" for k in values)
                for batch in chunks(ids):
                    self._execute(
                        name,
                        f"UPDATE {self._q(name)} SET {assignments} "
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
            encoded[key] = self.codecs.encode(name, key, fields[key].type, value)
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
        self.run(f"DELETE FROM {self._q(name)} WHERE id = ?", (record_id,))

    def write_internal_where(
        self, name: str, match: MatchExp | Mapping[str, Any], values: Mapping[str, Any]
    ) -> int:
        encoded = self._encode_internal(name, values)
        if not encoded:
            raise StorageError(f"write_internal_where on {name}: nothing to write", record=name)
        where, params = self.reader.where(name, match, self._q(name))
        assignments = ", ".join(f"{self._q(k)} = ?" for k in encoded)
        sql = f"UPDATE {self._q(name)} SET {assignments}{where}"
        return self._execute(name, sql, [*encoded.values(), *params], values).rowcount

    def delete_internal_where(self, name: str, match: MatchExp | Mapping[str, Any]) -> int:
        self._refuse_links(name)
        where, params = self.reader.where(name, match, self._q(name))
        return self.run(f"DELETE FROM {self._q(name)}{where}", params).rowcount

    def _refuse_links(self, name: str) -> None:
        if self.schema.links_touching(name):
            raise StorageError(
                f"{name} has links: delete it with delete(), which removes them too", record=name
            )

    @contextmanager
    def atomic(self, needed: bool = True) -> Iterator[None]:
        """A savepoint around a multi-statement write: it happens whole or not at all."""
        if not needed:
            yield
            return
        self._savepoints += 1
        name = f"w{self._savepoints}"
        events_before = len(self.events)
        self.run(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException:
            self.run(f"ROLLBACK TO SAVEPOINT {name}", ())
            self.run(f"RELEASE SAVEPOINT {name}", ())
            del self.events[events_before:]
            raise
        finally:
            self._savepoints -= 1
        self.run(f"RELEASE SAVEPOINT {name}", ())

    # -- validation --------------------------------------------------------------------------

    def _plan(self, name: str, data: Mapping[str, Any]) -> _Plan:
        record_type = self.schema.record(name)
        if type(data) is not dict and not isinstance(data, Mapping):
            raise InvalidDataError(
                f"create {name}: data must be a dict, got {type(data).__name__}", record=name
            )
        plan = _Plan(name)
        attributes = self.schema.attributes(name)
        encoders = self._encoders(name)
        values = plan.values
        for key, value in data.items():
            if key == "id":
                raise InvalidDataError(
                    f"create {name}: 'id' is assigned by the storage", record=name, field="id"
                )
            encoder = encoders.get(key)
            if encoder is not None:
                values[key] = None if value is None else encoder(name, key, value)
            elif key in attributes:
                attribute = attributes[key]
                if not attribute.via_link:
                    item = self._item(name, attribute, value, allow_link_values=False)
                    if item is None:
                        raise InvalidDataError(
                            f"create {name}: {key} must refer to a record", record=name, field=key
                        )
                    if key == "source":
                        plan.source = item
                    else:
                        plan.target = item
                else:
                    plan.relations.append((attribute, self._items(name, attribute, value)))
            else:
                self.schema.attribute(name, key)  # raises UnknownFieldError with the known names
        if isinstance(record_type, LinkType) and (plan.source is None or plan.target is None):
            raise InvalidDataError(
                f"create {name}: a link record needs both 'source' and 'target'", record=name
            )
        return plan

    def _plan_update(
        self, name: str, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[RelationAttribute, list[_Item] | None]]]:
        self.schema.record(name)
        if not isinstance(data, Mapping):
            raise InvalidDataError(
                f"update {name}: data must be a dict, got {type(data).__name__}", record=name
            )
        fields = self.schema.fields(name)
        attributes = self.schema.attributes(name)
        values: dict[str, Any] = {}
        relations: list[tuple[RelationAttribute, list[_Item] | None]] = []
        for key, value in data.items():
            if key == "id":
                raise InvalidDataError(
                    f"update {name}: 'id' cannot be changed", record=name, field="id"
                )
            if key in fields:
                values[key] = self.codecs.encode(name, key, fields[key].type, value)
            elif key in attributes and attributes[key].via_link:
                relations.append((attributes[key], self._items(name, attributes[key], value)))
            elif key in attributes:
                raise InvalidDataError(
                    f"update {name}: a link's {key} cannot be changed; delete the link record "
                    "and create a new one",
                    record=name,
                    field=key,
                )
            else:
                self.schema.attribute(name, key)
        return values, relations

    def _items(self, name: str, attribute: RelationAttribute, value: Any) -> list[_Item] | None:
        if value is None:
            return None
        if attribute.to_many:
            if isinstance(value, Mapping | str | bytes) or not isinstance(value, Sequence):
                raise InvalidDataError(
                    f"{name}.{attribute.name} holds many records: give a list, "
                    f"got {type(value).__name__}",
                    record=name,
                    field=attribute.name,
                )
            items = [self._item(name, attribute, v, allow_link_values=True) for v in value]
            return [i for i in items if i is not None]
        item = self._item(name, attribute, value, allow_link_values=True)
        return [item] if item is not None else None

    def _item(
        self, name: str, attribute: RelationAttribute, value: Any, allow_link_values: bool
    ) -> _Item | None:
        if type(value) is dict and len(value) == 1:
            # The common case, a plain reference {"id": ...}: no copies, no scans.
            ref = value.get("id")
            if type(ref) is int and _INT64_MIN <= ref <= _INT64_MAX:
                return _Item(ref=ref)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidDataError(
                f"{name}.{attribute.name} must be a record ({{'id': ...}} or a dict of fields to "
                f"create), got {type(value).__name__} {value!r}",
                record=name,
                field=attribute.name,
            )
        link_values: dict[str, Any] = {}
        if LINK_FIELDS_KEY in value:
            if not allow_link_values:
                raise InvalidDataError(
                    f"{name}.{attribute.name}: '&' is not allowed here",
                    record=name,
                    field=attribute.name,
                )
            raw = value[LINK_FIELDS_KEY]
            if not isinstance(raw, Mapping):
                raise InvalidDataError(
                    f"{name}.{attribute.name}['&'] must be a dict of link fields",
                    record=name,
                    field=attribute.name,
                )
            link_name = attribute.link.name
            link_fields = self.schema.fields(link_name)
            for key, v in raw.items():
                if key not in link_fields:
                    self.schema.field(link_name, key)
                link_values[key] = self.codecs.encode(link_name, key, link_fields[key].type, v)
        rest = {k: v for k, v in value.items() if k != LINK_FIELDS_KEY}
        if "id" in rest:
            if len(rest) != 1:
                raise InvalidDataError(
                    f"{name}.{attribute.name}: a reference {{'id': ...}} cannot carry other "
                    f"fields ({', '.join(k for k in rest if k != 'id')}); update the related "
                    "record separately",
                    record=name,
                    field=attribute.name,
                )
            ref = rest["id"]
            if not is_id(ref):
                raise InvalidDataError(
                    f"{name}.{attribute.name}: id must be an int (64-bit) or str, got {ref!r}",
                    record=name,
                    field=attribute.name,
                )
            return _Item(ref=ref, link_values=link_values)
        return _Item(nested=self._plan(attribute.related, rest), link_values=link_values)

    # -- statements --------------------------------------------------------------------------

    def _create(self, plan: _Plan) -> Record:
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

    def _plain(self, name: str, encoded: Mapping[str, Any]) -> Record:
        # Decode the encoded form, so that events and results agree exactly with what a read
        # returns (json normalised, timestamps in UTC).
        if not encoded:
            return {}
        columns = tuple(encoded)
        key = (name, columns)
        decoders = self._cache.plains.get(key)
        if decoders is None:
            found = self.reader._decoders(name, columns)
            # All-identity columns (strings, numbers) need no decoding at all.
            decoders = self._cache.plains[key] = found if any(found) else ()
        if not decoders:
            return dict(encoded)
        return {
            k: v if decoder is None else decoder(v)
            for (k, v), decoder in zip(encoded.items(), decoders, strict=True)
        }

    def _insert_sql(self, name: str, columns: tuple[str, ...]) -> str:
        key = (name, columns)
        sql = self._cache.inserts.get(key)
        if sql is None:
            sql = self._cache.inserts[key] = self.dialect.insert(name, columns)
        return sql

    def _update_sql(self, name: str, columns: tuple[str, ...]) -> str:
        """``UPDATE <name> SET <columns> = ? WHERE id = ?``, worked out once."""
        key = (name, columns)
        sql = self._cache.updates.get(key)
        if sql is None:
            assignments = ", ".join(f"{self._q(k)} = ?" for k in columns)
            sql = f"UPDATE {self._q(name)} SET {assignments} WHERE id = ?"
            self._cache.updates[key] = sql
        return sql

    def _insert(self, name: str, values: Mapping[str, Any]) -> Any:
        sql = self._insert_sql(name, tuple(values))
        return self._inserted_id(self._execute(name, sql, list(values.values()), values))

    def _resolve(self, item: _Item) -> Any:
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
            except self._integrity as exc:
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
        except self._integrity as exc:
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
        self, attribute: RelationAttribute, record_id: Any, items: list[_Item] | None
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
        self.run(f"DELETE FROM {self._q(name)} WHERE id = ?", (row["id"],))
        self.events.append(MutationEvent(name, "delete", row))

    def _execute(
        self, name: str, sql: str, params: Sequence[Any], values: Mapping[str, Any]
    ) -> Cursor:
        try:
            return self.run(sql, params)
        except self._integrity as exc:
            raise self._integrity_error(name, exc, values) from None

    def _integrity_error(
        self, name: str, exc: BaseException, values: Mapping[str, Any]
    ) -> StorageError:
        """The storage error for a constraint failure of a write to ``name``."""
        violation = self.dialect.violation(exc)
        if violation.kind == "unique":
            shown = {f: values[f] for f in violation.fields if f in values}
            return UniqueViolationError(name, violation.fields, shown or None)
        return StorageError(
            f"{name}: the write violates a database constraint ({violation.message})",
            record=name,
        )


_UNKNOWN: Any = object()


class _Ref:
    """In a remembered create statement: this key references a record through ``attribute``."""

    __slots__ = ("attribute",)

    def __init__(self, attribute: RelationAttribute):
        self.attribute = attribute


_STATEMENTS_KEPT = 4096
_FRESH_SOURCE = frozenset({"source"})
_FRESH_TARGET = frozenset({"target"})


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
        if type(ref) is int and _INT64_MIN <= ref <= _INT64_MAX:
            return ref
    return None


def _other_end(row: Record, record_id: Any) -> Any:
    source, target = row["source"]["id"], row["target"]["id"]
    return target if source == record_id else source
