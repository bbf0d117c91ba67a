"""Compile a :class:`MatchExp` into a SQL condition for one record type.

Backend-neutral: identifiers, boolean literals and value codecs come from the backend's
:class:`~storage.sql.dialect.Dialect`; placeholders are the neutral ``?``.

Semantics, chosen to read like Python rather than like SQL's three-valued logic:

- ``None`` compares like in Python: ``None != 5`` is true, ``None < 5`` is false, ``= None``
  is ``is null``; ``~`` is an exact complement (``~a`` matches exactly what ``a`` does not).
- A path through a relation attribute (``"posts.title"``) is existential: it matches when some
  related record matches; its negation matches when no related record does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from storage.errors import FieldTypeError, MatchError
from storage.match import FieldRef, MatchExp
from storage.schema import LINK_FIELDS_KEY, RelationAttribute, Schema
from storage.sql.dialect import Dialect
from storage.types import is_id

_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


class MatchCompiler:
    """Turns a match into ``(sql, params)`` against a table alias of a record type."""

    def __init__(self, schema: Schema, dialect: Dialect):
        self.schema = schema
        self.dialect = dialect
        self._aliases = 0

    def compile(self, record: str, match: MatchExp, alias: str) -> tuple[str, list[Any]]:
        params: list[Any] = []
        sql = self._node(record, match, alias, False, params)
        return sql, params

    def _alias(self) -> str:
        self._aliases += 1
        return f"m{self._aliases}"

    def _node(
        self, record: str, node: MatchExp, alias: str, negate: bool, params: list[Any]
    ) -> str:
        if node.kind == "not":
            return self._node(record, node.children[0], alias, not negate, params)
        if node.kind in ("and", "or"):
            if not node.children:
                # An empty AND is true; an empty OR is false.
                truth = node.kind == "and"
                return self.dialect.true if truth != negate else self.dialect.false
            # De Morgan: push negation to the atoms so that positive atoms stay index-friendly.
            joiner = " AND " if (node.kind == "and") != negate else " OR "
            parts = [self._node(record, c, alias, negate, params) for c in node.children]
            return "(" + joiner.join(parts) + ")"
        assert node.key is not None and node.op is not None
        return self._atom(
            record, node.key, node.key.split("."), node.op, node.value, alias, negate, params
        )

    def _atom(
        self,
        record: str,
        path: str,
        segments: list[str],
        op: str,
        value: Any,
        alias: str,
        negate: bool,
        params: list[Any],
    ) -> str:
        head, rest = segments[0], segments[1:]
        fields = self.schema.fields(record)
        attributes = self.schema.attributes(record)
        if head == "id" and not rest:
            if op in ("contains", "exist") or isinstance(value, FieldRef):
                raise MatchError(
                    f"match on {record}.{path}: {op!r} with {value!r} does not apply to an id",
                    record=record,
                    field="id",
                )
            return self._compare(f"{alias}.id", op, value, negate, params, _ids(record, path))
        if head in fields and not rest:
            type_name = fields[head].type
            if type_name == "integer":
                # Comparing an integer column with 2.5 is meaningful: operands are numbers.
                type_name = "number"

            encode = self.dialect.codecs.encode

            def encoder(v: Any) -> Any:
                try:
                    return encode(record, head, type_name, v)
                except FieldTypeError as exc:
                    raise MatchError(
                        f"match on {record}.{path}: {exc}", record=record, field=head
                    ) from None

            if op == "like" and type_name != "string":
                raise MatchError(
                    f"match on {record}.{path}: 'like' needs a string field, not {type_name}",
                    record=record,
                    field=head,
                )
            column = f"{alias}.{self.dialect.quote(head)}"
            if isinstance(value, FieldRef):
                return self._field_ref(record, path, column, op, value, type_name, alias, negate)
            if op == "exist":
                raise MatchError(
                    f"match on {record}.{path}: 'exist' needs a relation, {head!r} is a field",
                    record=record,
                    field=head,
                )
            if op == "contains":
                return self._contains(record, path, column, type_name, value, negate, params)
            return self._compare(column, op, value, negate, params, encoder)
        if head in attributes:
            attribute = attributes[head]
            if not rest and op == "exist":
                assert isinstance(value, MatchExp)
                exists = self._exists(attribute, alias, _Nested(self, value), params)
                return f"NOT {exists}" if negate else exists
            if not rest and (op in ("between", "contains") or isinstance(value, FieldRef)):
                raise MatchError(
                    f"match on {record}.{path}: {op!r} with {value!r} does not apply to a "
                    f"relation (name one of {attribute.related}'s fields, or use 'exist')",
                    record=record,
                    field=head,
                )
            if not rest:
                rest = ["id"]
                if op not in ("is null", "is not null"):
                    value = _unwrap_refs(record, path, value)
                else:
                    # "has a related record" / "has none".
                    exists = self._exists(attribute, alias, None, params)
                    return exists if (op == "is not null") != negate else f"NOT {exists}"
            if rest == ["id"] and not attribute.via_link:
                # A link's own source/target column holds the id: compare it directly.
                column = f"{alias}.{self.dialect.quote(head)}"
                check = _ids(attribute.related, path)
                return self._compare(column, op, value, negate, params, check)
            if rest == ["id"] and not attribute.symmetric:
                # The link row holds the related id: no need to join the related table.
                row = self._alias()
                check = _ids(attribute.related, path)
                compare = self._compare(f"{row}.{attribute.other}", op, value, False, params, check)
                exists = (
                    f"({alias}.id IN (SELECT {row}.{attribute.side} "
                    f"FROM {self.dialect.quote(attribute.link.name)} {row} WHERE {compare}))"
                )
                return f"NOT {exists}" if negate else exists
            inner = _Pending(self, attribute, path, rest, op, value)
            exists = self._exists(attribute, alias, inner, params)
            return f"NOT {exists}" if negate else exists
        known = [*fields, *attributes]
        raise MatchError(
            f"match on {record}: {path!r} does not name a field or relation "
            f"(first unknown part {head!r}; {record} has: {', '.join(sorted(known))})",
            record=record,
            field=head,
        )

    def _field_ref(
        self,
        record: str,
        path: str,
        column: str,
        op: str,
        ref: FieldRef,
        type_name: str,
        alias: str,
        negate: bool,
    ) -> str:
        """``column op`` another value field of the same record, compared like two Python
        values: ``=`` holds for two None, ``!=`` for one None, ordering never with a None."""
        fields = self.schema.fields(record)
        other = fields.get(ref.field)
        other_type = None if other is None else other.type
        if other_type == "integer":
            other_type = "number"
        if other_type is None or other_type != type_name or type_name == "json":
            reason = "no such field" if other is None else f"a {other_type} field"
            raise MatchError(
                f"match on {record}.{path}: FieldRef({ref.field!r}) is {reason}; it must name "
                f"a value field of {record} of the same type ({type_name}, not json)",
                record=record,
                field=ref.field,
            )
        right = f"{alias}.{self.dialect.quote(ref.field)}"
        both = f"{column} IS NOT NULL AND {right} IS NOT NULL"
        same = f"(({both} AND {column} = {right}) OR ({column} IS NULL AND {right} IS NULL))"
        if op in ("=", "!="):
            return same if (op == "=") != negate else f"NOT {same}"
        held = f"({both} AND {column} {op} {right})"
        return f"NOT {held}" if negate else held

    def _contains(
        self,
        record: str,
        path: str,
        column: str,
        type_name: str,
        value: Any,
        negate: bool,
        params: list[Any],
    ) -> str:
        """A substring of a string field, or an element of a json array (JSON equality: 1 and
        1.0 are equal, true and 1 are not)."""
        if type_name == "string":
            if not isinstance(value, str):
                raise MatchError(
                    f"match on {record}.{path}: contains on a string field needs a string, "
                    f"got {value!r}",
                    record=record,
                    field=path,
                )
            params.append(value)
            held = f"({column} IS NOT NULL AND {self.dialect.contains_text(column)})"
        elif type_name == "json":
            if isinstance(value, float) and value != value:
                raise MatchError(f"match on {record}.{path}: NaN is not JSON", record=record)
            params.extend(self.dialect.json_array_param(value))
            held = f"({column} IS NOT NULL AND {self.dialect.json_array_has(column)})"
        else:
            raise MatchError(
                f"match on {record}.{path}: 'contains' needs a string or json field, not "
                f"{type_name}",
                record=record,
                field=path,
            )
        return f"NOT {held}" if negate else held

    def _exists(
        self,
        attribute: RelationAttribute,
        alias: str,
        inner: _Pending | _Nested | None,
        params: list[Any],
    ) -> str:
        """``alias`` has a related record (through ``attribute``) that satisfies ``inner``.

        Written as ``id IN (subquery)`` rather than a correlated EXISTS: SQLite then drives the
        subquery from its own indexes (the link's endpoint columns, the related record's
        fields) instead of testing every row of the outer table."""
        related = self.dialect.quote(attribute.related)
        if not attribute.via_link:
            # A link record's own source/target column points straight at the endpoint.
            target = self._alias()
            where = (
                inner.sql(attribute.related, target, None, params) if inner else self.dialect.true
            )
            return (
                f"({alias}.{self.dialect.quote(attribute.name)} IN "
                f"(SELECT {target}.id FROM {related} {target} WHERE {where}))"
            )
        link = self.dialect.quote(attribute.link.name)
        directions = [(attribute.side, attribute.other)]
        if attribute.symmetric:
            directions = [("source", "target"), ("target", "source")]
        selects: list[str] = []
        for side, other in directions:
            row, target = self._alias(), self._alias()
            where = (
                inner.sql(attribute.related, target, row, params) if inner else self.dialect.true
            )
            selects.append(
                f"SELECT {row}.{side} FROM {link} {row} JOIN {related} {target} "
                f"ON {target}.id = {row}.{other} WHERE {where}"
            )
        return f"({alias}.id IN ({' UNION ALL '.join(selects)}))"

    def _compare(
        self,
        column: str,
        op: str,
        value: Any,
        negate: bool,
        params: list[Any],
        encoder: Callable[[Any], Any],
    ) -> str:
        p = "?"
        if op in ("is null", "is not null"):
            is_null = (op == "is null") != negate
            return f"{column} IS NULL" if is_null else f"{column} IS NOT NULL"
        if op in ("in", "not in"):
            values = list(value)
            with_null = any(v is None for v in values)
            concrete = [encoder(v) for v in values if v is not None]
            member = self._membership(column, concrete, with_null, params)
            return member if (op == "in") != negate else f"NOT {member}"
        if op == "between":
            low, high = (encoder(v) for v in value)
            if negate:
                params.extend([low, high])
                return f"({column} IS NULL OR {column} < {p} OR {column} > {p})"
            params.extend([low, high])
            return f"({column} >= {p} AND {column} <= {p})"
        if op == "like":
            params.append(encoder(value))
            if negate:
                return f"({column} IS NULL OR NOT {self.dialect.like(column)})"
            return self.dialect.like(column)
        effective = _NEGATED[op] if negate else op
        params.append(encoder(value))
        if effective == "!=":
            # None != value is true, as in Python.
            return f"({column} IS NULL OR {column} <> {p})"
        if negate and effective != "=":
            # The atom was false for None, so its complement is true for None.
            return f"({column} IS NULL OR {column} {effective} {p})"
        return f"{column} {effective} {p}"

    def _membership(
        self, column: str, values: list[Any], with_null: bool, params: list[Any]
    ) -> str:
        parts: list[str] = []
        if values:
            params.extend(values)
            parts.append(f"{column} IN ({', '.join('?' for _ in values)})")
        if with_null:
            parts.append(f"{column} IS NULL")
        if not parts:
            return self.dialect.false
        # COALESCE keeps the membership two-valued, so its NOT is the exact complement.
        return f"COALESCE(({' OR '.join(parts)}), {self.dialect.false})"


class _Pending:
    """The rest of a path, compiled once the related record's alias is known."""

    def __init__(
        self,
        compiler: MatchCompiler,
        attribute: RelationAttribute,
        path: str,
        rest: list[str],
        op: str,
        value: Any,
    ):
        self.compiler = compiler
        self.attribute = attribute
        self.path = path
        self.rest = rest
        self.op = op
        self.value = value

    def sql(self, related: str, alias: str, link_alias: str | None, params: list[Any]) -> str:
        if self.rest[0] == LINK_FIELDS_KEY:
            if link_alias is None or len(self.rest) < 2:
                raise MatchError(
                    f"match path {self.path!r}: '&' must follow a relation and name a link field",
                    record=self.attribute.owner,
                )
            return self.compiler._atom(
                self.attribute.link.name,
                self.path,
                self.rest[1:],
                self.op,
                self.value,
                link_alias,
                False,
                params,
            )
        return self.compiler._atom(
            related, self.path, self.rest, self.op, self.value, alias, False, params
        )


class _Nested:
    """An ``exist`` atom's match, compiled on the related record once its alias is known."""

    def __init__(self, compiler: MatchCompiler, match: MatchExp):
        self.compiler = compiler
        self.match = match

    def sql(self, related: str, alias: str, link_alias: str | None, params: list[Any]) -> str:
        return self.compiler._node(related, self.match, alias, False, params)


def _ids(record: str, path: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not is_id(value):
            raise MatchError(
                f"match on {record}.{path}: an id must be an int (64-bit) or str, got {value!r}",
                record=record,
                field="id",
            )
        return value

    return check


def _unwrap_refs(record: str, path: str, value: Any) -> Any:
    """Allow ``{"author": {"id": 3}}`` (or a whole record read back) for ``{"author.id": 3}``."""

    def one(v: Any) -> Any:
        if isinstance(v, Mapping):
            # a whole record (as read from find) stands for its id; its other keys are ignored
            if "id" not in v:
                raise MatchError(
                    f"match on {record}.{path}: a record reference must have an 'id', got {v!r}",
                    record=record,
                    field=path,
                )
            return v["id"]
        return v

    if isinstance(value, tuple):
        return tuple(one(v) for v in value)
    return one(value)
