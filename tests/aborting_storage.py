"""PostgreSQL's transaction rule on top of a real SQLite storage, for tests.

On PostgreSQL a statement that fails inside a transaction aborts it: every later statement is
refused ("current transaction is aborted, commands ignored until end of transaction block")
until the transaction, or a savepoint opened before the failure, is rolled back. SQLite carries
on instead, so code that catches an *expected* storage error (a duplicate refused by a unique
index) and keeps going works there and breaks on PostgreSQL unless it runs the failing write
under a savepoint.

:class:`AbortingStorage` wraps a real storage (SQLite) and applies that rule to the sessions it
hands to transaction bodies: any storage error raised by a session method marks the
transaction aborted, and rolling back a savepoint opened before the failure clears the mark.
Everything else is the real storage, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from storage import Session, Storage, StorageError

T = TypeVar("T")

ABORTED = "current transaction is aborted, commands ignored until end of transaction block"


class TransactionAbortedError(StorageError):
    """A statement was sent after a failed one, outside a savepoint rolled back since."""


class AbortingSession:
    """A real session under PostgreSQL's rule (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.aborted: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._session, name)
        if name in ("schema", "events") or not callable(value):
            return value

        def statement(*args: Any, **kwargs: Any) -> Any:
            if self.aborted is not None:
                raise TransactionAbortedError(f"{ABORTED} (the failure: {self.aborted})")
            try:
                return value(*args, **kwargs)
            except StorageError as exc:
                self.aborted = exc
                raise

        return statement

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if self.aborted is not None:
            raise TransactionAbortedError(f"{ABORTED} (the failure: {self.aborted})")
        try:
            with self._session.savepoint():
                yield
        except BaseException:
            self.aborted = None  # ROLLBACK TO SAVEPOINT: the transaction may go on
            raise


class AbortingStorage:
    """A real storage whose transaction bodies get :class:`AbortingSession`\\ s."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.sessions: list[AbortingSession] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def run(self, body: Callable[[Any], T], *, write: bool = True) -> T:
        def strict(session: Session) -> T:
            wrapped = AbortingSession(session)
            self.sessions.append(wrapped)
            result = body(wrapped)
            if wrapped.aborted is not None:
                # PostgreSQL would refuse the COMMIT of an aborted transaction.
                raise TransactionAbortedError(f"COMMIT refused: {ABORTED}")
            return result

        return await self._storage.run(strict, write=write)
