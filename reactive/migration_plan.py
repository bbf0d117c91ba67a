"""A migration plan: the changes between the declared and the stored model, and what applying
each does (see ``reactive.planner``, which makes it).

``plan.changes`` lists :class:`Change` values (``kind``, ``target``, ``safe``, ``action``,
``fix``); ``str(plan)`` is the terminal listing. The schema operations and data steps behind
each change stay private: ``operations(allow_destructive)`` gives them in the order a backend
runs them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from storage import LinkType
from storage import migration as ops

APPLY = 'setup(migrate="apply") or await controller.migrate(plan, allow_destructive=True)'
# The order in which a backend runs the operations: every drop of an index before the columns
# it covers go; columns dropped before their table is renamed (by the old name); new columns
# before the indexes over them.
_PHASES: dict[type, int] = {
    ops.DropIndex: 0,
    ops.DropTable: 1,
    ops.DropColumn: 2,
    ops.RenameTable: 3,
    ops.RenameColumn: 4,
    ops.AddTable: 5,
    ops.AddColumn: 6,
    ops.AlterLink: 7,
    ops.AddIndex: 8,
}


@attrs.frozen
class Change:
    """One difference between the declared model and the stored one.

    ``kind`` (``add_field``, ``remove_record``, ``change_type``, ``add_computation``, ...),
    ``target`` (``"User.n"``, ``"Post"``, a dictionary name), ``safe``, ``action`` (what
    applying it does), ``fix`` (for an unsafe change: the ways to proceed)."""

    kind: str
    target: str
    safe: bool
    action: str
    fix: str | None = None

    def __str__(self) -> str:
        mark = "  ok  " if self.safe else "UNSAFE"
        text = f"{mark} {self.kind:<20} {self.target}: {self.action}"
        if self.fix:
            text += f"\n{'':27}-> {self.fix}"
        return text


@attrs.define
class _Draft:
    kind: str
    target: str
    action: str
    operations: list[ops.Operation] = attrs.field(factory=list)
    #: (table, column or None): unsafe when it holds data; ("dictionary", name) for a value
    check: tuple[str, str | None] | None = None
    unsafe_action: str | None = None
    fix: str | None = None
    always_unsafe: bool = False
    dictionary: str | None = None
    #: a computation's own state (hidden columns): done, not listed
    internal: bool = False


@attrs.frozen
class Renames:
    """The ``renamed_from=`` declarations of a model: new name -> old name."""

    records: Mapping[str, str] = attrs.field(factory=dict)
    fields: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    dictionaries: Mapping[str, str] = attrs.field(factory=dict)


class MigrationPlan:
    """What ``setup()`` (or :meth:`Controller.migrate`) will do to bring the database to the
    declared model: ``changes`` (each a :class:`Change`), the computations it will backfill.

    ``str(plan)`` is a readable listing. Planned against the manifest it read: applying it
    after the stored model changed again is refused."""

    def __init__(
        self,
        drafts: list[_Draft],
        backfill: list[str],
        stored_text: str | None,
        declared_text: str,
        mode: str,
        dictionary_renames: dict[str, str],
    ):
        self._drafts = drafts
        self.backfill: list[str] = backfill
        """Keys of the computations the migration recomputes from the stored data."""
        self.stored_text = stored_text
        self.declared_text = declared_text
        self.mode = mode
        """``"fresh"`` (empty database), ``"adopt"`` (tables without a manifest), ``"update"``."""
        self.dictionary_renames = dictionary_renames
        self._facts: dict[tuple[str, str | None], bool] = {}
        self.changes: list[Change] = []
        self.settle({})

    @property
    def data_checks(self) -> list[tuple[str, str | None]]:
        """The facts about stored data that decide which changes are safe."""
        return list(dict.fromkeys(d.check for d in self._drafts if d.check is not None))

    def settle(self, facts: Mapping[tuple[str, str | None], bool]) -> None:
        """Mark each change safe or not from the answers to :attr:`data_checks`."""
        self._facts = dict(facts)
        self.changes = [self._change(d) for d in self._drafts if not d.internal]

    def _unsafe(self, draft: _Draft) -> bool:
        if draft.always_unsafe:
            return True
        return draft.check is not None and self._facts.get(draft.check, True)

    def _change(self, draft: _Draft) -> Change:
        if self._unsafe(draft):
            return Change(
                draft.kind, draft.target, False, draft.unsafe_action or draft.action, draft.fix
            )
        return Change(draft.kind, draft.target, True, draft.action)

    @property
    def unsafe(self) -> list[Change]:
        """The changes that are refused unless destructive changes are allowed."""
        return [c for c in self.changes if not c.safe]

    @property
    def empty(self) -> bool:
        """Nothing to change (the stored manifest is the declared one)."""
        return not self._drafts and self.stored_text == self.declared_text

    def operations(self, allow_destructive: bool) -> list[ops.Operation]:
        """The schema operations to run, in order (the unsafe ones only if allowed)."""
        chosen = [
            op
            for d in self._drafts
            if allow_destructive or not self._unsafe(d)
            for op in d.operations
        ]
        return sorted(chosen, key=_phase)

    def dropped_dictionaries(self, allow_destructive: bool) -> list[str]:
        """Dictionaries whose stored value goes with this migration."""
        return [
            d.dictionary
            for d in self._drafts
            if d.dictionary is not None and (allow_destructive or not self._unsafe(d))
        ]

    def __str__(self) -> str:
        if not self.changes:
            return "Migration plan: nothing to change."
        unsafe = len(self.unsafe)
        head = f"Migration plan ({self.mode}): {len(self.changes)} change(s)"
        head += f", {unsafe} unsafe" if unsafe else ", all safe"
        lines = [head]
        lines.extend(str(c) for c in self.changes)
        if self.backfill:
            lines.append(f"Backfill from the stored data: {', '.join(self.backfill)}")
        if unsafe:
            lines.append(f"Unsafe changes are refused; to apply them: {APPLY}.")
        return "\n".join(lines)


def _phase(op: ops.Operation) -> tuple[int, int]:
    # New links after the records they join (dropped ones come first: see plan()).
    return (_PHASES[type(op)], int(isinstance(getattr(op, "record", None), LinkType)))
