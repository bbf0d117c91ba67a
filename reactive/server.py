"""The HTTP face of a controller: interactions, custom APIs, OpenAPI and health, on aiohttp.

>>> app = create_app(controller, apis={"hello": r.API(hello)}, middlewares=[auth])
>>> web.run_app(app)

Routes
    ``POST /api/{name}``          body: a JSON object of the API's params -> the handler's value
    ``POST /interaction/{name}``  body: ``{"payload": {...}}`` -> ``{"data": ...}``
    ``GET /openapi.json``         an OpenAPI 3.1 document of all of the above
    ``GET /health``               ``{"status": "ok"}``; 503 ``{"status": "degraded", "storage":
                                  "cannot write: <SQLite's reason>"}`` while the storage cannot
                                  write (a full disk, a read-only file; see
                                  ``SQLiteStorage.write_fault``), until a write commits again

Authentication is the app's middlewares' job: one of them sets ``request["user_id"]``. APIs not
marked ``allow_anonymous`` and interactions not listed in ``anonymous_interactions`` answer 401
without it. A dispatch runs as user ``{"id": request["user_id"]}``.

What a browser may send from elsewhere is refused (see :func:`create_app`): a state-changing
request whose ``Origin`` is not the server's own host nor in ``allowed_origins`` (403
``cross_origin``; without ``Origin``, a ``Sec-Fetch-Site`` other than ``same-origin``/``none``),
and a JSON body not sent as ``application/json`` (415). A body must arrive within
``body_timeout`` (408, connection closed) and nest at most ``max_json_depth`` deep (400). A
client that disconnects is logged at debug level.

Every error is ``{"error": {"code": ..., "message": ...}}`` (plus ``details`` for some rejected
dispatches) with a real status code:

    400  malformed JSON (``invalid_json``), a body that is not a JSON object (``invalid_body``),
         bad API params (``missing_param``, ``unknown_param``, ``invalid_param``), a bad
         interaction payload (the engine's ``payload_*`` code) or unknown top-level body fields
    401  no authenticated user (``unauthorized``), or a middleware refused the credentials
    403  forbidden (an ``APIError(403, ...)`` or ``web.HTTPForbidden``), or a request from a
         foreign origin (``cross_origin``)
    404  unknown API (``unknown_api``), interaction (``unknown_interaction``) or route, or a
         payload reference to a record that does not exist (``payload_ref_missing``)
    405  wrong method for a route (``method_not_allowed``)
    408  the body did not arrive within ``body_timeout`` (``request_timeout``)
    409  the dispatch would store a value a unique field already holds (``not_unique``)
    413  body larger than ``max_body_size`` (``body_too_large``)
    415  a JSON body without ``Content-Type: application/json`` (``unsupported_media_type``)
    422  the engine rejected the dispatch: a condition (``condition_rejected`` or the condition's
         own code), a computation (``computation_error``) or the data (``invalid_value``,
         ``missing_reference``, ``missing_value``: a non-null field left without a value);
         messages say what was wrong in words, never a class name
    500  anything unexpected (``internal_error``): the traceback is logged on the
         ``reactive.server`` logger, the answer says nothing more. A condition or ``resolve``
         that *raised* is such a bug too (``condition_error``, ``resolve_error``).
    503  the database stayed locked by another process for the storage's ``busy_timeout``
         (``storage_busy``, a ``StorageBusyError``): nothing was written; a ``Retry-After``
         header and ``details.retry_after`` say when to try again (seconds). The wait itself
         never blocks the server: other requests are answered meanwhile. Also
         ``storage_conflict`` (a ``ConflictError``): the transaction kept conflicting with
         concurrent ones (PostgreSQL serialization failures or deadlocks) past the storage's
         ``attempts``; nothing was written, ``Retry-After: 1``.

``r.APIError(status, code, message)`` and aiohttp's ``web.HTTPException`` raised anywhere (a
handler or a middleware) become the envelope with their status; the error middleware is the
outermost one, so user middlewares run inside it, in the order given.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from reactive.api import API, APIContext, APIError
from reactive.controller import Controller
from reactive.errors import ModelError
from reactive.interaction import DispatchError
from reactive.openapi import build_openapi
from reactive.wire import (
    DEFAULT_MAX_JSON_DEPTH,
    check_params,
    decode_payload,
    dump_json,
    parse_object,
)
from storage import ConflictError, StorageBusyError

log = logging.getLogger("reactive.server")


def silence_own_request_key_warnings() -> None:
    """The contract's request keys are strings ("user_id", "raw_body", "webhook"); aiohttp
    recommends RequestKey objects and warns once per str key. That warning is about this
    package's choice, not the application's code: silence it for keys this package sets only
    (installed on import; application code setting str keys is still warned)."""
    warnings.filterwarnings(
        "ignore", category=web.NotAppKeyWarning, module=r"(reactive|integrations)(\.|$)"
    )


silence_own_request_key_warnings()

CONTROLLER_KEY: web.AppKey[Controller] = web.AppKey("reactive.controller", Controller)
"""``app[CONTROLLER_KEY]`` is the controller the app serves."""

RAW_BODY = "raw_body"
"""A raw API finds the request body, read once, at ``ctx.request["raw_body"]`` (bytes);
``await ctx.request.read()`` returns the same bytes."""

DEFAULT_MAX_BODY_SIZE = 1_048_576

DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds a request body may take to arrive in full (408 and the connection closed after)."""

# Methods that cannot change state; every other one passes the origin check.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}

_NAME = re.compile(r"^[A-Za-z0-9_.:~-]+$")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# Dispatch error codes that mean the application's own code failed, not the request.
_SERVER_FAULTS = frozenset(
    {
        "condition_error",
        "condition_invalid_result",
        "resolve_error",
        "not_set_up_error",
        "transaction_error",
        "schema_error",
        "storage_error",
    }
)

_INTERNAL_MESSAGE = "internal server error"


# -- the envelope ------------------------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``{"error": {"code", "message"[, "details"]}}`` with ``status``."""
    error: dict[str, Any] = {"code": code, "message": message}
    body: bytes | None = None
    if details:
        try:
            body = dump_json({"error": {**error, "details": dict(details)}})
        except (TypeError, ValueError):
            body = None  # details that JSON cannot carry are left out
    if body is None:
        body = dump_json({"error": error})
    response = web.Response(
        status=status, body=body, content_type="application/json", headers=headers
    )
    if status == 401 and hdrs.WWW_AUTHENTICATE not in response.headers:
        response.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
    return response


def json_response(value: Any, status: int = 200) -> web.Response:
    """A JSON answer; datetimes and other engine values are encoded (:func:`dump_json`)."""
    return web.Response(status=status, body=dump_json(value), content_type="application/json")


def _internal_error() -> web.Response:
    return error_response(500, "internal_error", _INTERNAL_MESSAGE)


def _from_api_error(request: web.Request, exc: APIError) -> web.Response:
    status = exc.status if isinstance(exc.status, int) else 0
    if not 400 <= status <= 599:
        log.error(
            "APIError with status %r on %s %s; answering 500",
            exc.status,
            request.method,
            request.path,
        )
        return _internal_error()
    details = exc.details if isinstance(exc, _WithDetails) else None
    return error_response(status, str(exc.code), str(exc.message), details)


def _from_http_exception(
    request: web.Request, exc: web.HTTPException, max_body_size: int
) -> web.Response:
    status = exc.status
    code = _STATUS_CODES.get(status, f"http_{status}")
    default_text = f"{status}: {exc.reason}"
    message = exc.text if exc.text and exc.text != default_text else exc.reason
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        message = f"request body is larger than the limit of {max_body_size} bytes"
    elif isinstance(exc, web.HTTPMethodNotAllowed) and message == exc.reason:
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    elif status == 404 and message == exc.reason:
        message = f"no route for {request.method} {request.path}"
    elif status == 500:
        message = _INTERNAL_MESSAGE
    headers = {
        name: value
        for name, value in exc.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    return error_response(status, code, message, headers=headers)


async def _answer_and_hang_up(request: web.Request, response: web.Response) -> None:
    """Send ``response`` and close the connection at once: the rest of a body that is late may
    never come, and aiohttp would otherwise keep reading it (its lingering time) first."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()


def _client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed (a handler's own outgoing connection failing
    is a ConnectionError too, and that one is a server-side error)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _busy(request: web.Request, exc: StorageBusyError) -> web.Response:
    log.warning("%s %s answered 503: %s", request.method, request.path, exc)
    retry = str(exc.retry_after)
    return error_response(
        503,
        "storage_busy",
        f"the database is locked by another writer; nothing was written, try again in {retry} s",
        {"retry_after": exc.retry_after},
        headers={hdrs.RETRY_AFTER: retry},
    )


def _conflict(request: web.Request, exc: ConflictError) -> web.Response:
    log.warning("%s %s answered 503: %s", request.method, request.path, exc)
    return error_response(
        503,
        "storage_conflict",
        f"the write conflicted with concurrent ones {exc.attempts} times; nothing was written, "
        "try again in 1 s",
        {"retry_after": 1, "attempts": exc.attempts},
        headers={hdrs.RETRY_AFTER: "1"},
    )


def _error_middleware(max_body_size: int) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except APIError as exc:
            return _from_api_error(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are answers, not errors
            if exc.status >= 500 and exc.status != 503:  # 503: a deliberate "busy, retry"
                log.error("%s %s answered %s: %s", request.method, request.path, exc.status, exc)
            response = _from_http_exception(request, exc, max_body_size)
            if exc.status == 408:
                await _answer_and_hang_up(request, response)
            return response
        except StorageBusyError as exc:
            return _busy(request, exc)
        except ConflictError as exc:
            return _conflict(request, exc)
        except Exception as exc:
            if isinstance(exc, ConnectionError) and _client_gone(request):
                # The client went away (mid-body, or before the answer): nothing is wrong on
                # this side, so no error and no traceback. The answer (nginx's 499) is never
                # delivered; it names the outcome in the access log. Raising instead would make
                # aiohttp log an ERROR with the traceback.
                log.debug("%s %s: the client disconnected (%s)", request.method, request.path, exc)
                return web.Response(status=499, reason="Client Closed Request")
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _internal_error()

    return errors


def _dispatch_failure(error: DispatchError) -> Exception:
    code = error.code
    if isinstance(error.cause, StorageBusyError | ConflictError):
        return error.cause  # the error middleware answers 503 with Retry-After
    if code == "unknown_interaction":
        return APIError(404, code, error.message)
    if code == "not_unique":
        return _WithDetails(409, code, error.message, error.details)
    if code == "payload_ref_missing":
        # Well formed, but the referenced record does not exist: like an unknown route.
        return _WithDetails(404, code, error.message, error.details)
    if code.startswith("payload_"):
        return _WithDetails(400, code, error.message, error.details)
    if code in _SERVER_FAULTS:
        cause = error.cause
        log.error(
            "interaction %s failed on the server side (%s): %s",
            error.interaction,
            code,
            error.message,
            exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None,
        )
        return APIError(500, "internal_error", _INTERNAL_MESSAGE)
    return _WithDetails(422, code, error.message, error.details)


class _WithDetails(APIError):
    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any]):
        super().__init__(status, code, message)
        self.details = dict(details)


# -- the routes --------------------------------------------------------------------------------


class _Routes:
    def __init__(
        self,
        controller: Controller,
        apis: Mapping[str, API],
        anonymous_interactions: Collection[str],
        openapi: dict[str, Any],
        body_timeout: float,
        max_json_depth: int,
    ):
        self.controller = controller
        self.apis = dict(apis)
        self.anonymous_interactions = frozenset(anonymous_interactions)
        self.openapi_body = dump_json(openapi)
        self.body_timeout = body_timeout
        self.max_json_depth = max_json_depth

    async def _body(self, request: web.Request, what: str, json_body: bool) -> bytes:
        """The request body, read within ``body_timeout`` (else 408). A JSON body must say so
        (``Content-Type: application/json``, or ``application/<x>+json``), else 415: browsers
        send ``text/plain`` and form types cross-origin without asking, JSON they do not. An
        empty body needs no type (nothing is parsed; it counts as ``{}``)."""
        declared = request.headers.get(hdrs.CONTENT_TYPE)
        if json_body and declared is not None and not _is_json(request.content_type):
            raise _unsupported_media_type(what, request.content_type)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {self.body_timeout:g} s"
            ) from None
        if json_body and declared is None and body:
            raise _unsupported_media_type(what, "none")
        return body

    async def api(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        api = self.apis.get(name)
        if api is None:
            known = ", ".join(sorted(self.apis)) or "none"
            raise APIError(404, "unknown_api", f"unknown API {name!r} (known: {known})")
        user_id = request.get("user_id")
        if user_id is None and not api.allow_anonymous:
            raise APIError(401, "unauthorized", f"API {name} needs an authenticated user")
        body = await self._body(request, f"the body of API {name}", json_body=not api.raw)
        params: dict[str, Any] | None
        if api.raw:
            request[RAW_BODY] = body
            params = None
        else:
            params = parse_object(body, f"the body of API {name}", self.max_json_depth)
            check_params(name, api.params, params)
        ctx = APIContext(self.controller, user_id=user_id, request=request)
        result = await api.handler(ctx, params)
        if isinstance(result, web.StreamResponse):
            return result  # a handler that shapes its own answer (a webhook's plain "ok")
        return json_response(result)

    async def interaction(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        interaction = self.controller.interactions.get(name)
        if interaction is None:
            known = ", ".join(sorted(self.controller.interactions)) or "none"
            raise APIError(
                404, "unknown_interaction", f"unknown interaction {name!r} (known: {known})"
            )
        user_id = request.get("user_id")
        if user_id is None and name not in self.anonymous_interactions:
            raise APIError(401, "unauthorized", f"interaction {name} needs an authenticated user")
        what = f"the body of interaction {name}"
        body = parse_object(
            await self._body(request, what, json_body=True), what, self.max_json_depth
        )
        extra = sorted(set(body) - {"payload"})
        if extra:
            raise APIError(
                400,
                "invalid_body",
                f"unknown field(s) {', '.join(map(repr, extra))}; "
                'the body is {"payload": {...}}',
            )
        payload = body.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise APIError(400, "invalid_body", f"{name}: payload must be a JSON object")
        payload = decode_payload(interaction, payload)
        user = {"id": user_id} if user_id is not None else None
        result = await self.controller.dispatch(name, user=user, payload=payload)
        if result.error is not None:
            raise _dispatch_failure(result.error)
        return json_response({"data": result.data})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.openapi_body, content_type="application/json")

    async def health(self, request: web.Request) -> web.StreamResponse:
        # Answered from what the storage knows, without touching the database: prompt even
        # while another process holds its lock.
        fault = self.controller.backend.write_fault
        if fault is not None:
            return json_response({"status": "degraded", "storage": f"cannot write: {fault}"}, 503)
        return json_response({"status": "ok"})


# -- requests from browsers: content type and origin ------------------------------------------


def _is_json(mimetype: str) -> bool:
    mimetype = mimetype.lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _unsupported_media_type(what: str, got: str) -> APIError:
    return APIError(
        415,
        "unsupported_media_type",
        f"{what} must be sent with Content-Type: application/json (got {got})",
    )


def _origin_key(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, the scheme's default port left out; None when
    ``origin`` is not such an origin (``null``, a path, another scheme)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def _allowed_origins(origins: Iterable[str]) -> frozenset[str]:
    if isinstance(origins, str):
        origins = [origins]
    keys = set()
    for origin in origins:
        key = _origin_key(origin) if isinstance(origin, str) else None
        if key is None:
            raise ModelError(
                f"allowed_origins: {origin!r} is not an origin; write scheme://host[:port] "
                "(e.g. 'https://app.example.com'), without a path"
            )
        keys.add(key)
    return frozenset(keys)


def _origin_guard(allowed: frozenset[str]) -> Middleware:
    """Refuses (403 ``cross_origin``) a state-changing request a browser sent from another
    origin: its ``Origin`` must name the server's own host (the ``Host`` header; the scheme is
    not compared, as a TLS proxy in front hides it) or one of ``allowed``. Without ``Origin``,
    ``Sec-Fetch-Site`` must be absent, ``same-origin`` or ``none``. A request with neither header
    (curl, another server, a webhook provider) is not a browser's and passes."""

    @web.middleware
    async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _SAFE_METHODS:
            return await handler(request)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None:
            key = _origin_key(origin)
            own = key is not None and key.partition("://")[2] == request.host.lower()
            if not own and key not in allowed:
                raise APIError(
                    403,
                    "cross_origin",
                    f"{request.method} {request.path} from origin {origin!r} is refused: only "
                    f"the server's own origin and allowed_origins may send it",
                )
        else:
            site = request.headers.get("Sec-Fetch-Site", "none").lower()
            if site not in ("same-origin", "none"):
                raise APIError(
                    403,
                    "cross_origin",
                    f"{request.method} {request.path} from a {site} page is refused",
                )
        return await handler(request)

    return origin_guard


# -- the app -----------------------------------------------------------------------------------


def _package_version() -> str:
    try:
        return importlib.metadata.version("interaqt-py")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _check_names(kind: str, names: Iterable[str]) -> None:
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ModelError(
                f"{kind} name {name!r} cannot be served over HTTP: use letters, digits and "
                "'_', '.', ':', '~', '-'"
            )


def create_app(
    controller: Controller,
    apis: Mapping[str, API] | None = None,
    middlewares: Iterable[Middleware] = (),
    *,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    title: str = "interaqt-py",
    version: str | None = None,
    anonymous_interactions: bool | Collection[str] = False,
    allowed_origins: Iterable[str] = (),
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> web.Application:
    """An aiohttp application serving ``controller``'s interactions and ``apis``.

    ``middlewares`` are aiohttp middlewares, run in the order given (the first is outermost),
    inside the server's error middleware; an auth middleware sets ``request["user_id"]``.
    ``max_body_size`` (bytes) caps request bodies (413 beyond it). ``anonymous_interactions``
    is ``True`` (every interaction may be dispatched without a user; the dispatch user is then
    None) or the names of those that may; by default all need a user. ``title`` and ``version``
    go into the OpenAPI document. The controller must be set up (and closed) by the caller.

    Browser protection (see the module documentation): a state-changing request with an
    ``Origin`` must come from the server's own host or one of ``allowed_origins``
    (``scheme://host[:port]``); JSON bodies need ``Content-Type: application/json`` (raw APIs
    take any type). ``body_timeout`` (seconds) bounds the wait for a request body (408);
    ``max_json_depth`` bounds how deeply a JSON body may nest (400).
    """
    apis = dict(apis or {})
    for name, api in apis.items():
        if not isinstance(api, API):
            raise ModelError(f"apis[{name!r}] must be an r.API, got {type(api).__name__}")
        if api.raw and api.params:
            raise ModelError(f"API {name!r} is raw: it reads its own body and cannot have params")
    _check_names("API", apis)
    _check_names("interaction", controller.interactions)
    if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) or max_body_size < 1:
        raise ModelError(f"max_body_size must be a positive number of bytes, got {max_body_size!r}")
    if not isinstance(body_timeout, int | float) or isinstance(body_timeout, bool):
        raise ModelError(f"body_timeout must be a number of seconds, got {body_timeout!r}")
    if not 0 < body_timeout < float("inf"):
        raise ModelError(f"body_timeout must be a positive number of seconds, got {body_timeout!r}")
    depth_ok = isinstance(max_json_depth, int) and not isinstance(max_json_depth, bool)
    if not depth_ok or max_json_depth < 1:
        raise ModelError(f"max_json_depth must be a positive integer, got {max_json_depth!r}")
    origins = _allowed_origins(allowed_origins)
    if anonymous_interactions is True:
        anonymous: Collection[str] = frozenset(controller.interactions)
    elif anonymous_interactions is False:
        anonymous = frozenset()
    else:
        if isinstance(anonymous_interactions, str):
            anonymous_interactions = [anonymous_interactions]
        anonymous = frozenset(anonymous_interactions)
        unknown = sorted(anonymous - set(controller.interactions))
        if unknown:
            raise ModelError(f"anonymous_interactions names unknown interaction(s): {unknown}")
    openapi = build_openapi(
        apis,
        controller.interactions,
        anonymous,
        title=title,
        version=version or _package_version(),
    )
    routes = _Routes(controller, apis, anonymous, openapi, float(body_timeout), max_json_depth)
    app = web.Application(
        middlewares=[_error_middleware(max_body_size), _origin_guard(origins), *middlewares],
        client_max_size=max_body_size,
    )
    app[CONTROLLER_KEY] = controller
    app.router.add_post("/api/{name}", routes.api)
    app.router.add_post("/interaction/{name}", routes.interaction)
    app.router.add_get("/openapi.json", routes.openapi)
    app.router.add_get("/health", routes.health)
    return app


__all__ = [
    "CONTROLLER_KEY",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "RAW_BODY",
    "create_app",
    "error_response",
    "json_response",
]
