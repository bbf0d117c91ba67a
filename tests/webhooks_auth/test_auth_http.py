"""The JWT middleware and the register/login APIs end to end: real HTTP on loopback, a real
Controller on a SQLite file, tokens from the header and the cookie (never the query string),
every kind of bad token answered 401 in the envelope, and no secret in the logs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

import reactive as r
from integrations.auth import AuthIntegration, ScryptParams, verify_password

from .conftest import Client, Serve

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

SECRET = "test-secret-" + "s" * 40
FAST = ScryptParams(log_n=10, r=8, p=1)
PASSWORD = "hunter2-correct-horse"


def make_auth(**options: Any) -> AuthIntegration:
    options.setdefault("password_params", FAST)
    return AuthIntegration(environ={"AUTH_JWT_SECRET": SECRET}, **options)


async def whoami(ctx: r.APIContext, params: Any) -> Any:
    """What the server handed on: the user id (and its type)."""
    return {"user_id": ctx.user_id, "type": type(ctx.user_id).__name__}


async def start(
    serve: Serve, auth: AuthIntegration | None = None
) -> tuple[Client, AuthIntegration]:
    auth = auth or make_auth()
    await auth.configure()
    apis = {
        **auth.create_apis(),
        "whoami": r.API(whoami),
        "public": r.API(whoami, allow_anonymous=True),
    }
    return await serve(apis, auth.create_middlewares()), auth


async def call(
    client: Client, name: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    response = await client.post(f"/api/{name}", json=body or {}, headers=headers or {})
    return response.status, await response.json()


async def register(client: Client, username: str = "ada", password: str = PASSWORD) -> Any:
    status, answer = await call(
        client, "auth.register", {"username": username, "password": password}
    )
    assert status == 200, answer
    return answer["user_id"]


async def login(client: Client, username: str = "ada", password: str = PASSWORD) -> str:
    status, answer = await call(client, "auth.login", {"username": username, "password": password})
    assert status == 200, answer
    token = answer["token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user_id: Any = 1, **override: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": str(user_id), "iat": now, "exp": now + 300, **override}


def assert_invalid_token(status: int, answer: Any) -> None:
    assert status == 401
    assert answer["error"]["code"] == "invalid_token"
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


async def test_register_login_and_bearer_token_identify_the_user(
    controller: r.Controller, serve: Serve
) -> None:
    client, _ = await start(serve)
    user_id = await register(client)
    token = await login(client)
    assert await call(client, "whoami", headers=bearer(token)) == (
        200,
        {"user_id": user_id, "type": "int"},
    )
    assert await call(client, "auth.me", headers=bearer(token)) == (
        200,
        {"user_id": user_id, "username": "ada"},
    )
    # The scheme name is case-insensitive.
    status, _ = await call(client, "whoami", headers={"Authorization": f"bearer {token}"})
    assert status == 200


async def test_login_answer_and_cookie_attributes(serve: Serve) -> None:
    client, auth = await start(serve, make_auth(token_ttl=900))
    user_id = await register(client)
    response = await client.post("/api/auth.login", json={"username": "ada", "password": PASSWORD})
    answer = await response.json()
    assert set(answer) == {"token", "token_type", "expires_in", "user_id"}
    assert (answer["token_type"], answer["expires_in"], answer["user_id"]) == (
        "Bearer",
        900,
        user_id,
    )
    cookie = response.cookies["auth_token"]
    assert cookie.value == answer["token"]
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Lax" and cookie["path"] == "/" and cookie["max-age"] == "900"
    assert auth.cookie_name == "auth_token"


async def test_cookie_token_is_accepted_and_logout_clears_it(serve: Serve) -> None:
    client, _ = await start(serve, make_auth(cookie_secure=False, cookie_name="sid"))
    user_id = await register(client)
    await login(client)  # the client's cookie jar keeps the cookie
    assert await call(client, "whoami") == (200, {"user_id": user_id, "type": "int"})
    status, _ = await call(client, "auth.logout")
    assert status == 200
    assert not [c for c in client.session.cookie_jar if c.key == "sid" and c.value]
    status, answer = await call(client, "whoami")
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


async def test_explicit_cookie_header_is_accepted(serve: Serve) -> None:
    client, auth = await start(serve)
    user_id = await register(client)
    token = auth.issue_token(user_id)
    status, answer = await call(client, "whoami", headers={"Cookie": f"auth_token={token}"})
    assert (status, answer["user_id"]) == (200, user_id)


async def test_a_query_string_token_is_ignored(serve: Serve) -> None:
    client, auth = await start(serve)
    user_id = await register(client)
    token = auth.issue_token(user_id)
    for name in ("auth_token", "token", "authToken", "access_token", "jwt"):
        response = await client.post(f"/api/whoami?{name}={token}", json={})
        answer = await response.json()
        assert (response.status, answer["error"]["code"]) == (401, "unauthorized")
        response = await client.post(f"/api/public?{name}={token}", json={})
        assert (await response.json())["user_id"] is None


async def test_no_token_leaves_the_request_anonymous(serve: Serve) -> None:
    client, _ = await start(serve)
    assert await call(client, "public") == (200, {"user_id": None, "type": "NoneType"})
    status, answer = await call(client, "whoami")
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    # Another scheme is not ours: anonymous, not refused.
    status, _ = await call(client, "public", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert status == 200


def bad_tokens(user_id: Any, token: str) -> dict[str, str]:
    header, payload, signature = token.split(".")
    now = int(time.time())
    forged_payload = b64url({**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": "999"})
    rs256_header = b64url({"alg": "RS256", "typ": "JWT"})
    none_header = b64url({"alg": "none", "typ": "JWT"})
    return {
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other secret": jwt.encode(claims(user_id), "x" * 40, "HS256"),
        "expired": jwt.encode(claims(user_id, iat=now - 600, exp=now - 1), SECRET, "HS256"),
        "nbf in the future": jwt.encode(claims(user_id, nbf=now + 120), SECRET, "HS256"),
        "iat in the future": jwt.encode(
            claims(user_id, iat=now + 120, exp=now + 600), SECRET, "HS256"
        ),
        "HS512 when only HS256": jwt.encode(claims(user_id), SECRET + "x" * 30, "HS512"),
        "RS256 header": f"{rs256_header}.{b64url(claims(user_id))}.{signature}",
        "alg none": f"{none_header}.{b64url(claims(user_id))}.",
        "alg none signed": f"{none_header}.{b64url(claims(user_id))}.{signature}",
        "no exp": jwt.encode({"sub": str(user_id), "iat": now}, SECRET, "HS256"),
        "integer sub": jwt.encode({**claims(user_id), "sub": user_id}, SECRET, "HS256"),
        "garbage": "not-a-jwt",
        "empty": "",
    }


async def test_bad_tokens_answer_401_invalid_token(serve: Serve) -> None:
    client, auth = await start(serve)
    user_id = await register(client)
    token = auth.issue_token(user_id)
    for what, bad in bad_tokens(user_id, token).items():
        for api in ("whoami", "public", "auth.login"):
            response = await client.post(f"/api/{api}", json={}, headers=bearer(bad))
            answer = await response.json()
            assert response.status == 401, (what, api, answer)
            assert_invalid_token(response.status, answer)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # The real token still works.
    assert (await call(client, "whoami", headers=bearer(token)))[0] == 200


async def test_bad_cookie_token_is_refused_and_cleared(serve: Serve) -> None:
    client, _ = await start(serve)
    user_id = await register(client)
    expired = jwt.encode(claims(user_id, iat=1, exp=2), SECRET, "HS256")
    response = await client.post(
        "/api/public", json={}, headers={"Cookie": f"auth_token={expired}"}
    )
    assert_invalid_token(response.status, await response.json())
    cleared = response.cookies["auth_token"]
    assert cleared.value == "" and cleared["max-age"] == "0"


async def test_hs512_is_accepted_when_allowed(serve: Serve) -> None:
    auth = make_auth(secret="y" * 64, algorithms=["HS512", "HS256"])
    client, _ = await start(serve, auth)
    user_id = await register(client)
    token = await login(client)
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    hs256 = jwt.encode(claims(user_id), "y" * 64, "HS256")
    for t in (token, hs256):
        assert (await call(client, "whoami", headers=bearer(t)))[1]["user_id"] == user_id


async def test_register_duplicate_is_409_and_concurrent_registers_store_one(
    controller: r.Controller, serve: Serve
) -> None:
    client, _ = await start(serve)
    await register(client)
    status, answer = await call(
        client, "auth.register", {"username": "ada", "password": "other-pass"}
    )
    assert (status, answer["error"]["code"]) == (409, "username_taken")
    results = await asyncio.gather(
        *(
            call(client, "auth.register", {"username": "bob", "password": PASSWORD})
            for _ in range(4)
        )
    )
    assert sorted(s for s, _ in results) == [200, 409, 409, 409]
    assert await controller.storage.count("User") == 2


async def test_register_validates_username_and_password(serve: Serve) -> None:
    client, _ = await start(serve)
    for username, password, code in [
        ("", PASSWORD, "invalid_username"),
        (" ada", PASSWORD, "invalid_username"),
        ("a" * 65, PASSWORD, "invalid_username"),
        ("ada\n", PASSWORD, "invalid_username"),
        ("ada", "short", "invalid_password"),
        ("ada", "p" * 1025, "invalid_password"),
    ]:
        status, answer = await call(
            client, "auth.register", {"username": username, "password": password}
        )
        assert (status, answer["error"]["code"]) == (400, code)


async def test_login_refuses_wrong_password_and_unknown_user_alike(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = await start(serve)
    await register(client)
    checked: list[str] = []
    import integrations.auth.integration as module

    def spy(password: str, stored: str) -> bool:
        checked.append(stored)
        return verify_password(password, stored)

    monkeypatch.setattr(module, "verify_password", spy)
    wrong = await call(client, "auth.login", {"username": "ada", "password": "not-the-password"})
    unknown = await call(client, "auth.login", {"username": "nobody", "password": PASSWORD})
    for status, answer in (wrong, unknown):
        assert (status, answer["error"]["code"]) == (401, "invalid_credentials")
    assert wrong[1] == unknown[1]
    # The unknown user was checked against a dummy scrypt hash too (same cost, no shortcut).
    assert len(checked) == 2 and all(h.startswith("$scrypt$ln=10,r=8,p=1$") for h in checked)


async def test_passwords_are_stored_salted_hashed_and_never_returned(
    controller: r.Controller, serve: Serve
) -> None:
    client, _ = await start(serve, AuthIntegration(environ={"AUTH_JWT_SECRET": SECRET}))
    status, answer = await call(client, "auth.register", {"username": "ada", "password": PASSWORD})
    assert status == 200 and set(answer) == {"user_id", "username"}
    await register(client, "bob", PASSWORD)
    rows = await controller.storage.find("User", None, ["username", "password_hash"])
    hashes = [row["password_hash"] for row in rows]
    assert len(set(hashes)) == 2  # same password, different salts
    for stored in hashes:
        assert PASSWORD not in stored and stored.startswith("$scrypt$ln=14,r=8,p=5$")
        assert verify_password(PASSWORD, stored)
    token = await login(client)
    status, me = await call(client, "auth.me", headers=bearer(token))
    assert "password_hash" not in json.dumps(me) and "$scrypt$" not in json.dumps(me)


async def test_no_password_hash_or_token_is_logged(
    controller: r.Controller, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = await start(serve)
    wrong = "wrong-password-xyz"
    await register(client)
    token = await login(client)
    await call(client, "auth.login", {"username": "ada", "password": wrong})
    await call(client, "auth.login", {"username": "ghost", "password": wrong})
    await call(client, "auth.register", {"username": "ada", "password": wrong})
    await call(client, "whoami", headers=bearer(token))
    bad = jwt.encode(claims(1, exp=1, iat=0), SECRET, "HS256")
    await call(client, "whoami", headers=bearer(bad))
    row = await controller.storage.find_one("User", {"username": "ada"}, ["password_hash"])
    assert row is not None
    secrets = [PASSWORD, wrong, row["password_hash"], token, bad, SECRET]
    salt_and_key = row["password_hash"].split("$")[-2:]
    assert caplog.records, "the auth flow logs something"
    logged = caplog.text + "".join(repr(rec.args) + repr(rec.__dict__) for rec in caplog.records)
    for secret in [*secrets, *salt_and_key]:
        assert secret not in logged
    assert any("logged in" in rec.getMessage() for rec in caplog.records)
    assert any("login refused" in rec.getMessage() for rec in caplog.records)


async def test_cookie_is_only_set_on_success_and_not_when_disabled(serve: Serve) -> None:
    client, _ = await start(serve, make_auth(set_cookie_on_login=False))
    await register(client)
    response = await client.post("/api/auth.login", json={"username": "ada", "password": PASSWORD})
    assert response.status == 200 and "auth_token" not in response.cookies
    client2, _ = await start(serve)
    response = await client2.post(
        "/api/auth.login", json={"username": "ada", "password": "nope-nope"}
    )
    assert response.status == 401 and "auth_token" not in response.cookies


async def test_with_the_real_server(controller: r.Controller) -> None:
    """The same integration mounted on ``reactive.server.create_app`` (when it exists)."""
    server = pytest.importorskip("reactive.server")
    from aiohttp.test_utils import TestClient, TestServer

    auth = make_auth()
    await auth.configure()
    app: web.Application = server.create_app(
        controller, {**auth.create_apis(), "whoami": r.API(whoami)}, auth.create_middlewares()
    )
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        user_id = await register(client)
        token = await login(client)
        assert (await call(client, "whoami", headers=bearer(token)))[1]["user_id"] == user_id
        status, answer = await call(client, "whoami", headers=bearer(token + "x"))
        assert_invalid_token(status, answer)
        status, answer = await call(
            client, "auth.register", {"username": "ada", "password": PASSWORD}
        )
        assert (status, answer["error"]["code"]) == (409, "username_taken")
        status, answer = await call(client, "whoami")
        assert status == 401
    finally:
        await client.close()


async def test_middleware_passes_other_responses_through(serve: Serve) -> None:
    """A handler's own error response (aiohttp exception) is left alone by the middleware."""

    @web.middleware
    async def forbid(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/forbidden"):
            raise web.HTTPForbidden()
        return await handler(request)

    auth = make_auth()
    await auth.configure()
    client = await serve(
        {"public": r.API(whoami, allow_anonymous=True)}, [*auth.create_middlewares(), forbid]
    )
    response = await client.post("/api/forbidden", json={})
    assert response.status == 403
