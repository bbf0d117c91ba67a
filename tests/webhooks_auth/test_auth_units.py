"""AuthIntegration configuration, scrypt password hashing and token checks (no HTTP)."""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt
import pytest

from integrations import Integration, MissingEnvironmentError
from integrations.auth import (
    SECRET_ENV,
    TTL_ENV,
    AuthIntegration,
    ScryptParams,
    TokenError,
    TokenSettings,
    UserFields,
    auth_entities,
    auth_properties,
    decode_token,
    hash_password,
    issue_token,
    needs_rehash,
    parse_subject,
    verify_password,
)

SECRET = "k" * 40
FAST = ScryptParams(log_n=10, r=8, p=1)


def test_auth_declares_its_environment() -> None:
    auth = AuthIntegration(environ={})
    assert isinstance(auth, Integration) and auth.name == "auth"
    declared = {v.name: v for v in auth.env_vars}
    secret = declared[SECRET_ENV]
    assert secret.required and secret.secret
    assert "sign" in secret.purpose and secret.obtain_from
    assert not declared[TTL_ENV].required


async def test_configure_refuses_a_missing_or_short_secret() -> None:
    with pytest.raises(MissingEnvironmentError) as info:
        await AuthIntegration(environ={}).configure()
    assert SECRET_ENV in str(info.value)
    with pytest.raises(ValueError, match="at least 32 bytes") as short:
        await AuthIntegration(environ={SECRET_ENV: "tooshort"}).configure()
    assert "tooshort" not in str(short.value)
    with pytest.raises(ValueError, match="at least 64 bytes"):
        await AuthIntegration(environ={SECRET_ENV: SECRET}, algorithms=["HS512"]).configure()
    await AuthIntegration(environ={SECRET_ENV: SECRET}).configure()
    # An explicit secret needs no environment variable.
    explicit = AuthIntegration(environ={}, secret=SECRET)
    assert explicit.missing_environment() == []
    await explicit.configure()


def test_token_ttl_from_the_environment() -> None:
    assert AuthIntegration(environ={TTL_ENV: "120"}).settings.ttl == 120
    assert AuthIntegration(environ={}).settings.ttl == 3600
    assert AuthIntegration(environ={TTL_ENV: "120"}, token_ttl=60).settings.ttl == 60
    with pytest.raises(ValueError):
        AuthIntegration(environ={TTL_ENV: "soon"})


@pytest.mark.parametrize("algorithms", [["none"], ["RS256"], ["HS256", "none"], [], "none"])
def test_only_hmac_algorithms_can_be_allowed(algorithms: Any) -> None:
    with pytest.raises(ValueError):
        AuthIntegration(environ={}, algorithms=algorithms)


def test_user_entity_and_properties() -> None:
    user = auth_entities()
    assert user.name == "User"
    username = user.property("username")
    assert username.unique and username.index
    assert user.property("password_hash").type == "string"
    props = auth_properties(UserFields(username="email", password_hash="pw"))
    assert [p.name for p in props] == ["email", "pw", "created_at"]


def test_tokens_round_trip_and_carry_the_standard_claims() -> None:
    settings = TokenSettings(ttl=60, issuer="app", audience="web")
    token = issue_token(SECRET, 42, settings)
    claims = decode_token(token, SECRET, settings)
    assert claims["sub"] == "42" and claims["iss"] == "app" and claims["aud"] == "web"
    assert claims["exp"] - claims["iat"] == 60 and claims["nbf"] == claims["iat"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    with pytest.raises(TokenError):
        decode_token(token, SECRET, TokenSettings(issuer="other", audience="web"))
    with pytest.raises(TokenError):
        decode_token(token, SECRET, TokenSettings())  # unexpected audience


def test_token_without_required_claims_is_refused() -> None:
    now = int(time.time())
    for claims in (
        {"sub": "1", "iat": now},
        {"sub": "1", "exp": now + 60},
        {"iat": now, "exp": now + 60},
    ):
        with pytest.raises(TokenError):
            decode_token(jwt.encode(claims, SECRET, "HS256"), SECRET, TokenSettings())
    future_iat = {"sub": "1", "iat": now + 600, "exp": now + 900}
    with pytest.raises(TokenError, match="not valid yet"):
        decode_token(jwt.encode(future_iat, SECRET, "HS256"), SECRET, TokenSettings())


def test_parse_subject_takes_only_the_canonical_decimal_form() -> None:
    assert parse_subject("42") == 42
    assert parse_subject("0") == 0
    # each of these would still find user 1 or 7 in SQLite (text compared to an integer id)
    for subject in ("007", "01", "1 ", " 1", "+1", "1.0", "1e0", "user-1", "\u0661", "\uff11", ""):
        with pytest.raises(TokenError, match="not a user id"):
            parse_subject(subject)


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("correct horse", FAST), hash_password("correct horse", FAST)
    assert first != second and "correct horse" not in first
    assert first.startswith("$scrypt$ln=10,r=8,p=1$")
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("wrong horse", first)
    assert not needs_rehash(first, FAST) and needs_rehash(first)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$scrypt$ln=10,r=8,p=1$!!!$AAAA",
        "$scrypt$ln=99,r=8,p=1$AAAA$AAAA",
        "$argon2id$v=19$x",
    ],
)
def test_unreadable_stored_hashes_never_match(stored: str) -> None:
    assert not verify_password("anything", stored)


def test_password_check_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = hash_password("pw-123456", FAST)
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_password("pw-123456", stored)
    assert not verify_password("pw-654321", stored)
    assert len(calls) == 2


def test_default_parameters_are_documented_owasp_values() -> None:
    params = ScryptParams()
    assert (params.log_n, params.r, params.p) == (14, 8, 5)
    assert params.salt_bytes >= 16
    with pytest.raises(ValueError):
        ScryptParams(salt_bytes=8)
