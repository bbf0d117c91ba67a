"""Inbound webhooks: signature verification (Stripe-style and Standard Webhooks), a replay cache,
signers for tests and fake providers, and :func:`webhook_api`, which turns a verifier and a
payload handler into a raw ``r.API``.

Both verifiers work on the **raw body bytes** (re-serialised JSON never verifies), compare in
constant time (:func:`hmac.compare_digest`), accept several secrets at once (rotation), check the
timestamp on **both** sides (default tolerance 300 s: too old *and* too far in the future are
refused) and remember each accepted message in a :class:`ReplayCache`.

Replays and duplicates (one consistent behaviour):

- **Replay** = the *same signed message* arriving again (Stripe: same ``t`` and body; Standard
  Webhooks: same ``webhook-id`` and ``webhook-timestamp``). Within the cache's lifetime (at least
  until the message's timestamp leaves the tolerance window) it is refused: 400, reason
  ``replayed``, nothing is written. After that, the timestamp check refuses it anyway.
- **Redelivery** = the provider sending the same *event* again, signed afresh (a retry after a
  lost 200 carries a new timestamp). It verifies, and the handler writes the event with the
  provider's event id as dedup key: :class:`~integrations.IntegrationEvents` reports it as a
  duplicate, nothing changes, and the answer is 200, so the provider stops retrying.
- A delivery whose handler fails is *forgotten* by the replay cache (the reservation is
  released), so the provider's retry of that message is not mistaken for a replay.

The cache is in-memory and per process; the durable guard against double processing is the dedup
key of the event table (stored once, whatever the cache knows).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets as _secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs

import reactive as r
from integrations.replay import ReplayCache, TimeSource, seconds_of
from reactive.wire import DEFAULT_MAX_JSON_DEPTH, parse_json

log = logging.getLogger("integrations.webhooks")

Reason = Literal[
    "missing_header",
    "malformed_header",
    "bad_signature",
    "stale_timestamp",
    "future_timestamp",
    "replayed",
]
DEFAULT_TOLERANCE = 300.0
STRIPE_HEADER = "Stripe-Signature"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class WebhookVerificationError(Exception):
    """A delivery failed verification. ``reason`` is one of :data:`Reason`."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.code: Reason = reason
        self.message = message


@attrs.frozen
class VerifiedWebhook:
    """A delivery that passed verification."""

    scheme: str
    timestamp: int
    body: bytes
    webhook_id: str | None = None
    replay_key: str | None = None
    """The key reserved in the replay cache (None without a cache)."""


class WebhookVerifier(Protocol):
    """What :func:`webhook_api` needs from a verifier."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook: ...

    def release(self, verified: VerifiedWebhook) -> None: ...


class _Verifier:
    """Shared parts: tolerance, clock, replay cache."""

    scheme = ""
    headers: tuple[str, ...] = ()
    """The request headers a signed message carries (published as required by webhook_api)."""

    def __init__(
        self,
        tolerance: float,
        clock: TimeSource,
        replay_cache: ReplayCache | None,
        check_replay: bool,
    ):
        if tolerance <= 0:
            raise ValueError("tolerance must be positive (seconds)")
        self.tolerance = float(tolerance)
        self.clock = clock
        if check_replay and replay_cache is None:
            replay_cache = ReplayCache(ttl=2 * self.tolerance, clock=clock)
        self.replay_cache = replay_cache if check_replay else None

    def _check_timestamp(self, timestamp: int) -> None:
        now = seconds_of(self.clock)
        if timestamp < now - self.tolerance:
            raise WebhookVerificationError(
                "stale_timestamp",
                f"timestamp is {now - timestamp:.0f} s old (tolerance {self.tolerance:.0f} s)",
            )
        if timestamp > now + self.tolerance:
            raise WebhookVerificationError(
                "future_timestamp",
                f"timestamp is {timestamp - now:.0f} s ahead (tolerance {self.tolerance:.0f} s)",
            )

    def _reserve(self, key: str, timestamp: int) -> str | None:
        if self.replay_cache is None:
            return None
        key = f"{self.scheme}:{key}"
        # Kept while the timestamp is still accepted (the boundary second included).
        if not self.replay_cache.add(key, expires_at=timestamp + self.tolerance + 1):
            raise WebhookVerificationError("replayed", "this signed message was already received")
        return key

    def release(self, verified: VerifiedWebhook) -> None:
        """Forget an accepted message (its processing failed; the sender will retry it)."""
        if self.replay_cache is not None and verified.replay_key is not None:
            self.replay_cache.discard(verified.replay_key)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, found case-insensitively in any mapping (aiohttp's is already)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _timestamp(value: str) -> int:
    if not _TIMESTAMP.match(value):
        raise WebhookVerificationError("malformed_header", "timestamp is not unix seconds")
    return int(value)


def _matches(expected: str, candidates: Sequence[str]) -> bool:
    """Constant-time comparison against every candidate (no early exit on a match)."""
    want = expected.encode("ascii")
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(want, candidate.encode("utf-8", "replace"))
    return found


def _as_list(value: str | bytes | Sequence[str] | Sequence[bytes]) -> list[Any]:
    if isinstance(value, str | bytes):
        return [value]
    return list(value)


# -- Stripe-style ----------------------------------------------------------------------------


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{t}.{body}"`` keyed with the endpoint secret as a string
    (``whsec_...`` used verbatim, as Stripe does)."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_stripe(
    body: bytes, secrets: str | Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """The ``Stripe-Signature`` header for ``body`` (one ``v1`` per secret, as during rotation)."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"v1={stripe_signature(s, t, body)}" for s in _as_list(secrets)]
    return {STRIPE_HEADER: ",".join(parts)}


def parse_stripe_header(value: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=...]`` -> (timestamp, v1 signatures); other schemes are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise WebhookVerificationError("malformed_header", f"{STRIPE_HEADER}: item without '='")
        if key == "t":
            if timestamp is not None:
                raise WebhookVerificationError("malformed_header", f"{STRIPE_HEADER}: two t=")
            timestamp = _timestamp(val)
        elif key == "v1" and val:
            signatures.append(val)
    if timestamp is None:
        raise WebhookVerificationError("malformed_header", f"{STRIPE_HEADER}: no t= timestamp")
    if not signatures:
        raise WebhookVerificationError("malformed_header", f"{STRIPE_HEADER}: no v1 signature")
    return timestamp, signatures


class StripeVerifier(_Verifier):
    """Verifies ``Stripe-Signature`` against one or more endpoint secrets (``whsec_...``)."""

    scheme = "stripe"
    headers = (STRIPE_HEADER,)

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: TimeSource = time.time,
        replay_cache: ReplayCache | None = None,
        check_replay: bool = True,
    ):
        super().__init__(tolerance, clock, replay_cache, check_replay)
        self.secrets: list[str] = [s for s in _as_list(secrets) if s]
        if not self.secrets:
            raise ValueError("StripeVerifier needs at least one endpoint secret")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        value = header(headers, STRIPE_HEADER)
        if not value:
            raise WebhookVerificationError("missing_header", f"no {STRIPE_HEADER} header")
        timestamp, candidates = parse_stripe_header(value)
        found = False
        for secret in self.secrets:
            found |= _matches(stripe_signature(secret, timestamp, body), candidates)
        if not found:
            raise WebhookVerificationError("bad_signature", "no signature matches the payload")
        self._check_timestamp(timestamp)
        digest = hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
        key = self._reserve(digest, timestamp)
        return VerifiedWebhook(self.scheme, timestamp, body, None, key)


# -- Standard Webhooks -----------------------------------------------------------------------


def generate_standard_secret(size: int = 32) -> str:
    """A new ``whsec_<base64>`` secret of ``size`` random bytes (24..64)."""
    if not 24 <= size <= 64:
        raise ValueError("Standard Webhooks secrets are 24 to 64 bytes")
    return "whsec_" + base64.b64encode(_secrets.token_bytes(size)).decode("ascii")


def standard_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (bytes are taken as the key itself)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a Standard Webhooks secret is 'whsec_' + base64") from exc
    if len(key) < 24:
        raise ValueError("a Standard Webhooks secret must be at least 24 bytes")
    return key


def standard_signature(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Base64 HMAC-SHA256 of ``f"{id}.{timestamp}.{body}"``."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_standard(
    body: bytes,
    secrets: str | bytes | Sequence[str] | Sequence[bytes],
    webhook_id: str,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (one ``v1,`` entry per secret)."""
    t = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(
        f"v1,{standard_signature(s, webhook_id, t, body)}" for s in _as_list(secrets)
    )
    return {WEBHOOK_ID: webhook_id, WEBHOOK_TIMESTAMP: str(t), WEBHOOK_SIGNATURE: signatures}


def parse_standard_signatures(value: str) -> list[str]:
    """``v1,<b64> v1,<b64> v1a,...`` -> the ``v1`` signatures (other versions are ignored)."""
    signatures: list[str] = []
    for entry in value.split():
        version, sep, signature = entry.partition(",")
        if not sep or not version or not signature:
            raise WebhookVerificationError(
                "malformed_header", f"{WEBHOOK_SIGNATURE}: entry is not '<version>,<signature>'"
            )
        if version == "v1":
            signatures.append(signature)
    if not signatures:
        raise WebhookVerificationError("malformed_header", f"{WEBHOOK_SIGNATURE}: no v1 signature")
    return signatures


class StandardWebhookVerifier(_Verifier):
    """Verifies Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
    against one or more ``whsec_<base64>`` secrets."""

    scheme = "standard"
    headers = (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)

    def __init__(
        self,
        secrets: str | bytes | Sequence[str] | Sequence[bytes],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: TimeSource = time.time,
        replay_cache: ReplayCache | None = None,
        check_replay: bool = True,
    ):
        super().__init__(tolerance, clock, replay_cache, check_replay)
        self.keys = [standard_key(s) for s in _as_list(secrets) if s]
        if not self.keys:
            raise ValueError("StandardWebhookVerifier needs at least one secret")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        values = {n: header(headers, n) for n in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)}
        absent = [n for n, v in values.items() if not v]
        if absent:
            raise WebhookVerificationError("missing_header", f"missing {', '.join(absent)}")
        webhook_id, raw_ts, raw_sig = (values[n] or "" for n in values)
        if "." in webhook_id or len(webhook_id) > 255 or not webhook_id.isprintable():
            raise WebhookVerificationError("malformed_header", f"{WEBHOOK_ID} is not valid")
        timestamp = _timestamp(raw_ts)
        candidates = parse_standard_signatures(raw_sig)
        found = False
        for key in self.keys:
            found |= _matches(standard_signature(key, webhook_id, timestamp, body), candidates)
        if not found:
            raise WebhookVerificationError("bad_signature", "no signature matches the payload")
        self._check_timestamp(timestamp)
        reserved = self._reserve(f"{webhook_id}.{timestamp}", timestamp)
        return VerifiedWebhook(self.scheme, timestamp, body, webhook_id, reserved)


# -- the API -----------------------------------------------------------------------------------

WebhookHandler = Callable[[Any, r.APIContext], Awaitable[Any]]
RAW_BODY = "raw_body"
"""Request key under which a server may have stored the body bytes already."""
VERIFIED = "webhook"
"""Request key under which :func:`webhook_api` leaves the :class:`VerifiedWebhook`."""


async def _read_body(request: Any, max_bytes: int) -> bytes:
    stored = request.get(RAW_BODY) if hasattr(request, "get") else None
    if isinstance(stored, bytes | bytearray):
        body = bytes(stored)
    else:
        length = getattr(request, "content_length", None)
        if length is not None and length > max_bytes:
            raise r.APIError(413, "body_too_large", f"body exceeds {max_bytes} bytes")
        body = await request.read()
    if len(body) > max_bytes:
        raise r.APIError(413, "body_too_large", f"body exceeds {max_bytes} bytes")
    return body


def webhook_api(
    verifier: WebhookVerifier,
    handle: WebhookHandler,
    *,
    max_body_bytes: int = 1 << 20,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    description: str = "",
) -> r.API:
    """A webhook endpoint: ``r.API(raw=True, allow_anonymous=True)``.

    The handler reads the raw body (``request["raw_body"]`` if the server stored it, else
    ``await request.read()``), verifies it — a failure answers 400 ``invalid_signature`` with the
    reason in the message, before anything is written — parses the JSON object strictly, nested
    at most ``max_json_depth`` deep (400 ``malformed_json`` otherwise, saying why) and calls
    ``handle(payload, ctx)``. ``handle`` maps the payload to integration events with the
    provider's event id as dedup key, e.g.
    ``await events.completed(external_id, data, dedup_key=f"stripe:{payload['id']}")``; the
    :class:`VerifiedWebhook` is at ``ctx.request["webhook"]``. Its return value (default
    ``{"received": true}``) is the 200 body. If ``handle`` raises, the replay cache forgets the
    message so that the provider's retry is processed.
    """

    async def handler(ctx: r.APIContext, params: Any) -> Any:
        request = ctx.request
        if request is None:
            raise r.APIError(500, "no_request", "a webhook API needs the HTTP request")
        body = await _read_body(request, max_body_bytes)
        try:
            verified = verifier.verify(body, request.headers)
        except WebhookVerificationError as exc:
            log.warning("webhook refused (%s): %s", exc.reason, exc.message)
            raise r.APIError(400, "invalid_signature", str(exc)) from None
        try:
            payload = parse_json(body, max_json_depth)
        except r.APIError as exc:
            verifier.release(verified)
            raise r.APIError(400, "malformed_json", exc.message) from None
        if not isinstance(payload, dict):
            verifier.release(verified)
            raise r.APIError(400, "malformed_json", "the body is not a JSON object")
        request[VERIFIED] = verified
        try:
            result = await handle(payload, ctx)
        except BaseException:
            verifier.release(verified)
            raise
        return {"received": True} if result is None else result

    return r.API(
        handler,
        allow_anonymous=True,
        raw=True,
        description=description or "Webhook endpoint (signature-verified)",
        # the signature headers, so that the OpenAPI document requires them
        headers=getattr(verifier, "headers", ()),
    )
