"""One property, two tests: a Hypothesis body run on SQLite and, with fewer examples, on
PostgreSQL.

A property test of the engine is an ``async def body(backend, **drawn)`` that opens its own
storage per example (:func:`tests.conftest.scratch_storage`: function-scoped fixtures would
last the whole test). :func:`on_both_backends` turns it into the two test functions a module
binds to its names:

>>> test_views_follow, test_views_follow_on_postgresql = on_both_backends(
...     "test_views_follow", views_follow, examples=40, pg_examples=10, writes=WRITES
... )

- the SQLite test runs ``examples`` examples; with ``sqlite_param=True`` it is parametrised
  with ``backend="sqlite"`` (its id ends in ``[sqlite]``, as a test marked
  :func:`~tests.conftest.sqlite_only` does);
- the PostgreSQL one runs ``pg_examples`` (each example sets up its tables on the server, so
  fewer) and uses the ``postgres_url`` fixture: skipped, or failing under
  ``INTERAQT_REQUIRE_PG=1``, when the server cannot be reached;
- both: no deadline, and the ``too_slow`` and ``function_scoped_fixture`` health checks off
  (nothing a fixture holds carries over from one example to the next: the fixtures are a
  string or a parameter).

The test functions carry the names given (``name``; ``pg_name``, by default ``name +
"_on_postgresql"``), as Hypothesis's reports show them. Hypothesis keys its example database
by the test function's source, which is this module's for every such test: each test's keys
get its module and name in front (:class:`_Named`), so no test replays another's examples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.database import ExampleDatabase
from hypothesis.strategies import SearchStrategy

__all__ = ["on_both_backends"]

Body = Callable[..., Coroutine[Any, Any, None]]
"""``await body(backend=..., **drawn)``: one example on a storage of that backend."""

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def on_both_backends(
    name: str,
    body: Body,
    *,
    examples: int,
    pg_examples: int,
    pg_name: str | None = None,
    sqlite_param: bool = False,
    **strategies: SearchStrategy[Any],
) -> tuple[Callable[..., None], Callable[..., None]]:
    """The SQLite test and the PostgreSQL test of ``body`` (see the module), in that order."""
    if sqlite_param:

        def on_sqlite(backend: str, **drawn: Any) -> None:
            asyncio.run(body(backend=backend, **drawn))

    else:

        def on_sqlite(**drawn: Any) -> None:  # type: ignore[misc]
            asyncio.run(body(backend="sqlite", **drawn))

    def on_postgres(**drawn: Any) -> None:
        asyncio.run(body(backend="postgres", **drawn))

    module = body.__module__
    sqlite_test = _hypothesis(on_sqlite, module, name, examples, strategies)
    if sqlite_param:
        sqlite_test = pytest.mark.parametrize("backend", ["sqlite"])(sqlite_test)
    pg_name = pg_name or f"{name}_on_postgresql"
    pg_test = _hypothesis(on_postgres, module, pg_name, pg_examples, strategies)
    return sqlite_test, pytest.mark.usefixtures("postgres_url")(pg_test)


def _hypothesis(
    run: Callable[..., None],
    module: str,
    name: str,
    examples: int,
    strategies: dict[str, SearchStrategy[Any]],
) -> Callable[..., None]:
    run.__name__ = run.__qualname__ = name
    run.__module__ = module
    named = settings(SETTINGS, max_examples=examples, database=_Named(f"{module}::{name}"))
    return named(given(**strategies)(run))


class _Named(ExampleDatabase):
    """The example database of the settings profile loaded when the test was made (at import:
    a profile that turns the database off turns it off here too), with ``prefix`` before
    every key."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix.encode() + b"\0"
        self._inner: ExampleDatabase | None = settings().database

    def save(self, key: bytes, value: bytes) -> None:
        if self._inner is not None:
            self._inner.save(self._prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        if self._inner is not None:
            yield from self._inner.fetch(self._prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        if self._inner is not None:
            self._inner.delete(self._prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if self._inner is not None:
            self._inner.move(self._prefix + src, self._prefix + dest, value)
