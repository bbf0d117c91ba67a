"""Input types and bounds over real HTTP: integer payload items and params, minimum/maximum,
min_length/max_length, record-id params. A value outside them is a 400 naming the item or param
in JSON words (no Python class names or reprs), nothing is stored, and the OpenAPI document
publishes exactly the bounds the server enforces."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import reactive as r
from reactive.server import create_app
from reactive.wire import parse_json
from storage import Storage
from tests.conftest import StorageFactory

from .app import bearer_auth
from .helpers import AUTH, error_of, quiet_request_keys

pytestmark = quiet_request_keys

INT64_MAX = 2**63 - 1
# What a message to a client must not contain: Python type and class names.
PYTHON_WORDS = re.compile(r"\b(float|int|bool|str|list|dict|NoneType|\w+Error)\b")


def _controller(storage: Storage) -> r.Controller:
    gift = r.Entity(
        "Gift",
        [r.Property("cents", "integer"), r.Property("note")],
        computation=r.Transform(
            r.INTERACTION_EVENT,
            lambda e: (
                {"cents": e["payload"]["cents"], "note": e["payload"].get("note")}
                if e["interaction_name"] == "Give"
                else None
            ),
        ),
    )
    total = r.Dictionary(
        "total", "integer", computation=r.Summation(record=gift, attribute_query=["cents"])
    )
    give = r.Interaction(
        "Give",
        r.Payload(
            [
                r.PayloadItem("cents", "integer", required=True, minimum=1, maximum=1_000_000),
                r.PayloadItem("note", min_length=1, max_length=20),
                r.PayloadItem("tags", is_collection=True, max_length=3),
                r.PayloadItem("ratio", "number", minimum=0, maximum=1),
            ]
        ),
    )
    item = r.Entity(
        "Item",
        [r.Property("sku", unique=True), r.Property("price", "number")],
        computation=r.Transform(
            r.INTERACTION_EVENT,
            lambda e: e["payload"] if e["interaction_name"] == "AddItem" else None,
        ),
    )
    prices = r.Dictionary(
        "prices", "number", computation=r.Summation(record=item, attribute_query=["price"])
    )
    add_item = r.Interaction(
        "AddItem", r.Payload([r.PayloadItem("sku"), r.PayloadItem("price", "number")])
    )
    misfile = r.Interaction(
        "Misfile",
        resolve=lambda event, ctx: ctx.storage.create("Gift", {"cents": 2.5}),
    )
    return r.Controller(storage, [gift, item], [], [total, prices], [give, add_item, misfile])


async def _echo(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    return params


APIS = {
    "bounded": r.API(
        _echo,
        params={
            "name": r.Param("string", min_length=1, max_length=8),
            "count": r.Param("integer", minimum=0, maximum=10),
            "call_id": "id",
            "any": "integer",
        },
    ),
    "hook": r.API(_echo, raw=True, headers=("X-Signature",), errors={409: "seen before"}),
}


@pytest.fixture
async def setup(
    make_storage: StorageFactory,
) -> AsyncIterator[tuple[TestClient[Any, Any], r.Controller]]:
    """The bounded app over real HTTP, its controller on the test's backend (both backends)."""
    controller = _controller(make_storage("bounds.db"))
    await controller.setup()
    app = create_app(controller, APIS, middlewares=[bearer_auth])
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, controller
    finally:
        await client.close()
        await controller.close()


async def _stored(controller: r.Controller) -> tuple[int, int, Any]:
    return (
        await controller.storage.count("Gift"),
        await controller.storage.count(r.INTERACTION_EVENT),
        await controller.storage.get_dict("total"),
    )


GOOD = {"cents": 500, "note": "thanks"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"payload": {"cents": 1.5}}', "'cents' must be an integer, got a number with a fr"),
        (b'{"payload": {"cents": 2.5e0}}', "'cents' must be an integer, got a number with a fr"),
        (b'{"payload": {"cents": 1e-300}}', "'cents' must be an integer, got a number with a fr"),
        (b'{"payload": {"cents": 1e308}}', "'cents' must be an integer within 64 bits"),
        (b'{"payload": {"cents": 9223372036854775807}}', "'cents' must be at most 1000000"),
        (b'{"payload": {"cents": 9223372036854775808}}', "'cents' must be an integer within"),
        (b'{"payload": {"cents": true}}', "'cents' must be an integer, got a boolean"),
        (b'{"payload": {"cents": "5"}}', "'cents' must be an integer, got a string"),
        (b'{"payload": {"cents": 0}}', "'cents' must be at least 1, got 0"),
        (b'{"payload": {"cents": -3}}', "'cents' must be at least 1, got -3"),
        (b'{"payload": {"cents": 1000001}}', "'cents' must be at most 1000000, got 1000001"),
        (b'{"payload": {"cents": 5, "note": ""}}', "'note' must be at least 1 characters long"),
        (
            b'{"payload": {"cents": 5, "note": "' + b"x" * 21 + b'"}}',
            "'note' must be at most 20 characters long, got 21",
        ),
        (
            b'{"payload": {"cents": 5, "tags": ["ok", "much too long"]}}',
            "'tags' must be at most 3 characters long, got 13",
        ),
        (b'{"payload": {"cents": 5, "ratio": 1.5}}', "'ratio' must be at most 1, got 1.5"),
        (b'{"payload": {"cents": 5, "ratio": -0.5}}', "'ratio' must be at least 0, got -0.5"),
    ],
)
async def test_a_payload_outside_its_type_or_bounds_is_400_and_stores_nothing(
    setup: tuple[TestClient[Any, Any], r.Controller], body: bytes, fragment: str
) -> None:
    client, controller = setup
    response = await client.post(
        "/interaction/Give", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    message = await error_of(response, 400, "payload_type")
    assert fragment.replace("'", "") in message.replace("'", ""), message
    assert (await response.json())["error"]["details"]["item"] in ("cents", "note", "tags", "ratio")
    assert await _stored(controller) == (0, 0, 0)


async def test_a_payload_within_bounds_is_stored_as_integers(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, controller = setup
    for cents in (1, 1_000_000, 42):
        response = await client.post(
            "/interaction/Give", json={"payload": {**GOOD, "cents": cents}}, headers=AUTH
        )
        assert response.status == 200, await response.text()
    assert await _stored(controller) == (3, 3, 1_000_043)
    gifts = await controller.storage.find("Gift", None, ["cents"])
    assert all(type(g["cents"]) is int for g in gifts)
    # 2 chars of a 4-byte character each still count as one character
    response = await client.post(
        "/interaction/Give", json={"payload": {"cents": 1, "note": "🎁" * 20}}, headers=AUTH
    )
    assert response.status == 200


async def test_refused_data_is_answered_in_words_with_a_stable_code(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    """The issue's case: a second 1e308 made the number total infinite and the answer was 422
    with ``FieldTypeError ... got float inf``."""
    client, controller = setup

    async def send(name: str, payload: dict[str, Any]) -> Any:
        return await client.post(f"/interaction/{name}", json={"payload": payload}, headers=AUTH)

    assert (await send("AddItem", {"sku": "a", "price": 1e308})).status == 200
    before = await controller.storage.count("Item"), await controller.storage.get_dict("prices")
    message = await error_of(await send("AddItem", {"sku": "b", "price": 1e308}), 422)
    assert "prices" in message and "would overflow" in message
    message = await error_of(await send("Misfile", {}), 422, "invalid_value")
    assert message == "Gift.cents expects an integer"
    for answer in [await send("AddItem", {"sku": "c", "price": 1e308})]:
        body = await answer.json()
        assert body["error"]["code"] == "computation_error"
        assert not PYTHON_WORDS.search(body["error"]["message"]), body
        assert "inf" not in body["error"]["message"]
    assert (
        await controller.storage.count("Item"),
        await controller.storage.get_dict("prices"),
    ) == (before)
    assert await controller.storage.count("Gift") == 0


async def test_a_value_a_unique_field_already_holds_is_409_not_unique(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, controller = setup

    async def send(payload: dict[str, Any]) -> Any:
        return await client.post("/interaction/AddItem", json={"payload": payload}, headers=AUTH)

    assert (await send({"sku": "a", "price": 1})).status == 200
    message = await error_of(await send({"sku": "a", "price": 2}), 409, "not_unique")
    assert message.endswith("Item: another record already has the same sku")
    assert not PYTHON_WORDS.search(message), message
    assert await controller.storage.count("Item") == 1
    assert await controller.storage.get_dict("prices") == 1


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (b"2.0", 2),
        (b"1e2", 100),
        (b"-0.0", 0),
        (b"9007199254740993.0", 9007199254740993),  # exact: not read through a float
        (b"9223372036854775807.0", INT64_MAX),
        (b"1.5", 1.5),
        (b"1e19", 1e19),  # beyond 64 bits: stays a number
    ],
)
def test_json_does_not_tell_2_0_from_2(literal: bytes, expected: Any) -> None:
    value = parse_json(literal)
    assert value == expected
    assert type(value) is type(expected)


async def test_a_whole_number_written_with_a_fraction_is_that_integer(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, controller = setup
    response = await client.post(
        "/interaction/Give",
        data=b'{"payload": {"cents": 250.0}}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 200, await response.text()
    assert await _stored(controller) == (1, 1, 250)
    response = await client.post(
        "/api/bounded",
        data=b'{"name": "a", "count": 1e1, "call_id": 7.0, "any": 9223372036854775807.0}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert await response.json() == {"name": "a", "count": 10, "call_id": 7, "any": INT64_MAX}


async def test_messages_to_clients_use_json_words(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, _ = setup
    for cents in (1.5, True, "x", [1], {"a": 1}):
        response = await client.post(
            "/interaction/Give", json={"payload": {"cents": cents}}, headers=AUTH
        )
        message = await error_of(response, 400, "payload_type")
        assert not PYTHON_WORDS.search(message), message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"name": "", "count": 1, "call_id": 1, "any": 1}, "'name' must be at least 1 char"),
        ({"name": "x" * 9, "count": 1, "call_id": 1, "any": 1}, "'name' must be at most 8 char"),
        ({"name": "a", "count": 11, "call_id": 1, "any": 1}, "'count' must be at most 10"),
        ({"name": "a", "count": -1, "call_id": 1, "any": 1}, "'count' must be at least 0"),
        ({"name": "a", "count": 1.5, "call_id": 1, "any": 1}, "'count' must be an integer"),
        ({"name": "a", "count": 1, "call_id": {"id": 1}, "any": 1}, "'call_id' must be a record"),
        ({"name": "a", "count": 1, "call_id": 1.5, "any": 1}, "'call_id' must be a record id"),
        ({"name": "a", "count": 1, "call_id": 2**63, "any": 1}, "'call_id' must be a record id"),
        ({"name": "a", "count": 1, "call_id": 1, "any": 2**63}, "'any' must be an integer within"),
        ({"name": "a", "count": 1, "call_id": 1, "any": False}, "'any' must be an integer, got a"),
    ],
)
async def test_params_outside_their_type_or_bounds_are_400(
    setup: tuple[TestClient[Any, Any], r.Controller], params: dict[str, Any], fragment: str
) -> None:
    client, _ = setup
    response = await client.post("/api/bounded", json=params, headers=AUTH)
    message = await error_of(response, 400, "invalid_param")
    assert fragment.replace("'", "") in message.replace("'", ""), message
    assert not PYTHON_WORDS.search(message), message


async def test_params_within_bounds_reach_the_handler(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, _ = setup
    for params in (
        {"name": "a", "count": 0, "call_id": 1, "any": -(2**63)},
        {"name": "abcdefgh", "count": 10, "call_id": "ext-1", "any": INT64_MAX},
    ):
        response = await client.post("/api/bounded", json=params, headers=AUTH)
        assert response.status == 200
        assert await response.json() == params


async def test_the_document_publishes_what_the_server_enforces(
    setup: tuple[TestClient[Any, Any], r.Controller],
) -> None:
    client, _ = setup
    doc = await (await client.get("/openapi.json")).json()
    give = doc["paths"]["/interaction/Give"]["post"]["requestBody"]["content"]
    payload = give["application/json"]["schema"]["properties"]["payload"]
    items = payload["properties"]
    assert items["cents"] == {"type": "integer", "minimum": 1, "maximum": 1_000_000}
    assert items["note"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": 20}
    assert items["tags"]["anyOf"][0] == {
        "type": "array",
        "items": {"type": "string", "maxLength": 3},
    }
    assert items["ratio"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 1}
    bounded = doc["paths"]["/api/bounded"]["post"]
    props = bounded["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert props["name"] == {"type": "string", "minLength": 1, "maxLength": 8}
    assert props["count"] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert props["any"] == {"type": "integer", "minimum": -(2**63), "maximum": INT64_MAX}
    assert props["call_id"] == {
        "type": ["integer", "string"],
        "minimum": -(2**63),
        "maximum": INT64_MAX,
    }
    hook = doc["paths"]["/api/hook"]["post"]
    assert hook["parameters"] == [
        {"name": "X-Signature", "in": "header", "required": True, "schema": {"type": "string"}}
    ]
    assert hook["responses"]["409"]["description"] == "seen before"
    assert "415" not in hook["responses"]  # a raw API takes any content type
    assert "415" in bounded["responses"]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: r.PayloadItem("n", "number", min_length=1), "apply to strings, not number"),
        (lambda: r.PayloadItem("s", minimum=1), "apply to numbers and integers, not string"),
        (lambda: r.PayloadItem("n", "integer", minimum=5, maximum=1), "minimum 5 is above"),
        (lambda: r.PayloadItem("s", min_length=3, max_length=2), "min_length 3 is above"),
        (lambda: r.PayloadItem("s", max_length=-1), "whole number >= 0"),
        (lambda: r.PayloadItem("n", "number", maximum=float("inf")), "finite number"),
        (lambda: r.PayloadItem("n", "int"), "unknown type 'int'"),  # type: ignore[arg-type]
        (lambda: r.Param("integer", max_length=3), "apply to strings, not integer"),
        (lambda: r.Param("float"), "unknown type 'float'"),
        (lambda: r.API(_echo, params={"x": "float"}), "unknown type 'float'"),
        (lambda: r.API(_echo, errors={200: "fine"}), r"an error status \(400-599\)"),
    ],
)
def test_bounds_that_cannot_apply_are_refused_at_declaration(make: Any, fragment: str) -> None:
    with pytest.raises(r.ModelError, match=fragment):
        make()
