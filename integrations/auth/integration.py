"""``AuthIntegration``: username/password accounts and JWT sessions for the aiohttp server.

- :func:`auth_entities` builds the ``User`` entity (``username`` unique and indexed,
  ``password_hash``, ``created_at``); an application that has its own user entity adds
  :func:`auth_properties` to it instead and passes the entity (and :class:`UserFields` when the
  names differ) to the integration.
- The middleware (``create_middlewares()``) reads a token from ``Authorization: Bearer <token>``,
  else from the HttpOnly cookie (default ``auth_token``), **never** from the query string (URLs
  end up in logs). A valid token puts the user id on ``request["user_id"]`` (and the claims on
  ``request["auth_claims"]``); no token leaves the request anonymous (the server answers 401 for
  APIs that are not ``allow_anonymous``); a refused token (tampered, expired, not yet valid,
  disallowed algorithm, ``alg: none``) is answered at once with 401 ``{"error": {"code":
  "invalid_token", ...}}``, and when it came from the cookie the answer also clears the cookie,
  so that a browser holding a stale cookie can log in again.
- A token names its user by ``sub``: the canonical decimal form of the user's id (``"1"``, never
  ``"01"`` or ``"1 "``; :func:`parse_subject`), and the user must still exist (one read per
  authenticated request); otherwise the token is refused like a tampered one (401).
- APIs: ``auth.register`` {username, password} -> ``{"user_id", "username"}`` (409
  ``username_taken``); ``auth.login`` {username, password} -> ``{"token", "token_type",
  "expires_in", "user_id"}`` (401 ``invalid_credentials``); ``auth.logout`` clears the cookie;
  ``auth.me`` -> ``{"user_id", "username"}``.
- Usernames are stored and looked up in Unicode NFKC form, so a fullwidth or other
  compatibility look-alike of a name *is* that name (a duplicate at registration, the same
  account at login); with ``case_insensitive_usernames=True`` they are case-folded as well
  (``Ada`` and ``ada`` are one account, stored as ``ada``).

**Floods.** Each login or registration hashes a password (about 0.2 s of CPU, in a worker
thread). At most ``max_concurrent_hashes`` (default: the number of CPUs) run at once and
``max_waiting_hashes`` (default: four per slot, so a wait stays around a second) wait; beyond
that the answer is 503 with ``Retry-After`` at once. Attempts are limited per client address
(``address_limit`` per ``limit_window`` seconds, login and registration together) and per
username (``username_limit`` logins per window; a successful login resets it): beyond, 429
``too_many_requests`` with ``Retry-After``, before any hash is computed. An unknown username
costs a hash like a known one, so neither the time nor the limits tell who exists. The client
address is ``request.remote``; behind a proxy pass ``client_address=`` (a function of the
request) that reads the address the proxy reports. Limits are per process and in memory.

**How the login cookie is set.** API handlers return JSON bodies, so ``auth.login`` leaves the new
token on the request (``request["auth.set_token"]``) and the auth middleware, on the way out, sets
``Set-Cookie: auth_token=...; HttpOnly; SameSite=Lax; Path=/; Max-Age=<ttl>`` (``Secure`` unless
``cookie_secure=False``) on the successful response. The cookie therefore needs the middleware to
be mounted, which token checking needs anyway. SameSite=Lax keeps the cookie off cross-site POSTs
but not off *same-site* ones (another port, a sibling subdomain): against those the server
(``reactive.server``) refuses foreign ``Origin``s and JSON bodies not sent as
``application/json``. Tokens are stateless: logout clears the
cookie, but a copied token stays valid until it expires (keep the TTL short).

Secrets: the password, its hash and tokens are never logged, and no API returns the hash.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

import reactive as r
from integrations.auth.limits import AttemptLimiter, GateFull, HashGate
from integrations.auth.passwords import DEFAULT_PARAMS, ScryptParams, hash_password, verify_password
from integrations.auth.tokens import (
    TokenError,
    TokenSettings,
    decode_token,
    issue_token,
    parse_subject,
)
from integrations.base import EnvVar, Integration
from integrations.replay import TimeSource
from reactive import record_name
from reactive.server import CONTROLLER_KEY
from storage import UniqueViolationError

log = logging.getLogger("integrations.auth")

SECRET_ENV = "AUTH_JWT_SECRET"
TTL_ENV = "AUTH_TOKEN_TTL_SECONDS"
USER_ID = "user_id"
CLAIMS = "auth_claims"
SET_TOKEN = "auth.set_token"
CLEAR_TOKEN = "auth.clear_token"
MAX_USERNAME = 64
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

# Answers of the password-hashing APIs when attempts or hashing are limited (documented).
_BUSY = {
    429: "Too many attempts: retry after Retry-After seconds",
    503: "Every password hashing slot is busy: retry after Retry-After seconds",
}


@attrs.frozen
class UserFields:
    """Field names of the user entity the integration reads and writes."""

    username: str = "username"
    password_hash: str = "password_hash"
    created_at: str = "created_at"


def auth_properties(fields: UserFields | None = None) -> list[r.Property]:
    """The properties the integration needs, to add to an existing user entity."""
    f = fields or UserFields()
    return [
        r.Property(f.username, "string", index=True, unique=True),
        r.Property(f.password_hash, "string"),
        r.Property(f.created_at, "timestamp", default=lambda: datetime.now(UTC)),
    ]


def auth_entities(user_entity_name: str = "User", fields: UserFields | None = None) -> r.Entity:
    """A user entity with a unique, indexed username and the password hash."""
    return r.Entity(user_entity_name, auth_properties(fields))


class AuthIntegration(Integration):
    """JWT sessions and username/password accounts (see the module documentation)."""

    name = "auth"
    env_vars = (
        EnvVar(
            SECRET_ENV,
            "HMAC key that signs and verifies session tokens (JWT); at least 32 bytes for "
            "HS256 (48 for HS384, 64 for HS512). Changing it logs every user out.",
            "generate it yourself, e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(64))', and keep it in your secret store",
        ),
        EnvVar(
            TTL_ENV,
            "lifetime of issued session tokens in seconds (default 3600)",
            "your choice",
            required=False,
            secret=False,
        ),
    )

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        secret: str | None = None,
        user_entity: r.Entity | str = "User",
        fields: UserFields | None = None,
        algorithms: Sequence[str] = ("HS256",),
        token_ttl: float | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0.0,
        cookie_name: str = "auth_token",
        cookie_secure: bool = True,
        set_cookie_on_login: bool = True,
        password_params: ScryptParams = DEFAULT_PARAMS,
        user_id_from_subject: Callable[[str], Any] = parse_subject,
        api_prefix: str = "auth",
        case_insensitive_usernames: bool = False,
        max_concurrent_hashes: int | None = None,
        max_waiting_hashes: int | None = None,
        address_limit: int = 30,
        username_limit: int = 10,
        limit_window: float = 60.0,
        limit_clock: TimeSource = time.monotonic,
        client_address: Callable[[web.Request], str | None] | None = None,
    ):
        super().__init__(environ)
        self._secret = secret
        self.user_entity = record_name(user_entity)
        self.fields = fields or UserFields()
        self.settings = TokenSettings(
            algorithms=tuple(algorithms),
            ttl=token_ttl if token_ttl is not None else self._ttl_from_env(),
            issuer=issuer,
            audience=audience,
            leeway=leeway,
        )
        if self.settings.ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self.cookie_name = cookie_name
        self.cookie_secure = cookie_secure
        self.set_cookie_on_login = set_cookie_on_login
        self.password_params = password_params
        self.user_id_from_subject = user_id_from_subject
        self.api_prefix = api_prefix
        self.case_insensitive_usernames = case_insensitive_usernames
        slots = max_concurrent_hashes or os.cpu_count() or 1
        waiting = 4 * slots if max_waiting_hashes is None else max_waiting_hashes
        self.hash_gate = HashGate(slots, waiting)
        self.address_limiter = AttemptLimiter(address_limit, limit_window, clock=limit_clock)
        self.username_limiter = AttemptLimiter(username_limit, limit_window, clock=limit_clock)
        self.client_address = client_address or _remote_address
        self._controller: r.Controller | None = None
        self._dummy_hash: str | None = None

    # -- configuration ---------------------------------------------------------------------

    def _ttl_from_env(self) -> float:
        raw = self.env(TTL_ENV)
        if not raw:
            return 3600.0
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{TTL_ENV} must be a number of seconds") from None

    def missing_environment(self) -> list[EnvVar]:
        missing = super().missing_environment()
        return [v for v in missing if not (v.name == SECRET_ENV and self._secret)]

    async def configure(self) -> None:
        await super().configure()
        self._check_secret(self.secret)

    def _check_secret(self, secret: str) -> None:
        need = self.settings.min_secret_bytes
        if len(secret.encode("utf-8")) < need:
            raise ValueError(
                f"{SECRET_ENV} is too short for {', '.join(self.settings.algorithms)}: "
                f"use at least {need} bytes"
            )

    @property
    def secret(self) -> str:
        """The signing secret (the ``secret`` argument, else ``AUTH_JWT_SECRET``)."""
        value = self._secret or self.env(SECRET_ENV)
        if not value:
            raise RuntimeError(f"{SECRET_ENV} is not set")
        return value

    async def setup(self, controller: r.Controller) -> None:
        self._controller = controller

    # -- tokens ----------------------------------------------------------------------------

    def issue_token(self, user_id: Any) -> str:
        """A session token for ``user_id``."""
        self._check_secret(self.secret)
        return issue_token(self.secret, user_id, self.settings)

    def verify_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises :class:`TokenError` otherwise."""
        return decode_token(token, self.secret, self.settings)

    def token_from(self, request: web.Request) -> tuple[str | None, str]:
        """(token, where it came from: "header" | "cookie" | ""). The query string is never
        read. An ``Authorization`` header with another scheme than Bearer is not ours."""
        authorization = request.headers.get("Authorization")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                return value.strip(), "header"
        cookie = request.cookies.get(self.cookie_name)
        if cookie:
            return cookie, "cookie"
        return None, ""

    # -- middleware ------------------------------------------------------------------------

    def create_middlewares(self) -> list[Any]:
        return [self.middleware]

    @property
    def middleware(self) -> Middleware:
        """The aiohttp middleware (see the module documentation)."""

        @web.middleware
        async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            token, source = self.token_from(request)
            if token is not None:
                try:
                    claims = self.verify_token(token)
                    user_id = await self._existing_user(request, claims["sub"])
                except TokenError as exc:
                    log.info("auth: refused a token from the %s: %s", source, exc)
                    return self._refuse(str(exc), clear_cookie=source == "cookie")
                request[USER_ID] = user_id
                request[CLAIMS] = claims
            response = await handler(request)
            self._apply_cookie(request, response)
            return response

        return auth_middleware

    async def _existing_user(self, request: web.Request, subject: str) -> Any:
        """The stored id of the user ``subject`` names; :class:`TokenError` when the subject
        is not a user id in canonical form or the user does not exist (any more)."""
        try:
            user_id = self.user_id_from_subject(subject)
        except (TokenError, ValueError):
            raise TokenError("token subject is not a user id") from None
        controller = request.app.get(CONTROLLER_KEY) or self._controller
        if controller is None:
            raise RuntimeError(
                "the auth middleware needs the controller: serve it with "
                "reactive.server.create_app, or call `await auth.setup(controller)`"
            )
        user = await controller.storage.find_one(self.user_entity, {"id": user_id}, ["id"])
        if user is None:
            raise TokenError("token names no existing user")
        return user["id"]

    def _refuse(self, message: str, clear_cookie: bool) -> web.Response:
        response = web.json_response(
            {"error": {"code": "invalid_token", "message": message}},
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
        if clear_cookie:
            response.del_cookie(self.cookie_name, path="/")
        return response

    def _apply_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        if response.prepared or response.status >= 400:
            return
        token = request.get(SET_TOKEN)
        if isinstance(token, str):
            response.set_cookie(
                self.cookie_name,
                token,
                max_age=int(self.settings.ttl),
                path="/",
                httponly=True,
                samesite="Lax",
                secure=self.cookie_secure,
            )
        elif request.get(CLEAR_TOKEN):
            response.del_cookie(self.cookie_name, path="/")

    # -- APIs ------------------------------------------------------------------------------

    def create_apis(self) -> dict[str, r.API]:
        p = self.api_prefix
        # The bounds the handlers check, declared so that the server and the OpenAPI document
        # state them too (the printable/no-surrounding-spaces rule stays the handler's).
        username = r.Param("string", min_length=1, max_length=MAX_USERNAME)
        login = {"username": username, "password": r.Param("string", max_length=MAX_PASSWORD)}
        new = {
            "username": username,
            "password": r.Param("string", min_length=MIN_PASSWORD, max_length=MAX_PASSWORD),
        }
        return {
            f"{p}.register": r.API(
                self._register,
                new,
                allow_anonymous=True,
                description=(
                    f"Create an account. username: 1 to {MAX_USERNAME} printable characters, "
                    f"no surrounding spaces; password: {MIN_PASSWORD} to {MAX_PASSWORD} "
                    "characters"
                ),
                errors={409: "The username is already registered", **_BUSY},
            ),
            f"{p}.login": r.API(
                self._login,
                login,
                allow_anonymous=True,
                description="Get a session token",
                errors=_BUSY,
            ),
            f"{p}.logout": r.API(
                self._logout, allow_anonymous=True, description="Clear the session cookie"
            ),
            f"{p}.me": r.API(self._me, description="The authenticated user"),
        }

    def canonical_username(self, username: str) -> str:
        """The form a username is stored and looked up in: NFKC, case-folded when the
        integration is case-insensitive."""
        canonical = unicodedata.normalize("NFKC", username)
        if self.case_insensitive_usernames:
            canonical = unicodedata.normalize("NFKC", canonical.casefold())
        return canonical

    async def _gated(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.hash_gate.run(function, *args)
        except GateFull as exc:
            log.info("auth: refused a request, every password hash slot is taken")
            raise web.HTTPServiceUnavailable(
                text=str(exc), headers={"Retry-After": str(exc.retry_after)}
            ) from None

    async def _hash(self, password: str) -> str:
        result: str = await self._gated(hash_password, password, self.password_params)
        return result

    def _limit(self, ctx: r.APIContext, username: str | None) -> None:
        """Count this attempt against the client's address (and ``username``); 429 beyond."""
        address = self.client_address(ctx.request) if ctx.request is not None else None
        checks = [(self.address_limiter, f"address {address}", address)]
        if username is not None:
            checks.append((self.username_limiter, "this username", username))
        for limiter, what, key in checks:
            if key is None:
                continue
            wait = limiter.hit(key)
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                log.info("auth: too many attempts from %s", what)  # not per-request noise
                raise web.HTTPTooManyRequests(
                    text=f"too many attempts from {what}; retry in {seconds} s",
                    headers={"Retry-After": str(seconds)},
                )

    async def _register(self, ctx: r.APIContext, params: Any) -> dict[str, Any]:
        username, password = _credentials(params)
        username = self.canonical_username(username)
        _check_new_credentials(username, password)
        self._limit(ctx, None)
        password_hash = await self._hash(password)
        f = self.fields

        def create(tx: r.TransactionContext) -> Any:
            if tx.storage.find_one(self.user_entity, {f.username: username}) is not None:
                return None
            return tx.storage.create(
                self.user_entity, {f.username: username, f.password_hash: password_hash}
            )["id"]

        try:
            user_id, _ = await ctx.controller.transact(create)
        except UniqueViolationError:
            user_id = None
        if user_id is None:
            raise r.APIError(409, "username_taken", "this username is already registered")
        log.info("auth: registered user %s", user_id)
        return {"user_id": user_id, "username": username}

    async def _login(self, ctx: r.APIContext, params: Any) -> dict[str, Any]:
        username, password = _credentials(params)
        username = self.canonical_username(username)
        self._limit(ctx, username)
        f = self.fields
        user = await ctx.controller.storage.find_one(
            self.user_entity, {f.username: username}, ["id", f.password_hash]
        )
        # An unknown user costs one hash too, so the answer time does not reveal who exists.
        stored = user[f.password_hash] if user is not None else await self._dummy()
        matches = await self._gated(verify_password, password, stored or "")
        if user is None or not matches:
            log.info("auth: login refused")
            raise r.APIError(401, "invalid_credentials", "wrong username or password")
        self.username_limiter.reset(username)
        token = self.issue_token(user["id"])
        if self.set_cookie_on_login and ctx.request is not None:
            ctx.request[SET_TOKEN] = token
        log.info("auth: user %s logged in", user["id"])
        return {
            "token": token,
            "token_type": "Bearer",
            "expires_in": int(self.settings.ttl),
            "user_id": user["id"],
        }

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _logout(self, ctx: r.APIContext, params: Any) -> dict[str, Any]:
        if ctx.request is not None:
            ctx.request[CLEAR_TOKEN] = True
        return {"ok": True}

    async def _me(self, ctx: r.APIContext, params: Any) -> dict[str, Any]:
        if ctx.user_id is None:
            raise r.APIError(401, "unauthenticated", "log in first")
        f = self.fields
        user = await ctx.controller.storage.find_one(
            self.user_entity, {"id": ctx.user_id}, ["id", f.username]
        )
        if user is None:
            raise r.APIError(401, "unknown_user", "the token names no existing user")
        return {"user_id": user["id"], "username": user[f.username]}


def _remote_address(request: web.Request) -> str | None:
    return request.remote


def _credentials(params: Any) -> tuple[str, str]:
    if not isinstance(params, Mapping):
        raise r.APIError(400, "invalid_params", "username and password are required")
    username, password = params.get("username"), params.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise r.APIError(400, "invalid_params", "username and password must be strings")
    if len(password) > MAX_PASSWORD:
        raise r.APIError(400, "invalid_password", f"at most {MAX_PASSWORD} characters")
    return username, password


def _check_new_credentials(username: str, password: str) -> None:
    if (
        not username
        or len(username) > MAX_USERNAME
        or username != username.strip()
        or not username.isprintable()
    ):
        raise r.APIError(
            400,
            "invalid_username",
            f"1 to {MAX_USERNAME} printable characters, no surrounding spaces",
        )
    if len(password) < MIN_PASSWORD:
        raise r.APIError(400, "invalid_password", f"at least {MIN_PASSWORD} characters")
