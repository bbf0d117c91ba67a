"""Session tokens: HMAC-signed JWTs (PyJWT) with an explicit algorithm allow-list.

Only the HMAC algorithms (HS256, HS384, HS512) can be configured: the same secret signs and
verifies. ``none`` and every algorithm outside the allow-list are refused *before* the signature
is checked (no algorithm confusion). ``exp``, ``iat`` and ``sub`` are required; ``exp``, ``nbf``
and ``iat`` are checked against the current time (``iat`` in the future is refused too).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import jwt

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
"""Allowed algorithms and the minimum secret length (bytes) each needs."""


class TokenError(Exception):
    """A token was refused; the message is safe to show (it never contains the token)."""


def _algorithms(value: Sequence[str]) -> tuple[str, ...]:
    algorithms = (value,) if isinstance(value, str) else tuple(value)
    if not algorithms:
        raise ValueError("at least one JWT algorithm must be allowed")
    for algorithm in algorithms:
        if algorithm not in HMAC_ALGORITHMS:
            raise ValueError(
                f"JWT algorithm {algorithm!r} is not supported; allow only "
                f"{', '.join(HMAC_ALGORITHMS)} (never 'none')"
            )
    return algorithms


@attrs.frozen
class TokenSettings:
    """How tokens are issued and checked. The first algorithm signs new tokens."""

    algorithms: tuple[str, ...] = attrs.field(default=("HS256",), converter=_algorithms)
    ttl: float = 3600.0
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0.0

    @property
    def min_secret_bytes(self) -> int:
        return max(HMAC_ALGORITHMS[a] for a in self.algorithms)


def issue_token(
    secret: str, subject: Any, settings: TokenSettings, now: float | None = None
) -> str:
    """A signed token for ``subject`` (stored as a string ``sub``), valid ``settings.ttl`` s."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": str(subject),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(settings.ttl),
        "jti": uuid.uuid4().hex,
    }
    if settings.issuer is not None:
        claims["iss"] = settings.issuer
    if settings.audience is not None:
        claims["aud"] = settings.audience
    return jwt.encode(claims, secret, algorithm=settings.algorithms[0])


def decode_token(token: str, secret: str, settings: TokenSettings) -> dict[str, Any]:
    """The verified claims of ``token``; raises :class:`TokenError` when it is refused."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenError("token is malformed") from None
    if header.get("alg") not in settings.algorithms:
        raise TokenError("token algorithm is not allowed")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=list(settings.algorithms),
            options={"require": ["exp", "iat", "sub"]},
            leeway=settings.leeway,
            issuer=settings.issuer,
            audience=settings.audience,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("token is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature is invalid") from None
    except jwt.InvalidTokenError:
        raise TokenError("token is invalid") from None
    # Checked here as well, whatever the PyJWT version does: iat in the future, sub a string.
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or iat > time.time() + settings.leeway:
        raise TokenError("token is not valid yet")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("token has no subject")
    return claims


def parse_subject(subject: str) -> int:
    """The user id named by ``sub``: storage ids are integers, and only their canonical decimal
    form names one (``"1"``; never ``"01"``, ``"1 "``, ``"+1"`` or non-ASCII digits, which a
    database could still take for 1). Anything else raises :class:`TokenError`; an application
    whose user ids are not integers passes its own ``user_id_from_subject``."""
    if subject.isascii() and subject.isdigit() and str(int(subject)) == subject:
        return int(subject)
    raise TokenError("token subject is not a user id")
