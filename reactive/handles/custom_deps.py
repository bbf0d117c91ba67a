"""Custom over ``data_deps``: a property's or dictionary's value computed from the current
values of declared data, run again whenever that data changes (see
:mod:`reactive.custom_deps` for the dependencies and their costs).

Routes: every record a :class:`RecordsDep` names (create, update, delete), the dictionary
record (a :class:`DictionaryDep`; filtered by key here), and the host's own create and
update events (a property Custom: its value is computed when the host is created, and an
:class:`OwnFieldsDep` re-runs it on a change of those fields). The host's own write of the
value (and of the state) changes none of the fields it watches, so it does not re-run it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reactive.callables import adapt
from reactive.computations import UNCHANGED, Custom
from reactive.custom_deps import OwnFieldsDep, RecordsDep, RelatedDep
from reactive.deps import DictionaryDep
from reactive.errors import ModelError
from reactive.handles.base import Route
from reactive.handles.state_machine import CustomBase
from reactive.model import DICTIONARY_RECORD, record_name
from storage import MutationEvent, RelationAttribute, Schema

if TYPE_CHECKING:
    from reactive.context import TransactionContext


class DataDepsHandle(CustomBase):
    """Runs ``compute`` with the current values of its dependencies, for the hosts a change
    concerns: one host (its own create, or a change of an own field), or every host (a change
    of records or of a dictionary it reads); the dictionary once."""

    def __init__(self, decl: Custom, host: str | None, target: str):
        assert decl.data_deps is not None
        super().__init__(decl, host, target)
        self.deps: dict[str, Any] = dict(decl.data_deps)
        base = 1 + (host is not None) + self.has_state
        self.compute = adapt(decl.compute, base, f"{self.name} compute")
        # (dependency name, record name, watched fields or None: every user field)
        self.records: list[tuple[str, str, list[str] | None]] = []
        self.dictionaries: list[tuple[str, str]] = []
        self.own: list[str] = []
        # (dependency name, declaration, its attribute once bound)
        self.related: list[tuple[str, RelatedDep]] = []
        self.attributes: dict[str, RelationAttribute] = {}
        for key, dep in self.deps.items():
            if isinstance(dep, RecordsDep):
                self.records.append((key, record_name(dep.record), dep.fields))
            elif isinstance(dep, DictionaryDep):
                if host is None and dep.dictionary == target:
                    raise ModelError(f"{self.name}: data_deps {key!r} reads its own value")
                self.dictionaries.append((key, dep.dictionary))
            elif isinstance(dep, OwnFieldsDep):
                if host is None:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r} is an OwnFieldsDep, which needs a host "
                        "record (a Custom on a property)"
                    )
                if target in dep.fields:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r} reads {host}.{target}, the value it "
                        "computes"
                    )
                self.own.extend(f for f in dep.fields if f not in self.own)
            elif isinstance(dep, RelatedDep):
                if host is None:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r} is a RelatedDep, which needs a host "
                        "record (a Custom on a property)"
                    )
                self.related.append((key, dep))

    def check_dictionaries(self, names: Mapping[str, Any]) -> None:
        """Every DictionaryDep names a declared dictionary."""
        for key, name in self.dictionaries:
            if name not in names:
                raise ModelError(
                    f"{self.name}: data_deps {key!r} reads dictionary {name!r}, which is not "
                    f"declared (known: {', '.join(sorted(names)) or 'none'})"
                )

    def bind(self, schema: Schema) -> None:
        for key, record, fields in self.records:
            if record not in schema.records:
                raise ModelError(
                    f"{self.name}: data_deps {key!r} reads {record!r}, which is not an entity, "
                    "relation or view of the model"
                )
            known = set(schema.fields(record))
            for field in fields or ():
                if field != "id" and field not in known:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r}: {record} has no field {field!r}"
                    )
                if record == self.host and field == self.target:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r} reads {record}.{field}, the value it "
                        "computes"
                    )
        for key, dep in self.related:
            assert self.host is not None
            attribute = schema.attributes(self.host).get(dep.attribute)
            if attribute is None or not attribute.via_link:
                raise ModelError(
                    f"{self.name}: data_deps {key!r}: {self.host} has no relation attribute "
                    f"{dep.attribute!r}"
                )
            related_fields = set(schema.fields(attribute.related))
            for field in dep.fields:
                if field != "id" and field not in related_fields:
                    raise ModelError(
                        f"{self.name}: data_deps {key!r}: {attribute.related} (reached by "
                        f"{self.host}.{dep.attribute}) has no field {field!r}"
                    )
            self.attributes[key] = attribute
        if self.host is not None:
            known = set(schema.fields(self.host))
            for field in self.own:
                if field not in known:
                    raise ModelError(
                        f"{self.name}: OwnFieldsDep names {field!r}, which {self.host} does "
                        "not have"
                    )

    def routes(self) -> list[Route]:
        out: list[Route] = []
        for _, record, _ in self.records:
            out += [(record, "create"), (record, "update"), (record, "delete")]
        if self.dictionaries:
            out += [(DICTIONARY_RECORD, "create"), (DICTIONARY_RECORD, "update")]
        for attribute in self.attributes.values():
            link = attribute.link.name
            out += [(link, "create"), (link, "delete"), (attribute.related, "update")]
        if self.host is not None:
            out.append((self.host, "create"))
            if self.own:
                out.append((self.host, "update"))
        return list(dict.fromkeys(out))

    # -- values ---------------------------------------------------------------------------------

    def install(self, ctx: TransactionContext) -> None:
        if self.host is None and ctx.dictionary_row(self.target) is None:
            state = self.decl.initial_state()
            value = self.evaluate(None, self.initial_value(), state, ctx)
            ctx.set_dictionary(self.target, value, state)

    def global_values(self, ctx: TransactionContext) -> dict[str, Any]:
        """The current values of the dependencies that are the same for every host."""
        out: dict[str, Any] = {}
        for key, record, fields in self.records:
            query = (
                ["id", *fields] if fields is not None else ctx.engine.public_query(record, ["*"])
            )
            out[key] = ctx.find(record, None, query, {"id": "asc"})
        for key, name in self.dictionaries:
            row = ctx.dictionary_row(name)
            if row is None:
                out[key] = ctx.engine.dictionaries[name].default_value()
            else:
                out[key] = row.get("value")
        return out

    def values(
        self, shared: Mapping[str, Any], host: Mapping[str, Any] | None, ctx: TransactionContext
    ) -> dict[str, Any]:
        """Each dependency's value by name: ``shared`` plus the host's own fields and related
        records (one read per RelatedDep)."""
        out = dict(shared)
        for key, dep in self.deps.items():
            if isinstance(dep, OwnFieldsDep):
                assert host is not None
                out[key] = {"id": host["id"], **{f: host.get(f) for f in dep.fields}}
            elif isinstance(dep, RelatedDep):
                assert host is not None and self.host is not None
                query = [(dep.attribute, ["id", *(f for f in dep.fields if f != "id")])]
                row = ctx.find_one(self.host, {"id": host["id"]}, query)
                found = (row or {}).get(dep.attribute)
                if self.attributes[key].to_many:
                    found = sorted(found or [], key=lambda x: x["id"])
                out[key] = found
        return {key: out[key] for key in self.deps}

    def evaluate(
        self,
        host: Mapping[str, Any] | None,
        last: Any,
        state: dict[str, Any] | None,
        ctx: TransactionContext,
        shared: Mapping[str, Any] | None = None,
    ) -> Any:
        """What compute gives now for ``host`` (None: the dictionary); ``state`` is changed in
        place; ``last`` is returned for UNCHANGED."""
        deps = self.values(self.global_values(ctx) if shared is None else shared, host, ctx)
        args: list[Any] = [deps]
        if self.host is not None:
            assert host is not None
            hidden = ctx.engine.records[self.host].hidden
            args.append({k: v for k, v in host.items() if k not in hidden})
        if self.has_state:
            args.append(state)
        value = self.compute(*args, ctx)
        return last if value is UNCHANGED else value

    # -- events ---------------------------------------------------------------------------------

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        every, some = self._concerned(event, ctx)
        if not every and not some:
            return
        if self.host is None:
            self._run_dictionary(ctx)
            return
        if every:
            ids = [r["id"] for r in ctx.find(self.host, None, ["id"], {"id": "asc"})]
        else:
            ids = list(dict.fromkeys(some))
        # Every host is locked (SELECT ... FOR UPDATE on PostgreSQL) before the dependencies
        # are read: a concurrent writer of a dependency that recomputes the same hosts waits,
        # then reads what this transaction committed (the pattern of every computation that
        # reads a collection after locking its host; see storage.postgres).
        hosts = [ctx.snapshot(self.host, host_id, lock=True) for host_id in ids]
        shared = self.global_values(ctx)
        for current in hosts:
            if current is not None:
                self._run_host(current["id"], shared, ctx)

    def _linked(self, event: MutationEvent, ctx: TransactionContext) -> list[Any]:
        """The hosts whose related records ``event`` changes (a link created or deleted, or
        a watched field of a related record)."""
        out: list[Any] = []
        for key, dep in self.related:
            attribute = self.attributes[key]
            link = attribute.link.name
            sides = ("source", "target") if attribute.symmetric else (attribute.side,)
            if event.record_name == link and event.type in ("create", "delete"):
                out.extend(event.record[side]["id"] for side in sides)
            elif (
                event.record_name == attribute.related
                and event.type == "update"
                and self._changed(event, dep.fields, attribute.related, ctx)
            ):
                related_id = event.record["id"]
                others = ("source", "target") if attribute.symmetric else (attribute.other,)
                for other in others:
                    mine = "target" if other == "source" else "source"
                    for row in ctx.find(link, {other: {"id": related_id}}, [mine]):
                        out.append(row[mine]["id"])
        return out

    def _concerned(self, event: MutationEvent, ctx: TransactionContext) -> tuple[bool, list[Any]]:
        """(every host, the host ids) whose dependencies ``event`` changes."""
        name, kind = event.record_name, event.type
        for _, record, fields in self.records:
            if record != name:
                continue
            if kind != "update" or self._changed(event, fields, record, ctx):
                return True, []
        if name == DICTIONARY_RECORD and self.dictionaries:
            key = event.merged.get("key")
            if any(key == n for _, n in self.dictionaries) and (
                kind == "create" or self._changed(event, ["value"], name, ctx)
            ):
                return True, []
        some = self._linked(event, ctx) if self.related else []
        if name == self.host and (
            kind == "create" or (kind == "update" and self._changed(event, self.own, name, ctx))
        ):
            some.append(event.record["id"])
        return False, some

    def _changed(
        self, event: MutationEvent, fields: list[str] | None, record: str, ctx: TransactionContext
    ) -> bool:
        old = event.old_record or {}
        written = event.record
        if fields is None:
            info = ctx.engine.records.get(record)
            hidden = info.hidden if info is not None else frozenset()
            skip = {"id", *hidden, *((self.target,) if record == self.host else ())}
            fields = [k for k in written if k not in skip and "_bound_" not in k]
        return any(k in written and old.get(k) != written[k] for k in fields)

    def _run_host(self, host_id: Any, shared: Mapping[str, Any], ctx: TransactionContext) -> None:
        assert self.host is not None
        # Locked (SELECT ... FOR UPDATE on PostgreSQL): the value and state written are derived
        # from what every earlier computation of this host committed.
        current = ctx.snapshot(self.host, host_id, lock=True)
        if current is None:
            return
        stored_state = current.get(self.state_field) if self.has_state else None
        state = copy.deepcopy(stored_state) if stored_state is not None else None
        if self.has_state and state is None:
            state = self.decl.initial_state()
        value = self.evaluate(current, current[self.target], state, ctx, shared)
        changes: dict[str, Any] = {}
        if value != current[self.target] or type(value) is not type(current[self.target]):
            changes[self.target] = value
        if self.has_state and state != stored_state:
            changes[self.state_field] = state
        if changes:
            ctx.update(self.host, {"id": current["id"]}, changes)

    def _run_dictionary(self, ctx: TransactionContext) -> None:
        row = ctx.dictionary_row(self.target, lock=True)
        last = (row or {}).get("value")
        stored_state = (row or {}).get("state") if self.has_state else None
        state = copy.deepcopy(stored_state) if stored_state is not None else None
        if self.has_state and state is None:
            state = self.decl.initial_state()
        value = self.evaluate(None, last, state, ctx)
        same_value = value == last and type(value) is type(last)
        if row is not None and same_value and (not self.has_state or state == stored_state):
            return
        ctx.set_dictionary(self.target, value, state)
