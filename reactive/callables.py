"""User callbacks may take ``(arg)`` or ``(arg, ctx)``; adapt both to one calling convention."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from reactive.errors import ModelError


def positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` accepts (None: any number)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def adapt(fn: Callable[..., Any], base: int, what: str) -> Callable[..., Any]:
    """Return ``fn`` as a function of ``base`` arguments plus ``ctx``.

    ``fn`` may accept the ``base`` arguments alone, or those and a trailing ``ctx``.
    """
    if not callable(fn):
        raise ModelError(f"{what} must be callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise ModelError(
            f"{what} must be a plain (synchronous) function: it runs inside the write "
            "transaction. Put I/O in a RecordMutationSideEffect."
        )
    arity = positional_arity(fn)
    if arity is None or arity == base + 1:
        return fn
    if arity == base:
        return lambda *args: fn(*args[:base])
    raise ModelError(f"{what} must take {base} argument(s), or {base} and ctx; it takes {arity}")
