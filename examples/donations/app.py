"""The donation application wired together: model, integrations, HTTP server.

:func:`build` is what a real deployment runs (settings from the environment); ``__main__``
starts it against local fake providers so that it works on a machine with no credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web

import reactive as r
from examples.donations.model import DonationModel, build_model
from integrations import AggregatedIntegration
from integrations.auth import AuthIntegration
from integrations.providers.openai_translate import OpenAITranslateIntegration
from integrations.providers.stripe_payments import StripePaymentsIntegration
from integrations.providers.volc_tts import VolcTTSIntegration
from reactive.server import create_app
from storage import SQLiteStorage, Storage, from_url


@attrs.define
class DonationApp:
    model: DonationModel
    controller: r.Controller
    integrations: AggregatedIntegration
    web: web.Application

    async def close(self) -> None:
        await self.integrations.close()
        await self.controller.close()


def _storage(database: str | Storage) -> Storage:
    """The storage ``database`` names: a URL (``sqlite:///...``, ``postgresql://...``) through
    :func:`storage.from_url`, else a SQLite file path; a storage is used as it is."""
    if not isinstance(database, str):
        return database
    return from_url(database) if "://" in database else SQLiteStorage(database)


def my_donations(controller: r.Controller) -> Any:
    """``donations.mine``: the caller's donations with their derived values and calls."""

    async def handler(ctx: r.APIContext, params: Any) -> Any:
        rows = await controller.storage.find(
            "Donation",
            {"donor.id": ctx.user_id},
            [
                "amount",
                "message",
                "payment_status",
                "translated_message",
                "voice_url",
                ("payment_calls", ["status"]),
                ("translation_calls", ["status"]),
                ("voice_calls", ["status"]),
            ],
            order_by={"id": "desc"},
        )
        return {"donations": rows}

    return handler


async def build(
    database: str | Storage, environ: Mapping[str, str], *, cookie_secure: bool = True
) -> DonationApp:
    """Configure the integrations (refusing to start without their settings), set up the
    controller on ``database`` (a SQLite file path, a storage URL such as
    ``postgresql://...``, or a storage) and build the aiohttp application."""
    model = build_model()
    integrations = AggregatedIntegration(
        [
            AuthIntegration(environ, cookie_secure=cookie_secure),
            StripePaymentsIntegration(model.payments, environ=environ),
            OpenAITranslateIntegration(model.translations, environ=environ),
            VolcTTSIntegration(model.voices, environ=environ),
        ]
    )
    await integrations.configure()
    controller = r.Controller(
        _storage(database),
        model.entities,
        model.relations,
        model.dictionaries,
        model.interactions,
        side_effects=integrations.create_side_effects(),
    )
    await controller.setup()
    await integrations.setup(controller)
    apis = {**integrations.create_apis(), "donations.mine": r.API(my_donations(controller))}
    app = create_app(
        controller,
        apis,
        integrations.create_middlewares(),
        title="interaqt-py donations example",
    )
    return DonationApp(model, controller, integrations, app)
