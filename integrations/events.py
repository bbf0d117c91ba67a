"""``IntegrationEvents``: the only way an integration writes back.

Every event is stored once: it carries a dedup key (the provider's event id where there is one,
else ``<type>:<external id>``), and a second event with the same key is reported as a duplicate
and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import attrs

import reactive as r
from integrations.api_call import ATTEMPT, EventFields, now
from reactive import record_name
from storage import UniqueViolationError

Outcome = Literal["stored", "duplicate"]


@attrs.frozen
class EventWrite:
    """What writing one event did."""

    event_type: str
    dedup_key: str
    outcome: Outcome
    external_id: str | None = None


@attrs.frozen
class PendingEvent:
    """An event to write; :meth:`IntegrationEvents.write_many` writes several at once."""

    event_type: str
    external_id: str | None = None
    entity_id: Any = None
    data: Any = None
    dedup_key: str | None = None
    status: str | None = None


class IntegrationEvents:
    """Writes integration events for one event entity."""

    def __init__(
        self,
        controller: r.Controller,
        event_entity: r.Entity | str,
        fields: EventFields | None = None,
    ):
        self.controller = controller
        self.event_name = record_name(event_entity)
        self.fields = fields or EventFields()

    async def initialized(
        self, entity_id: Any, external_id: str, data: Any = None, dedup_key: str | None = None
    ) -> EventWrite:
        """The call ``entity_id`` is known to the provider as ``external_id``."""
        return await self._one(PendingEvent("initialized", external_id, entity_id, data, dedup_key))

    async def processing(
        self, external_id: str, data: Any = None, dedup_key: str | None = None
    ) -> EventWrite:
        return await self._one(PendingEvent("processing", external_id, None, data, dedup_key))

    async def completed(
        self, external_id: str, data: Any = None, dedup_key: str | None = None
    ) -> EventWrite:
        return await self._one(PendingEvent("completed", external_id, None, data, dedup_key))

    async def failed(
        self,
        external_id: str | None,
        error: Any,
        dedup_key: str | None = None,
        entity_id: Any = None,
    ) -> EventWrite:
        """The call failed. A call that never reached the provider has no external id: name it
        by ``entity_id`` instead.

        A failure that names the call (``entity_id``) is the application's own verdict (the
        runner gave up, the sweeper timed the call out): the fold lets it absorb, so nothing the
        provider reports afterwards revives the call. Provider reports name only the
        ``external_id``."""
        if external_id is None and entity_id is None:
            raise ValueError("failed() needs the external_id or the entity_id of the call")
        return await self._one(
            PendingEvent("failed", external_id, entity_id, {"error": error}, dedup_key)
        )

    async def sync_result(self, entity_id: Any, data: Any) -> list[EventWrite]:
        """A synchronous API answered: a generated UUID and the whole sequence at once."""
        external_id = str(uuid.uuid4())
        return await self.write_many(
            [
                PendingEvent("initialized", external_id, entity_id),
                PendingEvent("processing", external_id),
                PendingEvent("completed", external_id, None, data),
            ]
        )

    async def sync_failure(self, entity_id: Any, error: Any) -> list[EventWrite]:
        """A synchronous API refused: a generated UUID, ``initialized`` then ``failed``."""
        external_id = str(uuid.uuid4())
        return await self.write_many(
            [
                PendingEvent("initialized", external_id, entity_id),
                PendingEvent("failed", external_id, None, {"error": error}),
            ]
        )

    async def attempt(self, entity_id: Any, data: dict[str, Any]) -> EventWrite:
        """Record one submission attempt (the fold counts them; it does not move the status)."""
        return await self._one(
            PendingEvent(ATTEMPT, None, entity_id, data, f"{ATTEMPT}:{uuid.uuid4()}")
        )

    async def _one(self, event: PendingEvent) -> EventWrite:
        return (await self.write_many([event]))[0]

    async def write_many(self, events: Sequence[PendingEvent]) -> list[EventWrite]:
        """Write events in order, in one transaction; duplicates are skipped.

        The unique dedup key refuses a duplicate: one INSERT, atomic and running no computation
        when refused, instead of a look-up first. A refused statement must be rolled back to a
        savepoint before the transaction goes on (PostgreSQL aborts the whole transaction
        otherwise), so the batch is written under one savepoint; when it holds a duplicate, that
        is undone and the events are written again one by one, each under its own. Costs one
        savepoint per batch, one per event only for a batch with a duplicate."""
        f = self.fields

        def store(ctx: r.TransactionContext, event: PendingEvent) -> EventWrite:
            key = event.dedup_key or default_dedup_key(event)
            ctx.storage.create(
                self.event_name,
                {
                    f.event_type: event.event_type,
                    f.external_id: event.external_id,
                    f.entity_id: event.entity_id,
                    f.status: event.status or event.event_type,
                    f.data: event.data,
                    f.created_at: now(),
                    f.dedup_key: key,
                },
            )
            return EventWrite(event.event_type, key, "stored", event.external_id)

        def duplicate(exc: UniqueViolationError) -> bool:
            return exc.fields == (f.dedup_key,)

        def write(ctx: r.TransactionContext) -> list[EventWrite]:
            try:
                with ctx.storage.savepoint():
                    return [store(ctx, event) for event in events]
            except UniqueViolationError as exc:
                if not duplicate(exc):
                    raise
            results: list[EventWrite] = []
            for event in events:
                try:
                    with ctx.storage.savepoint():
                        results.append(store(ctx, event))
                except UniqueViolationError as exc:
                    if not duplicate(exc):
                        raise
                    key = event.dedup_key or default_dedup_key(event)
                    results.append(
                        EventWrite(event.event_type, key, "duplicate", event.external_id)
                    )
            return results

        result, _ = await self.controller.transact(write)
        return result


def default_dedup_key(event: PendingEvent) -> str:
    ref = event.external_id if event.external_id is not None else f"call-{event.entity_id}"
    return f"{event.event_type}:{ref}"
