"""Many processes liking one post through the engine, on one database: nothing is lost.

Real processes (:mod:`tests.cluster.likes`), started together, each making its likes through
the engine with a few transactions at once. Afterwards ``Post.like_count`` and the dictionary
Count equal the number of likes made and a recount of the stored likes, the Summations equal
the sum of the stored weights, and ``controller.verify()`` reports nothing.

``INTERAQT_CLUSTER_PROCESSES`` (default 4) and ``INTERAQT_CLUSTER_LIKES`` (likes per process,
default 250) size the PostgreSQL test; the SQLite one runs 2 processes of the same size.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import reactive as r

from ..conftest import drop_schema
from .likes import model, open_storage, weight

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = int(os.environ.get("INTERAQT_CLUSTER_PROCESSES", "4"))
LIKES = int(os.environ.get("INTERAQT_CLUSTER_LIKES", "250"))
CONCURRENCY = int(os.environ.get("INTERAQT_CLUSTER_CONCURRENCY", "2"))  # per process
_WAIT = 60.0  # seconds a worker may take to start, or to finish its likes


async def _run_workers(url: str, schema: str, post_id: Any, processes: int) -> list[str]:
    """Start ``processes`` workers, let them go at once, and return their output lines."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.cluster.likes",
            url,
            schema,
            str(post_id),
            str(LIKES),
            str(CONCURRENCY),
            f"p{n}-",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), _WAIT)
            if line != b"READY\n":
                _, err = await worker.communicate()
                raise AssertionError(f"a worker did not start: {line!r} {err.decode()[-2000:]}")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        outputs = await asyncio.wait_for(
            asyncio.gather(*(worker.communicate() for worker in workers)), _WAIT
        )
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    lines: list[str] = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-2000:]
        lines += out.decode().splitlines()
    return lines


async def _check(controller: r.Controller, post_id: Any, lines: list[str], processes: int) -> None:
    done = [line.split() for line in lines if line.startswith("DONE")]
    failures = [line for line in lines if line.startswith("FAILED")]
    assert len(done) == processes and not failures, failures[:5]
    assert [int(d[1]) for d in done] == [LIKES] * processes

    total = processes * LIKES
    weights = processes * sum(weight(i) for i in range(LIKES))
    stored = await controller.storage.find("Like", None, ["weight", "who"])
    assert len(stored) == total == await controller.storage.count("Like")
    assert len({like["who"] for like in stored}) == total  # each like made once
    assert sum(like["weight"] for like in stored) == weights

    post = await controller.storage.find_one("Post", {"id": post_id}, ["like_count", "weight_sum"])
    assert post is not None
    assert (post["like_count"], post["weight_sum"]) == (total, weights)
    assert await controller.storage.get_dict("likes_total") == total
    assert await controller.storage.get_dict("weight_total") == weights
    report = await controller.verify()
    assert report.ok, report.differences


def _without_fsync(url: str) -> str:
    """``url`` with ``synchronous_commit=off`` for its sessions (asyncpg passes unknown query
    parameters on as server settings): what is tested is the values, not durability, and a
    commit's fsync costs about 10 ms on this shared machine."""
    return url + ("&" if "?" in url else "?") + "synchronous_commit=off"


async def test_processes_liking_one_post_on_postgresql_lose_nothing(postgres_url: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    url = _without_fsync(postgres_url)
    controller = r.Controller(open_storage(url, schema), **model())
    try:
        await controller.setup()
        post = await controller.storage.create("Post", {"title": "hot"})
        lines = await _run_workers(url, schema, post["id"], PROCESSES)
        await _check(controller, post["id"], lines, PROCESSES)
    finally:
        await controller.close()
        await drop_schema(postgres_url, schema)


async def test_two_processes_liking_one_post_on_one_sqlite_file_lose_nothing(
    tmp_path: Path,
) -> None:
    """Every write transaction begins with SQLite's write lock (BEGIN IMMEDIATE), so the two
    processes' transactions take turns; one that meets the lock held waits on the event loop
    and runs again whole (up to busy_timeout, 30 s here)."""
    url = f"sqlite:///{tmp_path / 'likes.db'}"
    controller = r.Controller(open_storage(url, ""), **model())
    try:
        await controller.setup()
        post = await controller.storage.create("Post", {"title": "hot"})
        lines = await _run_workers(url, "", post["id"], 2)
        await _check(controller, post["id"], lines, 2)
    finally:
        await controller.close()
