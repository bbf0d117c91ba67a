"""Auth under attack, on the real server over real HTTP on loopback: token subjects that only
look like a user id, tokens for users that do not exist, look-alike usernames, and login and
registration floods (limits per client address and per username, a cap on concurrent hashes).
Time is a FakeClock: the limiter's window is moved, never slept through."""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import hypothesis
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import strategies as st

import reactive as r
from integrations.auth import AuthIntegration, ScryptParams, TokenSettings, issue_token
from integrations.auth import integration as auth_module
from integrations.auth.limits import AttemptLimiter, GateFull, HashGate
from integrations.auth.passwords import verify_password
from integrations.testing import FakeClock
from reactive.server import create_app
from tests.conftest import StorageFactory

from .conftest import Client

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

SECRET = "hardening-secret-" + "h" * 40
FAST = ScryptParams(log_n=4, r=1, p=1)
PASSWORD = "correct horse battery"

Start = Callable[..., Awaitable[tuple[Client, AuthIntegration]]]


async def whoami(ctx: r.APIContext, params: Any) -> Any:
    return {"user_id": ctx.user_id}


@pytest.fixture
async def start(controller: r.Controller) -> AsyncIterator[Start]:
    """``client, auth = await start(**AuthIntegration options)`` on ``create_app``."""
    clients: list[Client] = []

    async def factory(**options: Any) -> tuple[Client, AuthIntegration]:
        options.setdefault("password_params", FAST)
        auth = AuthIntegration(secret=SECRET, cookie_secure=False, **options)
        await auth.configure()
        apis = {**auth.create_apis(), "whoami": r.API(whoami)}
        app = create_app(controller, apis, auth.create_middlewares())
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, auth

    yield factory
    for client in clients:
        await client.close()


async def post(
    client: Client, name: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    response = await client.post(f"/api/{name}", json=body or {}, headers=headers or {})
    return response.status, await response.json()


def credentials(username: str = "ada", password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


def bearer_for(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, subject, TokenSettings())}"}


# -- item 3: token subjects ---------------------------------------------------------------------


async def test_only_the_canonical_subject_names_a_user(start: Start) -> None:
    client, _ = await start()
    status, answer = await post(client, "auth.register", credentials())
    assert (status, answer["user_id"]) == (200, 1)
    status, answer = await post(client, "auth.me", headers=bearer_for("1"))
    assert (status, answer) == (200, {"user_id": 1, "username": "ada"})
    for subject in ("01", "1 ", " 1", "+1", "1.0", "\u0661", "\uff11"):
        for api in ("auth.me", "whoami"):
            status, answer = await post(client, api, headers=bearer_for(subject))
            assert status == 401, (subject, api, answer)
            assert answer["error"]["code"] == "invalid_token"
            assert "not a user id" in answer["error"]["message"]


async def test_a_valid_token_for_a_missing_user_is_401(
    start: Start, controller: r.Controller
) -> None:
    client, _ = await start()
    for api in ("whoami", "auth.me", "auth.logout"):
        status, answer = await post(client, api, headers=bearer_for("999"))
        assert (status, answer["error"]["code"]) == (401, "invalid_token"), answer
        assert "no existing user" in answer["error"]["message"]
    # a user deleted after the token was issued
    status, answer = await post(client, "auth.register", credentials())
    headers = bearer_for(str(answer["user_id"]))
    assert (await post(client, "whoami", headers=headers))[0] == 200
    await controller.storage.delete("User", {"id": answer["user_id"]})
    status, answer = await post(client, "whoami", headers=headers)
    assert (status, answer["error"]["code"]) == (401, "invalid_token")


async def test_a_valid_token_for_a_missing_user_is_401_on_interactions(
    make_storage: StorageFactory,
) -> None:
    """The dispatch used to run with the missing user and fail late (422 MissingReference)."""
    user = r.Entity("User", [r.Property("username"), r.Property("password_hash")])
    note = r.Entity("Note", [r.Property("text")])
    written = r.Relation(note, "author", user, "notes", "n:1")
    add = r.Interaction("AddNote", r.Payload([r.PayloadItem("text", required=True)]))
    controller = r.Controller(make_storage("notes.db"), [user, note], [written], interactions=[add])
    await controller.setup()
    auth = AuthIntegration(secret=SECRET, password_params=FAST)
    await auth.configure()
    client: Client = TestClient(
        TestServer(create_app(controller, {}, auth.create_middlewares()), host="127.0.0.1")
    )
    await client.start_server()
    try:
        response = await client.post(
            "/interaction/AddNote", json={"payload": {"text": "hi"}}, headers=bearer_for("7")
        )
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_token"
        assert await controller.storage.count(r.INTERACTION_EVENT) == 0
    finally:
        await client.close()
        await controller.close()


# -- item 3: usernames -------------------------------------------------------------------------


def fullwidth(text: str) -> str:
    """The fullwidth look-alike of printable ASCII (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def test_fullwidth_look_alikes_are_the_same_username(
    start: Start, controller: r.Controller
) -> None:
    client, _ = await start()
    status, ada = await post(client, "auth.register", credentials("ada"))
    assert status == 200
    for look_alike in (fullwidth("ada"), "ad\u0251".replace("\u0251", "a"), "\u1d43da"):
        status, answer = await post(client, "auth.register", credentials(look_alike))
        assert (status, answer["error"]["code"]) == (409, "username_taken"), look_alike
    status, login = await post(client, "auth.login", credentials(fullwidth("ada")))
    assert (status, login["user_id"]) == (200, ada["user_id"])
    # case still matters by default
    status, other = await post(client, "auth.register", credentials("Ada"))
    assert status == 200 and other["user_id"] != ada["user_id"]
    assert await controller.storage.count("User") == 2


async def test_case_insensitive_usernames_when_the_app_says_so(
    start: Start, controller: r.Controller
) -> None:
    client, _ = await start(case_insensitive_usernames=True)
    status, ada = await post(client, "auth.register", credentials("Ada"))
    assert (status, ada["username"]) == (200, "ada")
    for variant in ("ada", "ADA", fullwidth("ADA"), "a\u0044a"):
        status, answer = await post(client, "auth.register", credentials(variant))
        assert (status, answer["error"]["code"]) == (409, "username_taken"), variant
        status, login = await post(client, "auth.login", credentials(variant))
        assert (status, login["user_id"]) == (200, ada["user_id"]), variant
    assert await controller.storage.count("User") == 1


@hypothesis.given(st.text(st.characters(codec="utf-8"), max_size=12), st.booleans())
def test_canonical_usernames_are_stable(name: str, fold: bool) -> None:
    auth = AuthIntegration(secret=SECRET, case_insensitive_usernames=fold)
    canonical = auth.canonical_username(name)
    assert auth.canonical_username(canonical) == canonical
    assert unicodedata.is_normalized("NFKC", canonical)
    assert auth.canonical_username(fullwidth(name)) == auth.canonical_username(name)
    if fold:
        assert auth.canonical_username(name.upper()) == auth.canonical_username(name.lower())


# -- item 2: floods ----------------------------------------------------------------------------


async def test_attempts_per_address_get_429_with_retry_after_until_the_window_ends(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    client, _ = await start(address_limit=3, username_limit=100, limit_window=60, limit_clock=clock)
    hashes = count_hashes(monkeypatch)
    answers = await asyncio.gather(
        *(post(client, "auth.login", credentials(f"user{i}")) for i in range(8))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [401] * 3 + [429] * 5
    assert hashes() == 3  # a refused attempt costs no hash
    response = await client.post("/api/auth.login", json=credentials("someone"))
    assert response.status == 429
    assert response.headers["Retry-After"] == "60"
    body = await response.json()
    assert body["error"]["code"] == "too_many_requests"
    assert "retry in 60 s" in body["error"]["message"]
    # registration counts against the same address
    assert (await post(client, "auth.register", credentials("newcomer")))[0] == 429
    clock.advance(45)
    response = await client.post("/api/auth.login", json=credentials("someone"))
    assert (response.status, response.headers["Retry-After"]) == (429, "15")
    clock.advance(15)  # the window is over
    assert (await post(client, "auth.register", credentials("newcomer")))[0] == 200
    assert hashes() == 3


async def test_attempts_per_username_are_limited_from_any_address(start: Start) -> None:
    clock = FakeClock()
    client, _ = await start(
        address_limit=100,
        username_limit=2,
        limit_window=30,
        limit_clock=clock,
        client_address=lambda request: request.headers.get("X-Client"),
    )
    assert (await post(client, "auth.register", credentials("ada")))[0] == 200
    wrong = credentials("ada", "not the password")
    for address in ("10.0.0.1", "10.0.0.2"):
        status, _ = await post(client, "auth.login", wrong, {"X-Client": address})
        assert status == 401
    status, answer = await post(client, "auth.login", credentials(), {"X-Client": "10.0.0.3"})
    assert (status, answer["error"]["code"]) == (429, "too_many_requests")
    # the look-alike is the same username, another username is not limited
    status, _ = await post(client, "auth.login", credentials(fullwidth("ada")))
    assert status == 429
    assert (await post(client, "auth.login", credentials("bob")))[0] == 401
    clock.advance(30)
    status, answer = await post(client, "auth.login", credentials())
    assert status == 200
    # a success starts the username's count again
    for _ in range(2):
        assert (await post(client, "auth.login", wrong))[0] == 401
    assert (await post(client, "auth.login", wrong))[0] == 429


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts password checks; the real function still does the work."""
    calls: list[str] = []
    real = verify_password  # what auth_module.verify_password names until patched below

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    return lambda: len(calls)


async def test_an_unknown_user_costs_a_hash_like_a_known_one(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = await start()
    assert (await post(client, "auth.register", credentials("ada")))[0] == 200
    hashes = count_hashes(monkeypatch)
    assert (await post(client, "auth.login", credentials("ada", "wrong password")))[0] == 401
    assert hashes() == 1
    status, unknown = await post(client, "auth.login", credentials("nobody"))
    assert status == 401 and unknown["error"]["code"] == "invalid_credentials"
    assert hashes() == 2


async def test_a_full_hash_queue_answers_503_with_retry_after(start: Start) -> None:
    client, auth = await start(max_concurrent_hashes=1, max_waiting_hashes=0)
    release = threading.Event()
    holder = asyncio.ensure_future(auth.hash_gate.run(release.wait, 30))
    for _ in range(100):  # bounded: until the holder has the slot
        if auth.hash_gate.busy:
            break
        await asyncio.sleep(0.01)
    try:
        response = await client.post("/api/auth.login", json=credentials())
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["error"]["code"] == "service_unavailable"
    finally:
        release.set()
        assert await holder is True
    assert (await post(client, "auth.register", credentials()))[0] == 200


async def test_the_gate_bounds_running_and_waiting_hashes_even_when_cancelled() -> None:
    gate = HashGate(slots=1, max_waiting=1)
    release = threading.Event()
    first = asyncio.ensure_future(gate.run(release.wait, 30))
    second = asyncio.ensure_future(gate.run(lambda: "second"))
    for _ in range(100):
        if gate.busy and gate.waiting == 1:
            break
        await asyncio.sleep(0.01)
    assert gate.busy and gate.waiting == 1
    with pytest.raises(GateFull) as full:
        await gate.run(lambda: "third")
    assert full.value.retry_after >= 1
    first.cancel()  # the request went away; its thread still runs and keeps the slot
    await asyncio.sleep(0.05)
    assert gate.busy and not second.done()
    release.set()
    assert await second == "second"
    assert not gate.busy and gate.waiting == 0


class _Model:
    """What the limiter must do, written the plain way: timestamps of counted attempts."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.starts: dict[str, float] = {}
        self.counted: dict[str, int] = {}

    def hit(self, key: str, now: float) -> bool:
        if key not in self.starts or now >= self.starts[key] + self.window:
            self.starts[key], self.counted[key] = now, 0
        if self.counted[key] >= self.limit:
            return False
        self.counted[key] += 1
        return True


@hypothesis.given(
    st.integers(1, 4),
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 25)), max_size=60),
)
def test_the_limiter_matches_its_model(limit: int, steps: list[tuple[str, int]]) -> None:
    now = [0.0]
    limiter = AttemptLimiter(limit, 10.0, clock=lambda: now[0], max_keys=10)
    model = _Model(limit, 10.0)
    for key, advance in steps:
        now[0] += advance / 5
        wait = limiter.hit(key)
        assert (wait is None) == model.hit(key, now[0])
        if wait is not None:
            assert 0 < wait <= 10.0
            assert wait == pytest.approx(model.starts[key] + 10.0 - now[0])
