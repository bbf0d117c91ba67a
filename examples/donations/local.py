"""The donation application served on this machine, as ``make run`` does: local fake providers,
a database file that outlives the process, and a demo pace at which every step can be watched.

- **Where the data is.** :func:`database_from` reads ``DATABASE`` (a file path) or
  ``DATABASE_URL`` (``sqlite:///relative.db``, ``sqlite:////absolute.db``, or
  ``postgresql://user@host:port/database``); the default is ``donations.db`` in the current
  folder (the project folder under ``make run``). The JWT signing secret is kept beside a SQLite
  file, or in ``donations-postgresql.secret`` in the current folder for PostgreSQL
  (:func:`jwt_secret_path`, created once with mode 0600 and reused), so that registered users
  and their tokens survive a restart. :func:`reset` removes the file and the secret (on
  PostgreSQL the secret only: the tables stay).
- **The demo pace** (:class:`Pacing`). The fakes answer in microseconds, which would take every
  call from ``pending`` to ``completed`` before anyone could look. With :data:`DEMO_PACING` the
  customer confirms the payment a second after the PaymentIntent exists (Stripe sends
  ``payment_intent.processing``) and the payment succeeds two seconds later; the text-to-speech
  task reports that it is running (a signed callback) a second after it was accepted and
  finishes three seconds after submission. The translation is a synchronous API: its call goes
  from ``pending`` to ``completed`` in one step. Tests pass a faster :class:`Pacing`.
- **The port** is bound before anything else starts; a port in use (or refused) is an
  :class:`ExampleError` naming it and ``PORT=``, and nothing is created.

Every bad setting is an :class:`ExampleError` with a one-line message; ``__main__`` prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import attrs
from aiohttp import web

import reactive as r
from examples.donations.app import DonationApp, build
from integrations.providers.openai_translate.fake_server import FakeOpenAI
from integrations.providers.stripe_payments.fake_server import FakeStripe
from integrations.providers.volc_tts.fake_server import FakeVolcTTS
from integrations.webhooks import generate_standard_secret
from storage import Storage

__all__ = [
    "DEFAULT_DATABASE",
    "DEMO_PACING",
    "HOST",
    "ExampleError",
    "Pacing",
    "Providers",
    "database_from",
    "fake_providers",
    "jwt_secret",
    "jwt_secret_path",
    "listen",
    "pace_providers",
    "port_from",
    "reset",
    "serve_app",
    "serve_locally",
]

HOST = "127.0.0.1"
DEFAULT_DATABASE = "donations.db"
SQLITE_URL = "sqlite:///"
POSTGRES_URLS = ("postgresql://", "postgres://")
POSTGRES_SECRET = "donations-postgresql.secret"
SECRET_SUFFIX = ".secret"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

log = logging.getLogger("examples.donations")


class ExampleError(Exception):
    """A setting the example cannot run with; the message says which and what to do."""


@attrs.frozen
class Pacing:
    """When the fake customer and the fake providers act, in seconds.

    ``payment_processing`` and ``payment_succeeded`` count from the moment the PaymentCall is
    linked to its PaymentIntent; ``voice_running`` from the moment the VoiceCall is linked to its
    task; ``voice_finished`` from the task's submission. ``None`` skips the processing report.
    """

    payment_processing: float | None = 1.0
    payment_succeeded: float = 3.0
    voice_running: float | None = 1.0
    voice_finished: float = 3.0

    def __attrs_post_init__(self) -> None:
        if self.payment_processing is not None and (
            self.payment_processing < 0 or self.payment_processing > self.payment_succeeded
        ):
            raise ValueError("payment_processing must lie between 0 and payment_succeeded")
        if self.voice_running is not None and self.voice_running < 0:
            raise ValueError("voice_running must not be negative")
        if self.payment_succeeded < 0 or self.voice_finished < 0:
            raise ValueError("delays must not be negative")


DEMO_PACING = Pacing()


# -- settings --------------------------------------------------------------------------------


def port_from(environ: Mapping[str, str]) -> int:
    """``PORT`` (default 8080), checked."""
    raw = environ.get("PORT", "").strip() or "8080"
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ExampleError(f"PORT={raw!r} is not a port number: use 1-65535, e.g. PORT=8081")
    return int(raw)


def database_from(environ: Mapping[str, str], cwd: Path | None = None) -> Path | str:
    """The database: a SQLite file (``DATABASE``, else a ``sqlite:///`` ``DATABASE_URL``, else
    ``donations.db`` in ``cwd``, default the current folder; absolute, its folder must exist), or
    a ``postgresql://`` ``DATABASE_URL`` as given (a str)."""
    folder = Path.cwd() if cwd is None else cwd
    path_setting = environ.get("DATABASE", "").strip()
    url = environ.get("DATABASE_URL", "").strip()
    if path_setting and url:
        raise ExampleError("both DATABASE and DATABASE_URL are set: keep one of them")
    if url.lower().startswith(POSTGRES_URLS):
        return url
    if url:
        if not url.startswith(SQLITE_URL) or url == SQLITE_URL:
            raise ExampleError(
                f"DATABASE_URL={url!r}: the example runs on SQLite or PostgreSQL; use "
                "sqlite:///relative/path.db, sqlite:////absolute/path.db or "
                "postgresql://user@host:port/database"
            )
        path_setting = url[len(SQLITE_URL) :]
        if path_setting == ":memory:":
            raise ExampleError(
                f"DATABASE_URL={url!r}: the example keeps its data in a file; name one"
            )
    path = Path(os.path.abspath(folder / (path_setting or DEFAULT_DATABASE)))
    setting = "DATABASE_URL" if url else "DATABASE"
    if not path.parent.is_dir():
        raise ExampleError(f"{setting}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ExampleError(f"{setting}: {path} is a folder; name a file in it")
    return path


def jwt_secret_path(database: Path | str, cwd: Path | None = None) -> Path:
    """Where the demo keeps its JWT signing secret: beside a SQLite file; for a PostgreSQL
    URL, ``donations-postgresql.secret`` in ``cwd`` (default: the current folder)."""
    if isinstance(database, str):
        return (Path.cwd() if cwd is None else cwd) / POSTGRES_SECRET
    return database.with_name(database.name + SECRET_SUFFIX)


def jwt_secret(path: Path) -> str:
    """The demo's JWT signing secret: read from ``path``, or created there once (mode 0600,
    atomically: two starts at once agree on one secret)."""
    try:
        if not path.exists():
            draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "w") as out:
                    out.write(secrets.token_urlsafe(48) + "\n")
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)  # never replaces a secret another start just made
            finally:
                draft.unlink()
        secret = path.read_text().strip()
    except OSError as exc:
        raise ExampleError(f"the JWT secret {path}: {exc.strerror or exc}") from None
    if len(secret) < 32:
        raise ExampleError(
            f"{path} does not hold a usable secret: remove it (make reset clears the demo's "
            "database and secret)"
        )
    return secret


def reset(database: Path | str) -> list[Path]:
    """Remove the database file (and its WAL files) and the JWT secret; returns what was
    removed. On PostgreSQL (a URL) the secret only: the tables are left to their owner."""
    removed = []
    candidates = (
        []
        if isinstance(database, str)
        else [database, *(Path(f"{database}{s}") for s in SQLITE_COMPANIONS)]
    )
    for path in [*candidates, jwt_secret_path(database)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def listen(port: int) -> socket.socket:
    """A socket bound to ``HOST:port`` (the server listens on it later)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ExampleError(
                f"port {port} on {HOST} is already in use (another server?): stop it, or "
                f"choose another port, e.g. PORT={port + 1 if port < 65535 else 8081} make run"
            ) from None
        raise ExampleError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}): choose another port with PORT="
        ) from None
    return sock


# -- serving ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_locally(
    port: int,
    database: str | Storage,
    *,
    pacing: Pacing = DEMO_PACING,
    secret: Path | None = None,
) -> AsyncIterator[DonationApp]:
    """The application on ``127.0.0.1:port`` with fake providers on loopback, on ``database``
    (a SQLite file path, a ``postgresql://`` URL or a storage; created if needed), with the JWT
    secret kept at ``secret`` (default: :func:`jwt_secret_path`; required for a storage)."""
    if secret is None:
        if not isinstance(database, str):
            raise ExampleError("serve_locally on a storage needs secret=, the JWT secret's path")
        secret = jwt_secret_path(database if "://" in database else Path(database))
    sock = listen(port)
    try:
        signing = jwt_secret(secret)
        async with (
            fake_providers(port, signing, pacing) as providers,
            serve_app(sock, database, providers.environ) as app,
        ):
            pacer = _Pacer()
            _pace_payments(app.controller, providers.stripe, pacing, pacer)
            _pace_voices(app.controller, providers.volc, pacing, pacer)
            try:
                yield app
            finally:
                await pacer.close()
    finally:
        sock.close()


@attrs.frozen
class Providers:
    """The running fake providers and the settings (``environ``) that point the application at
    them: what :func:`build` reads, for every process serving the application."""

    stripe: FakeStripe
    openai: FakeOpenAI
    volc: FakeVolcTTS
    environ: dict[str, str]


@contextlib.asynccontextmanager
async def fake_providers(port: int, jwt_secret: str, pacing: Pacing) -> AsyncIterator[Providers]:
    """The fake providers on loopback, their webhooks and callbacks aimed at the application on
    ``127.0.0.1:port``; ``environ`` holds their settings and ``jwt_secret``. Started once per
    machine (in the parent when several workers serve the application)."""
    base = f"http://{HOST}:{port}"
    callback_secret = generate_standard_secret()
    async with (
        # A new fake numbers its tasks from 1 again: a prefix of its own keeps task ids (and
        # the dedup keys of their callbacks) apart from those of earlier runs on the database.
        FakeVolcTTS(
            callback_secret=callback_secret,
            finish_after=pacing.voice_finished,
            task_prefix=f"volc-{secrets.token_hex(4)}-",
        ) as volc,
        FakeOpenAI() as openai,
        FakeStripe(webhook_url=f"{base}/api/stripe_payments.webhook") as stripe,
    ):
        environ = {
            "AUTH_JWT_SECRET": jwt_secret,
            **volc.environ(VOLC_TTS_CALLBACK_URL=f"{base}/api/volc_tts.callback"),
            "OPENAI_API_KEY": openai.api_key or "",
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_MODEL": "gpt-4o-mini",
            "STRIPE_SECRET_KEY": stripe.secret_key,
            "STRIPE_WEBHOOK_SECRET": str(stripe.webhook_secret),
            "STRIPE_API_BASE": stripe.url,
        }
        yield Providers(stripe, openai, volc, environ)


@contextlib.asynccontextmanager
async def serve_app(
    sock: socket.socket,
    database: str | Storage,
    environ: Mapping[str, str],
    *,
    worker_header: bool = False,
) -> AsyncIterator[DonationApp]:
    """The application built from ``environ`` on ``database``, serving on the bound ``sock``
    (which stays the caller's to close). ``worker_header``: every response carries
    ``X-Worker: <pid>``, saying which of several worker processes answered."""
    app = await build(database, environ, cookie_secure=False)
    if worker_header:
        pid = str(os.getpid())

        async def tag(request: web.Request, response: web.StreamResponse) -> None:
            response.headers["X-Worker"] = pid

        app.web.on_response_prepare.append(tag)
    runner = web.AppRunner(app.web, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield app
    finally:
        await runner.cleanup()
        await app.close()


_Step = tuple[float, Callable[[], Awaitable[object]]]


class _Pacer:
    """Runs the demo's delayed steps; :meth:`close` cancels those still waiting."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: set[str] = set()

    def play(self, key: str, steps: Sequence[_Step]) -> None:
        """Run ``steps`` (seconds from now, action) in order, once per ``key``."""
        if key in self._started:
            return
        self._started.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key, steps))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, steps: Sequence[_Step]) -> None:
        elapsed = 0.0
        for at, action in steps:
            await asyncio.sleep(max(0.0, at - elapsed))
            elapsed = max(elapsed, at)
            try:
                await action()
            except Exception as exc:  # a demo step failing must not stop the server
                log.warning("demo step for %s failed: %s", key, exc)
                return

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _on_linked(controller: r.Controller, call: str, react: Callable[[str], None]) -> None:
    """Call ``react(external_id)`` when a ``call`` record gets its external id."""

    def on_update(event: r.MutationEvent) -> None:
        external_id = event.record.get("external_id")
        if external_id and "external_id" in (event.keys or ()):
            react(str(external_id))

    controller.stream(call, "update").subscribe(on_update)


def _payment_steps(stripe: FakeStripe, pacing: Pacing, intent_id: str) -> list[_Step]:
    """The fake customer confirms the payment, which Stripe then reports processing and later
    succeeded."""
    steps: list[_Step] = []
    if pacing.payment_processing is not None:
        steps.append((pacing.payment_processing, lambda: stripe.process(intent_id)))
    steps.append((pacing.payment_succeeded, lambda: stripe.succeed(intent_id)))
    return steps


def _pace_payments(
    controller: r.Controller, stripe: FakeStripe, pacing: Pacing, pacer: _Pacer
) -> None:
    """Each payment is paced from the moment its PaymentCall is linked to the intent."""
    _on_linked(
        controller,
        "PaymentCall",
        lambda intent_id: pacer.play(intent_id, _payment_steps(stripe, pacing, intent_id)),
    )


def _pace_voices(
    controller: r.Controller, volc: FakeVolcTTS, pacing: Pacing, pacer: _Pacer
) -> None:
    """Each text-to-speech task calls back once while running (its finish calls back again)."""
    running = pacing.voice_running
    if running is None:
        return
    _on_linked(
        controller,
        "VoiceCall",
        lambda task_id: pacer.play(task_id, [(running, lambda: volc.notify(task_id))]),
    )


def _notifier(volc: FakeVolcTTS, task_id: str) -> Callable[[], Awaitable[object]]:
    """The running callback of ``task_id``, as a pacer step."""
    return lambda: volc.notify(task_id)


WATCH_EVERY = 0.05
"""Seconds between two looks at the fakes' records in :func:`pace_providers`."""


@contextlib.asynccontextmanager
async def pace_providers(providers: Providers, pacing: Pacing) -> AsyncIterator[None]:
    """The demo pace driven from the fakes' own records, for a process that runs the fakes but
    not the application (the parent of several workers, which sees no worker's events): each
    PaymentIntent and each text-to-speech task is paced from the moment the fake created it
    (milliseconds before the worker that asked links its call to it). One look every
    :data:`WATCH_EVERY` seconds until the block ends."""
    pacer = _Pacer()
    running = pacing.voice_running

    async def watch() -> None:
        while True:
            for intent_id in list(providers.stripe.intents):
                pacer.play(intent_id, _payment_steps(providers.stripe, pacing, intent_id))
            if running is not None:
                for task_id in list(providers.volc.tasks):
                    pacer.play(task_id, [(running, _notifier(providers.volc, task_id))])
            await asyncio.sleep(WATCH_EVERY)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await pacer.close()
