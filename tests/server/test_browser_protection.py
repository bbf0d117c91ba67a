"""Cross-site request forgery: what a browser can send without the page being allowed to.

A page on another port or a sibling subdomain of the same site can make the victim's browser POST
a ``text/plain`` form (no preflight) carrying the victim's cookie (SameSite=Lax does not stop a
*same-site* request). The server refuses it twice over: a JSON endpoint wants
``Content-Type: application/json`` (415), and a state-changing request whose ``Origin`` (or
``Sec-Fetch-Site``) names another origin is refused (403). Real HTTP on loopback, the real auth
integration with its cookie, and the bytes a browser sends for such a form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from integrations.auth import AuthIntegration, ScryptParams, auth_entities
from reactive.server import create_app
from tests.conftest import StorageFactory

from .helpers import JSON, error_of, quiet_request_keys

pytestmark = quiet_request_keys

SECRET = "browser-test-secret-" + "x" * 40
# The text/plain form trick: <input name='{"payload": {"amount": 100, "note": "' value='"}}'>
# is sent as name=value, which is a JSON body.
FORM_BODY = b'{"payload": {"amount": 100, "note": "="}}'

Client = TestClient[web.Request, web.Application]


@attrs.frozen
class Site:
    client: Client
    controller: r.Controller
    cookie: str
    """The logged-in user's session token (the cookie's value)."""

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    async def donations(self) -> int:
        """Dispatches stored: what a refused request must leave unchanged."""
        return await self.controller.storage.count(r.INTERACTION_EVENT)

    async def form_post(self, headers: dict[str, str]) -> tuple[int, str]:
        """The text/plain form body to Donate, written byte for byte like a browser."""
        return await _raw_post(self.port, "/interaction/Donate", headers, FORM_BODY)


@pytest.fixture
async def site(make_storage: StorageFactory) -> AsyncIterator[Site]:
    """The app on 127.0.0.1 with cookie auth, and the cookie of a logged-in user; its controller
    on the test's backend (both backends)."""
    donate = r.Interaction(
        "Donate",
        r.Payload([r.PayloadItem("amount", "number", required=True), r.PayloadItem("note")]),
    )
    controller = r.Controller(
        make_storage("csrf.db"), [auth_entities("User")], interactions=[donate]
    )
    await controller.setup()
    auth = AuthIntegration(
        secret=SECRET, cookie_secure=False, password_params=ScryptParams(log_n=4, r=1, p=1)
    )
    await auth.configure()
    app = create_app(
        controller,
        auth.create_apis(),
        auth.create_middlewares(),
        allowed_origins=["https://admin.example.com"],
    )
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        credentials = {"username": "victim", "password": "correct horse"}
        assert (await client.post("/api/auth.register", json=credentials)).status == 200
        login = await client.post("/api/auth.login", json=credentials)
        assert login.status == 200
        cookie = login.cookies["auth_token"].value
        yield Site(client, controller, cookie)
    finally:
        await client.close()
        await controller.close()


async def _raw_post(port: int, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """One HTTP/1.1 request written byte for byte as a browser sends it; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, text = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), text.decode("utf-8", "replace")


async def test_a_cross_origin_text_plain_form_with_the_cookie_is_refused_and_writes_nothing(
    site: Site,
) -> None:
    port = site.port
    before = await site.donations()
    for origin, fetch_site in [
        (f"http://127.0.0.1:{port + 1}", "same-site"),  # another port of the same host
        (f"http://evil.localhost:{port}", "same-site"),  # a sibling subdomain
        ("null", "cross-site"),  # a sandboxed frame
    ]:
        status, body = await site.form_post(
            {
                "Origin": origin,
                "Sec-Fetch-Site": fetch_site,
                "Sec-Fetch-Mode": "navigate",
                "Content-Type": "text/plain",
                "Cookie": f"auth_token={site.cookie}",
            }
        )
        assert status == 403, (origin, body)
        assert '"cross_origin"' in body and origin in body
    assert await site.donations() == before
    # the other types a form may choose, and a bearer token instead of the cookie
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _ = await site.form_post(
            {
                "Origin": f"http://127.0.0.1:{port + 1}",
                "Content-Type": content_type,
                "Authorization": f"Bearer {site.cookie}",
            }
        )
        assert status == 403
    assert await site.donations() == before


async def test_same_origin_text_plain_is_415_and_writes_nothing(site: Site) -> None:
    before = await site.donations()
    cookie = {"Cookie": f"auth_token={site.cookie}"}
    status, body = await site.form_post({"Content-Type": "text/plain", **cookie})
    assert status == 415, body
    assert '"unsupported_media_type"' in body and "application/json" in body
    # a body with no Content-Type at all is not taken for JSON either
    assert (await site.form_post(cookie))[0] == 415
    assert await site.donations() == before


async def test_a_sec_fetch_site_from_elsewhere_is_refused_without_origin(site: Site) -> None:
    before = await site.donations()
    for fetch_site in ("same-site", "cross-site"):
        headers = {**JSON, "Sec-Fetch-Site": fetch_site, "Cookie": f"auth_token={site.cookie}"}
        response = await site.client.post("/interaction/Donate", data=FORM_BODY, headers=headers)
        await error_of(response, 403, "cross_origin")
    assert await site.donations() == before


async def test_own_origin_listed_origins_and_non_browsers_pass(site: Site) -> None:
    client, port, cookie = site.client, site.port, site.cookie
    payload: dict[str, Any] = {"payload": {"amount": 5}}
    before = await site.donations()
    for headers in [
        {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://admin.example.com", "Sec-Fetch-Site": "cross-site"},  # listed
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {},  # curl, another server
    ]:
        headers = {**headers, "Cookie": f"auth_token={cookie}"}
        response = await client.post("/interaction/Donate", json=payload, headers=headers)
        assert response.status == 200, (headers, await response.text())
    assert await site.donations() == before + 5
    # reading is never refused: GET cannot change anything
    response = await client.get("/health", headers={"Origin": "http://evil.example"})
    assert response.status == 200


async def test_listed_origins_are_checked_when_the_app_is_built(
    make_storage: StorageFactory,
) -> None:
    controller = r.Controller(make_storage("o.db"))
    for bad in ["example.com", "https://example.com/path", "ftp://example.com", "null", "*"]:
        with pytest.raises(r.ModelError, match="allowed_origins"):
            create_app(controller, allowed_origins=[bad])
    create_app(controller, allowed_origins=["https://a.example.com", "http://localhost:3000"])
