"""Volcano Engine async TTS: the API client against the fake server (typed answers, error
classification, timeouts) and the integration's configuration (environment variables)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from integrations import (
    MissingEnvironmentError,
    PermanentError,
    ProviderHTTPError,
    TransientError,
    api_call_entities,
    generate_standard_secret,
)
from integrations.providers.volc_tts import VolcTTSIntegration
from integrations.providers.volc_tts.api import (
    SubmitRequest,
    TaskResult,
    VolcTTSClient,
    VolcTTSProtocolError,
    VolcTTSRejected,
    VolcTTSUnavailable,
)
from integrations.providers.volc_tts.fake_server import Delay, FakeVolcTTS, Reply
from integrations.retry import is_transient


@pytest.fixture
async def fake() -> AsyncIterator[FakeVolcTTS]:
    async with FakeVolcTTS() as server:
        yield server


@pytest.fixture
async def client(fake: FakeVolcTTS) -> AsyncIterator[VolcTTSClient]:
    api = VolcTTSClient(appid=fake.appid, token=fake.token, base_url=fake.url, timeout=1.0)
    yield api
    await api.close()


def request(reqid: str = "req-1", **fields: Any) -> SubmitRequest:
    return SubmitRequest(
        **{"appid": "fake-appid", "reqid": reqid, "text": "hi", "voice_type": "v", **fields}
    )


async def test_submit_and_query_return_typed_answers(
    fake: FakeVolcTTS, client: VolcTTSClient
) -> None:
    submitted = await client.submit(request(format="wav"), "key-1")
    assert (submitted.reqid, submitted.task_status, submitted.text_length) == ("req-1", 0, 2)

    running = await client.query(submitted.task_id)
    assert running.running and running.audio_url is None
    done = await client.query(submitted.task_id)
    assert done.succeeded
    assert done.audio_url == f"https://tts.invalid/audio/{submitted.task_id}.wav"
    assert done.sentences[0].text == "hi" and done.sentences[0].end_time == 200
    assert (await client.submit(request(), "key-1")).task_id == submitted.task_id  # same reqid
    assert fake.requests_to("submit")[0].idempotency_key == "key-1"


@pytest.mark.parametrize(
    ("reply", "error", "transient"),
    [
        (Reply(400, {"code": 40000, "message": "bad"}), VolcTTSRejected, False),
        (Reply(200, {"code": 40300, "message": "quota"}), VolcTTSRejected, False),
        (Reply(200, {"code": 42900, "message": "slow down"}), VolcTTSUnavailable, True),
        (Reply(200, {"code": 50000, "message": "internal"}), VolcTTSUnavailable, True),
        (Reply(503, {"code": 40000, "message": "5xx wins"}), ProviderHTTPError, True),
        (Reply(429, None, {"Retry-After": "3"}), ProviderHTTPError, True),
        (Reply(404, "not json"), ProviderHTTPError, False),
        (Reply(200, ["not", "an", "object"]), VolcTTSProtocolError, False),
        (Reply(200, {"task_id": 7}), VolcTTSProtocolError, False),
    ],
)
async def test_submit_errors_are_classified(
    fake: FakeVolcTTS,
    client: VolcTTSClient,
    reply: Reply,
    error: type[Exception],
    transient: bool,
) -> None:
    fake.script("submit", reply)
    with pytest.raises(error) as caught:
        await client.submit(request(), "k")
    assert is_transient(caught.value) is transient
    if isinstance(caught.value, VolcTTSRejected):
        assert isinstance(caught.value, PermanentError)
    if isinstance(caught.value, VolcTTSUnavailable):
        assert isinstance(caught.value, TransientError)


async def test_the_request_timeout_is_per_request(fake: FakeVolcTTS) -> None:
    api = VolcTTSClient(appid=fake.appid, token=fake.token, base_url=fake.url, timeout=0.05)
    fake.script("submit", Delay(1.0))
    try:
        with pytest.raises(asyncio.TimeoutError) as caught:
            await api.submit(request(), "k")
        assert is_transient(caught.value)
    finally:
        await api.close()


async def test_query_of_an_unknown_task_is_rejected(client: VolcTTSClient) -> None:
    with pytest.raises(VolcTTSRejected) as caught:
        await client.query("nope")
    assert caught.value.code == 40400 and caught.value.status == 404


async def test_the_fake_checks_credentials(fake: FakeVolcTTS) -> None:
    wrong = VolcTTSClient(appid=fake.appid, token="wrong", base_url=fake.url)
    other = VolcTTSClient(appid=fake.appid, token=fake.token, base_url=fake.url, resource_id="x")
    try:
        with pytest.raises(VolcTTSRejected) as unauthorized:
            await wrong.submit(request(), "k")
        with pytest.raises(VolcTTSRejected) as forbidden:
            await other.query("volc-task-1")
    finally:
        await wrong.close()
        await other.close()
    assert unauthorized.value.code == 40100 and forbidden.value.code == 40300


def test_task_results_parse_and_round_trip() -> None:
    body = {
        "task_id": "t",
        "task_status": 1,
        "text_length": 2,
        "audio_url": "https://a/b.mp3",
        "url_expire_time": 10,
        "sentences": [{"text": "hi", "begin_time": 0, "end_time": 5}],
    }
    assert TaskResult.from_json(body).to_json() == body
    failed = {"task_id": "t", "task_status": 2, "code": 5, "message": "m"}
    assert TaskResult.from_json(failed).to_json() == failed
    for bad in (
        {"task_status": 1},
        {"task_id": "t", "task_status": 9},
        {"task_id": "t", "task_status": 1},  # succeeded without audio
        {"task_id": "t", "task_status": "1"},
    ):
        with pytest.raises(ValueError):
            TaskResult.from_json(bad)


# -- configuration -----------------------------------------------------------------------------


def integration(environ: dict[str, str]) -> VolcTTSIntegration:
    return VolcTTSIntegration(api_call_entities("C", "E"), environ=environ)


async def test_configure_lists_missing_variables_with_their_origin() -> None:
    with pytest.raises(MissingEnvironmentError) as caught:
        await integration({}).configure()
    assert [v.name for _, v in caught.value.missing] == ["VOLC_TTS_APPID", "VOLC_TTS_TOKEN"]
    assert "Access Token" in str(caught.value)
    declared = {v.name: v for v in VolcTTSIntegration.env_vars}
    assert set(declared) >= {
        "VOLC_TTS_APPID",
        "VOLC_TTS_TOKEN",
        "VOLC_TTS_BASE_URL",
        "VOLC_TTS_CALLBACK_SECRET",
    }
    assert all(v.purpose and v.obtain_from for v in declared.values())


async def test_configure_refuses_a_malformed_callback_secret() -> None:
    env = {"VOLC_TTS_APPID": "a", "VOLC_TTS_TOKEN": "t"}
    await integration(env).configure()
    await integration({**env, "VOLC_TTS_CALLBACK_SECRET": generate_standard_secret()}).configure()
    with pytest.raises(ValueError, match="VOLC_TTS_CALLBACK_SECRET"):
        await integration({**env, "VOLC_TTS_CALLBACK_SECRET": "too-short"}).configure()


def test_apis_are_query_and_callback() -> None:
    env = {"VOLC_TTS_APPID": "a", "VOLC_TTS_TOKEN": "t"}
    assert set(integration(env).create_apis()) == {"volc_tts.query"}
    signed = integration({**env, "VOLC_TTS_CALLBACK_SECRET": generate_standard_secret()})
    apis = signed.create_apis()
    assert set(apis) == {"volc_tts.query", "volc_tts.callback"}
    assert apis["volc_tts.callback"].raw and apis["volc_tts.callback"].allow_anonymous
    assert not apis["volc_tts.query"].allow_anonymous
