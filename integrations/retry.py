"""Retry policy for calls to external APIs: what is transient, how long to wait, when to stop.

Transient: connection errors, timeouts, HTTP 5xx, 408 and 429 (``Retry-After`` honoured and
capped). Permanent: every other 4xx, and :class:`PermanentError`. Waits use exponential backoff
with full jitter (a uniform draw between 0 and ``base * 2**(attempt-1)``, capped).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import attrs


class ProviderError(Exception):
    """An external API call failed. ``transient`` decides whether it is retried."""

    transient = False

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(ProviderError):
    """Worth retrying (the provider or the network may recover)."""

    transient = True


class PermanentError(ProviderError):
    """Not worth retrying (the request itself is wrong, or refused for good)."""


class ProviderHTTPError(ProviderError):
    """An HTTP error answer from a provider: 5xx, 408 and 429 are transient."""

    def __init__(self, status: int, body: str = "", *, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {body[:200]}", retry_after=retry_after)
        self.status = status
        self.body = body
        self.transient = status >= 500 or status in (408, 429)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Raise :class:`ProviderHTTPError` for an error answer (reads the body for the message)."""
    if response.status < 400:
        return
    body = await response.text()
    raise ProviderHTTPError(
        response.status, body, retry_after=retry_after_seconds(response.headers.get("Retry-After"))
    )


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ProviderError):
        return error.transient
    return isinstance(
        error,
        asyncio.TimeoutError
        | TimeoutError
        | aiohttp.ClientConnectionError
        | aiohttp.ServerTimeoutError
        | ConnectionError,
    )


@attrs.frozen
class RetryPolicy:
    """How a call is retried. ``attempt_timeout`` bounds one submission, ``deadline`` the whole
    call from its creation (a sweeper fails calls still pending or processing past it)."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 60.0
    attempt_timeout: float = 30.0
    deadline: float = 600.0

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base, self.cap, self.attempt_timeout, self.deadline) <= 0:
            raise ValueError("base, cap, attempt_timeout and deadline must be positive")

    def delay(self, attempt: int, error: BaseException, rng: Any = random) -> float:
        """How long to wait after failed attempt ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.retry_after_cap))
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return float(rng.uniform(0, ceiling))
