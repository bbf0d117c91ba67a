"""Steps: one thing a test does to an application, runnable and printable as Python.

Every step the :class:`~reactive.testing.ModelMachine` runs is a :class:`Step`: ``await
step.run(controller)`` does it and says how it went (:class:`Outcome`), ``step.code()`` is the
same call as one line of Python naming ``controller`` (so that a failing sequence prints as a
test a user pastes into their suite). Values are printed with ``repr``, which round-trips the
values strategies draw (str, int, float, bool, None, lists, dicts, aware datetimes).

Refusals are part of the contract, not failures: a write the storage refuses (a unique value,
a missing reference) or a dispatch that answers an error changes nothing, and the machine
checks that it did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from reactive.errors import ReactiveError
from storage import StorageError

if TYPE_CHECKING:
    from reactive.controller import Controller

Expect = Literal["any", "refused"]


@attrs.frozen
class Outcome:
    """What a step did: ``refused`` (with the error code or class) or done, and the ids of
    records it created (``created``: record name -> ids)."""

    refused: str | None = None
    created: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)


class Step(Protocol):
    """One action of a test, runnable and printable."""

    async def run(self, controller: Controller) -> Outcome: ...

    def code(self) -> str:
        """The step as one Python statement (``await controller....``)."""
        ...


def _ref(value: Any) -> dict[str, Any]:
    return {"id": value}


async def _write(controller: Controller, name: str, action: Any) -> Outcome:
    try:
        result = await action
    except (StorageError, ReactiveError) as exc:
        return Outcome(refused=type(exc).__name__)
    if isinstance(result, Mapping) and "id" in result:
        return Outcome(created={name: (result["id"],)})
    return Outcome()


@attrs.frozen
class Create:
    """``controller.storage.create(record, data)``."""

    record: str
    data: Mapping[str, Any]

    async def run(self, controller: Controller) -> Outcome:
        return await _write(
            controller, self.record, controller.storage.create(self.record, self.data)
        )

    def code(self) -> str:
        return f"await controller.storage.create({self.record!r}, {dict(self.data)!r})"


@attrs.frozen
class Update:
    """``controller.storage.update(record, {"id": id}, data)``."""

    record: str
    id: Any
    data: Mapping[str, Any]

    async def run(self, controller: Controller) -> Outcome:
        action = controller.storage.update(self.record, {"id": self.id}, self.data)
        return await _write(controller, self.record, action)

    def code(self) -> str:
        return (
            f"await controller.storage.update({self.record!r}, {{'id': {self.id!r}}}, "
            f"{dict(self.data)!r})"
        )


@attrs.frozen
class Delete:
    """``controller.storage.delete(record, {"id": id})`` (a link record too: an unlink)."""

    record: str
    id: Any

    async def run(self, controller: Controller) -> Outcome:
        action = controller.storage.delete(self.record, {"id": self.id})
        return await _write(controller, self.record, action)

    def code(self) -> str:
        return f"await controller.storage.delete({self.record!r}, {{'id': {self.id!r}}})"


@attrs.frozen
class Dispatch:
    """``controller.dispatch(interaction, user, payload)``; ``expect="refused"`` for a
    payload that must be refused (a near miss drawn by ``invalid_payloads``)."""

    interaction: str
    user: Mapping[str, Any] | None
    payload: Mapping[str, Any]
    expect: Expect = "any"

    async def run(self, controller: Controller) -> Outcome:
        result = await controller.dispatch(self.interaction, self.user, self.payload)
        if result.error is not None:
            return Outcome(refused=result.error.code)
        created: dict[str, list[Any]] = {}
        for event in result.effects:
            if event.type == "create" and "id" in event.record:
                created.setdefault(event.record_name, []).append(event.record["id"])
        return Outcome(created={k: tuple(v) for k, v in created.items()})

    def code(self) -> str:
        call = (
            f"await controller.dispatch({self.interaction!r}, {_plain(self.user)!r}, "
            f"{dict(self.payload)!r})"
        )
        if self.expect == "refused":
            return f"assert ({call}).error is not None  # must be refused"
        return call


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen
class Restart:
    """Close the controller and build it again on the same database (the machine's own
    step: ``controller = await restart(controller)`` in the printed test)."""

    async def run(self, controller: Controller) -> Outcome:  # pragma: no cover - machine-run
        raise NotImplementedError("Restart is run by the ModelMachine, which owns the build")

    def code(self) -> str:
        return "controller = await restart(controller)"


__all__ = ["Create", "Delete", "Dispatch", "Outcome", "Restart", "Step", "Update"]
