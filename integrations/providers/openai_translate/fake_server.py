"""A fake OpenAI-compatible chat-completions server: a real aiohttp server on loopback that speaks
the wire format the official SDK sends and parses (see ``api.py``).

    POST /v1/chat/completions
        Authorization: Bearer <api_key>         (401 invalid_api_key otherwise)
        {"model": "...", "messages": [{"role": ..., "content": ...}, ...], ...}
        200 a ``chat.completion`` object whose content is ``translate(request)``
        400 invalid_request_error for a body without a model or messages

Every request is recorded with its headers and JSON body (:attr:`FakeOpenAI.requests`).
Outcomes can be scripted; each request takes the next one and is handled normally once the
script is used up::

    async with FakeOpenAI() as server:
        server.script(rate_limited(retry_after_ms=50), server_error(), Delay(1.0))
        api = TranslateAPI(api_key=server.api_key, base_url=server.base_url)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from integrations.testing.loopback import LoopbackServer
from integrations.testing.scripts import Delay as Delay
from integrations.testing.scripts import Drop as Drop

# The scripted outcomes are part of this fake's interface (tests script it with them).
from integrations.testing.scripts import HasHeaders, Outcome, Reply, describe, play

CHAT_PATH = "/v1/chat/completions"


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def rate_limited(
    retry_after: float | str | None = None, *, retry_after_ms: float | None = None
) -> Reply:
    """A 429 as OpenAI sends it, with ``Retry-After`` and/or ``retry-after-ms`` when given."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    body = error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    return Reply(429, body, headers)


def server_error(status: int = 500) -> Reply:
    return Reply(
        status, error_body("The server had an error processing your request.", "server_error")
    )


def bad_request(message: str = "Invalid request.", param: str | None = None) -> Reply:
    return Reply(400, error_body(message, "invalid_request_error", None, param))


# -- what the server keeps -------------------------------------------------------------------


@attrs.frozen
class RecordedRequest(HasHeaders):
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    outcome: str
    """``"handled"`` or what the script did (``"reply 429"``, ``"delay"``, ``"drop"``)."""


@attrs.frozen
class ChatRequest:
    """A well-formed chat request, as :func:`default_translate` and custom translators see it."""

    model: str
    messages: list[dict[str, Any]]

    @property
    def system(self) -> str | None:
        found = [m.get("content") for m in self.messages if m.get("role") == "system"]
        return str(found[-1]) if found else None

    @property
    def user_text(self) -> str:
        found = [m.get("content") for m in self.messages if m.get("role") == "user"]
        return str(found[-1]) if found else ""


def default_translate(request: ChatRequest) -> str:
    """What the fake answers unless told otherwise."""
    return f"[translated] {request.user_text}"


# -- the server ------------------------------------------------------------------------------


class FakeOpenAI(LoopbackServer):
    """The fake endpoint on ``127.0.0.1`` at a random port; use as an async context manager.

    ``translate(request)`` computes the assistant's content; ``api_key`` is the only key
    accepted (``None`` accepts any). ``finish_reason`` is what every completion reports.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "sk-test-fake",
        translate: Callable[[ChatRequest], str | None] = default_translate,
        finish_reason: str = "stop",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.translate = translate
        self.finish_reason = finish_reason
        self.requests: list[RecordedRequest] = []
        self._script: deque[Outcome] = deque()
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(CHAT_PATH, self._chat)

    async def close(self) -> None:
        self._closing.set()
        await super().close()

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be: ``http://127.0.0.1:<port>/v1``."""
        return self.url + "/v1"

    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes for the next requests (after any already queued)."""
        self._script.extend(outcomes)

    @property
    def scripted(self) -> int:
        return len(self._script)

    # -- handling --------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        outcome = self._script.popleft() if self._script else None
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.headers), body, describe(outcome)
            )
        )
        return await play(
            outcome,
            request,
            lambda: self._complete(request, body),
            closing=self._closing,
            shutting_down=lambda: _json(error_body("shutting down", "server_error"), 503),
            respond=_json,
        )

    def _complete(self, request: web.Request, body: Any) -> web.Response:
        authorization = request.headers.get("Authorization")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return _json(
                error_body(
                    "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
                401,
            )
        if not isinstance(body, dict):
            return _json(
                error_body("We could not parse the JSON body.", "invalid_request_error"), 400
            )
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return _json(
                error_body(
                    "you must provide a model parameter", "invalid_request_error", None, "model"
                ),
                400,
            )
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and "role" in m for m in messages)
        ):
            return _json(
                error_body(
                    "messages must be a non-empty array", "invalid_request_error", None, "messages"
                ),
                400,
            )
        chat = ChatRequest(model, messages)
        content = self.translate(chat)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len((content or "").split())
        completion = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        }
        return _json(completion, 200)


def _json(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    response = web.json_response(body, status=status, headers=dict(headers or {}))
    response.headers["x-request-id"] = f"req_fake_{id(response):x}"
    return response
