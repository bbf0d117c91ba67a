"""The example application's scenario over HTTP, as the README and `make run` tell it:
register, log in, donate, and watch the three calls complete and the donation's derived values
appear. Fake providers on loopback; the real server, storage and integrations."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from examples.donations.__main__ import serve_locally


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def signed_in(session: aiohttp.ClientSession, base: str) -> str:
    """Register ada and log her in; her token."""
    credentials = {"username": "ada", "password": "correct horse battery"}
    status, _ = await post(session, f"{base}/api/auth.register", credentials)
    assert status == 200
    status, login = await post(session, f"{base}/api/auth.login", credentials)
    assert status == 200
    token: str = login["token"]
    return token


async def test_donation_flow_over_http(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        serve_locally(port, str(tmp_path / "donations.db")) as app,
        aiohttp.ClientSession() as session,
    ):
        token = await signed_in(session, base)

        status, anonymous = await post(
            session, f"{base}/interaction/Donate", {"payload": {"amount": 100}}
        )
        assert status == 401 and anonymous["error"]["code"] == "unauthorized"
        status, refused = await post(
            session, f"{base}/interaction/Donate", {"payload": {"amount": -5}}, token
        )
        assert status == 400 and refused["error"]["code"] == "payload_type"

        status, donated = await post(
            session,
            f"{base}/interaction/Donate",
            {"payload": {"amount": 2500, "message": "Thank you", "language": "fr"}},
            token,
        )
        assert status == 200 and donated["data"]["amount"] == 2500

        donation: dict[str, Any] = {}
        for _ in range(100):
            status, mine = await post(session, f"{base}/api/donations.mine", {}, token)
            assert status == 200
            donation = mine["donations"][0]
            if donation["voice_url"] and donation["payment_status"] == "completed":
                break
            await asyncio.sleep(0.1)
        assert donation["payment_status"] == "completed"
        assert donation["translated_message"] == "[translated] Thank you"
        assert donation["voice_url"].endswith(".mp3")
        for calls in ("payment_calls", "translation_calls", "voice_calls"):
            assert [c["status"] for c in donation[calls]] == ["completed"]
        assert len(mine["donations"]) == 1  # the refused donation stored nothing
        assert await app.controller.storage.get_dict("donated_total") == 2500
