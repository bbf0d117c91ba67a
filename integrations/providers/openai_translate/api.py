"""Translation through an OpenAI-compatible chat-completions endpoint: a thin typed wrapper over
the official ``openai`` SDK.

This module only speaks HTTP: it builds the request, returns the answer as a typed
:class:`Translation` (what the provider said, untransformed) and maps the SDK's errors to the
integration layer's :class:`~integrations.ProviderError` classes. The integration module decides
what an answer means for the APICall.

Wire format (what the SDK sends and parses; the fake server in ``fake_server.py`` speaks it)::

    POST {base_url}/chat/completions
    Authorization: Bearer <OPENAI_API_KEY>
    Idempotency-Key: <the APICall's idempotency key>    (our addition, sent via extra_headers)
    {"model": "<OPENAI_MODEL>",
     "messages": [{"role": "system", "content": "You are a translation engine. ..."},
                  {"role": "user", "content": "<text>"}]}

    200 {"id": "chatcmpl-...", "object": "chat.completion", "created": 1700000000,
         "model": "<model>",
         "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                      "message": {"role": "assistant", "content": "<translation>",
                                  "refusal": null}}],
         "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}}

    4xx/5xx {"error": {"message": "...", "type": "...", "param": null, "code": null}}
    429 carries ``retry-after-ms`` and/or ``Retry-After`` (both honoured, ``-ms`` first).

The SDK is built with ``max_retries=0``: the integration runner owns retries, backoff and
deadlines. Errors map as follows: connection errors and timeouts (``APIConnectionError``,
``APITimeoutError``) are transient; an HTTP error answer (``APIStatusError``: ``RateLimitError``,
``InternalServerError``, ``BadRequestError``, ...) becomes :class:`OpenAIHTTPError`, transient
for 5xx, 408 and 429 and permanent for every other 4xx, carrying ``Retry-After``; an answer the
SDK cannot read is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from integrations.retry import (
    PermanentError,
    ProviderError,
    ProviderHTTPError,
    TransientError,
    retry_after_seconds,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"


# -- what the provider answers ---------------------------------------------------------------


@attrs.frozen
class Usage:
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@attrs.frozen
class Translation:
    """The first choice of a chat completion, as the provider gave it."""

    completion_id: str
    model: str
    text: str | None
    """The assistant message's content (None when the model refused or produced no text)."""
    finish_reason: str | None
    refusal: str | None = None
    usage: Usage | None = None

    @classmethod
    def from_completion(cls, completion: ChatCompletion) -> Translation:
        """Read the SDK's parsed completion; an answer without a choice is permanent."""
        if not completion.choices:
            raise PermanentError(f"openai: completion {completion.id} has no choices")
        choice = completion.choices[0]
        usage = None
        if completion.usage is not None:
            usage = Usage(
                completion.usage.prompt_tokens,
                completion.usage.completion_tokens,
                completion.usage.total_tokens,
            )
        return cls(
            completion_id=completion.id,
            model=completion.model,
            text=choice.message.content,
            finish_reason=choice.finish_reason,
            refusal=choice.message.refusal,
            usage=usage,
        )


# -- errors ----------------------------------------------------------------------------------


class OpenAIHTTPError(ProviderHTTPError):
    """An error answer: 5xx, 408 and 429 are transient, every other 4xx is permanent."""

    def __init__(
        self,
        status: int,
        body: str = "",
        *,
        retry_after: float | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ):
        super().__init__(status, body, retry_after=retry_after)
        self.error_type = error_type
        self.error_code = error_code
        self.request_id = request_id


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """The wait an answer asks for: ``retry-after-ms`` (OpenAI's), else ``Retry-After``
    (seconds, fractional seconds, or an HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return retry_after_seconds(value)


def _body_text(body: object) -> str:
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body)
    except (TypeError, ValueError):
        return repr(body)


def provider_error(error: openai.OpenAIError) -> ProviderError:
    """The integration layer's view of an SDK error (see the module docstring)."""
    if isinstance(error, openai.APIStatusError):
        return OpenAIHTTPError(
            error.status_code,
            _body_text(error.body),
            retry_after=retry_after_of(error.response.headers),
            error_type=error.type,
            error_code=error.code,
            request_id=error.request_id,
        )
    if isinstance(error, openai.APIConnectionError):  # APITimeoutError included
        return TransientError(f"openai: {error.message}")
    return PermanentError(f"openai: {error}")


# -- the client ------------------------------------------------------------------------------


def system_prompt(target: str, source: str | None = None) -> str:
    """The instruction sent as the system message."""
    origin = f" from {source}" if source else ""
    return (
        f"You are a translation engine. Translate the user's message{origin} into {target}. "
        "Reply with the translation only, without quotes, notes or explanations."
    )


class TranslateAPI:
    """Chat-completions translation over ``openai.AsyncOpenAI`` (no SDK retries)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.model = model
        self.client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
        )

    async def translate(
        self,
        text: str,
        target: str,
        *,
        source: str | None = None,
        idempotency_key: str | None = None,
    ) -> Translation:
        """Ask for a translation of ``text`` into ``target``; raises ProviderError."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(target, source)},
            {"role": "user", "content": text},
        ]
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
        try:
            completion = await self.client.chat.completions.create(
                model=self.model, messages=messages, extra_headers=headers
            )
        except openai.OpenAIError as exc:
            raise provider_error(exc) from exc
        return Translation.from_completion(completion)

    async def close(self) -> None:
        await self.client.close()
