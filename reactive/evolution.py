"""Model evolution for a controller: plan, migrate, recompute, verify.

- :func:`plan_migration` reads the database's tables and its stored manifest (read
  transactions; nothing is written) and plans the way to the declared model
  (``reactive.planner``).
- :func:`migrate` applies a plan in **one write transaction**: the schema operations (rendered
  by the backend), the dictionaries' renames and drops, the defaults of new fields, the initial
  values, the backfill of every added or changed computation (``reactive.recompute``) and the
  new manifest. A failure, or a process killed half way, leaves the database as it was; the
  next ``setup()`` plans and runs it again. Unsafe changes are refused before anything runs,
  unless ``allow_destructive``; a plan made against a manifest that has changed since is
  refused too.
- :func:`recompute` recomputes computations from the stored data in batches of host ids, each
  its own transaction, so a large table never holds one giant transaction. Each batch is
  consistent: writes between batches keep the hosts already done right incrementally, and the
  hosts still to do are recomputed from the data as it is then.
- :func:`verify` recomputes everything in one read transaction and reports what differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from reactive import manifest, planner
from reactive.context import TransactionContext
from reactive.engine import DICTIONARY_RECORD, SYSTEM_RECORDS, Engine
from reactive.errors import MigrationError, ModelError
from reactive.migration_plan import MigrationPlan
from reactive.recompute import (
    Difference,
    Recomputation,
    VerifyReport,
    fill_defaults,
    ordered,
    recomputations,
)
from reactive.view_reads import ViewReads
from reactive.views import has_merged_ids
from storage import Field, MatchExp, Record, RecordType, Session, StorageError

if TYPE_CHECKING:
    from reactive.controller import Controller

_FINISH = object()
_DICTIONARY_VALUES = RecordType(DICTIONARY_RECORD, [Field("key"), Field("value", "json")])


def declared_manifest(controller: Controller) -> dict[str, Any]:
    """The manifest of the controller's declared model."""
    engine = controller.engine
    system = [r.name for r in SYSTEM_RECORDS] + [r.name for r in engine.extra_records]
    return manifest.build(
        engine.schema,
        engine.entities,
        engine.relations,
        list(engine.dictionaries.values()),
        system,
    )


async def plan_migration(controller: Controller) -> MigrationPlan:
    """The plan from the database as it is to the declared model; changes nothing."""
    backend = controller.backend
    engine = controller.engine
    tables = await backend.inspect()
    stored = None
    if manifest.MANIFEST_RECORD in tables:
        rows = await backend.peek(manifest.MANIFEST_RECORD_TYPE)
        stored = rows[-1]["manifest"] if rows else None
    renames = planner.renames_of(
        [*engine.entities, *engine.relations], engine.dictionaries.values()
    )
    plan = planner.plan(declared_manifest(controller), engine.schema, renames, stored, tables)
    checks = plan.data_checks
    if checks:
        facts: dict[tuple[str, str | None], bool] = {}
        tables_checks = [c for c in checks if c[0] != "dictionary"]
        for check, answer in zip(
            tables_checks, await backend.holds_data(tables_checks), strict=True
        ):
            facts[check] = answer
        if len(tables_checks) < len(checks):
            valued = set()
            if DICTIONARY_RECORD in tables:
                rows = await backend.peek(_DICTIONARY_VALUES)
                valued = {r["key"] for r in rows if r["value"] is not None}
            for check in checks:
                if check[0] == "dictionary":
                    facts[check] = check[1] in valued
        plan.settle(facts)
    return plan


class StalePlanError(MigrationError):
    """The stored model changed between planning and applying (another process migrated)."""


async def bring_up_to_date(controller: Controller, allow_destructive: bool) -> None:
    """Plan and migrate (``setup()``); planned again when another process migrated first."""
    for attempt in range(3):
        plan = await plan_migration(controller)
        try:
            await migrate(controller, plan, allow_destructive)
            return
        except StalePlanError:
            if attempt == 2:
                raise


async def check_current(controller: Controller) -> None:
    """Refuse to attach (``setup(install=False)``) to a database whose stored model differs
    from the declared one: its derived values would follow the wrong model."""
    plan = await plan_migration(controller)
    if plan.mode == "update" and plan.changes:
        raise MigrationError(
            "the database holds another version of the model than the one declared; "
            f"setup(install=True) would apply:\n{plan}",
            plan.unsafe,
            plan,
        )


def refuse(plan: MigrationPlan) -> MigrationError:
    """The error for a plan with unsafe changes."""
    unsafe = plan.unsafe
    lines = [
        f"setup() refuses {len(unsafe)} unsafe change(s) to the stored model; nothing was changed:"
    ]
    for change in unsafe:
        lines.append(f"- {change.kind} {change.target}: {change.action}")
        if change.fix:
            lines.append(f"  to proceed: {change.fix}")
    return MigrationError("\n".join(lines), unsafe, plan)


async def migrate(controller: Controller, plan: MigrationPlan, allow_destructive: bool) -> None:
    """Apply ``plan`` in one transaction (see the module)."""
    if plan.unsafe and not allow_destructive:
        raise refuse(plan)
    engine = controller.engine
    added_fields = [
        tuple(c.target.split(".", 1)) for c in plan.changes if c.kind == "add_field" and c.safe
    ]

    def guard(peek: Callable[[RecordType], list[Record]]) -> None:
        rows = peek(manifest.MANIFEST_RECORD_TYPE)
        current = manifest.canonical(rows[-1]["manifest"]) if rows else None
        if current != plan.stored_text:
            raise StalePlanError(
                "the stored model changed after this plan was made (another process "
                "migrated?): plan again with controller.plan_migration()",
                plan=plan,
            )

    def body(session: Session) -> None:
        ctx = TransactionContext(engine, session, controller)
        row = ctx.find_one(manifest.MANIFEST_RECORD, None, ["manifest"])
        current = None if row is None else manifest.canonical(row["manifest"])
        for old, new in plan.dictionary_renames.items():
            found = ctx.find_one(DICTIONARY_RECORD, {"key": old})
            if found is not None:
                ctx.update_internal(DICTIONARY_RECORD, found["id"], {"key": new})
        for name in plan.dropped_dictionaries(allow_destructive):
            found = ctx.find_one(DICTIONARY_RECORD, {"key": name})
            if found is not None:
                ctx.delete_internal(DICTIONARY_RECORD, found["id"])
        fill_defaults(ctx, [(a, b) for a, b in added_fields])
        _initial_values(ctx)
        for step in ordered(recomputations(engine), plan.backfill):
            try:
                step.write(ctx)
                if ctx.error is not None:
                    raise ctx.error
            except (MigrationError, StorageError):
                raise
            except Exception as exc:
                raise MigrationError(
                    f"the backfill of {step.key} failed on the stored data ({type(exc).__name__}: "
                    f"{exc}); nothing was changed: fix the computation (or the data) and run "
                    "setup() again",
                    plan=plan,
                ) from exc
        if current != plan.declared_text:
            value = {"manifest": json.loads(plan.declared_text)}
            if row is None:
                ctx.create_internal(manifest.MANIFEST_RECORD, value)
            else:
                ctx.update_internal(manifest.MANIFEST_RECORD, row["id"], value)

    await controller.backend.migrate(engine.schema, plan.operations(allow_destructive), body, guard)


async def recompute(
    controller: Controller, target: str | None = None, batch_size: int = 1000
) -> list[str]:
    """Recompute ``target`` (every computation when None) and what reads it; returns the keys
    recomputed, in order."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    engine = controller.engine
    everything = recomputations(engine)
    if target is not None and target not in everything:
        known = ", ".join(everything) or "none"
        raise ModelError(
            f"recompute: {target!r} is not a computation (use 'Record.field' or a dictionary "
            f"name; known: {known})"
        )
    steps = ordered(everything, [target] if target is not None else list(everything))
    backend = controller.backend

    def batch(step: Recomputation, id_range: Any) -> Callable[[Session], None]:
        def body(session: Session) -> None:
            ctx = TransactionContext(engine, session, controller)
            if id_range is _FINISH:
                step.finish(ctx)
            else:
                step.write(ctx, id_range)
            if ctx.error is not None:
                raise ctx.error

        return body

    for step in steps:
        record = step.batch_record
        bounds: tuple[Any, Any] | None = None
        if record is not None:
            bounds = await backend.run(_bounds_of(record), write=False)
        if record is None or bounds is None:
            await backend.run(batch(step, None))
            continue
        low, high = bounds
        while low <= high:
            await backend.run(batch(step, (low, low + batch_size)))
            low += batch_size
        await backend.run(batch(step, _FINISH))
    return [s.key for s in steps]


def _initial_values(ctx: TransactionContext) -> None:
    """Dictionaries that have no row yet get their initial value (or default)."""
    for handle in ctx.engine.handles:
        handle.install(ctx)
    for name, dictionary in ctx.engine.dictionaries.items():
        if dictionary.computation is None and ctx.dictionary_row(name) is None:
            value = dictionary.default_value()
            if value is not None:
                ctx.set_dictionary(name, value, None)


def _bounds_of(record: str) -> Callable[[Session], tuple[Any, Any] | None]:
    return lambda session: session.id_bounds(record)


_VERIFY_STEPS: WeakKeyDictionary[Engine, list[Recomputation]] = WeakKeyDictionary()


async def verify(controller: Controller, batch_size: int = 1000) -> VerifyReport:
    """Check every computation against the stored data; report what differs.

    Each computation whose host ids span more than ``batch_size`` is checked in batches of
    ``batch_size`` host ids, each batch its own read transaction (a live database is never
    held in one long read), then what lies beyond the batches (a Transform's orphans); every
    other computation (dictionaries, small tables) in one read transaction together."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    engine = controller.engine
    steps = _VERIFY_STEPS.get(engine)
    if steps is None:
        # Ordering costs O(computations^2) and the model never changes: once per engine.
        everything = recomputations(engine)
        steps = _VERIFY_STEPS[engine] = ordered(everything, list(everything))
    backend = controller.backend

    def check(step: Recomputation, id_range: Any) -> Callable[[Session], list[Difference]]:
        def body(session: Session) -> list[Difference]:
            ctx = TransactionContext(engine, session, controller)
            if id_range is _FINISH:
                return step.check_finish(ctx)
            return step.check(ctx, id_range)

        return body

    checked = [s for s in steps if s.checked]
    records = sorted({s.batch_record for s in checked if s.batch_record is not None})

    def all_bounds(session: Session) -> dict[str, Any]:
        return {record: session.id_bounds(record) for record in records}

    bounds = await backend.run(all_bounds, write=False)

    def small(step: Recomputation) -> bool:
        span = None if step.batch_record is None else bounds[step.batch_record]
        return span is None or span[1] - span[0] < batch_size

    def at_once(session: Session) -> list[Difference]:
        # Every computation whose hosts fit in one batch: one read transaction for all.
        ctx = TransactionContext(engine, session, controller)
        return [d for step in checked if small(step) for d in step.check(ctx, None)]

    differences: list[Difference] = await backend.run(at_once, write=False)
    for step in (s for s in checked if not small(s)):
        assert step.batch_record is not None
        low, high = bounds[step.batch_record]
        while low <= high:
            differences += await backend.run(check(step, (low, low + batch_size)), write=False)
            low += batch_size
        differences += await backend.run(check(step, _FINISH), write=False)
    differences += await _verify_views(controller, batch_size)
    return VerifyReport(differences, [s.key for s in steps if not s.recomputable])


async def _verify_views(controller: Controller, batch_size: int) -> list[Difference]:
    """Every filtered view's members as the database matches them against the members its
    events are derived from (its match judged in Python on each stored record of the base):
    a record on one side only is a difference (``field`` ``"(member)"``). Batches of
    ``batch_size`` base ids, each its own read transaction."""
    views = controller.engine.views
    out: list[Difference] = []
    for name, view in views.items():
        if view.base is None or has_merged_ids(name, views):
            continue
        chain = [view]
        while chain[-1].base in views:
            chain.append(views[str(chain[-1].base)])
        base = str(chain[-1].base)
        span = await controller.backend.run(partial(_id_bounds, base), write=False)
        low, high = span if span is not None else (1, 0)
        while low <= high:
            scope = MatchExp.atom("id", ">=", low) & MatchExp.atom("id", "<", low + batch_size)
            body = partial(_members_differ, views, chain, scope)
            out += await controller.backend.run(body, write=False)
            low += batch_size
    return out


def _id_bounds(record: str, session: Session) -> Any:
    return session.id_bounds(record)


def _members_differ(
    views: Any, chain: list[Any], scope: MatchExp, session: Session
) -> list[Difference]:
    """One batch of :func:`_verify_views`: ``chain`` is the view then the views it filters,
    down to the one over the stored base."""
    name, base = chain[0].name, str(chain[-1].base)
    reads = ViewReads(views, session.find, session.count)
    stored = {r["id"] for r in reads.find(name, scope)}
    fields = sorted({f for v in chain for f in v.fields})
    judged = {r["id"] for r in reads.find(base, scope, fields) if all(v.holds(r) for v in chain)}
    return [
        Difference(name, i, "(member)", i in stored, i in judged) for i in sorted(stored ^ judged)
    ]
