"""Errors raised by the reactive engine."""

from __future__ import annotations

from typing import Any

from storage import FieldTypeError, StorageError, UniqueViolationError


class ReactiveError(Exception):
    """Base of the engine's own errors."""


class ModelError(ReactiveError, ValueError):
    """A model declaration is invalid (found at declaration or at ``Controller`` construction)."""


class SetupError(ReactiveError, RuntimeError):
    """The controller cannot be set up (conflicting declarations, bad trigger record, ...)."""


class MigrationError(SetupError):
    """The declared model differs from the stored one in ways ``setup()`` will not apply on its
    own (data would be lost, or a rename is not declared); nothing was changed.

    ``changes`` lists every unsafe change (each with ``kind``, ``target``, ``action`` and
    ``fix``, the ways to proceed); ``plan`` is the whole migration plan (None when the error
    is not about one)."""

    def __init__(self, message: str, changes: list[Any] | None = None, plan: Any = None):
        super().__init__(message)
        self.changes = list(changes or [])
        self.plan = plan


class ComputationError(ReactiveError):
    """A computation failed inside a write; the whole write was rolled back.

    ``computation`` names the computation (e.g. ``"User.post_count (Count)"``), ``cause`` is the
    original exception (also ``__cause__``).
    """

    def __init__(self, computation: str, message: str, cause: BaseException | None = None):
        super().__init__(f"{computation}: {message}")
        self.computation = computation
        self.cause = cause


class CycleError(ComputationError):
    """Propagation went deeper than the limit: computations feed each other in a loop."""

    def __init__(self, trail: list[str], limit: int):
        names = " -> ".join(dict.fromkeys(trail[-12:]))
        super().__init__(
            trail[-1] if trail else "?",
            f"propagation exceeded depth {limit}: circular computation dependencies ({names})",
        )
        self.trail = trail


def describe(exc: BaseException) -> str:
    """What went wrong, in words for whoever made the request: the exception's own message
    without its class name, and for a value of the wrong type what the field expects (not the
    value's Python repr). The exception itself stays the ``cause`` for logs and debugging."""
    if isinstance(exc, FieldTypeError):
        return exc.reason
    if isinstance(exc, UniqueViolationError):
        return f"{exc.record}: another record already has the same {', '.join(exc.fields)}"
    return str(exc) or "it failed without saying why"


__all__ = [
    "ComputationError",
    "CycleError",
    "MigrationError",
    "ModelError",
    "ReactiveError",
    "SetupError",
    "StorageError",
]
