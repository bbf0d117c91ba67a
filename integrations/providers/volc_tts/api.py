"""The Volcano Engine asynchronous (long-text) TTS API: typed requests and raw responses.

This module only speaks HTTP: it builds requests as the provider documents them and returns its
answers as typed records, without transforming them (the integration module maps them to
events). HTTP-level failures go through :func:`integrations.raise_for_status`; error codes in
the provider's JSON become :class:`VolcTTSRejected` (a :class:`~integrations.PermanentError`) or
:class:`VolcTTSUnavailable` (a :class:`~integrations.TransientError`).

Wire format
-----------

Modelled on Volcano Engine's "long text asynchronous synthesis" API (``tts_async``, the
``openspeech.bytedance.com`` host). Where the public documentation was unclear to us, the
choice made here is marked *(our choice)*; the fake server in ``fake_server.py`` speaks exactly
this format.

Every request carries::

    Authorization: Bearer; <VOLC_TTS_TOKEN>       (a semicolon, as Volcano's speech APIs use)
    Resource-Id: volc.tts_async.default            (volc.tts_async.emotion for the emotion API)

Submit a task::

    POST {base}/api/v1/tts_async/submit
    Idempotency-Key: <the APICall's idempotency key>          (our addition; ignored upstream)
    {"appid": "<VOLC_TTS_APPID>", "reqid": "<the APICall's idempotency key>",
     "text": "...", "voice_type": "BV701_streaming", "format": "mp3",
     "sample_rate": 24000, "speed": 1.0, "volume": 1.0, "pitch": 1.0,   (optional)
     "enable_subtitle": 0,                                              (optional)
     "callback_url": "https://<app>/api/volc_tts.callback"}             (optional)
    200 {"reqid": "...", "task_id": "...", "task_status": 0, "text_length": 11}

``reqid`` is the provider's request id ("unique per request"); we send the APICall's idempotency
key, so a retried submission names the same request *(our choice: the fake answers a repeated
reqid with the same task; whether the real provider deduplicates is not documented)*.

Query a task::

    GET {base}/api/v1/tts_async/query?appid=<appid>&task_id=<task id>
    200 {"task_id": "...", "task_status": 0, "text_length": 11}                  running
    200 {"task_id": "...", "task_status": 1, "text_length": 11,                  succeeded
         "audio_url": "https://...", "url_expire_time": 1735689600,
         "sentences": [{"text": "...", "begin_time": 0, "end_time": 1200}]}
    200 {"task_id": "...", "task_status": 2, "code": 50001, "message": "..."}    failed

``task_status``: 0 running, 1 succeeded, 2 failed.

Callback (when ``callback_url`` was given): the provider POSTs the query body of the finished
task (``task_status`` 1 or 2, plus ``reqid``) to ``callback_url``. Volcano does not document a
signature on these callbacks; this integration requires Standard Webhooks signing
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) *(our choice; see
``integration.py``)*.

Errors: any answer without the success shape carries ``{"reqid"?, "code": <int>, "message":
"..."}``, with HTTP 200 or 4xx *(our choice of codes)*:

    40000 bad request (missing or invalid field)     40100 bad token / appid
    40300 no quota or resource not granted           40400 unknown task id
    42900 rate limited (transient)                   5xxxx provider error (transient)

HTTP 5xx, 408 and 429 are transient whatever the body says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from integrations.retry import (
    PermanentError,
    ProviderError,
    TransientError,
    raise_for_status,
    retry_after_seconds,
)

DEFAULT_BASE_URL = "https://openspeech.bytedance.com"
DEFAULT_RESOURCE_ID = "volc.tts_async.default"
SUBMIT_PATH = "/api/v1/tts_async/submit"
QUERY_PATH = "/api/v1/tts_async/query"
IDEMPOTENCY_HEADER = "Idempotency-Key"

TASK_RUNNING = 0
TASK_SUCCEEDED = 1
TASK_FAILED = 2

CODE_BAD_REQUEST = 40000
CODE_UNAUTHORIZED = 40100
CODE_FORBIDDEN = 40300
CODE_NOT_FOUND = 40400
CODE_RATE_LIMITED = 42900
CODE_INTERNAL = 50000


def is_transient_code(code: int) -> bool:
    """Provider error codes worth retrying: rate limiting and the provider's own errors."""
    return code == CODE_RATE_LIMITED or code >= 50000


# -- errors ------------------------------------------------------------------------------------


class VolcTTSError(ProviderError):
    """The provider answered with an error code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reqid: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(f"volc_tts error {code}: {message}", retry_after=retry_after)
        self.code = code
        self.provider_message = message
        self.reqid = reqid
        if http_status is not None:
            self.status = http_status


class VolcTTSRejected(VolcTTSError, PermanentError):
    """An error code that retrying will not fix (bad request, credentials, quota, unknown task)."""


class VolcTTSUnavailable(VolcTTSError, TransientError):
    """An error code worth retrying (rate limited, provider-side failure)."""


class VolcTTSProtocolError(PermanentError):
    """An answer that is neither the documented success shape nor an error body."""


def error_from_body(
    body: Mapping[str, Any], *, http_status: int | None = None, retry_after: float | None = None
) -> VolcTTSError:
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else CODE_INTERNAL
    message = str(body.get("message") or "")
    reqid = body.get("reqid")
    cls = VolcTTSUnavailable if is_transient_code(code) else VolcTTSRejected
    return cls(
        code,
        message,
        reqid=reqid if isinstance(reqid, str) else None,
        http_status=http_status,
        retry_after=retry_after,
    )


# -- typed requests and responses --------------------------------------------------------------


@attrs.frozen
class SubmitRequest:
    """The body of ``POST /api/v1/tts_async/submit`` (``None`` fields are left out)."""

    appid: str
    reqid: str
    text: str
    voice_type: str
    format: str = "mp3"
    sample_rate: int | None = None
    speed: float | None = None
    volume: float | None = None
    pitch: float | None = None
    enable_subtitle: int | None = None
    callback_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


@attrs.frozen
class SubmitResponse:
    """The success answer of submit."""

    reqid: str
    task_id: str
    task_status: int
    text_length: int | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SubmitResponse:
        try:
            return cls(
                reqid=str(body.get("reqid") or ""),
                task_id=_str(body["task_id"]),
                task_status=_int(body.get("task_status", TASK_RUNNING)),
                text_length=_opt_int(body.get("text_length")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VolcTTSProtocolError(f"unexpected submit answer: {body!r:.200}") from exc


@attrs.frozen
class Sentence:
    """One sentence of the synthesised audio (times in milliseconds)."""

    text: str
    begin_time: int
    end_time: int


@attrs.frozen
class TaskResult:
    """A task as the query API (and the callback) describes it."""

    task_id: str
    task_status: int
    text_length: int | None = None
    audio_url: str | None = None
    url_expire_time: int | None = None
    sentences: tuple[Sentence, ...] = ()
    code: int | None = None
    message: str | None = None
    reqid: str | None = None

    @property
    def running(self) -> bool:
        return self.task_status == TASK_RUNNING

    @property
    def succeeded(self) -> bool:
        return self.task_status == TASK_SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.task_status == TASK_FAILED

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TaskResult:
        """Parse a query answer or callback body; ``ValueError`` if it is not one."""
        try:
            status = _int(body["task_status"])
            if status not in (TASK_RUNNING, TASK_SUCCEEDED, TASK_FAILED):
                raise ValueError(f"unknown task_status {status}")
            sentences = tuple(
                Sentence(_str(s["text"]), _int(s["begin_time"]), _int(s["end_time"]))
                for s in body.get("sentences") or ()
            )
            result = cls(
                task_id=_str(body["task_id"]),
                task_status=status,
                text_length=_opt_int(body.get("text_length")),
                audio_url=_opt_str(body.get("audio_url")),
                url_expire_time=_opt_int(body.get("url_expire_time")),
                sentences=sentences,
                code=_opt_int(body.get("code")),
                message=_opt_str(body.get("message")),
                reqid=_opt_str(body.get("reqid")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a task description: {exc}") from exc
        if result.succeeded and not result.audio_url:
            raise ValueError("a succeeded task without audio_url")
        return result

    def to_json(self) -> dict[str, Any]:
        """The wire form (what the fake server sends)."""
        body: dict[str, Any] = {"task_id": self.task_id, "task_status": self.task_status}
        if self.reqid is not None:
            body["reqid"] = self.reqid
        if self.text_length is not None:
            body["text_length"] = self.text_length
        if self.succeeded:
            body["audio_url"] = self.audio_url
            body["url_expire_time"] = self.url_expire_time
            body["sentences"] = [attrs.asdict(s) for s in self.sentences]
        if self.failed:
            body["code"] = self.code
            body["message"] = self.message
        return body


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


# -- the client --------------------------------------------------------------------------------


class VolcTTSClient:
    """An aiohttp client of the async TTS API. ``timeout`` bounds each request (seconds)."""

    def __init__(
        self,
        *,
        appid: str,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        resource_id: str = DEFAULT_RESOURCE_ID,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not appid or not token:
            raise ValueError("VolcTTSClient needs an appid and a token")
        self.appid = appid
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.resource_id = resource_id
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer; {self.token}", "Resource-Id": self.resource_id}

    async def submit(
        self, request: SubmitRequest, idempotency_key: str | None = None
    ) -> SubmitResponse:
        """Submit a synthesis task; returns the provider's answer (with its ``task_id``)."""
        headers = self.headers()
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        async with self.session().post(
            self.base_url + SUBMIT_PATH,
            json=request.to_json(),
            headers=headers,
            timeout=self.timeout,
        ) as response:
            body = await _answer(response)
        if "task_id" not in body:
            raise error_from_body(body, http_status=response.status)
        return SubmitResponse.from_json(body)

    async def query(self, task_id: str) -> TaskResult:
        """The task's current state."""
        async with self.session().get(
            self.base_url + QUERY_PATH,
            params={"appid": self.appid, "task_id": task_id},
            headers=self.headers(),
            timeout=self.timeout,
        ) as response:
            body = await _answer(response)
        if "task_status" not in body:
            raise error_from_body(body, http_status=response.status)
        try:
            return TaskResult.from_json(body)
        except ValueError as exc:
            raise VolcTTSProtocolError(f"unexpected query answer: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


async def _answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON object of an answer. Transient HTTP statuses, and error answers without a
    provider error body, raise :class:`~integrations.ProviderHTTPError`; a 4xx carrying a
    provider error code raises :class:`VolcTTSError` for that code."""
    status = response.status
    if status >= 500 or status in (408, 429):
        await raise_for_status(response)
    text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status >= 400:
        if isinstance(body, dict) and isinstance(body.get("code"), int):
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            raise error_from_body(body, http_status=status, retry_after=retry_after)
        await raise_for_status(response)
    if not isinstance(body, dict):
        raise VolcTTSProtocolError(f"HTTP {status}: the answer is not a JSON object: {text:.200}")
    return body
