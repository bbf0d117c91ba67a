"""Reads: ``find`` with matches, attribute queries, ordering and paging.

Related records are loaded per relation attribute with one batched query for all parents of a
level (never one query per parent), so a read costs O(depth of the attribute query) statements.
A find without ``order_by`` returns its records in id order (and a limit keeps the lowest ids),
on every backend: SQLite scans in id order anyway; PostgreSQL scans in storage order, where an
updated row moves to the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from storage.errors import MatchError, QueryError, UnknownFieldError
from storage.events import Record
from storage.match import MatchExp, to_match
from storage.query import AttributeQuery, parse_attribute_query
from storage.schema import LINK_FIELDS_KEY, LinkType, RelationAttribute, Schema
from storage.sql.cache import SHAPES_KEPT, StatementCache
from storage.sql.dialect import Dialect
from storage.sql.driver import Execute
from storage.sql.match import MatchCompiler
from storage.types import is_id

# Tuples, not X | Y unions: a union is built anew on every isinstance call here.
_CONTAINERS = (dict, list, tuple, set)
_SCALARS = (int, float, str)
_SEQUENCES = (list, tuple)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHAPES_KEPT = SHAPES_KEPT
# Stay well below SQLite's bound-parameter limit when loading related records in batches.
_BATCH = 500


def chunks(ids: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


def placeholders(count: int) -> str:
    return ", ".join("?" for _ in range(count))


_ID_ORDER = " ORDER BY t.id"
"""The order of records a find asked for none: by id, the same on every backend."""


class Reader:
    """Synchronous read queries over one connection, inside the caller's transaction.

    ``run`` executes a neutral statement (see :func:`storage.sql.driver.bind`); ``cache`` is
    the backend's memory for this schema, shared by all its sessions."""

    __slots__ = ("_cache", "dialect", "run", "schema")

    def __init__(
        self, schema: Schema, run: Execute, dialect: Dialect, cache: StatementCache
    ) -> None:
        self.schema = schema
        self.run = run
        self.dialect = dialect
        self._cache = cache

    # -- public reads ----------------------------------------------------------------------

    def find(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        self.schema.record(name)
        if attribute_query is None and order_by is None and offset is None and type(match) is dict:
            found = self._find_ids(name, match, limit)
            if found is not None:
                return found
        query = self._parse(name, attribute_query)
        key = (name, query)
        cached = self._cache.selects.get(key)
        if cached is None:
            columns = self._own_columns(name, query)
            select = self._select(name, columns)
            cached = self._cache.selects[key] = (select, columns)
        sql, columns = cached
        where, params = self.where(name, match, "t")
        sql += where + self._order_by(name, order_by) + self._paging(name, limit, offset, params)
        rows = self.run(sql, params).fetchall()
        records = [self._decode_row(name, columns, row) for row in rows]
        self._attach(name, records, query)
        return records

    def _find_ids(self, name: str, match: dict[str, Any], limit: Any) -> list[Record] | None:
        """Ids of records matching field equalities (the engine's look-ups: the record whose
        ``external_id`` is this): the statement the general path builds, without building it.
        None when the general path must answer (or report an error)."""
        if limit is not None and (type(limit) is not int or not 0 <= limit < 2**63):
            return None
        simple = self._dict_where(name, match, "t") if match else None
        if simple is None:
            return None
        where, params = simple
        if limit is not None:
            params.extend((limit, 0))
        cache_key = (name, where, limit is not None)
        sql = self._cache.id_selects.get(cache_key)
        if sql is None:
            paging = " LIMIT ? OFFSET ?" if limit is not None else ""
            sql = f"SELECT t.id FROM {self.dialect.quote(name)} t{where}{_ID_ORDER}{paging}"
            self._cache.id_selects[cache_key] = sql
        return [{"id": row[0]} for row in self.run(sql, params).fetchall()]

    def count(self, name: str, match: MatchExp | Mapping[str, Any] | None = None) -> int:
        self.schema.record(name)
        where, params = self.where(name, match, "t")
        row = self.run(
            f"SELECT COUNT(*) FROM {self.dialect.quote(name)} t{where}", params
        ).fetchone()
        return int(row[0])

    # -- building blocks shared with the writer ---------------------------------------------

    def where(
        self, name: str, match: MatchExp | Mapping[str, Any] | None, alias: str
    ) -> tuple[str, list[Any]]:
        if type(match) is dict and match:
            simple = self._dict_where(name, match, alias)
            if simple is not None:
                return simple
        exp = to_match(match)
        if exp is None:
            return "", []
        sql, params = MatchCompiler(self.schema, self.dialect).compile(name, exp, alias)
        return f" WHERE {sql}", params

    def _dict_where(
        self, name: str, match: dict[str, Any], alias: str
    ) -> tuple[str, list[Any]] | None:
        """A dict match without building an expression where that is safe: equalities on own
        fields directly, and other shapes of plain int / ASCII str / None values
        (``"tts_calls.id"``, a computation's look-up through a relation) from SQL compiled once
        per shape."""
        simple = self._simple_where(name, match, alias)
        if simple is not None:
            return simple
        values = list(match.values())
        for value in values:
            kind = type(value)
            if kind is int:
                if not _INT64_MIN <= value <= _INT64_MAX:
                    return None
            elif value is not None and (kind is not str or not value.isascii()):
                return None
        # None compiles to IS NULL (no parameter); an own json field takes the codec's column
        # value of the scalar (SQLite: its JSON text), as the compiled statement does.
        fields = self.schema.fields(name)
        as_json = [
            k in fields and fields[k].type == "json" for k, v in match.items() if v is not None
        ]
        values = [v for v in values if v is not None]
        if any(as_json):
            encode = self.dialect.codecs.encoders["json"]
            values = [
                encode(name, "", v) if json else v for v, json in zip(values, as_json, strict=True)
            ]
        remembered = self._cache.dict_wheres
        key = (name, alias, tuple(match), tuple(type(v) for v in match.values()))
        cached = remembered.get(key)
        if cached is not None:
            return cached, values
        exp = to_match(match)
        if exp is None:
            return None
        sql, params = MatchCompiler(self.schema, self.dialect).compile(name, exp, alias)
        where = f" WHERE {sql}"
        # Remembered only when the compiled statement takes exactly these parameters, in
        # order: then any values of the same types fit it.
        if params == values and [type(p) for p in params] == [type(v) for v in values]:
            if len(remembered) >= _SHAPES_KEPT:
                remembered.clear()  # match shapes come from callers: keep the memory bounded
            remembered[key] = where
        return where, params

    def _simple_where(
        self, name: str, match: dict[str, Any], alias: str
    ) -> tuple[str, list[Any]] | None:
        """Equalities on the record's own fields (the most common matches by far) without
        building and compiling an expression; None when the dict needs the general path."""
        fields = self.schema.fields(name)
        scalars = self.dialect.codecs.scalar_identity
        params: list[Any] = []
        for key, value in match.items():
            if value is None or isinstance(value, _CONTAINERS):
                return None
            if key == "id":
                if (type(value) is not int and type(value) is not str) or not is_id(value):
                    return None
                params.append(value)
            elif key in fields and fields[key].type in scalars:
                if isinstance(value, bool) or not isinstance(value, _SCALARS):
                    return None
                if (fields[key].type == "string") != isinstance(value, str):
                    return None  # the general path reports the type error
                if not (value.isascii() if isinstance(value, str) else _plain_number(value)):
                    return None  # NaN, infinities, ints beyond 64 bits, surrogates: the same
                params.append(value)
            else:
                return None
        cache_key = (name, alias, tuple(match))
        sql = self._cache.wheres.get(cache_key)
        if sql is None:
            sql = self._cache.wheres[cache_key] = " WHERE " + " AND ".join(
                f"{alias}.{self.dialect.quote(k)} = ?" for k in match
            )
        return sql, params

    def snapshot_columns(self, name: str) -> list[str]:
        """Every stored column of a record type but ``id`` (link endpoints included)."""
        columns = list(self.schema.fields(name))
        if self.schema.is_link(name):
            columns = ["source", "target", *columns]
        return columns

    def _snapshot_select(self, name: str) -> tuple[str, list[str]]:
        """``SELECT t.id, <every column> FROM <name> t`` and the columns, worked out once."""
        cached = self._cache.snapshot_selects.get(name)
        if cached is None:
            columns = self.snapshot_columns(name)
            cached = self._cache.snapshot_selects[name] = (self._select(name, columns), columns)
        return cached

    def _select(self, name: str, columns: Sequence[str]) -> str:
        """``SELECT t.id, t.<column>... FROM <name> t``."""
        q = self.dialect.quote
        return f"SELECT t.id{''.join(f', t.{q(c)}' for c in columns)} FROM {q(name)} t"

    def snapshots(
        self,
        name: str,
        match: MatchExp | Mapping[str, Any] | None,
        limit: int | None = None,
        lock: bool = False,
        share: bool = False,
    ) -> list[Record]:
        """Full value snapshots (links with ``source``/``target`` refs) of the matching records,
        in id order (the first ``limit`` of them); with ``lock``, the rows are locked until the
        transaction ends (the dialect's ``row_lock``; with ``share`` too, its ``share_lock``)."""
        select, columns = self._snapshot_select(name)
        where, params = self.where(name, match, "t")
        locking = "" if not lock else self.dialect.share_lock if share else self.dialect.row_lock
        if limit is None:
            rows = self.run(select + where + " ORDER BY t.id" + locking, params).fetchall()
        else:
            sql = select + where + " ORDER BY t.id LIMIT ?" + locking
            rows = self.run(sql, [*params, limit]).fetchall()
        return [self._decode_row(name, columns, row) for row in rows]

    def snapshots_by_column(self, name: str, column: str, value: Any) -> list[Record]:
        select, columns = self._snapshot_select(name)
        sql = f"{select} WHERE t.{self.dialect.quote(column)} = ? ORDER BY t.id"
        rows = self.run(sql, (value,)).fetchall()
        return [self._decode_row(name, columns, row) for row in rows]

    def snapshot(self, name: str, record_id: Any, lock: bool = False) -> Record | None:
        """The full value snapshot of one record by id, or None; with ``lock``, the row is
        locked until the transaction ends (the dialect's ``row_lock``)."""
        cached = self._cache.snapshots.get(name)
        if cached is None:
            select, columns = self._snapshot_select(name)
            decoders = self._decoders(name, columns)
            plan = list(zip(columns, decoders, strict=True))
            by_id = f"{select} WHERE t.id = ?"
            cached = self._cache.snapshots[name] = (by_id, plan, by_id + self.dialect.row_lock)
        sql, plan, locking = cached
        row = self.run(locking if lock else sql, (record_id,)).fetchone()
        if row is None:
            return None
        record: Record = {"id": row[0]}
        for (column, decoder), value in zip(plan, row[1:], strict=True):
            record[column] = value if decoder is None else decoder(value)
        return record

    def get(self, name: str, record_id: Any, fields: Sequence[str]) -> Record | None:
        """Named value fields of one record by id, or None (a fast path for the engine)."""
        key = (name, tuple(fields))
        sql = self._cache.gets.get(key)
        if sql is None:
            known = self.schema.fields(name)
            for field in fields:
                if field not in known:
                    raise UnknownFieldError(name, field, list(known))
            sql = self._cache.gets[key] = f"{self._select(name, fields)} WHERE t.id = ?"
        row = self.run(sql, (record_id,)).fetchone()
        return None if row is None else self._decode_row(name, list(fields), row)

    def exists(self, name: str, record_id: Any) -> bool:
        sql = f"SELECT 1 FROM {self.dialect.quote(name)} WHERE id = ?"
        return self.run(sql, (record_id,)).fetchone() is not None

    # -- internals ---------------------------------------------------------------------------

    def _own_columns(self, name: str, query: AttributeQuery) -> list[str]:
        columns = list(query.fields)
        for attr_name, _ in query.relations:
            attribute = self.schema.attribute(name, attr_name)
            if not attribute.via_link and attr_name not in columns:
                columns.append(attr_name)
        return columns

    def _parse(self, name: str, attribute_query: Sequence[Any] | None) -> AttributeQuery:
        try:
            key: Any = (name, _freeze(attribute_query))
            hash(key)
        except TypeError:
            return parse_attribute_query(self.schema, name, attribute_query)
        parsed = self._cache.queries.get(key)
        if parsed is None:
            parsed = parse_attribute_query(self.schema, name, attribute_query)
            self._cache.queries[key] = parsed
        return parsed

    def _decoders(self, name: str, columns: Sequence[str]) -> list[Any]:
        key = (name, tuple(columns))
        decoders = self._cache.decoders.get(key)
        if decoders is None:
            fields = self.schema.fields(name)
            identity = self.dialect.codecs.identity
            decoders = []
            for column in columns:
                if column in ("source", "target") and column not in fields:
                    decoders.append(_ref)
                else:
                    type_name = fields[column].type
                    plain = type_name in identity
                    decoders.append(None if plain else self.dialect.codecs.decoders[type_name])
            self._cache.decoders[key] = decoders
        return decoders

    def _decode_row(self, name: str, columns: Sequence[str], row: Sequence[Any]) -> Record:
        record: Record = {"id": row[0]}
        for column, decoder, value in zip(
            columns, self._decoders(name, columns), row[1:], strict=True
        ):
            record[column] = value if decoder is None else decoder(value)
        return record

    def _order_by(self, name: str, order_by: Mapping[str, str] | None) -> str:
        # Without order_by, records come in id order on every backend: SQLite's scan order
        # (free there: id is the rowid), not PostgreSQL's (where an updated row moves).
        if order_by is None:
            return _ID_ORDER
        if not isinstance(order_by, Mapping):
            raise QueryError(
                f"order_by for {name} must be a dict of field -> 'asc'|'desc'", record=name
            )
        try:
            key: Any = (name, tuple(order_by.items()))
            cached = self._cache.order_bys.get(key)
        except TypeError:  # an unhashable direction: reported below
            key, cached = None, None
        if cached is not None:
            return cached
        parts: list[str] = []
        for field, direction in order_by.items():
            column = self._order_column(name, field)
            if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
                raise QueryError(
                    f"order_by {name}.{field}: direction must be 'asc' or 'desc', "
                    f"got {direction!r}",
                    record=name,
                    field=str(field),
                )
            parts.append(f"{column} {direction.upper()}")
        # Ties are broken by id so that paging is deterministic.
        parts.append("t.id ASC")
        sql = " ORDER BY " + ", ".join(parts)
        if key is not None:
            self._cache.order_bys[key] = sql
        return sql

    def _order_column(self, name: str, path: Any) -> str:
        """The SQL expression ``path`` orders by: an own field, or a field reached through
        to-one relations (``"author.name"``, ``"post.author.name"``, a link's
        ``"source.title"``), which is NULL where a record has no related one."""
        q = self.dialect.quote
        fields = self.schema.fields(name)
        if not isinstance(path, str) or "." not in path:
            if path != "id" and path not in fields:
                raise UnknownFieldError(name, str(path), list(fields))
            return f"t.{q(path)}"
        segments = path.split(".")
        record, id_sql = name, "t.id"
        for depth, segment in enumerate(segments[:-1], start=1):
            attributes = self.schema.attributes(record)
            attribute = attributes.get(segment)
            if attribute is None:
                known = [*self.schema.fields(record), *attributes]
                raise UnknownFieldError(record, segment, known)
            if attribute.to_many or attribute.symmetric:
                raise QueryError(
                    f"order_by {name}.{path}: {record}.{segment} holds many records; "
                    "order by a path of to-one relations",
                    record=name,
                    field=path,
                )
            alias = f"o{depth}"
            if attribute.via_link:
                id_sql = (
                    f"(SELECT {alias}.{attribute.other} FROM {q(attribute.link.name)} "
                    f"{alias} WHERE {alias}.{attribute.side} = {id_sql})"
                )
            else:  # a link record's own source/target column
                id_sql = (
                    f"(SELECT {alias}.{q(segment)} FROM {q(record)} {alias} "
                    f"WHERE {alias}.id = {id_sql})"
                )
            record = attribute.related
        last = segments[-1]
        if last == "id":
            return id_sql
        related_fields = self.schema.fields(record)
        if last not in related_fields:
            if last in self.schema.attributes(record):
                raise QueryError(
                    f"order_by {name}.{path}: {record}.{last} is a relation; name one of its "
                    f"fields ({path}.id, say)",
                    record=name,
                    field=path,
                )
            raise UnknownFieldError(record, last, list(related_fields))
        return f"(SELECT v.{q(last)} FROM {q(record)} v WHERE v.id = {id_sql})"

    def _paging(self, name: str, limit: int | None, offset: int | None, params: list[Any]) -> str:
        for label, value in (("limit", limit), ("offset", offset)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63
            ):
                raise QueryError(
                    f"{label} for {name} must be a non-negative int (64-bit), got {value!r}",
                    record=name,
                )
        if limit is None and offset is None:
            return ""
        params.extend((self.dialect.no_limit if limit is None else limit, offset or 0))
        return " LIMIT ? OFFSET ?"

    def _attach(self, name: str, records: list[Record], query: AttributeQuery) -> None:
        if not records:
            return
        for attr_name, nested in query.relations:
            attribute = self.schema.attribute(name, attr_name)
            if attribute.via_link:
                self._attach_linked(attribute, records, nested)
            else:
                self._attach_endpoint(attribute, records, nested, attr_name in query.fields)

    def _attach_endpoint(
        self,
        attribute: RelationAttribute,
        records: list[Record],
        nested: AttributeQuery,
        keep_ref: bool,
    ) -> None:
        ids = list(dict.fromkeys(r[attribute.name]["id"] for r in records))
        related = {r["id"]: r for r in self._load(attribute.related, ids, nested)}
        for record in records:
            found = related.get(record[attribute.name]["id"])
            record[attribute.name] = dict(found) if found is not None else None
        self._attach(
            attribute.related,
            [r[attribute.name] for r in records if r[attribute.name] is not None],
            nested,
        )

    def _load(self, name: str, ids: list[Any], query: AttributeQuery) -> list[Record]:
        columns = self._own_columns(name, query)
        select = self._select(name, columns)
        out: list[Record] = []
        for batch in chunks(ids):
            rows = self.run(
                f"{select} WHERE t.id IN ({placeholders(len(batch))})", list(batch)
            ).fetchall()
            out.extend(self._decode_row(name, columns, row) for row in rows)
        return out

    def _attach_linked(
        self, attribute: RelationAttribute, records: list[Record], nested: AttributeQuery
    ) -> None:
        q = self.dialect.quote
        link: LinkType = attribute.link
        # Related records and "&" link records may go on to their own source/target: load
        # those columns too.
        link_fields = self._own_columns(link.name, nested.link) if nested.link is not None else []
        columns = self._own_columns(attribute.related, nested)
        select_link = "".join(f", l.{q(f)}" for f in link_fields)
        select_related = "".join(f", r.{q(c)}" for c in columns)
        sides = (
            [("source", "target"), ("target", "source")]
            if attribute.symmetric
            else [(attribute.side, attribute.other)]
        )
        by_parent: dict[Any, dict[Any, Record]] = {}
        parent_ids = list(dict.fromkeys(r["id"] for r in records))
        for side, other in sides:
            for batch in chunks(parent_ids):
                sql = (
                    f"SELECT l.{side}, l.id{select_link}, r.id{select_related} "
                    f"FROM {q(link.name)} l JOIN {q(attribute.related)} r "
                    f"ON r.id = l.{other} WHERE l.{side} IN ({placeholders(len(batch))}) "
                    "ORDER BY l.id"
                )
                for row in self.run(sql, list(batch)).fetchall():
                    parent, link_id = row[0], row[1]
                    link_values = row[2 : 2 + len(link_fields)]
                    related = self._decode_row(
                        attribute.related, columns, row[2 + len(link_fields) :]
                    )
                    if nested.link is not None:
                        link_record = self._decode_row(
                            link.name, link_fields, (link_id, *link_values)
                        )
                        related[LINK_FIELDS_KEY] = link_record
                    # A symmetric self-link shows up from both sides: keep it once.
                    by_parent.setdefault(parent, {}).setdefault(link_id, related)
        loaded: list[Record] = []
        link_records: list[Record] = []
        for record in records:
            items = sorted(by_parent.get(record["id"], {}).items())
            # Each parent gets its own dicts, so nested loading can fill them independently.
            copies = [_copy_related(item) for _, item in items]
            loaded.extend(copies)
            if nested.link is not None:
                link_records.extend(c[LINK_FIELDS_KEY] for c in copies)
            if attribute.to_many:
                record[attribute.name] = copies
            else:
                record[attribute.name] = copies[0] if copies else None
        self._attach(attribute.related, loaded, nested)
        if nested.link is not None:
            self._attach(link.name, link_records, nested.link)


def _plain_number(value: int | float) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return is_id(value)


def _ref(value: Any) -> Record:
    return {"id": value}


def _freeze(query: Any) -> Any:
    if isinstance(query, _SEQUENCES):
        return tuple(_freeze(item) for item in query)
    return query


def _copy_related(record: Record) -> Record:
    copy = dict(record)
    if LINK_FIELDS_KEY in copy:
        copy[LINK_FIELDS_KEY] = dict(copy[LINK_FIELDS_KEY])
    return copy


def check_ids(name: str, ids: Sequence[Any]) -> None:
    for record_id in ids:
        if isinstance(record_id, bool) or not isinstance(record_id, int | str):
            raise MatchError(
                f"{name}: an id must be an int or str, got {record_id!r}", record=name, field="id"
            )
