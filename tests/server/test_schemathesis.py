"""Schemathesis against the app served on loopback: a bounded number of generated requests per
operation (valid ones and ones that break the schema), each answer checked: no 500, a documented
status, content type and body schema, invalid data rejected, and every error in the envelope.

The server runs in a thread with its own event loop (schemathesis calls over ``requests``,
synchronously); the document is the one the app serves at ``/openapi.json``. Both backends:
the PostgreSQL run (a schema of its own, dropped afterwards) makes fewer requests
(``SERVER_FUZZ_PG_EXAMPLES``), since what it adds is the storage under the same answers.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

import reactive as r
from storage import PostgresStorage, Storage
from tests.conftest import PG_URL, drop_schema

from .app import build_app, build_controller, seed
from .helpers import AUTH, quiet_request_keys

pytestmark = quiet_request_keys

# Per operation and generation mode; SERVER_FUZZ_EXAMPLES=1000 for a longer hunt.
EXAMPLES = int(os.environ.get("SERVER_FUZZ_EXAMPLES", "30"))
PG_EXAMPLES = int(os.environ.get("SERVER_FUZZ_PG_EXAMPLES", "8"))
# Deliberately broken to test the 500 path; fuzzing them proves nothing.
SKIP = {"/api/explode", "/api/bad.answer", "/interaction/Broken"}
# Nothing in them can break a schema: any body (raw) or no input at all.
POSITIVE_ONLY = {"/api/echo.raw", "/health"}


class Served:
    """The test app on 127.0.0.1 in a background thread, on ``database`` (a SQLite path, or
    a function making the storage, called in the thread); ``final`` holds the database's
    counts read after the server stopped."""

    def __init__(self, database: str | Callable[[], Storage], examples: int = EXAMPLES):
        self.database = database
        self.examples = examples
        self.port = 0
        self.final: dict[str, Any] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="served-app", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        database = self.database
        controller = build_controller(database if isinstance(database, str) else database())
        await controller.setup()
        await seed(controller)
        runner = web.AppRunner(build_app(controller, anonymous_interactions={"Ping"}))
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            self.final = {
                "events": await controller.storage.count(r.INTERACTION_EVENT),
                "posts": await controller.storage.count("Post"),
                "post_count": await controller.storage.get_dict("post_count"),
                "likes": await controller.storage.count("Post_liked_by_likes_User"),
            }
            await controller.close()

    def __enter__(self) -> Served:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and close the controller (then ``final`` is filled); idempotent."""
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def served(backend: str, tmp_path: Path) -> Iterator[Served]:
    """The app on the test's backend (PostgreSQL: a schema of its own, dropped afterwards)."""
    if backend == "sqlite":
        with Served(str(tmp_path / "fuzz.db")) as served:
            yield served
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with Served(lambda: PostgresStorage(PG_URL, schema=schema), PG_EXAMPLES) as served:
            yield served
    finally:
        asyncio.run(drop_schema(PG_URL, schema))


def envelope_on_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is ``{"error": {"code": str, "message": str[, "details": {}]}}``."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error.get("details", {}), dict), error
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    envelope_on_errors,
]
# CreatePost's conditions and computed slug refuse titles no schema can describe (blank, the
# word "forbidden", longer than the slug allows): that is the 422 its document promises.
BUSINESS_RULES = {"/interaction/CreatePost"}


def schema_valid_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' positive-data check: a schema-valid request is never refused as
    malformed (400/413/415/422), except by a business rule above (422)."""
    if case.operation.path in BUSINESS_RULES and response.status_code == 422:
        return True
    return positive_data_acceptance(ctx, response, case)


# Schema-valid requests must be accepted: every constraint the server enforces is published.
POSITIVE_CHECKS = [*CHECKS, schema_valid_is_accepted]


def test_generated_requests_get_documented_answers_and_never_500(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    session = requests.Session()
    statuses: dict[str, int] = {}
    created = 0
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid
        operations.append(result.ok())
    # every API and interaction, and /health (schemathesis leaves out the schema's own URL)
    assert len(operations) == 12
    for operation in operations:
        if operation.path in SKIP:
            continue
        modes = [GenerationMode.POSITIVE]
        if operation.path not in POSITIVE_ONLY:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            # run() is called at once, inside this iteration: the loop variable is current.
            checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else CHECKS

            @settings(
                max_examples=served.examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal created
                response = case.call(base_url=served.base_url, session=session, headers=AUTH)
                case.validate_response(response, checks=checks, headers=AUTH)  # noqa: B023
                path = case.operation.path
                key = f"{path} {response.status_code}"
                if response.status_code >= 400:
                    key += " " + response.json()["error"]["code"]
                statuses[key] = statuses.get(key, 0) + 1
                if path == "/interaction/CreatePost" and response.status_code == 200:
                    created += 1

            run()
    session.close()

    def seen(prefix: str) -> int:
        return sum(n for key, n in statuses.items() if key.startswith(prefix))

    # the generator reached past validation (valid requests answered 200) and was refused too
    assert seen("/api/posts.search 200") > 0
    assert seen("/api/posts.search 400") > 0
    assert seen("/interaction/CreatePost 200") > 0
    assert seen("/interaction/CreatePost 400") > 0
    assert seen("/interaction/CreatePost 422") > 0
    served.stop()
    # one post per accepted CreatePost, and the Count agrees with the table
    assert served.final["posts"] == created
    assert served.final["post_count"] == created
