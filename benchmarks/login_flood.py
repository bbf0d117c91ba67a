"""``login_flood``: N concurrent clients hammer ``auth.login`` (unknown usernames, wrong
passwords: each check costs a real scrypt hash with the default parameters) while one honest
user logs in again and again from an address of their own. The server runs in its own process
(``create_app`` + ``AuthIntegration``, as deployed); the clients run here.

Three configurations, one JSON line each:

- ``login_flood_one_address``: the defaults; the whole flood comes from one address, so the
  per-address limit answers it with 429 before any hash.
- ``login_flood_many_addresses``: every flooding client has an address of its own (read from a
  header, as behind a proxy), so only the cap on concurrent and waiting hashes stands: the
  overflow is answered 503 at once and waiting stays bounded.
- ``login_flood_unguarded``: limits and the cap set out of the way: what the server did before
  (every request queues for a hash).

Figures: ``ops_per_second`` = flood requests answered per second; ``logins_per_second`` =
password checks completed per second (200 + 401); ``p50_ms``/``p99_ms`` of the flood's
requests; counts by status; and the honest user's logins (``honest_logins``, ``honest_p99_ms``,
``honest_refused``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import reactive as r
from benchmarks.common import report, scaled
from integrations.auth import AuthIntegration, auth_entities
from storage import SQLiteStorage

SECRET = "login-flood-benchmark-secret-" + "b" * 40
HONEST = {"username": "ada", "password": "correct horse battery"}
CONFIGS: dict[str, dict[str, Any]] = {
    "login_flood_one_address": {},
    "login_flood_many_addresses": {"address_limit": 10**9},
    "login_flood_unguarded": {
        "address_limit": 10**9,
        "username_limit": 10**9,
        "max_concurrent_hashes": 64,
        "max_waiting_hashes": 10**9,
    },
}


def _serve(database: str, options: dict[str, Any], port_queue: Any) -> None:
    async def main() -> None:
        controller = r.Controller(SQLiteStorage(database), [auth_entities("User")])
        await controller.setup()
        auth = AuthIntegration(
            secret=SECRET,
            cookie_secure=False,
            client_address=lambda request: request.headers.get("X-Client", request.remote),
            **options,
        )
        await auth.configure()
        app = r.create_app(controller, auth.create_apis(), auth.create_middlewares())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


Server = tuple[multiprocessing.process.BaseProcess, str]


def _server(database: str, options: dict[str, Any]) -> Server:
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=_serve, args=(database, options, ports), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=60)}"


async def _login(
    session: aiohttp.ClientSession, url: str, body: dict[str, str], address: str
) -> tuple[int, float]:
    started = time.perf_counter()
    headers = {"X-Client": address}
    async with session.post(url, json=body, headers=headers) as response:
        await response.read()
        return response.status, time.perf_counter() - started


async def _flood(base: str, clients: int, rounds: int, separate_addresses: bool) -> dict[str, Any]:
    url = f"{base}/api/auth.login"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.post(f"{base}/api/auth.register", json=HONEST) as response:
            assert response.status == 200, await response.text()
        done = asyncio.Event()
        honest: list[tuple[int, float]] = []

        async def attacker(i: int) -> list[tuple[int, float]]:
            address = f"10.1.{i // 250}.{i % 250}" if separate_addresses else "10.0.0.1"
            results = []
            for j in range(rounds):
                body = {"username": f"victim{i}-{j}", "password": "guess-guess"}
                results.append(await _login(session, url, body, address))
            return results

        async def honest_user() -> None:
            while not done.is_set():
                honest.append(await _login(session, url, HONEST, "192.0.2.1"))

        honest_task = asyncio.create_task(honest_user())
        started = time.perf_counter()
        flood = await asyncio.gather(*(attacker(i) for i in range(clients)))
        seconds = time.perf_counter() - started
        done.set()
        await honest_task
    results = [one for client in flood for one in client]
    statuses = Counter(status for status, _ in results)
    latencies = sorted(latency for _, latency in results)
    honest_latencies = sorted(latency for status, latency in honest if status == 200)
    checked = statuses[200] + statuses[401]
    return {
        "n": len(results),
        "seconds": seconds,
        "clients": clients,
        "logins_per_second": round(checked / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "status_401": statuses[401],
        "status_429": statuses[429],
        "status_503": statuses[503],
        "other_statuses": {str(k): v for k, v in statuses.items() if k not in (401, 429, 503)},
        "honest_logins": len(honest_latencies),
        "honest_refused": len(honest) - len(honest_latencies),
        "honest_p99_ms": round(1000 * honest_latencies[-1], 1) if honest_latencies else None,
    }


def main() -> None:
    clients = scaled(200)
    rounds = 1
    for workload, options in CONFIGS.items():
        with tempfile.TemporaryDirectory() as folder:
            process, base = _server(str(Path(folder) / "flood.db"), options)
            try:
                figures = asyncio.run(
                    _flood(base, clients, rounds, workload != "login_flood_one_address")
                )
            finally:
                process.terminate()
                process.join(timeout=30)
        n, seconds = figures.pop("n"), figures.pop("seconds")
        unexpected = figures["other_statuses"]
        assert not unexpected, f"{workload}: unexpected answers {unexpected}"
        report(workload, n, seconds, **figures)


if __name__ == "__main__":
    main()
