"""Server-wide behaviour: unknown routes, methods, body limits, middlewares (order, errors they
raise), the error envelope everywhere, and create_app's own checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import CONTROLLER_KEY, create_app

from .app import bearer_auth, build_apis, tracer
from .conftest import Client, MakeClient
from .helpers import AUTH, counts, error_of, quiet_request_keys

pytestmark = quiet_request_keys


async def test_an_unknown_route_is_404(client: Client) -> None:
    message = await error_of(await client.get("/nowhere"), 404, "not_found")
    assert message == "no route for GET /nowhere"
    await error_of(await client.post("/api"), 404, "not_found")
    await error_of(await client.post("/api/a/b", json={}, headers=AUTH), 404, "not_found")


async def test_a_wrong_method_is_405_with_allow(client: Client) -> None:
    response = await client.get("/api/whoami")
    message = await error_of(response, 405, "method_not_allowed")
    assert "GET" in message
    assert response.headers["Allow"] == "POST"
    response = await client.delete("/interaction/CreatePost", headers=AUTH)
    await error_of(response, 405, "method_not_allowed")
    response = await client.post("/health")
    await error_of(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


async def test_health(client: Client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_a_body_over_the_limit_is_413_and_stores_nothing(
    make_client: MakeClient, controller: r.Controller
) -> None:
    client = await make_client(max_body_size=1024)
    before = await counts(controller)
    big_title = "x" * 2000
    for path, body in [
        ("/interaction/CreatePost", {"payload": {"title": big_title}}),
        ("/api/posts.search", {"prefix": big_title, "limit": 1, "with_likes": 1, "filter": 1}),
    ]:
        message = await error_of(await client.post(path, json=body, headers=AUTH), 413)
        assert "1024" in message
    raw = await client.post("/api/echo.raw", data=b"\0" * 1025)
    await error_of(raw, 413, "body_too_large")
    assert await counts(controller) == before

    # exactly at the limit is fine
    at_limit = await client.post("/api/echo.raw", data=b"\0" * 1024)
    assert (await at_limit.json())["length"] == 1024


async def test_a_chunked_body_over_the_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body_size=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"a" * 512

    response = await client.post("/api/echo.raw", data=chunks())
    assert "Content-Length" not in response.request_info.headers
    await error_of(response, 413, "body_too_large")


async def test_the_default_limit_is_one_mebibyte(client: Client) -> None:
    ok = await client.post("/api/echo.raw", data=b"a" * 1_048_576)
    assert (await ok.json())["length"] == 1_048_576
    await error_of(await client.post("/api/echo.raw", data=b"a" * 1_048_577), 413)


async def test_errors_raised_by_middlewares_use_the_envelope(
    client: Client, controller: r.Controller
) -> None:
    before = await counts(controller)
    body = {"payload": {"title": "t"}}
    invalid = await client.post(
        "/interaction/CreatePost", json=body, headers={"Authorization": "Bearer x"}
    )
    assert await error_of(invalid, 401, "unauthorized") == "invalid token"
    scheme = await client.post("/api/whoami", json={}, headers={"Authorization": "Basic eA=="})
    assert await error_of(scheme, 401, "unauthorized") == "use a bearer token"
    banned = await client.post(
        "/interaction/CreatePost", json=body, headers={"Authorization": "Bearer banned"}
    )
    assert await error_of(banned, 403, "banned") == "this account is banned"
    assert await counts(controller) == before


async def test_a_crashing_middleware_is_500(make_client: MakeClient) -> None:
    @web.middleware
    async def crash(request: web.Request, handler: Any) -> web.StreamResponse:
        raise KeyError("internal detail")

    client = await make_client(middlewares=[crash])
    response = await client.get("/health")
    assert await error_of(response, 500, "internal_error") == "internal server error"
    assert "internal detail" not in await response.text()


async def test_middlewares_run_in_the_declared_order(make_client: MakeClient) -> None:
    log: list[str] = []
    client = await make_client(
        middlewares=[tracer("a", log), tracer("b", log), bearer_auth, tracer("c", log)]
    )
    response = await client.post("/api/whoami", json={}, headers=AUTH)
    assert await response.json() == {"user_id": 1}
    assert log == ["a:in user=None", "b:in user=None", "c:in user=1", "c:out", "b:out", "a:out"]

    # an error inside unwinds through the outer ones and still gets the envelope
    log.clear()
    response = await client.post("/api/whoami", json={}, headers={"Authorization": "Bearer ?"})
    await error_of(response, 401)
    assert log == ["a:in user=None", "b:in user=None", "b:out", "a:out"]


async def test_middlewares_also_see_unknown_routes(make_client: MakeClient) -> None:
    log: list[str] = []
    client = await make_client(middlewares=[tracer("a", log)])
    await error_of(await client.get("/missing"), 404, "not_found")
    assert log == ["a:in user=None", "a:out"]


async def test_an_api_error_with_a_non_error_status_is_500(controller: r.Controller) -> None:
    async def odd(ctx: r.APIContext, params: Any) -> Any:
        raise r.APIError(200, "fine", "not an error status")

    app = create_app(controller, {"odd": r.API(odd, allow_anonymous=True)})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await error_of(await client.post("/api/odd", json={}), 500, "internal_error")


async def test_a_handler_may_answer_with_its_own_response(controller: r.Controller) -> None:
    async def plain(ctx: r.APIContext, params: Any) -> Any:
        return web.Response(text="ok", status=202)

    app = create_app(controller, {"hook": r.API(plain, allow_anonymous=True, raw=True)})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.post("/api/hook", data=b"anything")
        assert response.status == 202
        assert await response.text() == "ok"
        assert app[CONTROLLER_KEY] is controller


async def test_create_app_refuses_what_it_cannot_serve(controller: r.Controller) -> None:
    async def handler(ctx: r.APIContext, params: Any) -> Any:
        return None

    with pytest.raises(r.ModelError, match="raw"):
        create_app(controller, {"hook": r.API(handler, params={"a": "string"}, raw=True)})
    with pytest.raises(r.ModelError, match="cannot be served"):
        create_app(controller, {"a/b": r.API(handler)})
    with pytest.raises(r.ModelError, match="cannot be served"):
        create_app(controller, {"": r.API(handler)})
    with pytest.raises(r.ModelError, match=r"must be an r\.API"):
        create_app(controller, {"x": handler})  # type: ignore[dict-item]
    with pytest.raises(r.ModelError, match="unknown interaction"):
        create_app(controller, anonymous_interactions={"Nope"})
    with pytest.raises(r.ModelError, match="max_body_size"):
        create_app(controller, max_body_size=0)
    # a single name is one name, not its letters
    create_app(controller, build_apis(), anonymous_interactions="Ping")
    assert r.create_app is create_app
