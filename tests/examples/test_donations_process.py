"""``python -m examples.donations`` as a user starts it: a real process, its settings from the
environment. A port in use and bad settings end with one line on stderr and exit status 1,
creating nothing; the database path is printed; a second start on the same database keeps the
first start's tokens valid; ``reset`` removes the database and the secret. With a
``postgresql://`` ``DATABASE_URL`` it serves on PostgreSQL, and a donation completes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from examples.donations import local
from examples.donations.local import ExampleError, jwt_secret_path
from tests.conftest import drop_schema
from tests.examples.test_donations import CREDENTIALS, DONATION, free_port, post, until_settled

ROOT = Path(__file__).resolve().parents[2]
READY = "Press Ctrl-C to stop."
START_TIMEOUT = 60.0


def example_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "DATABASE", "DATABASE_URL")}
    return {**env, "PYTHONPATH": str(ROOT), **settings}


def run_example(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.donations", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


@contextlib.asynccontextmanager
async def schema_url(postgres_url: str) -> AsyncIterator[tuple[str, str]]:
    """A new PostgreSQL schema and the URL that puts the example in it (``search_path``):
    ``(schema, url)``; the schema is dropped on exit."""
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    try:
        yield schema, f"{postgres_url}?search_path={schema}"
    finally:
        await drop_schema(postgres_url, schema)


class Served:
    """The example in a real process, until :meth:`stop` (Ctrl-C)."""

    def __init__(self, process: asyncio.subprocess.Process, banner: str) -> None:
        self.process = process
        self.banner = banner

    @classmethod
    async def start(cls, env: Mapping[str, str], cwd: Path = ROOT) -> Served:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.donations",
            cwd=cwd,
            env=dict(env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while READY not in "".join(lines):
                    line = (await process.stdout.readline()).decode()
                    if not line:
                        break
                    lines.append(line)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if READY not in "".join(lines):
            assert process.stderr is not None
            error = (await process.stderr.read()).decode()
            await process.wait()
            raise AssertionError(f"the example did not start: {''.join(lines)}{error}")
        return cls(process, "".join(lines))

    async def stop(self, signum: int = signal.SIGINT) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise


def test_a_port_in_use_is_one_clear_line_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "donations.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_example(example_env(PORT=str(port), DATABASE=str(database)))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port}" in lines[0] and "already in use" in lines[0] and "PORT=" in lines[0]
    assert "Traceback" not in done.stderr
    assert not database.exists() and not jwt_secret_path(database).exists()


def test_a_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    done = run_example(example_env(PORT="eighty", DATABASE=str(tmp_path / "d.db")))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "examples.donations: PORT='eighty' is not a port number: use 1-65535, e.g. PORT=8081"
    )
    assert list(tmp_path.iterdir()) == []


async def test_a_second_start_keeps_the_first_starts_token(tmp_path: Path) -> None:
    database = tmp_path / "donations.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = example_env(PORT=str(port), DATABASE_URL=f"sqlite:///{database}")
    async with aiohttp.ClientSession() as session:
        first = await Served.start(env)
        try:
            assert f"Database: {database}  (new" in first.banner
            status, _ = await post(session, f"{base}/api/auth.register", CREDENTIALS)
            assert status == 200
            status, login = await post(session, f"{base}/api/auth.login", CREDENTIALS)
            assert status == 200
        finally:
            assert await first.stop() == 0
        assert database.exists()
        assert not Path(f"{database}-wal").exists()  # closed cleanly
        assert jwt_secret_path(database).stat().st_mode & 0o777 == 0o600

        second = await Served.start(env)
        try:
            assert f"Database: {database}  (existing" in second.banner
            status, mine = await post(session, f"{base}/api/donations.mine", {}, login["token"])
            assert status == 200, mine
            assert mine == {"donations": []}
        finally:
            assert await second.stop(signal.SIGTERM) == 0
        assert not Path(f"{database}-wal").exists()

    done = run_example(env, "reset")
    assert done.returncode == 0, done.stderr
    assert not database.exists() and not jwt_secret_path(database).exists()
    assert run_example(env, "reset").stdout.strip() == "nothing to remove"


def test_the_database_setting() -> None:
    here = Path("/tmp")
    assert local.database_from({}, here) == here / "donations.db"
    assert local.database_from({"DATABASE": "x.db"}, here) == here / "x.db"
    assert local.database_from({"DATABASE": "/tmp/abs.db"}, Path("/")) == Path("/tmp/abs.db")
    assert local.database_from({"DATABASE_URL": "sqlite:///rel.db"}, here) == here / "rel.db"
    assert local.database_from({"DATABASE_URL": "sqlite:////tmp/abs.db"}, Path("/")) == Path(
        "/tmp/abs.db"
    )
    pg = "postgresql://u@localhost/db"
    assert local.database_from({"DATABASE_URL": pg}, here) == pg
    assert local.jwt_secret_path(pg, here) == here / "donations-postgresql.secret"
    for setting, message in [
        ({"DATABASE_URL": "mysql://u@localhost/db"}, "SQLite or PostgreSQL"),
        ({"DATABASE_URL": "sqlite:///"}, "SQLite or PostgreSQL"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "keeps its data in a file"),
        ({"DATABASE": "a.db", "DATABASE_URL": "sqlite:///b.db"}, "both"),
        ({"DATABASE": "no/such/folder/x.db"}, "does not exist"),
        ({"DATABASE": "/tmp"}, "DATABASE: /tmp is a folder"),
    ]:
        with pytest.raises(ExampleError, match=message):
            local.database_from(setting, here)


def test_the_port_setting() -> None:
    assert local.port_from({}) == 8080
    assert local.port_from({"PORT": "8081"}) == 8081
    for bad in ("0", "65536", "-1", "80a", "1e3"):
        with pytest.raises(ExampleError, match=f"PORT={bad!r} is not a port number"):
            local.port_from({"PORT": bad})


def test_reset_removes_the_database_its_wal_and_the_secret_only(tmp_path: Path) -> None:
    database = tmp_path / "donations.db"
    names = ["donations.db", "donations.db-wal", "donations.db-shm", "donations.db.secret"]
    for name in [*names, "other.db", "donations.db.bak"]:
        (tmp_path / name).write_text("x")
    removed = local.reset(database)
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["donations.db.bak", "other.db"]
    assert local.reset(database) == []


async def test_an_unusable_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    database = tmp_path / "donations.db"
    jwt_secret_path(database).write_text("short\n")
    with pytest.raises(ExampleError, match="does not hold a usable secret: remove it"):
        async with local.serve_locally(free_port(), str(database)):
            pass
    assert not database.exists()
    assert jwt_secret_path(database).read_text() == "short\n"


async def test_the_example_serves_on_postgresql_and_a_donation_completes(
    tmp_path: Path, postgres_url: str
) -> None:
    """``DATABASE_URL=postgresql://... make run``: the data on PostgreSQL (here a schema of the
    test's own, through the URL's ``search_path``), the JWT secret in the current folder."""
    import asyncpg

    async with schema_url(postgres_url) as (schema, url):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        served = await Served.start(example_env(PORT=str(port), DATABASE_URL=url), cwd=tmp_path)
        try:
            assert f"Database: {url}  (new" in served.banner
            async with aiohttp.ClientSession() as session:
                status, _ = await post(session, f"{base}/api/auth.register", CREDENTIALS)
                assert status == 200
                status, login = await post(session, f"{base}/api/auth.login", CREDENTIALS)
                assert status == 200
                token = login["token"]
                status, donated = await post(session, f"{base}/interaction/Donate", DONATION, token)
                assert status == 200, donated
                donation, _ = await until_settled(session, base, token, donated["data"]["id"])
            assert donation["payment_status"] == "completed"
            assert donation["translated_message"] == "[translated] Thank you"
            assert donation["voice_url"].endswith(".mp3")
        finally:
            assert await served.stop() == 0
        assert (tmp_path / "donations-postgresql.secret").stat().st_mode & 0o777 == 0o600
        connection = await asyncpg.connect(postgres_url)
        try:
            stored = await connection.fetchval(f'SELECT count(*) FROM "{schema}"."Donation"')
        finally:
            await connection.close()
        assert stored == 1
