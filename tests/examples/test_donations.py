"""The example application's scenario over HTTP, as the README and `make run` tell it:
register, log in, donate, and watch the three calls complete and the donation's derived values
appear; at the demo's own pace the calls are seen processing; a restart on the same database
keeps users, tokens and donations. Fake providers on loopback; the real server, storage and
integrations."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from examples.donations.__main__ import serve_locally
from examples.donations.local import Pacing, jwt_secret_path
from tests.conftest import StorageFactory

# The fakes act at once: tests that do not watch the pace need not wait for it.
FAST = Pacing(
    payment_processing=None, payment_succeeded=0.0, voice_running=None, voice_finished=0.0
)
CREDENTIALS = {"username": "ada", "password": "correct horse battery"}
DONATION = {"payload": {"amount": 2500, "message": "Thank you", "language": "fr"}}
CALLS = ("payment_calls", "translation_calls", "voice_calls")


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


async def test_donation_flow_over_http(make_storage: StorageFactory, tmp_path: Path) -> None:
    """On each backend (PostgreSQL: what ``DATABASE_URL=postgresql://... make run`` serves)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database = make_storage("donations.db")
    secret = tmp_path / "jwt.secret"
    async with (
        serve_locally(port, database, pacing=FAST, secret=secret) as app,
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


async def sign_in(session: aiohttp.ClientSession, base: str, register: bool = True) -> str:
    if register:
        status, _ = await post(session, f"{base}/api/auth.register", CREDENTIALS)
        assert status == 200
    status, login = await post(session, f"{base}/api/auth.login", CREDENTIALS)
    assert status == 200
    token: str = login["token"]
    return token


async def until_settled(
    session: aiohttp.ClientSession, base: str, token: str, donation_id: int
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Poll ``donations.mine`` (bounded) until the donation's calls are all completed; returns
    the donation and, per kind of call, the statuses seen in order (repeats dropped)."""
    seen: dict[str, list[str]] = {calls: [] for calls in CALLS}
    donation: dict[str, Any] = {}
    for _ in range(300):
        status, mine = await post(session, f"{base}/api/donations.mine", {}, token)
        assert status == 200
        [donation] = [d for d in mine["donations"] if d["id"] == donation_id]
        for calls in CALLS:
            [call] = donation[calls]
            if not seen[calls] or seen[calls][-1] != call["status"]:
                seen[calls].append(call["status"])
        if all(seen[calls][-1] == "completed" for calls in CALLS) and donation["voice_url"]:
            return donation, seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the donation did not settle: {donation}, statuses seen {seen}")


async def test_at_the_demo_pace_the_calls_are_seen_processing(tmp_path: Path) -> None:
    """What `make run` promises: pending -> processing -> completed, watched by polling."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        serve_locally(port, str(tmp_path / "donations.db")),  # the demo's own pace
        aiohttp.ClientSession() as session,
    ):
        token = await sign_in(session, base)
        status, donated = await post(session, f"{base}/interaction/Donate", DONATION, token)
        assert status == 200
        donation, seen = await until_settled(session, base, token, donated["data"]["id"])

    assert seen["payment_calls"] == ["pending", "processing", "completed"]
    assert seen["voice_calls"] == ["pending", "processing", "completed"]
    # The translator is synchronous: never seen processing.
    assert seen["translation_calls"] in (["pending", "completed"], ["completed"])
    assert donation["payment_status"] == "completed"
    assert donation["translated_message"] == "[translated] Thank you"


async def test_a_restart_on_the_same_database_keeps_users_tokens_and_donations(
    tmp_path: Path,
) -> None:
    database = tmp_path / "donations.db"
    first_port, second_port = free_port(), free_port()
    first, second = f"http://127.0.0.1:{first_port}", f"http://127.0.0.1:{second_port}"
    async with aiohttp.ClientSession() as session:
        async with serve_locally(first_port, str(database), pacing=FAST):
            token = await sign_in(session, first)
            status, donated = await post(session, f"{first}/interaction/Donate", DONATION, token)
            assert status == 200
            before, _ = await until_settled(session, first, token, donated["data"]["id"])
        secret = jwt_secret_path(database)
        assert secret.stat().st_mode & 0o777 == 0o600
        kept = secret.read_text()

        async with serve_locally(second_port, str(database), pacing=FAST) as app:
            # The first start's token still signs the user in; the user can log in again.
            status, mine = await post(session, f"{second}/api/donations.mine", {}, token)
            assert status == 200, mine
            assert [d["id"] for d in mine["donations"]] == [before["id"]]
            assert mine["donations"][0]["voice_url"] == before["voice_url"]
            await sign_in(session, second, register=False)
            status, again = await post(session, f"{second}/interaction/Donate", DONATION, token)
            assert status == 200
            after, _ = await until_settled(session, second, token, again["data"]["id"])
            assert await app.controller.storage.get_dict("donated_total") == 5000
        assert secret.read_text() == kept

    # The second run's providers are new: its voice message is its own, not the first one's.
    assert after["voice_url"] and after["voice_url"] != before["voice_url"]
