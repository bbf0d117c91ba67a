"""The migration planner: the declared model against the stored manifest, before anything runs.

Works on the storage :class:`~storage.Schema` and the manifests only (``reactive.manifest``),
never on a database: the schema operations it produces are the neutral values of
``storage.migration``, which any backend renders. The facts only a database knows (does this
table or column hold data? which dictionaries have a value?) are asked for by
:attr:`MigrationPlan.data_checks` and given back to :meth:`MigrationPlan.settle`.

What is safe:
- new records, relations, fields, indexes, dictionaries; a widened cardinality; a changed
  default (new records only); a changed ``cascade`` or relation attribute name;
- computations added, changed or removed: the added and changed ones are backfilled from the
  stored data (``reactive.recompute``), a removed one leaves its last values as plain data;
- renames declared with ``renamed_from=`` (the data is kept);
- removing a field or record type (or dictionary) that holds no data, or a field whose values
  an aggregate or ``computed=`` derived (they can be derived again).

What is unsafe (refused unless destructive changes are allowed): removing what holds data, a
field's type change (the values are dropped), a relation whose ends or symmetry change, or
whose cardinality narrows, while it holds links (applied, a narrowing keeps every link and
fails, changing nothing, if the links do not fit).

A database without a manifest (set up before manifests existed) is *adopted*: its tables are
compared with the declared schema, and every computation counts as added, so the first
``setup()`` recomputes every derived value from the stored data (state machines and Custom
values are kept; rows without one get the initial value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from reactive.manifest import canonical
from reactive.migration_plan import APPLY, MigrationPlan, Renames, _Draft
from storage import Index, LinkType, RecordType, Schema
from storage.migration import (
    AddColumn,
    AddIndex,
    AddTable,
    AlterLink,
    DropColumn,
    DropIndex,
    DropTable,
    RenameColumn,
    RenameTable,
    record_from_json,
)

_DERIVED = ("Count", "Summation", "WeightedSummation", "Average", "Every", "Any")


# -- planning ---------------------------------------------------------------------------------


def plan(
    declared: dict[str, Any],
    schema: Schema,
    renames: Renames,
    stored: dict[str, Any] | None,
    tables: Mapping[str, list[str]],
) -> MigrationPlan:
    """The plan that takes a database holding ``stored`` (its manifest, or None) and
    ``tables`` (its tables and their columns) to the ``declared`` manifest of ``schema``."""
    drafts: list[_Draft] = []
    backfill: list[str] = []
    system = set(declared["system"])
    if stored is None:
        if not tables:
            mode = "fresh"
            stored = {"schema": {}, "system": [], "records": {}, "dictionaries": {}}
        else:
            mode = "adopt"
            stored = _adopted(declared, schema, tables, system)
            drafts.append(
                _Draft(
                    "adopt",
                    "model",
                    "the database has no model manifest (it was set up before manifests): "
                    "its tables are taken as the model, every computation is recomputed "
                    "from the stored data",
                )
            )
    else:
        mode = "update"
    old_schema: dict[str, Any] = stored["schema"]
    old_records: dict[str, Any] = stored["records"]
    new_records: dict[str, Any] = declared["records"]

    mapping = _record_mapping(schema, renames, old_schema)
    mapped_old = set(mapping.values())
    # Removed records: links first (their rows point at the records).
    for removed in sorted(old_schema, key=lambda n: "link" not in old_schema[n]):
        if removed in mapped_old or removed in system or removed in stored.get("system", []):
            continue
        drafts.append(_removed_record(removed, old_schema[removed], old_records, schema))
    for name, record in schema.records.items():
        old_name = mapping.get(name)
        is_system = name in system
        if old_name is None:
            drafts.append(_added_record(record, is_system))
            computation = new_records.get(name, {}).get("computation")
            if computation is not None:  # a Transform: derive the new records now
                action = _backfill_action(_kind_of(computation))
                drafts.append(_Draft("add_computation", name, f"Transform: {action}"))
                backfill.append(name)
            continue
        old = record_from_json(old_name, old_schema[old_name])
        old_model = old_records.get(old_name, {})
        new_model = new_records.get(name, {})
        if old_name != name:
            drafts.append(
                _Draft(
                    "rename_record",
                    name,
                    f"rename {old_name} to {name}, keeping its rows",
                    [RenameTable(old, record)],
                )
            )
        drafts.extend(_link_changes(old, record, mapping))
        drafts.extend(
            _field_changes(old, record, old_model, new_model, renames, is_system, old_name)
        )
        drafts.extend(_computation_changes(name, old_model, new_model, renames, old_name, backfill))
    dictionary_renames = _dictionary_changes(
        declared["dictionaries"], stored["dictionaries"], renames, drafts, backfill
    )
    if mode == "adopt":
        backfill[:] = _all_computations(declared)
    return MigrationPlan(
        drafts,
        list(dict.fromkeys(backfill)),
        None if mode != "update" else canonical(stored),
        canonical(declared),
        mode,
        dictionary_renames,
    )


def _adopted(
    declared: dict[str, Any], schema: Schema, tables: Mapping[str, list[str]], system: set[str]
) -> dict[str, Any]:
    """The manifest a database without one is taken to have: its tables and columns, with the
    declared types where the names match, and no computations."""
    old_schema: dict[str, Any] = {}
    for table, stored_columns in tables.items():
        declared_record = schema.records.get(table)
        present = [c for c in stored_columns if c not in ("id", "source", "target")]
        if declared_record is None:
            old_schema[table] = {"fields": [[c, "string"] for c in present], "indexes": []}
            continue
        types = {f.name: f.type for f in declared_record.fields}
        entry: dict[str, Any] = {
            "fields": [[c, types.get(c, "string")] for c in present],
            "indexes": [
                [
                    list(i.fields),
                    i.unique,
                    i.name,
                    *([[list(w) for w in i.where]] if i.where else []),
                ]
                for i in declared_record.indexes
                if all(f in present for f in i.fields)
            ],
        }
        declared_entry = declared["schema"].get(table, {})
        if "link" in declared_entry:
            entry["link"] = declared_entry["link"]
        old_schema[table] = entry
    records: dict[str, Any] = {}
    for name, entry in declared["records"].items():
        if name not in tables:
            continue
        columns = set(tables[name])
        records[name] = {
            "kind": entry["kind"],
            "computation": None,
            "properties": {
                p: {**prop, "computation": None, "computed": None}
                for p, prop in entry["properties"].items()
                if p in columns
            },
        }
    dictionaries = {n: {**d, "computation": None} for n, d in declared["dictionaries"].items()}
    return {
        "schema": old_schema,
        "system": sorted(system),
        "records": records,
        "dictionaries": dictionaries,
    }


def _all_computations(declared: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for name, entry in declared["records"].items():
        if entry["computation"] is not None:
            keys.append(name)
        for prop, spec in entry["properties"].items():
            if spec["computation"] is not None or spec["computed"] is not None:
                keys.append(f"{name}.{prop}")
    keys.extend(n for n, d in declared["dictionaries"].items() if d["computation"] is not None)
    return keys


def _record_mapping(
    schema: Schema, renames: Renames, old_schema: Mapping[str, Any]
) -> dict[str, str]:
    """Declared record name -> its name in the stored manifest (absent: a new record)."""
    mapping: dict[str, str] = {}
    for name in schema.records:
        old = renames.records.get(name)
        if name in old_schema:
            mapping[name] = name
        elif old is not None and old in old_schema and old not in schema.records:
            mapping[name] = old
    # A relation whose default name changed only because an end was renamed follows it: the
    # unclaimed stored link with the same ends (as renamed) and attributes is this one.
    reverse = {old: new for new, old in mapping.items()}
    claimed = set(mapping.values())
    for name, record in schema.records.items():
        if name in mapping or not isinstance(record, LinkType):
            continue
        for old_name, entry in old_schema.items():
            link = entry.get("link")
            if old_name in claimed or link is None:
                continue
            ends = (
                reverse.get(link["source"], link["source"]),
                link["source_attr"],
                reverse.get(link["target"], link["target"]),
                link["target_attr"],
            )
            if ends == (record.source, record.source_attr, record.target, record.target_attr):
                mapping[name] = old_name
                claimed.add(old_name)
                break
    return mapping


def _added_record(record: RecordType | LinkType, is_system: bool) -> _Draft:
    kind = "add_relation" if isinstance(record, LinkType) else "add_record"
    return _Draft(kind, record.name, "create its table", [AddTable(record)], internal=is_system)


def _removed_record(
    old_name: str, entry: dict[str, Any], old_records: Mapping[str, Any], schema: Schema
) -> _Draft:
    is_link = "link" in entry
    kind = "remove_relation" if is_link else "remove_record"
    what = "relation" if is_link else "record type"
    hint = (
        f"Relation(..., renamed_from={old_name!r})"
        if is_link
        else (f"Entity(..., renamed_from={old_name!r})")
    )
    return _Draft(
        kind,
        old_name,
        "drop its table (it holds no rows)",
        [DropTable(old_name)],
        check=(old_name, None),
        unsafe_action=f"the {what} is no longer declared and its table holds rows",
        fix=f"if it was renamed, declare {hint}; to drop it and its rows: {APPLY}",
    )


def _link_changes(old: Any, new: Any, mapping: Mapping[str, str]) -> list[_Draft]:
    if not isinstance(old, LinkType) or not isinstance(new, LinkType):
        if isinstance(old, LinkType) != isinstance(new, LinkType):
            return [
                _Draft(
                    "change_record",
                    new.name,
                    "recreate the table as a "
                    + ("relation" if isinstance(new, LinkType) else "record type"),
                    [DropTable(old.name), AddTable(new)],
                    check=(old.name, None),
                    unsafe_action="an entity became a relation (or back) and its table holds "
                    "rows, which would be dropped",
                    fix=f"move the rows yourself, or drop them: {APPLY}",
                )
            ]
        return []
    drafts: list[_Draft] = []
    reverse = {v: k for k, v in mapping.items()}
    ends = (reverse.get(old.source, old.source), reverse.get(old.target, old.target))
    if ends != (new.source, new.target) or old.symmetric != new.symmetric:
        drafts.append(
            _Draft(
                "change_relation",
                new.name,
                f"recreate it between {new.source} and {new.target}"
                + (" (symmetric)" if new.symmetric else ""),
                [DropTable(old.name), AddTable(new)],
                check=(old.name, None),
                unsafe_action=f"its ends or symmetry changed ({ends[0]} -> {ends[1]} before) "
                "and it holds links, which would be dropped",
                fix=f"declare a new relation and move the links, or drop them: {APPLY}",
            )
        )
        return drafts
    if old.cardinality != new.cardinality:
        narrowed = any(
            o == "n" and n == "1"
            for o, n in zip(old.cardinality[::2], new.cardinality[::2], strict=True)
        )
        renamed_old = attrs.evolve(old, name=new.name)
        draft = _Draft(
            "change_cardinality",
            new.name,
            f"{old.cardinality} -> {new.cardinality}",
            [AlterLink(renamed_old, new)],
        )
        if narrowed:
            draft.check = (old.name, None)
            draft.unsafe_action = (
                f"{old.cardinality} -> {new.cardinality} narrows a relation that holds links"
            )
            draft.fix = (
                f"applied with {APPLY}, every link is kept, and it fails (changing nothing) "
                "if the stored links do not fit the new cardinality"
            )
        drafts.append(draft)
    if (old.source_attr, old.target_attr, old.cascade) != (
        new.source_attr,
        new.target_attr,
        new.cascade,
    ):
        drafts.append(
            _Draft(
                "change_relation",
                new.name,
                f"attributes {new.source_attr}/{new.target_attr}, cascade={new.cascade} "
                "(no change to the stored links)",
            )
        )
    return drafts


def _field_changes(
    old: RecordType | LinkType,
    new: RecordType | LinkType,
    old_model: Mapping[str, Any],
    new_model: Mapping[str, Any],
    renames: Renames,
    is_system: bool,
    old_table: str,
) -> list[_Draft]:
    drafts: list[_Draft] = []
    name = new.name
    old_fields = {f.name: f for f in old.fields}
    new_fields = {f.name: f for f in new.fields}
    old_props: Mapping[str, Any] = old_model.get("properties", {})
    new_props: Mapping[str, Any] = new_model.get("properties", {})
    # Renamed columns, and the hidden state of a renamed computed property with them.
    column_renames: dict[str, str] = {}
    for field in new_fields:
        was = renames.fields.get((name, field))
        # Not a rename when the old name is still declared (or the new one already stored).
        if (
            was is not None
            and was in old_fields
            and was not in new_fields
            and field not in old_fields
        ):
            column_renames[was] = field
            prefix_old, prefix_new = f"_{was}_bound_", f"_{field}_bound_"
            for hidden in old_fields:
                if hidden.startswith(prefix_old):
                    renamed = prefix_new + hidden[len(prefix_old) :]
                    if renamed in new_fields and renamed not in old_fields:
                        column_renames[hidden] = renamed
    for was, field in column_renames.items():
        if was in old_props or field in new_props:
            drafts.append(
                _Draft(
                    "rename_field",
                    f"{name}.{field}",
                    f"rename column {was} to {field}, keeping its values",
                    [RenameColumn(name, was, field)],
                )
            )
        else:
            drafts.append(
                _Draft("rename_state", f"{name}.{field}", "kept", [RenameColumn(name, was, field)])
            )
    renamed_to = set(column_renames.values())
    added = [f for f in new_fields if f not in old_fields and f not in renamed_to]
    changed_index_fields: set[str] = set()
    for field in added:
        spec = new_props.get(field)
        op = AddColumn(name, new_fields[field])
        if spec is None:  # a computation's state or a system field: part of another change
            drafts.append(_Draft("add_state", f"{name}.{field}", "add column", [op], internal=True))
            continue
        action = "add column"
        plain = spec["computation"] is None and spec["computed"] is None
        if plain and spec["default"] is not None:
            action += "; existing rows get the default"
        draft = _Draft("add_field", f"{name}.{field}", action, [op])
        if new_fields[field].non_null:
            draft.action += "; non-null"
            if plain and spec["default"] is None:
                # Nothing would give the existing rows a value: refused if there are any.
                draft.check = (old_table, None)
                draft.unsafe_action = (
                    "a new non-null property without a default, on a table that holds rows "
                    "(they would have no value)"
                )
                draft.fix = (
                    "give the property a default= (the existing rows get it), or add it "
                    "without the NonNullConstraint, fill it, then add the constraint"
                )
        drafts.append(draft)
    for field, old_field in old_fields.items():
        if field in column_renames:
            continue
        if field not in new_fields:
            if is_system:
                continue  # the engine's own bookkeeping columns are kept
            spec = old_props.get(field)
            drop = DropColumn(old_table, field)
            if spec is None:
                drafts.append(
                    _Draft("remove_state", f"{name}.{field}", "drop column", [drop], internal=True)
                )
                continue
            derived = (spec["computation"] or {}).get("kind") in _DERIVED or spec["computed"]
            candidates = [
                f for f in added if f in new_props and new_fields[f].type == old_field.type
            ]
            hint = (
                f"Property({candidates[0]!r}, ..., renamed_from={field!r})"
                if candidates
                else f"Property('<new name>', ..., renamed_from={field!r})"
            )
            drafts.append(
                _Draft(
                    "remove_field",
                    f"{name}.{field}",
                    "drop column" + (" (derived values)" if derived else " (holds no data)"),
                    [drop],
                    check=None if derived else (old_table, field),
                    unsafe_action="no longer declared, and its column holds data",
                    fix=f"if it was renamed, declare {hint}; to drop its data: {APPLY}",
                )
            )
            changed_index_fields.add(field)
            continue
        new_field = new_fields[field]
        if new_field.type != old_field.type:
            changed_index_fields.add(field)
            drafts.append(
                _Draft(
                    "change_type",
                    f"{name}.{field}",
                    f"{old_field.type} -> {new_field.type} (the column holds no data)",
                    [DropColumn(old_table, field), AddColumn(name, new_field)],
                    check=(old_table, field),
                    unsafe_action=f"{old_field.type} -> {new_field.type} on a column that "
                    "holds data (applying drops its values)",
                    fix=f"add a new field and copy the values yourself; to drop the values: "
                    f"{APPLY}",
                    always_unsafe=False,
                )
            )
        if new_field.non_null != old_field.non_null:
            drafts.append(
                _Draft(
                    "add_constraint" if new_field.non_null else "remove_constraint",
                    f"{name}.{field}",
                    "non-null (fails, changing nothing, if a stored row holds no value)"
                    if new_field.non_null
                    else "no longer non-null",
                )
            )
        old_spec, new_spec = old_props.get(field), new_props.get(field)
        if (
            old_spec is not None
            and new_spec is not None
            and old_spec.get("default") != new_spec.get("default")
        ):
            drafts.append(
                _Draft("change_default", f"{name}.{field}", "new records only (rows kept)")
            )
    drafts.extend(_index_changes(old, new, column_renames, changed_index_fields, old_table))
    return drafts


def _index_changes(
    old: RecordType | LinkType,
    new: RecordType | LinkType,
    column_renames: Mapping[str, str],
    changed: set[str],
    old_table: str,
) -> list[_Draft]:
    drafts: list[_Draft] = []

    def key(index: Index) -> tuple[tuple[str, ...], bool, str | None, tuple[Any, ...]]:
        return (index.fields, index.unique, index.name, index.where)

    if old_table != new.name:
        return []  # a renamed table gets all its indexes anew (RenameTable)
    old_keys = {key(i): i for i in old.indexes}
    new_keys = {key(i): i for i in new.indexes}
    touched = set(column_renames) | changed
    for k, index in old_keys.items():
        if k not in new_keys or touched.intersection(index.fields):
            drafts.append(
                _Draft(
                    "remove_index",
                    f"{new.name}({', '.join(index.fields)})",
                    "drop index",
                    [DropIndex(old_table, index)],
                )
            )
    renamed_new = set(column_renames.values())
    for k, index in new_keys.items():
        if (
            k not in old_keys
            or renamed_new.intersection(index.fields)
            or changed.intersection(index.fields)
        ):
            what = "unique index" if index.unique else "index"
            action = f"create {what}"
            if index.unique:
                action += " (fails, changing nothing, if stored rows repeat a value)"
            drafts.append(
                _Draft(
                    "add_index",
                    f"{new.name}({', '.join(index.fields)})",
                    action,
                    [AddIndex(new.name, index)],
                )
            )
    return drafts


def _computation_changes(
    name: str,
    old_model: Mapping[str, Any],
    new_model: Mapping[str, Any],
    renames: Renames,
    old_name: str,
    backfill: list[str],
) -> list[_Draft]:
    drafts: list[_Draft] = []

    def compare(target: str, key: str, before: Any, after: Any, what: str) -> None:
        if before == after:
            return
        if after is None:
            drafts.append(
                _Draft("remove_computation", target, f"{what} removed; its values stay as data")
            )
            return
        kind = after["kind"] if isinstance(after, dict) else "computed"
        verb = "add_computation" if before is None else "change_computation"
        drafts.append(_Draft(verb, target, f"{kind}: {_backfill_action(_kind_of(after))}"))
        backfill.append(key)

    compare(name, name, old_model.get("computation"), new_model.get("computation"), "Transform")
    old_props: Mapping[str, Any] = old_model.get("properties", {})
    for prop, spec in new_model.get("properties", {}).items():
        was = renames.fields.get((name, prop), prop)
        new_props = new_model.get("properties", {})
        if prop in old_props or was in new_props:  # stored under its name, or not renamed
            was = prop
        before = old_props.get(was) or {}
        target = f"{name}.{prop}"
        compare(target, target, before.get("computation"), spec["computation"], "computation")
        compare(target, target, before.get("computed"), spec["computed"], "computed=")
    return drafts


def _kind_of(computation: Any) -> str:
    """A computation's kind for :func:`_backfill_action` (a Transform over events apart)."""
    if not isinstance(computation, Mapping):
        return "computed"
    if computation.get("kind") == "Transform" and computation.get("event_deps") is not None:
        return "EventTransform"
    if computation.get("kind") == "Custom" and computation.get("data_deps") is not None:
        return "Custom" if computation.get("state") is not None else "CustomDeps"
    return str(computation.get("kind"))


def _backfill_action(kind: str) -> str:
    if kind in _DERIVED:
        return "recompute every value from the stored data"
    if kind == "Transform":
        return "derive its records from every stored source record (updated in place)"
    if kind == "EventTransform":
        return "nothing to derive: its records come from events after the change"
    if kind == "StateMachine":
        return "records without a state start in the initial state (or initial(record))"
    if kind == "Custom":
        return "records without a value get its initial value (history is not replayed)"
    if kind == "CustomDeps":
        return "compute every value again from its data dependencies"
    return "recompute every row from its own fields"


def _dictionary_changes(
    declared: Mapping[str, Any],
    stored: Mapping[str, Any],
    renames: Renames,
    drafts: list[_Draft],
    backfill: list[str],
) -> dict[str, str]:
    dictionary_renames: dict[str, str] = {}
    matched: set[str] = set()
    for name, spec in declared.items():
        was = renames.dictionaries.get(name)
        if name in stored:
            old = stored[name]
            matched.add(name)
        elif was is not None and was in stored and was not in declared:
            old = stored[was]
            matched.add(was)
            dictionary_renames[was] = name
            drafts.append(
                _Draft("rename_dictionary", name, f"rename {was} to {name}, keeping its value")
            )
        else:
            kind = (spec["computation"] or {}).get("kind")
            action = (
                "write its default"
                if kind is None
                else f"{kind}: {_backfill_action(_kind_of(spec['computation']))}"
            )
            drafts.append(_Draft("add_dictionary", name, action))
            if kind is not None:
                backfill.append(name)
            continue
        if old["computation"] != spec["computation"]:
            if spec["computation"] is None:
                drafts.append(_Draft("remove_computation", name, "its value stays as data"))
            else:
                verb = "add_computation" if old["computation"] is None else "change_computation"
                kind = spec["computation"]["kind"]
                action = _backfill_action(_kind_of(spec["computation"]))
                drafts.append(_Draft(verb, name, f"{kind}: {action}"))
                backfill.append(name)
        if old["type"] != spec["type"]:
            drafts.append(
                _Draft("change_type", name, f"{old['type']} -> {spec['type']} (value kept)")
            )
    for name in stored:
        if name in matched:
            continue
        derived = (stored[name]["computation"] or {}).get("kind") in _DERIVED
        drafts.append(
            _Draft(
                "remove_dictionary",
                name,
                "forget it" + (" (a derived value)" if derived else " (it holds no value)"),
                check=None if derived else ("dictionary", name),
                unsafe_action="no longer declared, and it holds a value",
                fix=f"if it was renamed, declare Dictionary(..., renamed_from={name!r}); to "
                f"drop its value: {APPLY}",
                dictionary=name,
            )
        )
    return dictionary_renames


def renames_of(owners: Iterable[Any], dictionaries: Iterable[Any]) -> Renames:
    """The ``renamed_from=`` declarations of a model's entities, relations and dictionaries."""
    records: dict[str, str] = {}
    fields: dict[tuple[str, str], str] = {}
    for owner in owners:
        name = owner.name if owner.name is not None else owner.relation_name
        if owner.renamed_from:
            records[name] = owner.renamed_from
        for prop in owner.properties:
            if prop.renamed_from:
                fields[(name, prop.name)] = prop.renamed_from
    return Renames(
        records, fields, {d.name: d.renamed_from for d in dictionaries if d.renamed_from}
    )
