"""``reactive.testing.strategies`` against a real controller: every drawn payload is accepted
and stored as drawn, every near miss is refused with a ``payload_*`` code and stores nothing,
and every drawn write names only plain fields and keeps verify() clean."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactive as r
from reactive.testing import strategies
from reactive.testing.steps import Create, Delete, Update
from storage import SQLiteStorage

T = TypeVar("T")

user = r.Entity("User", [r.Property("name"), r.Property("age", "integer")])
post = r.Entity(
    "Post",
    [
        r.Property("title"),
        r.Property("score", "number"),
        r.Property("like_count", "number", computation=r.Count(property="liked_by")),
        r.Property("upper", computed=lambda p: (p["title"] or "").upper()),
    ],
)
likes = r.Relation(post, "liked_by", user, "liked", "n:n")
publish = r.Interaction(
    "Publish",
    r.Payload(
        [
            r.PayloadItem("post", base=post, is_ref=True, required=True),
            r.PayloadItem("fans", base=user, is_ref=True, is_collection=True),
            r.PayloadItem("stars", "integer", required=True, minimum=1, maximum=5),
            r.PayloadItem("note", min_length=2, max_length=10),
            r.PayloadItem("weight", "number", minimum=0, maximum=1.5),
            r.PayloadItem("public", "boolean"),
            r.PayloadItem("at", "timestamp"),
            r.PayloadItem("extra", "json"),
            r.PayloadItem("tags", is_collection=True, max_length=3),
        ]
    ),
)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class App:
    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.controller = self.run(self._build(str(path / "app.db")))

    async def _build(self, path: str) -> r.Controller:
        c = r.Controller(SQLiteStorage(path), [user, post], [likes], interactions=[publish])
        await c.setup()
        for n in range(3):
            await c.storage.create("User", {"name": f"u{n}"})
        await c.storage.create("Post", {"title": "p"})
        return c

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def existing(self) -> dict[str, list[Any]]:
        return self.run(
            strategies.existing_ids(self.controller, ["User", "Post", likes.relation_name])
        )

    def events(self) -> int:
        return self.run(self.controller.storage.count(r.INTERACTION_EVENT))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    a = App(tmp_path)
    yield a
    a.run(a.controller.close())
    a.loop.close()


def test_drawn_payloads_are_accepted_as_drawn(app: App) -> None:
    @SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        existing = app.existing()
        payload = data.draw(strategies.payloads(publish, existing))
        assert {"post", "stars"} <= set(payload)
        assert payload["post"]["id"] in existing["Post"]
        result = app.run(app.controller.dispatch("Publish", None, payload))
        assert result.error is None, (payload, result.error)
        event = app.run(
            app.controller.storage.find_one(
                r.INTERACTION_EVENT, {"id": result.data["id"]}, ["payload"]
            )
        )
        assert event is not None
        stored = event["payload"]
        assert stored["stars"] == payload["stars"] and 1 <= stored["stars"] <= 5
        if "at" in payload:
            assert stored["at"] == payload["at"].isoformat()

    check()


def test_near_misses_are_refused_and_store_nothing(app: App) -> None:
    codes: set[str] = set()

    @SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        before = app.events()
        payload = data.draw(strategies.invalid_payloads(publish, app.existing()))
        result = app.run(app.controller.dispatch("Publish", None, payload))
        assert result.error is not None, f"accepted a near miss: {payload!r}"
        assert result.error.code.startswith("payload_"), result.error
        codes.add(result.error.code)
        assert app.events() == before

    check()
    # every kind of near miss was drawn: unknown, missing, wrong type, dangling reference
    assert codes == {"payload_unknown", "payload_missing", "payload_type", "payload_ref_missing"}


def test_a_reference_with_nothing_to_name_is_not_drawable() -> None:
    assert not strategies.drawable(publish, {"User": [1]})
    assert strategies.drawable(publish, {"Post": [1]})


def test_writes_touch_only_plain_fields_and_keep_verify_clean() -> None:
    kinds: set[str] = set()
    computed = {"like_count", "upper"}

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory() as folder:
            app = App(Path(folder))  # a fresh database: each example replays alike
            try:
                for _ in range(8):
                    step = data.draw(strategies.writes([user, post], [likes], app.existing()))
                    assert isinstance(step, Create | Update | Delete)
                    if isinstance(step, Create | Update):
                        assert not computed & set(step.data)
                    link = "-link" if step.record == likes.name else ""
                    kinds.add(type(step).__name__ + link)
                    app.run(step.run(app.controller))
                    assert app.run(app.controller.verify()).ok
            finally:
                app.run(app.controller.close())
                app.loop.close()

    check()
    assert {"Create", "Update", "Delete", "Create-link", "Delete-link"} <= kinds
