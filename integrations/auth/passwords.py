"""Password hashing with the standard library's scrypt (``hashlib.scrypt``).

Stored form (PHC-like, parameters included so that they can be raised later without breaking
existing hashes)::

    $scrypt$ln=14,r=8,p=5$<salt, base64>$<key, base64>

Default parameters: N = 2**14 (16 MiB of memory per hash), r = 8, p = 5, a 16-byte random salt
per hash and a 32-byte key. This is one of the OWASP-recommended scrypt configurations (equal in
cost to N = 2**17, r = 8, p = 1, with an eighth of the memory) and Django's default. Hashing is
CPU-bound (about half a second on a small machine): call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

import attrs

_FORMAT = re.compile(
    r"^\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<key>[A-Za-z0-9+/=]+)$"
)


@attrs.frozen
class ScryptParams:
    """scrypt cost parameters: ``n = 2**log_n`` (CPU/memory), ``r`` (block size), ``p``
    (parallelism), salt and key sizes in bytes."""

    log_n: int = 14
    r: int = 8
    p: int = 5
    salt_bytes: int = 16
    key_bytes: int = 32

    def __attrs_post_init__(self) -> None:
        if not (1 <= self.log_n <= 24 and 1 <= self.r <= 64 and 1 <= self.p <= 64):
            raise ValueError("scrypt parameters out of range")
        if self.salt_bytes < 16 or self.key_bytes < 16:
            raise ValueError("scrypt salt and key must be at least 16 bytes")

    @property
    def maxmem(self) -> int:
        """Memory limit handed to OpenSSL: what the parameters need, plus slack."""
        return _maxmem(self.log_n, self.r)


def _maxmem(log_n: int, r: int) -> int:
    return 128 * r * (1 << log_n) * 2 + (1 << 20)


DEFAULT_PARAMS = ScryptParams()


def _derive(password: str, salt: bytes, log_n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=1 << log_n,
        r=r,
        p=p,
        dklen=size,
        maxmem=_maxmem(log_n, r),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams = DEFAULT_PARAMS) -> str:
    """A salted scrypt hash of ``password`` in the stored form above."""
    salt = os.urandom(params.salt_bytes)
    key = _derive(password, salt, params.log_n, params.r, params.p, params.key_bytes)
    return f"$scrypt$ln={params.log_n},r={params.r},p={params.p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; the comparison is constant-time
    (:func:`hmac.compare_digest`). An unreadable stored value never matches."""
    match = _FORMAT.match(stored or "")
    if match is None:
        return False
    try:
        salt = base64.b64decode(match["salt"], validate=True)
        expected = base64.b64decode(match["key"], validate=True)
    except (binascii.Error, ValueError):
        return False
    log_n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not (1 <= log_n <= 24 and 1 <= r <= 64 and 1 <= p <= 64) or not expected:
        return False
    key = _derive(password, salt, log_n, r, p, len(expected))
    return hmac.compare_digest(key, expected)


def needs_rehash(stored: str, params: ScryptParams = DEFAULT_PARAMS) -> bool:
    """Whether ``stored`` was made with other parameters than ``params``."""
    match = _FORMAT.match(stored or "")
    return match is None or (int(match["ln"]), int(match["r"]), int(match["p"])) != (
        params.log_n,
        params.r,
        params.p,
    )
