"""POST /interaction/{name}: dispatch as the authenticated user; payload errors are 400,
rejections 422, unknown names 404, no user 401; a failed dispatch stores nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import reactive as r

from .app import SECRET
from .conftest import Client, MakeClient
from .helpers import AUTH, BOB, JSON, counts, error_of, quiet_request_keys

pytestmark = quiet_request_keys


async def dispatch(client: Client, name: str, body: Any, headers: Any = AUTH) -> Any:
    return await client.post(f"/interaction/{name}", json=body, headers=headers)


async def test_a_dispatch_runs_as_the_user_and_answers_data(
    client: Client, controller: r.Controller
) -> None:
    response = await dispatch(client, "CreatePost", {"payload": {"title": "Hello World"}})
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"data"}
    post_id = body["data"]["id"]  # the default data: the interaction event's id

    event = await controller.storage.find_one(
        r.INTERACTION_EVENT, {"id": post_id}, ["interaction_name", "user", "payload"]
    )
    assert event == {
        "id": post_id,
        "interaction_name": "CreatePost",
        "user": {"id": 1},
        "payload": {"title": "Hello World"},
    }
    post = await controller.storage.find_one("Post", None, ["title", "slug", "author_id"])
    assert post is not None
    assert (post["title"], post["slug"], post["author_id"]) == ("Hello World", "hello-world", 1)
    assert await controller.storage.get_dict("post_count") == 1


async def test_resolve_data_is_the_answer(client: Client, controller: r.Controller) -> None:
    await dispatch(client, "CreatePost", {"payload": {"title": "p"}})
    first = await dispatch(client, "LikePost", {"payload": {"post": {"id": 1}}})
    assert await first.json() == {"data": {"post": 1, "like_count": 1}}
    second = await dispatch(client, "LikePost", {"payload": {"post": {"id": 1}}}, BOB)
    assert await second.json() == {"data": {"post": 1, "like_count": 2}}


async def test_datetimes_in_data_are_iso_8601(client: Client) -> None:
    response = await dispatch(client, "Ping", {})
    assert await response.json() == {"data": {"user": {"id": 1}, "at": "2024-05-17T12:30:00+00:00"}}


async def test_the_payload_key_may_be_left_out_or_null(client: Client) -> None:
    assert (await dispatch(client, "Ping", {"payload": None})).status == 200
    assert (await client.post("/interaction/Ping", headers={**AUTH, **JSON})).status == 200


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "payload_missing"),
        ({"title": None}, "payload_missing"),
        ({"title": "t", "body": "x"}, "payload_unknown"),
        ({"title": 5}, "payload_type"),
        ({"title": "t", "score": "high"}, "payload_type"),
        ({"title": "t", "score": True}, "payload_type"),
        ({"title": "t", "tags": "one"}, "payload_type"),
        ({"title": "t", "tags": ["a", 2]}, "payload_type"),
        ({"title": "t", "published_at": "yesterday"}, "payload_type"),
        ({"title": "t", "published_at": 1700000000}, "payload_type"),
    ],
)
async def test_a_bad_payload_is_400_and_stores_nothing(
    client: Client, controller: r.Controller, payload: dict[str, Any], code: str
) -> None:
    before = await counts(controller)
    await error_of(await dispatch(client, "CreatePost", {"payload": payload}), 400, code)
    assert await counts(controller) == before


async def test_a_reference_to_a_missing_record_is_404(
    client: Client, controller: r.Controller
) -> None:
    before = await counts(controller)
    response = await dispatch(client, "LikePost", {"payload": {"post": {"id": 999}}})
    message = await error_of(response, 404, "payload_ref_missing")
    assert "999" in message
    assert (await response.json())["error"]["details"] == {"item": "post"}
    await error_of(
        await dispatch(client, "LikePost", {"payload": {"post": 1}}), 400, "payload_type"
    )
    assert await counts(controller) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"payload": []}, "invalid_body"),
        ({"payload": "title"}, "invalid_body"),
        ({"payload": {"title": "t"}, "user": {"id": 2}}, "invalid_body"),
        ({"title": "t"}, "invalid_body"),
        ([{"payload": {}}], "invalid_body"),
        ("payload", "invalid_body"),
    ],
)
async def test_a_body_of_the_wrong_shape_is_400(
    client: Client, controller: r.Controller, body: Any, code: str
) -> None:
    before = await counts(controller)
    await error_of(await dispatch(client, "CreatePost", body), 400, code)
    assert await counts(controller) == before


@pytest.mark.parametrize("body", [b"{", b'{"payload": {"title": NaN}}', b"\xc3\x28", b"{}}"])
async def test_malformed_json_is_400(client: Client, controller: r.Controller, body: bytes) -> None:
    before = await counts(controller)
    response = await client.post("/interaction/CreatePost", data=body, headers={**AUTH, **JSON})
    await error_of(response, 400, "invalid_json")
    assert await counts(controller) == before


async def test_a_rejecting_condition_is_422(client: Client, controller: r.Controller) -> None:
    before = await counts(controller)
    response = await dispatch(client, "CreatePost", {"payload": {"title": "   "}})
    message = await error_of(response, 422, "condition_rejected")
    assert "title_not_blank" in message
    assert (await response.json())["error"]["details"] == {"condition": "title_not_blank"}

    response = await dispatch(client, "CreatePost", {"payload": {"title": "forbidden"}})
    message = await error_of(response, 422, "title_forbidden")  # the condition's own code
    assert "that title is taken" in message
    assert await counts(controller) == before


async def test_a_rejecting_computation_is_422(client: Client, controller: r.Controller) -> None:
    before = await counts(controller)
    response = await dispatch(client, "CreatePost", {"payload": {"title": "x" * 41}})
    message = await error_of(response, 422, "computation_error")
    assert "at most 40 characters" in message
    assert await counts(controller) == before


async def test_an_unknown_interaction_is_404(client: Client) -> None:
    message = await error_of(
        await dispatch(client, "Nope", {"payload": {}}), 404, "unknown_interaction"
    )
    assert "Nope" in message and "CreatePost" in message
    await error_of(await dispatch(client, "Nope", {}, {}), 404, "unknown_interaction")


async def test_an_interaction_needs_a_user_by_default(
    client: Client, controller: r.Controller
) -> None:
    before = await counts(controller)
    for name in ("CreatePost", "Ping"):
        response = await dispatch(client, name, {"payload": {"title": "t"}}, {})
        await error_of(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await counts(controller) == before


async def test_anonymous_interactions_are_opt_in_by_name(make_client: MakeClient) -> None:
    client = await make_client(anonymous_interactions={"Ping"})
    response = await dispatch(client, "Ping", {}, {})
    assert response.status == 200
    assert (await response.json())["data"]["user"] is None  # dispatched with user None
    await error_of(
        await dispatch(client, "CreatePost", {"payload": {"title": "t"}}, {}), 401, "unauthorized"
    )
    signed_in = await dispatch(client, "Ping", {}, BOB)
    assert (await signed_in.json())["data"]["user"] == {"id": 2}


async def test_anonymous_interactions_true_opens_all(make_client: MakeClient) -> None:
    client = await make_client(anonymous_interactions=True)
    response = await dispatch(client, "CreatePost", {"payload": {"title": "t"}}, {})
    assert response.status == 200


async def test_a_crashing_condition_is_500_without_internals(
    client: Client, controller: r.Controller, caplog: pytest.LogCaptureFixture
) -> None:
    before = await counts(controller)
    with caplog.at_level(logging.ERROR, logger="reactive.server"):
        response = await dispatch(client, "Broken", {})
    assert await error_of(response, 500, "internal_error") == "internal server error"
    text = await response.text()
    assert SECRET not in text and "RuntimeError" not in text and "crashes" not in text
    assert any(SECRET in (record.exc_text or "") for record in caplog.records)
    assert await counts(controller) == before


async def test_a_timestamp_payload_item_is_sent_as_iso_8601(client: Client) -> None:
    response = await dispatch(
        client, "CreatePost", {"payload": {"title": "t", "published_at": "2024-01-02T03:04:05Z"}}
    )
    assert response.status == 200, await response.text()
