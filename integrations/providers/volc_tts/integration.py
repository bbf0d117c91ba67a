"""``VolcTTSIntegration``: text to speech with Volcano Engine's asynchronous TTS API.

Business logic creates a call record (from :func:`integrations.api_call_entities`) whose
``request_params`` are::

    {"text": "Thank you!",                 required
     "voice_type": "BV700_streaming",      optional (the integration's default voice otherwise)
     "format": "mp3", "sample_rate": 24000, "speed": 1.0, "volume": 1.0, "pitch": 1.0,
     "enable_subtitle": 0}                 optional, passed to the provider as they are

The integration (how, never when):

- **submit**: posts the task (``reqid`` and ``Idempotency-Key`` = the call's idempotency key,
  ``callback_url`` when a callback endpoint is configured) and writes ``initialized`` with the
  provider's ``task_id`` as external id. Retries, per-attempt timeouts and the deadline are the
  runner's (:class:`~integrations.APICallIntegration`).
- **status** comes back by three roads, all writing the same events with the same dedup keys
  (``volc_tts:<task_id>:<status>``), so whichever arrives first counts and the others are
  stored as duplicates:

  * the signed callback webhook ``POST /api/volc_tts.callback`` (anonymous, signature-checked);
  * the manual query API ``POST /api/volc_tts.query {"call_id": ...}`` (the call's owner only);
  * backend polling, only when a :class:`~integrations.PollPolicy` is given.

- the mapping: ``task_status`` 0 -> ``processing``; 1 -> ``completed`` with data
  ``{"task_id", "audio_url", "url_expire_time", "text_length", "duration_ms"}``; 2 -> ``failed``
  with error ``{"code", "message", "task_id"}``. Business values read
  ``call["response_data"]["audio_url"]`` (e.g. with :func:`integrations.latest_call_value`).

Callback signing. Volcano Engine does not document a signature on TTS callbacks: an unsigned
callback URL can be called by anyone who learns it. This integration therefore only serves the
callback endpoint when ``VOLC_TTS_CALLBACK_SECRET`` is set, and then requires every delivery to
carry Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``:
base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``, 5 minutes' tolerance either way, replays
refused). Against the real provider, put a signing relay in front of the endpoint (or rely on
the query API and polling, leaving the secret unset); the fake server signs as expected.

Note that the runner never writes a ``processing`` event on its own: a call goes from
``pending`` straight to ``completed`` when the first thing anyone learns is the result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import reactive as r
from integrations.api_call import APICallModel
from integrations.base import EnvVar
from integrations.events import EventWrite
from integrations.replay import TimeSource
from integrations.retry import PermanentError
from integrations.runner import APICallIntegration, ProviderStatus, Submitted
from integrations.webhooks import StandardWebhookVerifier, standard_key, webhook_api

from .api import (
    DEFAULT_BASE_URL,
    DEFAULT_RESOURCE_ID,
    SubmitRequest,
    TaskResult,
    VolcTTSClient,
)

NAME = "volc_tts"
CALLBACK_API = f"{NAME}.callback"
QUERY_API = f"{NAME}.query"
DEFAULT_VOICE = "BV700_streaming"

_OPTIONAL_PARAMS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "sample_rate": (int,),
    "speed": (int, float),
    "volume": (int, float),
    "pitch": (int, float),
    "enable_subtitle": (int,),
}

_CONSOLE = "the Volcano Engine console, Doubao Speech (豆包语音) > application management"


def dedup_key(task_id: str, status: str) -> str:
    """The dedup key of the event a task status stands for (the same from every road)."""
    return f"{NAME}:{task_id}:{status}"


class VolcTTSIntegration(APICallIntegration):
    """Volcano Engine async TTS for one APICall model. Options beyond the provider's: those of
    :class:`~integrations.APICallIntegration` (``retry``, ``poll``, ``clock``,
    ``sweep_interval``)."""

    name = NAME
    env_vars = (
        EnvVar(
            "VOLC_TTS_APPID",
            "App ID of the speech application (the submit body's appid)",
            _CONSOLE + ": APP ID",
            secret=False,
        ),
        EnvVar(
            "VOLC_TTS_TOKEN",
            "Access token of the speech application (sent as 'Authorization: Bearer; <token>')",
            _CONSOLE + ": Access Token",
        ),
        EnvVar(
            "VOLC_TTS_BASE_URL",
            f"Base URL of the speech API (default {DEFAULT_BASE_URL})",
            "set it only for a proxy, another region or a fake server",
            required=False,
            secret=False,
        ),
        EnvVar(
            "VOLC_TTS_CALLBACK_SECRET",
            "Standard Webhooks secret (whsec_<base64>) callbacks to POST /api/volc_tts.callback "
            "must be signed with; unset: no callback endpoint, status by query or polling only",
            "generate one with integrations.generate_standard_secret() and give it to the "
            "signing relay in front of the endpoint (Volcano Engine does not sign callbacks)",
            required=False,
        ),
        EnvVar(
            "VOLC_TTS_CALLBACK_URL",
            "Public URL of POST /api/volc_tts.callback, sent to the provider as callback_url",
            "your deployment's public address (or the signing relay's)",
            required=False,
            secret=False,
        ),
    )

    def __init__(
        self,
        model: APICallModel,
        *,
        default_voice: str = DEFAULT_VOICE,
        resource_id: str = DEFAULT_RESOURCE_ID,
        request_timeout: float = 10.0,
        callback_url: str | None = None,
        webhook_tolerance: float = 300.0,
        webhook_clock: TimeSource = time.time,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, environ=environ, **options)
        self.default_voice = default_voice
        self.resource_id = resource_id
        self.request_timeout = request_timeout
        self.callback_url = callback_url
        """The URL sent as ``callback_url`` (``VOLC_TTS_CALLBACK_URL`` when None); only sent
        while a callback secret is configured."""
        self.webhook_tolerance = webhook_tolerance
        self.webhook_clock = webhook_clock
        self._client: VolcTTSClient | None = None

    # -- configuration -----------------------------------------------------------------------

    async def configure(self) -> None:
        await super().configure()
        secret = self.env("VOLC_TTS_CALLBACK_SECRET")
        if secret:
            try:
                standard_key(secret)
            except ValueError as exc:
                raise ValueError(f"VOLC_TTS_CALLBACK_SECRET: {exc}") from None

    @property
    def callback_secret(self) -> str | None:
        return self.env("VOLC_TTS_CALLBACK_SECRET")

    def effective_callback_url(self) -> str | None:
        if not self.callback_secret:
            return None
        return self.callback_url or self.env("VOLC_TTS_CALLBACK_URL")

    def client(self) -> VolcTTSClient:
        """The API client (made on first use from the environment, closed by :meth:`close`)."""
        if self._client is None:
            appid, token = self.env("VOLC_TTS_APPID"), self.env("VOLC_TTS_TOKEN")
            if not appid or not token:
                raise PermanentError("VOLC_TTS_APPID and VOLC_TTS_TOKEN must be set")
            self._client = VolcTTSClient(
                appid=appid,
                token=token,
                base_url=self.env("VOLC_TTS_BASE_URL") or DEFAULT_BASE_URL,
                resource_id=self.resource_id,
                timeout=self.request_timeout,
            )
        return self._client

    async def close(self) -> None:
        await super().close()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- the provider ------------------------------------------------------------------------

    def build_request(self, params: Any, idempotency_key: str) -> SubmitRequest:
        """The submit body for a call's ``request_params`` (PermanentError if they are bad)."""
        if not isinstance(params, Mapping):
            raise PermanentError("request_params must be an object with a 'text'")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise PermanentError("request_params.text must be a non-empty string")
        voice = params.get("voice_type") or self.default_voice
        if not isinstance(voice, str):
            raise PermanentError("request_params.voice_type must be a string")
        optional: dict[str, Any] = {}
        for key, types in _OPTIONAL_PARAMS.items():
            value = params.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, types):
                raise PermanentError(f"request_params.{key} has the wrong type: {value!r}")
            optional[key] = value
        return SubmitRequest(
            appid=self.client().appid,
            reqid=idempotency_key,
            text=text,
            voice_type=voice,
            callback_url=self.effective_callback_url(),
            **optional,
        )

    async def submit(self, params: Any, idempotency_key: str) -> Submitted:
        request = self.build_request(params, idempotency_key)
        response = await self.client().submit(request, idempotency_key)
        return Submitted(task_id=response.task_id)

    async def query(self, external_id: str) -> ProviderStatus:
        return self.status_of(await self.client().query(external_id))

    @staticmethod
    def status_of(result: TaskResult) -> ProviderStatus:
        """The provider's task, in the unified vocabulary (with its dedup key)."""
        if result.succeeded:
            ends = [s.end_time for s in result.sentences]
            data = {
                "task_id": result.task_id,
                "audio_url": result.audio_url,
                "url_expire_time": result.url_expire_time,
                "text_length": result.text_length,
                "duration_ms": max(ends) if ends else None,
            }
            return ProviderStatus(
                "completed", data=data, event_id=dedup_key(result.task_id, "completed")
            )
        if result.failed:
            error = {"code": result.code, "message": result.message, "task_id": result.task_id}
            return ProviderStatus(
                "failed", error=error, event_id=dedup_key(result.task_id, "failed")
            )
        return ProviderStatus("processing", event_id=dedup_key(result.task_id, "processing"))

    # -- APIs --------------------------------------------------------------------------------

    def create_apis(self) -> dict[str, r.API]:
        apis = super().create_apis()
        secret = self.callback_secret
        if secret:
            verifier = StandardWebhookVerifier(
                secret, tolerance=self.webhook_tolerance, clock=self.webhook_clock
            )
            apis[CALLBACK_API] = webhook_api(
                verifier,
                self._on_callback,
                description="Volcano Engine TTS task callback (Standard Webhooks signature)",
            )
        return apis

    async def _on_callback(self, payload: Any, ctx: r.APIContext) -> dict[str, Any]:
        try:
            result = TaskResult.from_json(payload)
        except ValueError as exc:
            raise r.APIError(400, "invalid_payload", f"{CALLBACK_API}: {exc}") from None
        status = self.status_of(result)
        written = await self._write(result.task_id, status)
        return {
            "received": True,
            "task_id": result.task_id,
            "event": status.status,
            "outcome": written.outcome,
        }

    async def _write(self, external_id: str, status: ProviderStatus) -> EventWrite:
        if status.status == "completed":
            return await self.events.completed(external_id, status.data, status.event_id)
        if status.status == "failed":
            return await self.events.failed(external_id, status.error, status.event_id)
        return await self.events.processing(external_id, status.data, status.event_id)
