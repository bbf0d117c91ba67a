"""Data dependencies of a computation beyond the records it runs over.

A computation that reads a global value declares it: ``data_deps={"threshold":
DictionaryDep("threshold")}`` (the alias the callback sees -> the dictionary it reads). The
callback then receives the values as a dict, ``callback(item, deps)`` (or ``(item, deps,
ctx)``), and the computation follows the dictionary: when its value changes, every value of
the computation is brought up to date in the same transaction.

Contract (for every computation that takes ``data_deps``):
- a dictionary that was never set reads as its declared default;
- the values are read inside the write transaction; on PostgreSQL the dictionary's row is read
  locked (``FOR UPDATE``) by a write that uses it, so a concurrent change of the dictionary
  waits for that write (and the other way round) and no item is counted under a value that
  was replaced in between. A write locks those rows before any computation runs
  (``Engine.dep_locks``, taken in ``TransactionContext.propagate``), so the dictionary's row
  always comes before the aggregates' rows and the two kinds of writes do not deadlock;
- declarations are checked when the model is compiled (``Controller(...)``): an unknown
  dictionary, an alias that is not an identifier, a value that is not a DictionaryDep, a
  computation without a callback to feed, or a dependency of a computation on its own
  dictionary is a :class:`~reactive.errors.ModelError` naming the computation (host and
  property).

A change of a dependency brings every value up to date in the same transaction: each item's
contribution under the old value and the new one, the differences applied as deltas (a whole
recount, O(hosts x related items) reads, a write per value that moves). An item's own change
stays O(1): its delta under the current values. The concurrent item write that read the old
value is held off by the row lock above.

Costs: reading the values is one row per dictionary per transaction (then cached). On
PostgreSQL the lock above means that the writes of items of aggregates with the same
dependency take turns on the dictionary's row (as the writes to one host's total do).
Not supported (refused at setup): a dependency on a dictionary derived from the records the
aggregate itself reads (a Count of items above their average): one write would move both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from reactive.errors import ModelError
from reactive.model import Dictionary

if TYPE_CHECKING:
    from reactive.context import TransactionContext


def _dictionary_name(value: Any) -> str:
    if isinstance(value, Dictionary):
        return value.name
    if not isinstance(value, str) or not value:
        raise ModelError(f"DictionaryDep needs a Dictionary or its name, got {value!r}")
    return value


@attrs.frozen
class DictionaryDep:
    """A dependency on the value of the dictionary ``dictionary`` (a :class:`Dictionary` or
    its name): the computation sees its current value and follows its changes."""

    dictionary: str = attrs.field(converter=_dictionary_name)


DataDeps = Mapping[str, DictionaryDep]
"""``{alias: dependency}`` as declared on a computation."""


def check_data_deps(value: Any, computation: str) -> dict[str, DictionaryDep]:
    """``value`` (a ``data_deps=`` declaration of ``computation``, None for none) as a plain
    dict of dependencies, or a ModelError naming the computation and what is wrong."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ModelError(
            f"{computation}: data_deps must be a dict {{alias: DictionaryDep('dictionary "
            f"name')}}, got {value!r}"
        )
    out: dict[str, DictionaryDep] = {}
    for alias, dep in value.items():
        if not isinstance(alias, str) or not alias.isidentifier():
            raise ModelError(
                f"{computation}: data_deps alias {alias!r} must be an identifier string"
            )
        if not isinstance(dep, DictionaryDep):
            raise ModelError(
                f"{computation}: data_deps[{alias!r}] must be a DictionaryDep (a global "
                f"value), got {dep!r}"
            )
        out[alias] = dep
    return out


def resolve(
    deps: Mapping[str, DictionaryDep],
    dictionaries: Mapping[str, Dictionary],
    computation: str,
    own: str | None = None,
) -> dict[str, str]:
    """``{alias: dictionary name}`` for ``deps`` of ``computation``, checked against the
    model's ``dictionaries`` (``own``: the dictionary the computation itself keeps)."""
    out: dict[str, str] = {}
    for alias, dep in deps.items():
        if dep.dictionary not in dictionaries:
            known = ", ".join(sorted(dictionaries)) or "none"
            raise ModelError(
                f"{computation}: data_deps[{alias!r}] names dictionary {dep.dictionary!r}, "
                f"which the model does not declare (dictionaries: {known})"
            )
        if dep.dictionary == own:
            raise ModelError(
                f"{computation}: data_deps[{alias!r}] is the dictionary the computation "
                "itself keeps; a value cannot depend on itself"
            )
        out[alias] = dep.dictionary
    return out


def values(deps: Mapping[str, str], ctx: TransactionContext, lock: bool = True) -> dict[str, Any]:
    """The current value of every dependency (``{alias: value}``), read in ``ctx`` (``lock``:
    with the row locked, as a write that uses them reads them; a read-only transaction, such
    as ``verify()``'s, reads them without)."""
    out: dict[str, Any] = {}
    for alias, name in deps.items():
        row = ctx.dictionary_row(name, lock=lock)
        out[alias] = ctx.engine.dictionaries[name].default_value() if row is None else row["value"]
    return out


__all__ = ["DataDeps", "DictionaryDep", "check_data_deps", "resolve", "values"]
