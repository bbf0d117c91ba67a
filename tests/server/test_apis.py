"""POST /api/{name}: params checked (all required, none unknown, typed), auth, raw bodies,
APIError and handler failures, JSON answers with engine values."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pytest

import reactive as r

from .app import SECRET
from .conftest import Client, MakeClient
from .helpers import AUTH, BOB, JSON, counts, error_of, quiet_request_keys

pytestmark = quiet_request_keys

SEARCH = {"prefix": "", "limit": 10, "with_likes": True, "filter": None}


async def create_post(client: Client, title: str, **payload: Any) -> int:
    response = await client.post(
        "/interaction/CreatePost", json={"payload": {"title": title, **payload}}, headers=AUTH
    )
    assert response.status == 200, await response.text()
    post_id: int = (await response.json())["data"]["id"]
    return post_id


async def test_an_api_answers_its_handlers_value_with_engine_values_as_json(
    client: Client,
) -> None:
    await create_post(client, "Engines of Logic", score=3)
    await create_post(client, "Other")
    like = await client.post(
        "/interaction/LikePost", json={"payload": {"post": {"id": 1}}}, headers=BOB
    )
    assert like.status == 200

    response = await client.post(
        "/api/posts.search",
        json={"prefix": "Eng", "limit": 5, "with_likes": True, "filter": {"any": [1, "x"]}},
        headers=AUTH,
    )
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["filter"] == {"any": [1, "x"]}
    [post] = body["posts"]
    assert post["title"] == "Engines of Logic"
    assert post["slug"] == "engines-of-logic"
    assert post["score"] == 3
    assert post["like_count"] == 1
    assert post["published_at"] is None
    # a timestamp field of a record comes back as ISO 8601
    assert datetime.fromisoformat(post["created_at"]).tzinfo is not None


async def test_numbers_may_be_ints_or_floats(client: Client) -> None:
    await create_post(client, "a")
    await create_post(client, "b")
    for limit, expected in ((1, 1), (1.5, 1), (0, 0), (-2, 0)):
        response = await client.post(
            "/api/posts.search", json={**SEARCH, "limit": limit}, headers=AUTH
        )
        assert response.status == 200
        assert len((await response.json())["posts"]) == expected


@pytest.mark.parametrize("value", [None, 0, "text", True, [1, {"a": None}], {"nested": {"x": []}}])
async def test_a_json_param_takes_any_json_value(client: Client, value: Any) -> None:
    response = await client.post(
        "/api/posts.search", json={**SEARCH, "filter": value}, headers=AUTH
    )
    assert response.status == 200
    assert (await response.json())["filter"] == value


async def test_a_missing_param_is_400(client: Client) -> None:
    params = dict(SEARCH)
    del params["limit"]
    message = await error_of(
        await client.post("/api/posts.search", json=params, headers=AUTH), 400, "missing_param"
    )
    assert "limit" in message


async def test_an_empty_body_counts_as_no_params(client: Client) -> None:
    # with the JSON type, or with no type at all (curl -X POST sends none)
    assert (await client.post("/api/whoami", headers={**AUTH, **JSON})).status == 200
    untyped = await client.post("/api/whoami", headers=AUTH, skip_auto_headers=["Content-Type"])
    assert untyped.status == 200
    message = await error_of(
        await client.post("/api/posts.search", headers={**AUTH, **JSON}), 400, "missing_param"
    )
    assert "prefix" in message and "filter" in message


async def test_an_unknown_param_is_400(client: Client) -> None:
    message = await error_of(
        await client.post("/api/posts.search", json={**SEARCH, "sort": "asc"}, headers=AUTH),
        400,
        "unknown_param",
    )
    assert "sort" in message
    await error_of(
        await client.post("/api/whoami", json={"x": 1}, headers=AUTH), 400, "unknown_param"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prefix", 5),
        ("prefix", None),
        ("prefix", ["a"]),
        ("limit", "10"),
        ("limit", True),  # a bool is not a number
        ("limit", None),
        ("limit", {"n": 1}),
        ("with_likes", 1),
        ("with_likes", "true"),
        ("with_likes", None),
    ],
)
async def test_a_param_of_the_wrong_type_is_400(client: Client, name: str, value: Any) -> None:
    message = await error_of(
        await client.post("/api/posts.search", json={**SEARCH, name: value}, headers=AUTH),
        400,
        "invalid_param",
    )
    assert repr(name) in message


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"prefix": "a",}',
        b"{'prefix': 'a'}",
        b'{"limit": NaN}',
        b'{"limit": Infinity}',
        b'{"limit": -Infinity}',
        b'{"limit": 1e400}',  # overflows a float
        b'{"prefix": "a"} trailing',
        b"\xff\xfe{}",
        b'{"prefix": "\\ud800"}',  # a lone surrogate
        b"[" * 100_000,
        b" ",  # only an empty body counts as {}
        b"\t\n",
        b'{"limit": ' + b"9" * 5000 + b"}",  # beyond Python's int digit limit
    ],
)
async def test_malformed_json_is_400(client: Client, body: bytes) -> None:
    response = await client.post(
        "/api/posts.search", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    await error_of(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [b"[]", b"[1, 2]", b'"text"', b"1", b"null", b"true"])
async def test_json_that_is_not_an_object_is_400(client: Client, body: bytes) -> None:
    message = await error_of(
        await client.post("/api/posts.search", data=body, headers={**AUTH, **JSON}),
        400,
        "invalid_body",
    )
    assert "must be a JSON object" in message


async def test_an_unknown_api_is_404(client: Client) -> None:
    message = await error_of(
        await client.post("/api/nope", json={}, headers=AUTH), 404, "unknown_api"
    )
    assert "nope" in message
    # also without a user: the name is checked first
    await error_of(await client.post("/api/nope", json={}), 404, "unknown_api")


async def test_an_api_needs_a_user_unless_anonymous(client: Client) -> None:
    response = await client.post("/api/posts.search", json=SEARCH)
    await error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # the user check comes before the body is looked at
    await error_of(await client.post("/api/posts.search", data=b"{"), 401, "unauthorized")

    anonymous = await client.post("/api/whoami", json={})
    assert anonymous.status == 200
    assert await anonymous.json() == {"user_id": None}
    signed_in = await client.post("/api/whoami", json={}, headers=BOB)
    assert await signed_in.json() == {"user_id": 2}


async def test_api_error_403_maps_to_its_status(client: Client, controller: r.Controller) -> None:
    await create_post(client, "one")
    message = await error_of(
        await client.post("/api/admin.stats", json={}, headers=BOB), 403, "forbidden"
    )
    assert message == "admins only"
    response = await client.post("/api/admin.stats", json={}, headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"post_count": 1}


async def test_an_http_exception_from_a_handler_uses_the_envelope(client: Client) -> None:
    message = await error_of(
        await client.post("/api/forbid", json={}, headers=AUTH), 403, "forbidden"
    )
    assert message == "not for you"


async def test_a_failing_handler_is_500_without_internals(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="reactive.server"):
        response = await client.post("/api/explode", json={}, headers=AUTH)
    message = await error_of(response, 500, "internal_error")
    assert message == "internal server error"
    text = await response.text()
    for leak in (SECRET, "RuntimeError", "Traceback", "secrets.py", "explode"):
        assert leak not in text
    # the server keeps the details for itself
    assert any(SECRET in (record.exc_text or "") for record in caplog.records)


async def test_an_answer_json_cannot_carry_is_500(client: Client) -> None:
    response = await client.post("/api/bad.answer", json={}, headers=AUTH)
    await error_of(response, 500, "internal_error")
    assert "object" not in await response.text()


async def test_a_raw_api_reads_the_body_and_headers_itself(client: Client) -> None:
    body = bytes(range(256)) * 4  # not JSON, not even UTF-8
    response = await client.post("/api/echo.raw", data=body, headers={"X-Signature": "sha256=abc"})
    assert response.status == 200
    assert await response.json() == {
        "params": None,
        "signature": "sha256=abc",
        "length": 1024,
        "read_again": True,
        "user_id": None,
    }
    empty = await client.post("/api/echo.raw", headers=AUTH)
    assert (await empty.json())["length"] == 0
    assert (await empty.json())["user_id"] == 1


async def test_failed_api_calls_store_nothing(client: Client, controller: r.Controller) -> None:
    before = await counts(controller)
    for path, body, headers in [
        ("/api/posts.search", b"{", AUTH),
        ("/api/posts.search", b"[]", AUTH),
        ("/api/posts.search", b'{"prefix": 1}', AUTH),
        ("/api/explode", b"{}", AUTH),
        ("/api/admin.stats", b"{}", BOB),
        ("/api/admin.stats", b"{}", {}),
        ("/api/nope", b"{}", AUTH),
    ]:
        response = await client.post(path, data=body, headers=headers)
        assert response.status >= 400
    assert await counts(controller) == before


async def test_a_body_nested_too_deeply_is_400_and_the_bound_is_configurable(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    deep: Any = None
    for _ in range(64):  # "filter" plus 64 levels under it: 65 deep
        deep = [deep]
    message = await error_of(
        await client.post("/api/posts.search", json={**SEARCH, "filter": deep}, headers=AUTH),
        400,
        "invalid_json",
    )
    assert "more than 64 deep" in message
    within = await client.post(
        "/api/posts.search", json={**SEARCH, "filter": deep[0]}, headers=AUTH
    )
    assert within.status == 200 and (await within.json())["filter"] == deep[0]
    strict = await make_client(max_json_depth=3)
    await error_of(
        await strict.post("/api/posts.search", json={**SEARCH, "filter": [[[1]]]}, headers=AUTH),
        400,
        "invalid_json",
    )
