"""The engine's writes of one row coalesce (storage.sql.statements' write-behind): in the
guide's chain (benchmarks.chain) the side effect's transaction writes three events, and the
StateMachine and Customs write the call's row four times; on PostgreSQL it is sent twice
(before the read by ``external_id`` that must see it, and at commit); SQLite, which does not
defer (``Dialect.defers_updates``), sends all four; the same result on both."""

from __future__ import annotations

import pytest

import reactive as r
from benchmarks.chain import chain_model, tts_side_effect
from tests.reactive.conftest import MakeController
from tests.storage.helpers import statement_log


async def test_the_chain_sends_the_calls_row_twice_on_postgresql(
    make: MakeController, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    entities, relations, interactions = chain_model()
    effect = r.RecordMutationSideEffect("tts", "TTSCall", tts_side_effect, on=("create",))
    controller = await make(entities, relations, interactions=interactions, side_effects=[effect])
    with statement_log(controller.backend, monkeypatch) as log:
        result = await controller.dispatch("Greet", {"id": 1}, {"text": "hello"})
        assert result.error is None, result.error
        await controller.drain()
    calls = [s for s in log if s.startswith('UPDATE "TTSCall"')]
    assert '"external_id"' in calls[0]
    if backend == "postgres":
        assert len(calls) == 2, log
        coalesced = ("status", "_status_bound_state", "response_data")
        assert all(f'"{f}"' in calls[1] for f in coalesced)
    else:
        assert len(calls) == 4, log
    (call,) = await controller.storage.find("TTSCall", None, ["status", "response_data"])
    assert call["status"] == "completed" and call["response_data"]["url"].endswith("1.mp3")
    (greeting,) = await controller.storage.find("Greeting", None, ["voice_url"])
    assert greeting["voice_url"] == call["response_data"]["url"]
