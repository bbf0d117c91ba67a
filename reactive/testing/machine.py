"""``ModelMachine``: a Hypothesis state machine for any application built on the engine.

>>> async def build(database: str) -> r.Controller:      # a module-level function
...     controller = r.Controller(SQLiteStorage(database), entities, relations, ...)
...     await controller.setup()
...     return controller
>>> TestMyApp = ModelMachine.for_app(build, users="User").TestCase

Each example builds the application on a fresh SQLite file in a temporary folder (with
``restarts``, the default: on a copy of a database ``build`` set up once for the machine class,
so that ``setup()`` creates nothing), starts with a user (with ``users``) and one dispatch, and
runs a drawn sequence of steps:

- **dispatch**: one of the app's interactions, by a user drawn from the existing ``users``
  records (``{"id": ...}``; None when ``users`` is not given), with a payload drawn from its
  declarations (:func:`~reactive.testing.strategies.payloads`);
- **refused dispatch**: a near miss (:func:`~reactive.testing.strategies.invalid_payloads`)
  that must answer a ``payload_*`` error;
- **new user** (with ``users``): a ``users`` record with drawn plain fields;
- **write**: a create, update, delete or link of a plain record
  (:func:`~reactive.testing.strategies.writes`);
- **restart**: the controller is closed and built again on the same database;
- steps from **sources** (:class:`StepSource`): given to ``for_app(sources=...)`` or found by a
  registered finder (:func:`register_source_finder`; ``integrations.testing`` registers one
  that adds integration events for apps with APICall entities).

A kind of step is drawn only when it can act (source steps only while a source has something
to draw, such as an API call to report on; never two restarts in a row), dispatches and
source steps four times as often as the rest; integration events go half the time to the
newest API call (the one the last dispatch created).

After every step (side effects drained): ``verify()`` must find no difference and every
invariant must hold: the ``@invariant`` functions (``f(controller)``, sync or async; they
fail by raising, an ``assert`` say). A failure raises :class:`ModelMachineFailure` whose
message holds the shrunk sequence as a runnable test (:attr:`ModelMachineFailure.code`): the
calls in order, with :class:`Replay` to build, restart and check.

Settings: ``max_examples`` defaults to ``INTERAQT_MAX_EXAMPLES`` (100 when unset) and
``stateful_step_count`` to ``INTERAQT_STEPS`` (10); there is no deadline. Costs: one
``setup()`` per example, one ``verify()`` per step (a pass over every computation), a few id
reads per step. Run it from a synchronous test: the machine runs its own event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import shutil
import tempfile
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from hypothesis.stateful import invariant as _machine_invariant

from reactive.controller import Controller
from reactive.errors import ReactiveError
from reactive.model import Entity, Relation, record_name
from reactive.testing.steps import Create, Dispatch, Outcome, Restart, Step
from reactive.testing.strategies import (
    Existing,
    drawable,
    existing_ids,
    invalid_payloads,
    payloads,
    plain_entities,
    plain_relations,
    record_data,
    writes,
)
from storage import StorageError

if TYPE_CHECKING:
    from reactive.interaction import Interaction

Build = Callable[[str], "Controller | Awaitable[Controller]"]
Invariant = Callable[[Controller], Any]
F = TypeVar("F", bound=Callable[..., Any])

_INVARIANTS: list[Invariant] = []
_TEMPLATES: dict[type, str] = {}
_FINDERS: list[Callable[[Controller], Sequence[StepSource]]] = []


def invariant(fn: F) -> F:
    """Declare ``fn(controller)`` (sync or async) an invariant of your application: every
    :class:`ModelMachine` (whose ``invariants`` are not given) checks it after every step.
    It fails by raising (``assert``)."""
    _INVARIANTS.append(fn)
    return fn


class StepSource(Protocol):
    """More steps for the machine: ``records()`` names the records whose existing ids
    ``steps(existing)`` needs; ``steps`` returns a strategy of steps, or None when it has
    nothing to draw now."""

    def records(self) -> Sequence[str]: ...

    def steps(self, existing: Existing) -> st.SearchStrategy[Step] | None: ...


def register_source_finder(finder: Callable[[Controller], Sequence[StepSource]]) -> None:
    """Register ``finder(controller)`` -> the step sources it finds in an application; every
    machine asks every finder (``integrations.testing`` registers the APICall one)."""
    if finder not in _FINDERS:
        _FINDERS.append(finder)


def declared(controller: Controller) -> tuple[list[Entity], list[Relation]]:
    """The entities and relations the application declared (the one place that reads them
    from the engine)."""
    return list(controller.engine.entities), list(controller.engine.relations)


class ModelMachineFailure(AssertionError):
    """A step sequence broke ``verify()`` or an invariant. ``code``: the sequence as a
    runnable test; ``report``: what failed."""

    def __init__(self, report: str, code: str, steps: Sequence[Step] = ()):
        super().__init__(
            f"{report}\n\nA test that reproduces it (paste it into your suite):\n\n{code}"
        )
        self.report = report
        self.code = code
        self.steps = tuple(steps)
        """The steps of the sequence, in order."""


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


async def _check(controller: Controller, invariants: Sequence[Invariant]) -> None:
    await controller.drain()
    report = await controller.verify()
    if not report.ok:
        raise AssertionError(str(report))
    for fn in invariants:
        try:
            await _call(fn, controller)
        except AssertionError as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            raise AssertionError(f"invariant {name} failed: {exc}") from exc


class Replay:
    """What a printed test uses: the app built on ``folder/app.db``, restarted and checked
    as the machine did.

    >>> app = await Replay.open(build, tmp_path, invariants=[my_invariant])
    >>> controller = app.controller
    >>> ...                                   # the steps
    >>> await app.check()                     # verify() and the invariants
    >>> await app.close()
    """

    def __init__(self, build: Build, database: str, invariants: Sequence[Invariant]):
        self.build = build
        self.database = database
        self.app_invariants = list(invariants)
        self.controller: Controller

    @classmethod
    async def open(
        cls, build: Build, folder: str | Path, invariants: Sequence[Invariant] = ()
    ) -> Replay:
        app = cls(build, str(Path(folder) / "app.db"), invariants)
        app.controller = await _built(build, app.database)
        return app

    async def restart(self) -> Controller:
        """Close the controller (pending side effects resume) and build it again."""
        await self.controller.close()
        self.controller = await _built(self.build, self.database)
        return self.controller

    async def check(self) -> None:
        """Drain side effects; ``verify()`` must find nothing and every invariant hold."""
        await _check(self.controller, self.app_invariants)

    async def refused(self, write: Awaitable[Any]) -> None:
        """Await a write the storage must refuse (as it did when the machine ran it)."""
        try:
            await write
        except (StorageError, ReactiveError):
            return
        raise AssertionError("the write was refused when the machine ran it, and is not now")

    async def close(self) -> None:
        await self.controller.close()


async def _built(build: Build, database: str) -> Controller:
    controller = await _call(build, database)
    if not isinstance(controller, Controller):
        raise TypeError(
            f"ModelMachine: build({database!r}) must return a set-up reactive.Controller, got "
            f"{type(controller).__name__}"
        )
    return controller


def _qualified(fn: Any, what: str) -> tuple[str, str]:
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in name or module == "__main__":
        raise ValueError(
            f"ModelMachine: {what} {fn!r} must be a module-level function (the printed test "
            "imports it)"
        )
    return module, name


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {number}")
    return number


class ModelMachine(RuleBasedStateMachine):
    """See the module docstring; make one with :meth:`for_app`."""

    build: ClassVar[Build]
    users: ClassVar[str | None] = None
    app_invariants: ClassVar[tuple[Invariant, ...]] = ()
    sources: ClassVar[tuple[StepSource, ...]] = ()
    restarts: ClassVar[bool] = True
    writable: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def for_app(
        cls,
        build: Build,
        *,
        users: Entity | str | None = None,
        invariants: Sequence[Invariant] | None = None,
        sources: Sequence[StepSource] = (),
        restarts: bool = True,
        writable: Sequence[Entity | Relation | str] | None = None,
        max_examples: int | None = None,
        steps: int | None = None,
    ) -> type[ModelMachine]:
        """A machine class for the app ``build(database)`` makes (a module-level function,
        sync or async, returning a set-up controller). ``users``: the record whose existing
        rows act as dispatching users. ``invariants``: default every ``@invariant`` declared
        so far. ``writable``: the plain records the machine writes directly (default every
        one). ``machine.TestCase`` is a unittest case pytest collects."""
        _qualified(build, "build")
        chosen = tuple(_INVARIANTS if invariants is None else invariants)
        for fn in chosen:
            _qualified(fn, "invariant")
        machine: type[ModelMachine] = type(
            f"{getattr(build, '__name__', 'App')}Machine",
            (cls,),
            {
                "build": staticmethod(build),
                "users": None if users is None else record_name(users),
                "app_invariants": chosen,
                "sources": tuple(sources),
                "restarts": restarts,
                "writable": None if writable is None else tuple(map(record_name, writable)),
            },
        )
        machine.TestCase.settings = settings(
            max_examples=max_examples or _env_int("INTERAQT_MAX_EXAMPLES", 100),
            stateful_step_count=steps or _env_int("INTERAQT_STEPS", 10),
            deadline=None,
            # the explain phase replays every step's variations: costly for a whole app
            phases=[p for p in Phase if p is not Phase.explain],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        return machine

    def __init__(self) -> None:
        super().__init__()
        self._folder = tempfile.mkdtemp(prefix="interaqt-machine-")
        self._loop = asyncio.new_event_loop()
        self.log: list[Step] = []
        self._refused: set[int] = set()  # positions in the log of writes the storage refused
        self._snapshot: dict[str, list[Any]] | None = None  # existing ids, until the next step
        if self.restarts:
            self._copy_template()
        self.replay = self._run(Replay.open(type(self).build, self._folder, self.app_invariants))
        self.controller = self.replay.controller
        found = [s for finder in _FINDERS for s in finder(self.controller)]
        self._sources = list(self.sources) + found
        entities, relations = declared(self.controller)
        allowed = self.writable
        self._entities = [e for e in entities if allowed is None or e.name in allowed]
        self._relations = [r for r in relations if allowed is None or r.relation_name in allowed]
        self._user_entity = next((e for e in entities if e.name == self.users), None)
        if self.users is not None and self._user_entity is None:
            raise ValueError(f"ModelMachine: users={self.users!r} is not an entity of the app")
        self._interactions: list[Interaction] = list(self.controller.interactions.values())
        names = [e.name for e in plain_entities(self._entities)]
        names += [r.relation_name for r in plain_relations(self._entities, self._relations)]
        if self.users:
            names.append(self.users)
        for interaction in self._interactions:
            names += [record_name(i.base) for i in interaction.payload.items if i.is_ref and i.base]
        for source in self._sources:
            names += list(source.records())
        self._records = list(dict.fromkeys(names))

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        return self._loop.run_until_complete(coroutine)

    def _copy_template(self) -> None:
        """Start the example on a copy of a database ``build`` already set up once (per
        machine class, made by the first example): ``setup()`` then finds its tables and
        creates nothing, which halves the cost of an example. Only with restarts, which
        already require ``build`` to work on a database it set up before."""
        machine = type(self)
        template = _TEMPLATES.get(machine)
        if template is None:
            folder = tempfile.mkdtemp(prefix="interaqt-template-")
            atexit.register(shutil.rmtree, folder, True)
            template = str(Path(folder) / "app.db")

            async def make() -> None:
                controller = await _built(machine.build, template)
                await controller.close()

            self._run(make())
            _TEMPLATES[machine] = template
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(template + suffix):
                shutil.copyfile(template + suffix, str(Path(self._folder) / "app.db") + suffix)

    def _existing(self) -> dict[str, list[Any]]:
        """The ids of the records the steps draw from (read once per step)."""
        if self._snapshot is None:
            self._snapshot = self._run(existing_ids(self.controller, self._records))
        return self._snapshot

    def _do(self, step: Step) -> Outcome:
        self._snapshot = None
        self.log.append(step)
        if isinstance(step, Restart):
            self.controller = self._run(self.replay.restart())
            return Outcome()
        outcome: Outcome = self._run(step.run(self.controller))
        if outcome.refused is not None and not isinstance(step, Dispatch):
            self._refused.add(len(self.log) - 1)
        return outcome

    # -- rules ------------------------------------------------------------------------------

    def _user(self, data: st.DataObject, existing: Existing) -> dict[str, Any] | None:
        if self.users is None:
            return None
        ids = existing.get(self.users) or []
        return {"id": data.draw(st.sampled_from(ids))} if ids else None

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """Apps with users start with one (a dispatch needs someone to dispatch it), then
        one dispatch: what it creates (API calls, say) is there for the first steps."""
        if self._user_entity is not None:
            self.add_user(data)
        if self._interactions:
            self.dispatch(data)

    def add_user(self, data: st.DataObject) -> None:
        assert self._user_entity is not None
        user = data.draw(record_data(self._user_entity), label="user")
        self._do(Create(self._user_entity.name, user))

    def dispatch(self, data: st.DataObject) -> None:
        existing = self._existing()
        can = [i for i in self._interactions if drawable(i, existing)]
        if not can:
            return
        user = self._user(data, existing)
        if self.users is not None and user is None:
            return  # every user was deleted: add_user comes first
        interaction = data.draw(st.sampled_from(can), label="interaction")
        payload = data.draw(payloads(interaction, existing), label="payload")
        self._do(Dispatch(interaction.name, user, payload))

    def refused_dispatch(self, data: st.DataObject) -> None:
        if not self._interactions:
            return
        existing = self._existing()
        interaction = data.draw(st.sampled_from(self._interactions), label="interaction")
        payload = data.draw(invalid_payloads(interaction, existing), label="near miss")
        step = Dispatch(interaction.name, self._user(data, existing), payload, expect="refused")
        outcome = self._do(step)
        if outcome.refused is None or not outcome.refused.startswith("payload"):
            self._fail(
                f"{interaction.name} accepted a payload it must refuse: {payload!r} "
                f"(answered {outcome.refused or 'success'})"
            )

    def write(self, data: st.DataObject) -> None:
        existing = self._existing()
        if not plain_entities(self._entities):
            return
        self._do(data.draw(writes(self._entities, self._relations, existing), label="write"))

    def source_step(self, data: st.DataObject) -> None:
        if not self._sources:
            return
        existing = self._existing()
        ready = [s for s in (src.steps(existing) for src in self._sources) if s is not None]
        if ready:
            self._do(data.draw(st.one_of(ready), label="step"))

    def restart(self, data: st.DataObject) -> None:
        # a restart right after a restart (or first) tests nothing new
        if self.restarts and self.log and not isinstance(self.log[-1], Restart):
            self._do(Restart())

    # Hypothesis picks among rules uniformly; one rule drawing the kind of step from a
    # weighted list keeps the steps that reach deep states (dispatches, provider events)
    # frequent, and shrinks towards a dispatch. A kind that cannot act now is not drawn (no
    # step is spent doing nothing): source steps only when a source has something to draw
    # (an API call to report on, say), a restart never right after another.
    _KINDS = (
        ("dispatch", 4),
        ("source_step", 4),
        ("write", 2),
        ("refused_dispatch", 1),
        ("add_user", 1),
        ("restart", 1),
    )

    def _can(self, kind: str) -> bool:
        if kind in ("dispatch", "refused_dispatch"):
            return bool(self._interactions)
        if kind == "add_user":
            return self._user_entity is not None
        if kind == "write":
            return bool(plain_entities(self._entities))
        if kind == "restart":
            return self.restarts and bool(self.log) and not isinstance(self.log[-1], Restart)
        existing = self._existing()
        return any(src.steps(existing) is not None for src in self._sources)

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        kinds = [name for name, weight in self._KINDS if self._can(name) for _ in range(weight)]
        if not kinds:
            return
        kind = data.draw(st.sampled_from(kinds), label="kind")
        getattr(self, kind)(data)

    @_machine_invariant()
    def consistent(self) -> None:
        try:
            self._run(_check(self.controller, self.app_invariants))
        except AssertionError as exc:
            self._fail(str(exc))

    def _fail(self, report: str) -> None:
        raise ModelMachineFailure(report, self.test_code(), self.log)

    def test_code(self) -> str:
        """The steps run so far as a test (see the module docstring)."""
        build_module, build_name = _qualified(type(self).build, "build")
        imports = {
            "import datetime",
            "import pytest",
            "import reactive.testing",
            f"from {build_module} import {build_name}",
        }
        names = []
        for fn in self.app_invariants:
            module, name = _qualified(fn, "invariant")
            imports.add(f"import {module}")
            names.append(f"{module}.{name}")
        for step in self.log:
            imports.update(getattr(step, "imports", ()))
        lines = []
        for n, step in enumerate(self.log):
            code = step.code()
            if n in self._refused and code.startswith("await "):
                code = f"await app.refused({code.removeprefix('await ')})"
            lines.append(code)
        body = "\n".join(lines) or "pass"
        return (
            "\n".join(sorted(imports))
            + "\n\n\n"
            + "@pytest.mark.asyncio\n"
            + "async def test_found_by_model_machine(tmp_path):\n"
            + f"    app = await reactive.testing.Replay.open({build_name}, tmp_path, "
            + f"[{', '.join(names)}])\n"
            + "    controller, restart = app.controller, lambda _: app.restart()\n"
            + "    try:\n"
            + textwrap.indent(body, " " * 8)
            + "\n        await app.check()\n"
            + "    finally:\n"
            + "        await app.close()\n"
        )

    def teardown(self) -> None:
        try:
            self._run(self.replay.close())
        finally:
            self._loop.close()
            shutil.rmtree(self._folder, ignore_errors=True)


__all__ = [
    "ModelMachine",
    "ModelMachineFailure",
    "Replay",
    "StepSource",
    "declared",
    "invariant",
    "register_source_finder",
]
