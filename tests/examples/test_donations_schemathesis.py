"""Schemathesis against the example application's own ``/openapi.json``: a bounded number of
generated requests per operation (valid and schema-breaking), signed in; no answer is a 500,
and every error uses the envelope.

The application (with its fake providers) runs in a thread with its own event loop, because
schemathesis calls synchronously. Both backends: the PostgreSQL run (a schema of its own,
dropped afterwards) makes fewer requests (``EXAMPLE_FUZZ_PG_EXAMPLES``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    status_code_conformance,
)

from examples.donations.__main__ import serve_locally
from storage import PostgresStorage, Storage
from tests.conftest import PG_URL, drop_schema
from tests.server.test_schemathesis import envelope_on_errors

EXAMPLES = int(os.environ.get("EXAMPLE_FUZZ_EXAMPLES", "15"))
PG_EXAMPLES = int(os.environ.get("EXAMPLE_FUZZ_PG_EXAMPLES", "5"))
# scrypt makes every accepted register/login cost ~0.4 s: fewer examples there.
SLOW = {"/api/auth.register": 4, "/api/auth.login": 4}
PG_SLOW = {"/api/auth.register": 2, "/api/auth.login": 2}
# Webhooks read the raw body: any bytes are "valid", so only positive cases make sense.
RAW = {"/api/stripe_payments.webhook", "/api/volc_tts.callback"}
CHECKS = [not_a_server_error, content_type_conformance, envelope_on_errors, status_code_conformance]


def _refused_by_a_rule_in_words(case: Any, response: Any) -> bool:
    """The two refusals a JSON Schema cannot state, each recognised by its own rule: a
    webhook's signature (a generator sends the documented headers with made-up values) and a
    username that is not printable or has surrounding spaces (the register API says so in its
    description; its length bounds are in the schema)."""
    if response.status_code != 400:
        return False
    code = response.json()["error"]["code"]
    if case.operation.path in RAW:
        return bool(code == "invalid_signature")
    if case.operation.path == "/api/auth.register" and code == "invalid_username":
        # The rule applies to the username as stored: NFKC, case-folded (which may lengthen it).
        username = unicodedata.normalize("NFKC", case.body["username"])
        username = unicodedata.normalize("NFKC", username.casefold())
        return not (username.isprintable() and username == username.strip() and len(username) <= 64)
    return False


def schema_valid_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' positive-data check: a request the document calls valid is never refused
    as malformed (400/413/415/422), but for the rules above."""
    if _refused_by_a_rule_in_words(case, response):
        return True
    return positive_data_acceptance(ctx, response, case)


POSITIVE_CHECKS = [*CHECKS, schema_valid_is_accepted]


class Served:
    """The example app on 127.0.0.1 in a background thread, on ``database`` (a SQLite path,
    or a function making the storage, called in the thread; its JWT secret at ``secret``)."""

    def __init__(
        self,
        database: str | Callable[[], Storage],
        secret: Path | None = None,
        examples: int = EXAMPLES,
        slow: dict[str, int] | None = None,
    ) -> None:
        self.secret = secret
        self.examples = examples
        self.slow = SLOW if slow is None else slow
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.database = database
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

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
        database = self.database if isinstance(self.database, str) else self.database()
        async with serve_locally(self.port, database, secret=self.secret):
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Served:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture
def served(backend: str, tmp_path: Path) -> Iterator[Served]:
    """The app on the test's backend (PostgreSQL: a schema of its own, dropped afterwards)."""
    if backend == "sqlite":
        with Served(str(tmp_path / "fuzz.db")) as served:
            yield served
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with Served(
            lambda: PostgresStorage(PG_URL, schema=schema),
            secret=tmp_path / "jwt.secret",
            examples=PG_EXAMPLES,
            slow=PG_SLOW,
        ) as served:
            yield served
    finally:
        asyncio.run(drop_schema(PG_URL, schema))


def test_the_example_app_never_answers_500(served: Served) -> None:
    session = requests.Session()
    credentials = {"username": "fuzzer", "password": "a long enough password"}
    assert session.post(f"{served.base_url}/api/auth.register", json=credentials).ok
    token = session.post(f"{served.base_url}/api/auth.login", json=credentials).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    answered: dict[str, int] = {}
    operations: list[Any] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert {op.path for op in operations} >= {"/interaction/Donate", "/api/donations.mine"}
    for operation in operations:
        modes = [GenerationMode.POSITIVE]
        if operation.path not in RAW:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            # run() is called at once, inside this iteration: the loop variable is current.
            checks = POSITIVE_CHECKS if mode is GenerationMode.POSITIVE else CHECKS

            @settings(
                max_examples=served.slow.get(operation.path, served.examples),
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=served.base_url, session=session, headers=headers)
                case.validate_response(response, checks=checks, headers=headers)  # noqa: B023
                key = f"{case.operation.path} {response.status_code}"
                answered[key] = answered.get(key, 0) + 1

            try:
                run()
            except Unsatisfiable:
                # an operation without inputs has no schema-breaking request to make
                assert mode is GenerationMode.NEGATIVE, operation.path
    session.close()
    # the generator got past validation somewhere and was refused somewhere
    assert any(key.endswith(" 200") for key in answered)
    assert any(key.split()[-1].startswith("4") for key in answered)
