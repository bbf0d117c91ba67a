"""``make run``: the donation application on SQLite with local fake providers, on 127.0.0.1.

Environment: ``PORT`` (default 8080), ``DATABASE`` (default a fresh file in a temp folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

import reactive as r
from examples.donations.app import DonationApp, build
from integrations.providers.openai_translate.fake_server import FakeOpenAI
from integrations.providers.stripe_payments.fake_server import FakeStripe
from integrations.providers.volc_tts.fake_server import FakeVolcTTS
from integrations.webhooks import generate_standard_secret

HOST = "127.0.0.1"


def instructions(base: str) -> str:
    return f"""
The donation example is serving on {base}  (OpenAPI: {base}/openapi.json)
Providers are local fakes: a Stripe-like payments API, an OpenAI-compatible translator and a
Volcano-style text-to-speech API that calls back a signed webhook.

Try it (in another terminal):

  curl -s {base}/api/auth.register -H 'Content-Type: application/json' \\
       -d '{{"username": "ada", "password": "correct horse battery"}}'
  TOKEN=$(curl -s {base}/api/auth.login -H 'Content-Type: application/json' \\
       -d '{{"username": "ada", "password": "correct horse battery"}}' | \\
       python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s {base}/interaction/Donate -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"payload": {{"amount": 2500, "message": "Thank you", "language": "fr"}}}}'

Then watch the calls move through pending -> processing -> completed (run it a few times):

  curl -s {base}/api/donations.mine -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{}}'

Press Ctrl-C to stop.
"""


@contextlib.asynccontextmanager
async def serve_locally(port: int, database: str) -> AsyncIterator[DonationApp]:
    """The application on ``127.0.0.1:port`` with fake providers on loopback."""
    base = f"http://{HOST}:{port}"
    callback_secret = generate_standard_secret()
    async with (
        FakeVolcTTS(callback_secret=callback_secret, finish_after=2.0) as volc,
        FakeOpenAI() as openai,
        FakeStripe(webhook_url=f"{base}/api/stripe_payments.webhook") as stripe,
    ):
        environ = {
            "AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            **volc.environ(VOLC_TTS_CALLBACK_URL=f"{base}/api/volc_tts.callback"),
            "OPENAI_API_KEY": openai.api_key or "",
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_MODEL": "gpt-4o-mini",
            "STRIPE_SECRET_KEY": stripe.secret_key,
            "STRIPE_WEBHOOK_SECRET": str(stripe.webhook_secret),
            "STRIPE_API_BASE": stripe.url,
        }
        app = await build(database, environ, cookie_secure=False)
        settle_payments(app.controller, stripe)
        runner = web.AppRunner(app.web, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, HOST, port).start()
            yield app
        finally:
            await runner.cleanup()
            await app.close()


async def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    database = os.environ.get("DATABASE") or str(Path(tempfile.mkdtemp()) / "donations.db")
    async with serve_locally(port, database):
        print(instructions(f"http://{HOST}:{port}"), flush=True)
        await asyncio.Event().wait()


def settle_payments(controller: r.Controller, stripe: FakeStripe) -> None:
    """The fake Stripe's customer pays one second after each payment intent is created."""

    def on_update(event: r.MutationEvent) -> None:
        external_id = event.record.get("external_id")
        if external_id and "external_id" in (event.keys or ()):
            asyncio.get_running_loop().call_later(
                1.0, lambda: asyncio.ensure_future(stripe.succeed(external_id))
            )

    controller.stream("PaymentCall", "update").subscribe(on_update)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
