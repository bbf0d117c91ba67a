"""``OpenAITranslateIntegration``: translation as a synchronous APICall.

Business logic creates a call with ``request_params`` ``{"text": "...", "target": "French"}``
(optionally ``"source": "English"``); the runner calls :meth:`submit` with retries and the
call's idempotency key, and records the unified sequence at once (``initialized`` with an id
derived from the key, ``processing``, ``completed``) with ``response_data`` ``{"text":
"<translation>", "model": "<model that answered>"}``. A refused request (4xx other than 408/429,
bad params, a truncated or refused translation) fails the call at once; rate limiting, 5xx,
timeouts and connection errors are retried (``Retry-After`` honoured).

>>> translations = api_call_entities("TranslationCall", "TranslationEvent")
>>> integration = OpenAITranslateIntegration(translations)   # reads OPENAI_* from os.environ
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from integrations.api_call import APICallModel
from integrations.base import EnvVar
from integrations.providers.openai_translate.api import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    TranslateAPI,
    Translation,
)
from integrations.retry import PermanentError
from integrations.runner import APICallIntegration, Submitted

ENV_API_KEY = EnvVar(
    "OPENAI_API_KEY",
    "API key sent as the Bearer token to the chat-completions endpoint",
    "https://platform.openai.com/api-keys (or the console of your OpenAI-compatible provider)",
)
ENV_BASE_URL = EnvVar(
    "OPENAI_BASE_URL",
    f"base URL of the OpenAI-compatible API, up to and including /v1 (default {DEFAULT_BASE_URL})",
    "your provider's API documentation (leave unset for OpenAI itself)",
    required=False,
    secret=False,
)
ENV_MODEL = EnvVar(
    "OPENAI_MODEL",
    f"chat model used for translation (default {DEFAULT_MODEL})",
    "https://platform.openai.com/docs/models (or your provider's model list)",
    required=False,
    secret=False,
)

#: Finish reasons that mean the text is not a usable translation.
REFUSED_FINISH_REASONS = ("length", "content_filter")


@attrs.frozen
class TranslationParams:
    """A call's ``request_params``, checked."""

    text: str
    target: str
    source: str | None = None

    @classmethod
    def parse(cls, params: Any) -> TranslationParams:
        """Check ``params``; a bad request fails the call at once (PermanentError)."""
        if not isinstance(params, Mapping):
            raise PermanentError(f"request_params must be an object, got {type(params).__name__}")
        unknown = sorted(set(params) - {"text", "target", "source"})
        if unknown:
            raise PermanentError(
                f"unknown request_params {unknown}; expected text, target and optional source"
            )
        text, target, source = params.get("text"), params.get("target"), params.get("source")
        if not isinstance(text, str) or not text.strip():
            raise PermanentError("request_params.text must be a non-empty string")
        if not isinstance(target, str) or not target.strip():
            raise PermanentError("request_params.target must be a non-empty language name")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise PermanentError("request_params.source must be a non-empty string when given")
        return cls(text, target.strip(), source.strip() if source else None)


class OpenAITranslateIntegration(APICallIntegration):
    """Translation through an OpenAI-compatible chat-completions endpoint (synchronous API).

    Settings come from the environment (``environ``, default ``os.environ``): OPENAI_API_KEY,
    OPENAI_BASE_URL, OPENAI_MODEL. ``request_timeout`` bounds one HTTP request (the runner's
    ``RetryPolicy.attempt_timeout`` bounds one attempt too). Other options go to
    :class:`~integrations.APICallIntegration` (``retry``, ``clock``, ``sweep_interval``...).
    """

    name = "openai_translate"
    env_vars = (ENV_API_KEY, ENV_BASE_URL, ENV_MODEL)

    def __init__(
        self,
        model: APICallModel,
        *,
        request_timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive (seconds)")
        self.request_timeout = request_timeout
        self._api: TranslateAPI | None = None

    def api(self) -> TranslateAPI:
        """The API client (made on first use from the environment, closed by :meth:`close`)."""
        if self._api is None:
            api_key = self.env(ENV_API_KEY.name)
            if not api_key:
                raise PermanentError(f"{self.name}: {ENV_API_KEY.name} is not set")
            self._api = TranslateAPI(
                api_key=api_key,
                base_url=self.env(ENV_BASE_URL.name) or DEFAULT_BASE_URL,
                model=self.env(ENV_MODEL.name) or DEFAULT_MODEL,
                timeout=self.request_timeout,
            )
        return self._api

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        request = TranslationParams.parse(params)
        translation = await self.api().translate(
            request.text,
            request.target,
            source=request.source,
            idempotency_key=idempotency_key,
        )
        return Submitted(result=self.result_of(translation))

    @staticmethod
    def result_of(translation: Translation) -> dict[str, Any]:
        """The call's ``response_data``; an unusable answer fails the call (PermanentError)."""
        if translation.text is None:
            reason = translation.refusal or "the completion has no text"
            raise PermanentError(f"openai: no translation ({reason})")
        if translation.finish_reason in REFUSED_FINISH_REASONS:
            raise PermanentError(
                f"openai: translation cut short (finish_reason={translation.finish_reason})"
            )
        return {"text": translation.text.strip(), "model": translation.model}

    async def close(self) -> None:
        await super().close()
        if self._api is not None:
            await self._api.close()
            self._api = None
