"""``integrations_chain``: N APICalls through ``APICallIntegration`` against a provider on
loopback HTTP (a synchronous API served by a second process), time until every call completed,
next to the engine-only ``chain`` figure (same flow, events written by an in-process side
effect)."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import reactive as r
from benchmarks.chain import run_chain
from benchmarks.common import Timer, report, scaled, serve_on_loopback
from integrations import (
    APICallIntegration,
    Submitted,
    api_call_entities,
    latest_call_value,
    raise_for_status,
)
from storage import MatchExp, SQLiteStorage


def _serve(port_queue: Any) -> None:
    """A synthetic text-to-speech API in its own process: POST /v1/run answers with a URL."""

    async def run(request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        return web.json_response({"url": f"https://cdn.example/{key}.mp3", "text": body["text"]})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/run", run)
        await serve_on_loopback(app, port_queue)

    asyncio.run(main())


def provider() -> tuple[multiprocessing.process.BaseProcess, str]:
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=30)}"


class SyncTTS(APICallIntegration):
    name = "tts"

    def __init__(self, model: Any, base_url: str):
        super().__init__(model)
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None

    async def setup(self, controller: r.Controller) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=self.retry.attempt_timeout),
        )
        await super().setup(controller)

    async def close(self) -> None:
        await super().close()
        if self.session is not None:
            await self.session.close()

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        assert self.session is not None
        async with self.session.post(
            f"{self.base_url}/v1/run", json=params, headers={"Idempotency-Key": idempotency_key}
        ) as response:
            await raise_for_status(response)
            return Submitted(result=await response.json())


async def run_integrations_chain(path: Path, n: int) -> float:
    model = api_call_entities("TTSCall", "TTSEvent")
    call, event = model
    greeting = r.Entity(
        "Greeting",
        [
            r.Property("text"),
            r.Property(
                "voice_url",
                computation=latest_call_value(
                    "Greeting", "tts_calls", call, lambda c: c["response_data"]["url"]
                ),
            ),
        ],
        computation=r.Transform(
            r.INTERACTION_EVENT,
            lambda ev: (
                {
                    "text": ev["payload"]["text"],
                    "tts_calls": [
                        {
                            "request_params": {"text": ev["payload"]["text"]},
                            "owner_id": ev["user"]["id"],
                        }
                    ],
                }
                if ev["interaction_name"] == "Greet"
                else None
            ),
        ),
    )
    calls = r.Relation(greeting, "tts_calls", call, "greeting", "1:n")
    greet = r.Interaction("Greet", r.Payload([r.PayloadItem("text", required=True)]))
    server, base_url = provider()
    integration = SyncTTS(model, base_url)
    controller = r.Controller(
        SQLiteStorage(str(path)),
        [greeting, call, event],
        [calls],
        interactions=[greet],
        side_effects=integration.create_side_effects(),
    )
    await controller.setup()
    await integration.setup(controller)
    with Timer() as t:
        for i in range(n):
            result = await controller.dispatch("Greet", {"id": 1}, {"text": f"hello {i}"})
            assert result.error is None, result.error
        await controller.drain()
    done = await controller.storage.count("TTSCall", {"status": "completed"})
    urls = await controller.storage.count("Greeting", MatchExp.atom("voice_url", "is not null"))
    await integration.close()
    await controller.close()
    server.terminate()
    server.join()
    assert done == n and urls == n, (done, urls)
    return t.seconds


def main() -> None:
    n = scaled(1000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seconds = asyncio.run(run_integrations_chain(root / "integrations.db", n))
        engine = asyncio.run(run_chain(SQLiteStorage(str(root / "engine.db")), n))
        report(
            "integrations_chain",
            n,
            seconds,
            # The engine-only chain, measured in this run: what HTTP and the integration add.
            engine_chain_seconds=round(engine, 6),
            ratio_to_engine_chain=round(seconds / engine, 2),
        )


if __name__ == "__main__":
    main()
