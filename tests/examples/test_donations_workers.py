"""``DATABASE_URL=postgresql://... WORKERS=2 python -m examples.donations``: two real worker
processes behind one port. Several donations made through the port each complete once: the fake
Stripe (in the parent) received one PaymentIntent creation per donation, each with its own
idempotency key; every donation's calls are completed; both workers answered requests
(``X-Worker``); Ctrl-C stops everything with exit status 0. A worker that dies stops the other
and the parent exits 1 naming it. WORKERS>1 on SQLite is refused with one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.examples.test_donations import CREDENTIALS, free_port, until_settled
from tests.examples.test_donations_process import Served, example_env, run_example, schema_url

DONATIONS = 4
MAX_PROBES = 200


async def call(base: str, path: str, body: Any, token: str | None = None) -> tuple[int, Any, str]:
    """One request on a connection of its own (so the kernel may hand it to either worker):
    status, JSON body, and the answering worker's pid."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"{base}{path}", json=body, headers=headers) as response,
    ):
        return response.status, await response.json(), response.headers["X-Worker"]


def test_several_workers_on_sqlite_are_refused_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "d.db"
    done = run_example(example_env(PORT=str(free_port()), DATABASE=str(database), WORKERS="2"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "examples.donations: WORKERS=2 needs PostgreSQL (DATABASE_URL=postgresql://...): on "
        "SQLite every write takes the one file lock, so more processes add no throughput; use "
        "WORKERS=1"
    ]
    assert list(tmp_path.iterdir()) == []
    bad = run_example(example_env(DATABASE=str(database), WORKERS="many"))
    assert bad.returncode == 1 and "WORKERS='many' is not a number of processes" in bad.stderr


async def test_two_workers_on_one_port_complete_each_donation_once(
    tmp_path: Path, postgres_url: str
) -> None:
    import asyncpg

    async with schema_url(postgres_url) as (schema, url):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = example_env(PORT=str(port), DATABASE_URL=url, WORKERS="2")
        served = await Served.start(env, cwd=tmp_path)
        try:
            banner_pids = re.search(r"pids (\d+), (\d+)\)", served.banner)
            assert banner_pids is not None, served.banner
            pids = set(banner_pids.groups())
            assert len(pids) == 2, served.banner
            answered: set[str] = set()
            status, _, pid = await call(base, "/api/auth.register", CREDENTIALS)
            assert status == 200
            answered.add(pid)
            status, login, pid = await call(base, "/api/auth.login", CREDENTIALS)
            assert status == 200
            answered.add(pid)
            token = login["token"]
            donated = await asyncio.gather(
                *(
                    call(
                        base,
                        "/interaction/Donate",
                        {
                            "payload": {
                                "amount": 100 * (i + 1),
                                "message": f"m{i}",
                                "language": "fr",
                            }
                        },
                        token,
                    )
                    for i in range(DONATIONS)
                )
            )
            ids = []
            for status, body, pid in donated:
                assert status == 200, body
                ids.append(body["data"]["id"])
                answered.add(pid)
            for _ in range(MAX_PROBES):  # bounded: a token read until both workers answered
                if answered == pids:
                    break
                status, _, pid = await call(base, "/api/donations.mine", {}, token)
                assert status == 200
                answered.add(pid)
            assert answered == pids
            async with aiohttp.ClientSession() as session:
                for donation_id in ids:
                    donation, _ = await until_settled(session, base, token, donation_id)
                    assert donation["payment_status"] == "completed"
                    assert donation["voice_url"].endswith(".mp3")
                    assert [c["status"] for c in donation["payment_calls"]] == ["completed"]
        finally:
            assert await served.stop() == 0
        assert served.process.stdout is not None
        tail = (await served.process.stdout.read()).decode()
        assert (
            f"The fake Stripe received {DONATIONS} PaymentIntent creation request(s) with "
            f"{DONATIONS} idempotency key(s) and holds {DONATIONS} PaymentIntent(s)."
        ) in tail, tail
        connection = await asyncpg.connect(postgres_url)
        try:
            donations = await connection.fetchval(f'SELECT count(*) FROM "{schema}"."Donation"')
            intents = await connection.fetch(f'SELECT external_id FROM "{schema}"."PaymentCall"')
        finally:
            await connection.close()
        assert donations == DONATIONS
        assert len(intents) == DONATIONS and len({row[0] for row in intents}) == DONATIONS


async def test_a_worker_that_dies_stops_the_others_and_the_parent_exits_1(
    tmp_path: Path, postgres_url: str
) -> None:
    async with schema_url(postgres_url) as (_, url):
        env = example_env(PORT=str(free_port()), DATABASE_URL=url, WORKERS="2")
        served = await Served.start(env, cwd=tmp_path)
        banner_pids = re.search(r"pids (\d+), (\d+)\)", served.banner)
        assert banner_pids is not None, served.banner
        first, second = banner_pids.groups()
        os.kill(int(first), signal.SIGKILL)
        async with asyncio.timeout(60):
            status = await served.process.wait()
        assert status == 1
        assert served.process.stderr is not None
        error = (await served.process.stderr.read()).decode()
        assert f"worker pid {first} exited with status -9; stopped the others" in error, error
        with pytest.raises(ProcessLookupError):
            os.kill(int(second), 0)  # the other worker is gone too
