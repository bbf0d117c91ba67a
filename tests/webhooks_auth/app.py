"""A minimal stand-in for the server, for these tests only: ``POST /api/{name}`` with declared
string params, raw APIs, ``request["user_id"]`` from middlewares and the error envelope. It mounts
the handlers and middlewares under test directly (the real ``reactive.server`` is tested
elsewhere; one test here runs against it when it is present)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

import reactive as r
from integrations import api_call_entities, auth_entities
from reactive.server import CONTROLLER_KEY
from storage import SQLiteStorage, Storage

CALL = "PaymentCall"
EVENT = "PaymentEvent"


def envelope(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except r.APIError as exc:
        return envelope(exc.status, exc.code, exc.message)


def mini_app(
    controller: r.Controller,
    apis: Mapping[str, r.API],
    middlewares: Iterable[Middleware] = (),
) -> web.Application:
    async def api(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        found = apis.get(name)
        if found is None:
            raise r.APIError(404, "unknown_api", name)
        user_id = request.get("user_id")
        if user_id is None and not found.allow_anonymous:
            raise r.APIError(401, "unauthorized", f"{name} needs a user")
        params: Any = None
        if not found.raw:
            body = await request.read()
            try:
                params = json.loads(body) if body.strip() else {}
            except ValueError:
                raise r.APIError(400, "malformed_json", "not JSON") from None
            if not isinstance(params, dict) or set(params) != set(found.params):
                raise r.APIError(400, "invalid_params", f"declared: {sorted(found.params)}")
            for key, type_name in found.params.items():
                if type_name == "string" and not isinstance(params[key], str):
                    raise r.APIError(400, "invalid_params", f"{key} must be a string")
        ctx = r.APIContext(controller, user_id=user_id, request=request)
        return web.json_response(await found.handler(ctx, params))

    app = web.Application(middlewares=[errors, *middlewares])
    app[CONTROLLER_KEY] = controller  # where the auth middleware finds the users
    app.router.add_post("/api/{name}", api)
    return app


async def make_controller(path: str | Storage) -> r.Controller:
    """A set-up controller with a User entity and a payment APICall model, on ``path`` (a SQLite
    file, or a storage of any backend)."""
    model = api_call_entities(CALL, EVENT)
    storage = SQLiteStorage(path) if isinstance(path, str) else path
    controller = r.Controller(storage, [auth_entities("User"), model.call, model.event])
    await controller.setup()
    return controller
