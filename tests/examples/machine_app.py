"""The donations application as the ModelMachine builds it: the example's model on a
SQLite file, without the HTTP server and the providers (integration events are the
machine's own steps)."""

from __future__ import annotations

import reactive as r
from examples.donations.model import build_model
from storage import SQLiteStorage


async def build(database: str) -> r.Controller:
    model = build_model()
    controller = r.Controller(
        SQLiteStorage(database),
        model.entities,
        model.relations,
        model.dictionaries,
        model.interactions,
    )
    await controller.setup()
    return controller
