"""Reads of views (see :mod:`reactive.views`): a filtered view's reads are its base's with its
match ANDed in (one statement); a merged view's are each input's, merged in Python.

Costs: a filtered view costs what the same read of its base costs. A merged view reads each
input once: ``count`` sums the inputs' counts; ``find`` reads at most ``offset + limit`` rows of
each input (in the requested order, ties by id) and merges them (``None`` first ascending).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cmp_to_key
from typing import Any

from reactive.views import (
    ALWAYS,
    LINK_ENDS,
    NEVER,
    TYPE_FIELD,
    View,
    atom_test,
    merged_id,
    split_merged_id,
)
from storage import MatchExp, Record
from storage.errors import MatchError
from storage.match import to_match

Match = MatchExp | Mapping[str, Any] | None


class ViewReads:
    """``find``/``find_one``/``count`` over stored records and views, for one session.

    ``find``/``count`` are the session's (stored records) or ``read_find``/``read_count``
    (anything). Views compose: a filtered view of a merged one reads every input."""

    def __init__(
        self,
        views: Mapping[str, View],
        find: Callable[..., list[Record]],
        count: Callable[..., int],
    ):
        self.views = views
        self._find = find
        self._count = count

    def find(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Record]:
        """Matching records of a stored record type or a view."""
        view = self.views.get(name)
        if view is None:
            return self._find(name, match, attribute_query, order_by, limit, offset)
        if view.base is not None:
            assert view.match is not None
            both = view.match if match is None else view.match & _operand(match)
            return self.find(view.base, both, attribute_query, order_by, limit, offset)
        return self._merged_find(view, match, attribute_query, order_by, limit, offset)

    def find_one(
        self,
        name: str,
        match: Match = None,
        attribute_query: Sequence[Any] | None = None,
        order_by: Mapping[str, str] | None = None,
    ) -> Record | None:
        """The first matching record, or None."""
        found = self.find(name, match, attribute_query, order_by, 1)
        return found[0] if found else None

    def count(self, name: str, match: Match = None) -> int:
        """How many records match."""
        view = self.views.get(name)
        if view is None:
            return self._count(name, match)
        if view.base is not None:
            assert view.match is not None
            both = view.match if match is None else view.match & _operand(match)
            return self.count(view.base, both)
        total = 0
        for source in view.inputs:
            local = _localise(view, source, to_match(match))
            if local is not NEVER:
                total += self.count(source, local)
        return total

    def _merged_find(
        self,
        view: View,
        match: Match,
        attribute_query: Sequence[Any] | None,
        order_by: Mapping[str, str] | None,
        limit: int | None,
        offset: int | None,
    ) -> list[Record]:
        query, with_type = _merged_query(view, attribute_query)
        order = dict(order_by or {})
        for key, direction in order.items():
            if key not in view.fields and key != "id":
                raise MatchError(
                    f"{view.name}: order_by names {key!r}, which is not a field every input "
                    f"has ({', '.join(sorted(view.fields)) or 'none'})",
                    record=view.name,
                    field=key,
                )
            if str(direction).lower() not in ("asc", "desc"):
                raise MatchError(f"{view.name}: order_by {key!r} must be 'asc' or 'desc'")
        read = list(query)
        for key in order:
            if key != "id" and key not in read:
                read.append(key)
        window = None if limit is None else limit + (offset or 0)
        rows: list[tuple[int, Record]] = []
        parsed = to_match(match)
        for position, source in enumerate(view.inputs):
            local = _localise(view, source, parsed)
            if local is NEVER:
                continue
            # Ties broken by id, as the merge below breaks them: a window cuts the same rows.
            order_here = {**order, "id": order.get("id", "asc")} if order else None
            for row in self.find(source, local, read, order_here, window):
                out = {"id": merged_id(source, row["id"])}
                out.update((k, row[k]) for k in query if k in row)
                if with_type:
                    out[TYPE_FIELD] = source
                rows.append((position, {**out, "_sort": {k: row.get(k) for k in order}}))
                rows[-1][1]["_sort"]["id"] = row["id"]

        def compare(a: tuple[int, Record], b: tuple[int, Record]) -> int:
            for key, direction in [*order.items(), ("", "asc")]:
                if key == "":
                    left: Any = (a[0], a[1]["_sort"]["id"])
                    right: Any = (b[0], b[1]["_sort"]["id"])
                else:
                    left, right = a[1]["_sort"].get(key), b[1]["_sort"].get(key)
                sign = 1 if str(direction).lower() == "asc" else -1
                if left == right:
                    continue
                if left is None:
                    return -sign
                if right is None:
                    return sign
                return sign if left > right else -sign
            return 0

        rows.sort(key=cmp_to_key(compare))
        records = [{k: v for k, v in r.items() if k != "_sort"} for _, r in rows]
        start = offset or 0
        return records[start : None if limit is None else start + limit]


def _operand(match: MatchExp | Mapping[str, Any]) -> MatchExp:
    found = to_match(match)
    assert found is not None
    return found


def _merged_query(view: View, query: Sequence[Any] | None) -> tuple[list[str], bool]:
    """The fields to read of each input, and whether ``__type`` was asked for."""
    fields: list[str] = []
    with_type = False
    for item in query or ():
        if item == "*":
            fields.extend(f for f in view.fields if f not in fields)
            with_type = True
        elif item == TYPE_FIELD:
            with_type = True
        elif item == "id":
            continue
        elif isinstance(item, str) and (
            item in view.fields or (view.is_link and item in LINK_ENDS)
        ):
            if item not in fields:
                fields.append(item)
        else:
            raise MatchError(
                f"{view.name}: attribute_query names {item!r}; a merged view offers its "
                f"inputs' common fields ({', '.join(sorted(view.fields)) or 'none'}), id "
                f"and {TYPE_FIELD}",
                record=view.name,
            )
    return fields, with_type


def _localise(view: View, source: str, match: MatchExp | None) -> MatchExp | None:
    """A merged view's match as one input's: ids of that input as its own ids, ``__type``
    decided; ``NEVER`` when no record of the input can match."""
    if match is None:
        return None
    out = _local(view, source, match)
    return out


def _local(view: View, source: str, node: MatchExp) -> MatchExp:
    if node.kind == "not":
        inner = _local(view, source, node.children[0])
        if inner is ALWAYS:
            return NEVER
        if inner is NEVER:
            return ALWAYS
        return ~inner
    if node.kind in ("and", "or"):
        parts = [_local(view, source, c) for c in node.children]
        absorbing, neutral = (NEVER, ALWAYS) if node.kind == "and" else (ALWAYS, NEVER)
        if any(p is absorbing for p in parts):
            return absorbing
        parts = [p for p in parts if p is not neutral]
        if not parts:
            return neutral
        return parts[0] if len(parts) == 1 else MatchExp(node.kind, children=tuple(parts))
    key, op, value = node.key, node.op, node.value
    assert key is not None and op is not None
    if key == TYPE_FIELD:
        return ALWAYS if _truth(source, op, value) else NEVER
    if key == "id":
        return _local_id(view, source, op, value)
    if key not in view.fields and not (view.is_link and key.split(".")[0] in LINK_ENDS):
        raise MatchError(
            f"{view.name}: match names {key!r}; a merged view matches on its inputs' common "
            f"fields ({', '.join(sorted(view.fields)) or 'none'}), id and {TYPE_FIELD}",
            record=view.name,
            field=key,
        )
    return node


def _truth(actual: Any, op: str, operand: Any) -> bool:
    return bool(atom_test("v", op, operand)({"v": actual}))


def _local_id(view: View, source: str, op: str, value: Any) -> MatchExp:
    def own(v: Any) -> tuple[bool, Any]:
        split = split_merged_id(v, view.inputs)
        if split is None and v is not None and not isinstance(v, str):
            raise MatchError(
                f"{view.name}: a merged view's ids read '<input>:<id>' (like "
                f"{merged_id(view.inputs[0], 1)!r}), got {v!r}",
                record=view.name,
                field="id",
            )
        if split is None or split[0] != source:
            return False, None
        return True, split[1]

    if op in ("is null", "is not null"):
        return ALWAYS if op == "is not null" else NEVER
    if op in ("=", "!="):
        mine, local = own(value)
        if not mine:
            return NEVER if op == "=" else ALWAYS
        return MatchExp.atom("id", op, local)
    if op in ("in", "not in"):
        locals_ = [local for mine, local in map(own, value) if mine]
        if not locals_:
            return NEVER if op == "in" else ALWAYS
        return MatchExp.atom("id", op, locals_)
    raise MatchError(
        f"{view.name}: a merged view's id may be matched with =, !=, in, not in only, not {op!r}",
        record=view.name,
        field="id",
    )
