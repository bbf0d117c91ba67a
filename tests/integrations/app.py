"""The model the integration tests share: a Greeting whose ``voice_url`` is a business value
taken from its latest TaskCall, and a helper that builds a controller with an integration.

Importable from a subprocess (the crash worker) as well as from the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

import reactive as r
from integrations import APICallIntegration, APICallModel, api_call_entities, latest_call_value
from storage import SQLiteStorage, Storage

CALL = "TaskCall"
EVENT = "TaskEvent"
OWNER = 7


def url_result(params: Any, task_id: str) -> dict[str, Any]:
    """What the fake provider returns in these tests: the business value is the url."""
    return {"url": f"https://files.invalid/{task_id}.mp3", "params": params}


def voice_url(call: dict[str, Any]) -> Any:
    return (call["response_data"] or {}).get("url")


@attrs.frozen
class Model:
    api: APICallModel
    greeting: r.Entity
    relation: r.Relation

    @property
    def entities(self) -> list[r.Entity]:
        return [self.greeting, self.api.call, self.api.event]


def build_model() -> Model:
    api = api_call_entities(CALL, EVENT)
    greeting = r.Entity(
        "Greeting",
        [
            r.Property("text"),
            r.Property(
                "voice_url", computation=latest_call_value("Greeting", "calls", api.call, voice_url)
            ),
        ],
    )
    relation = r.Relation(greeting, "calls", api.call, "greeting", "1:n")
    return Model(api, greeting, relation)


async def start(
    path: str | Storage,
    make_integration: Callable[[APICallModel], APICallIntegration] | None = None,
    leases: r.SideEffectLeases | None = None,
    busy_timeout: float = 5.0,
) -> tuple[r.Controller, APICallIntegration | None]:
    """A set-up controller on ``path`` (a SQLite file, or a storage of any backend) and the
    integration, set up too, when given."""
    model = build_model()
    integration = make_integration(model.api) if make_integration else None
    controller = r.Controller(
        SQLiteStorage(path, busy_timeout=busy_timeout) if isinstance(path, str) else path,
        model.entities,
        [model.relation],
        side_effects=integration.create_side_effects() if integration else (),
        side_effect_leases=leases,
    )
    await controller.setup()
    if integration is not None:
        await integration.setup(controller)
    return controller, integration


async def create_greeting(
    controller: r.Controller, params: Any = None, owner: Any = OWNER, **call: Any
) -> tuple[Any, Any]:
    """A Greeting with one TaskCall; returns (greeting id, call id)."""
    greeting = await controller.storage.create(
        "Greeting",
        {
            "text": "hello",
            "calls": [{"request_params": params or {"text": "hello"}, "owner_id": owner, **call}],
        },
    )
    return greeting["id"], greeting["calls"][0]["id"]


async def add_call(
    controller: r.Controller, greeting_id: Any, params: Any = None, owner: Any = OWNER
) -> Any:
    """Another (newer) call for the same greeting; returns its id."""
    call = await controller.storage.create(
        CALL,
        {
            "request_params": params or {"text": "again"},
            "owner_id": owner,
            "greeting": {"id": greeting_id},
        },
    )
    return call["id"]


async def get_call(controller: r.Controller, call_id: Any) -> dict[str, Any]:
    call = await controller.storage.find_one(CALL, {"id": call_id}, ["*"])
    assert call is not None
    return call


async def call_events(
    controller: r.Controller, call_id: Any | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    """Event rows (of one call: by entity id or by its external id), oldest first."""
    rows = await controller.storage.find(EVENT, None, ["*"], order_by={"id": "asc"})
    if call_id is not None:
        call = await get_call(controller, call_id)
        ext = call["external_id"]
        rows = [
            e
            for e in rows
            if e["entity_id"] == call_id or (ext is not None and e["external_id"] == ext)
        ]
    if kind is not None:
        rows = [e for e in rows if e["event_type"] == kind]
    return rows


async def greeting_value(controller: r.Controller, greeting_id: Any) -> Any:
    row = await controller.storage.find_one("Greeting", {"id": greeting_id}, ["voice_url"])
    assert row is not None
    return row["voice_url"]
