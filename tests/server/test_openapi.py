"""GET /openapi.json: an OpenAPI 3.1 document of every API and interaction, with request
schemas, the error envelope as a component and the bearer security scheme."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r

from .conftest import Client, MakeClient
from .helpers import quiet_request_keys

pytestmark = quiet_request_keys


async def fetch(client: Client) -> Any:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    return await response.json()


def resolve(doc: Any, ref: str) -> Any:
    assert ref.startswith("#/")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def request_schema(doc: Any, path: str, required: bool = True) -> Any:
    body = doc["paths"][path]["post"]["requestBody"]
    # an empty body counts as {}: it is optional when nothing in it is required
    assert body["required"] is required
    return body["content"]["application/json"]["schema"]


async def test_the_document_is_openapi_3_1(client: Client) -> None:
    doc = await fetch(client)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "interaqt-py"
    assert doc["info"]["version"]  # the package's version
    assert set(doc) >= {"openapi", "info", "paths", "components"}


async def test_every_api_and_interaction_has_a_post_operation(
    client: Client, controller: r.Controller
) -> None:
    doc = await fetch(client)
    expected = {
        "/api/posts.search",
        "/api/whoami",
        "/api/echo.raw",
        "/api/admin.stats",
        "/api/explode",
        "/api/bad.answer",
        "/api/forbid",
        *(f"/interaction/{name}" for name in controller.interactions),
        "/health",
        "/openapi.json",
    }
    assert set(doc["paths"]) == expected
    operation_ids = []
    for path, item in doc["paths"].items():
        method = "get" if path in ("/health", "/openapi.json") else "post"
        assert set(item) == {method}
        operation = item[method]
        operation_ids.append(operation["operationId"])
        assert "200" in operation["responses"]
    assert len(set(operation_ids)) == len(operation_ids)


async def test_api_params_are_a_closed_object_with_all_required(client: Client) -> None:
    doc = await fetch(client)
    schema = request_schema(doc, "/api/posts.search")
    assert schema == {
        "type": "object",
        "properties": {
            "prefix": {"type": "string"},
            "limit": {"type": "number"},
            "with_likes": {"type": "boolean"},
            "filter": {},
        },
        "required": ["prefix", "limit", "with_likes", "filter"],
        "additionalProperties": False,
    }
    assert request_schema(doc, "/api/whoami", required=False) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


async def test_a_raw_api_takes_any_body(client: Client) -> None:
    doc = await fetch(client)
    body = doc["paths"]["/api/echo.raw"]["post"]["requestBody"]
    assert body["required"] is False
    assert body["content"] == {"*/*": {"schema": {}}}


async def test_interaction_payload_schemas(client: Client) -> None:
    doc = await fetch(client)
    schema = request_schema(doc, "/interaction/CreatePost")
    assert schema["required"] == ["payload"]
    assert schema["additionalProperties"] is False
    payload = schema["properties"]["payload"]
    assert payload["required"] == ["title"]
    assert payload["additionalProperties"] is False
    props = payload["properties"]
    assert props["title"] == {"type": "string"}
    assert props["score"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert props["published_at"] == {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
    }
    assert props["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    }

    like = request_schema(doc, "/interaction/LikePost")["properties"]["payload"]
    assert like["required"] == ["post"]
    assert like["properties"]["post"] == {
        "type": "object",
        "properties": {
            "id": {"type": ["integer", "string"], "minimum": -(2**63), "maximum": 2**63 - 1}
        },
        "required": ["id"],
    }
    ping = request_schema(doc, "/interaction/Ping", required=False)
    assert ping["required"] == []  # no required item: the payload may be left out
    [ping_payload, null] = ping["properties"]["payload"]["anyOf"]  # null counts as {}
    assert ping_payload["properties"] == {}
    assert null == {"type": "null"}

    answer = doc["paths"]["/interaction/Ping"]["post"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["required"] == ["data"]


async def test_errors_share_the_envelope_component(client: Client) -> None:
    doc = await fetch(client)
    envelope = doc["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]
    assert envelope["properties"]["error"]["required"] == ["code", "message"]
    for path, item in doc["paths"].items():
        for operation in item.values():
            statuses = {s for s in operation["responses"] if s != "200"}
            if path == "/health":
                assert statuses == {"503"}  # its own body, tested below
                continue
            common = {"400", "401", "403", "404", "408", "413", "500", "503"}
            if path.startswith("/interaction/"):
                assert statuses == {*common, "409", "415", "422"}
            elif path == "/api/echo.raw":
                assert statuses == common  # a raw API takes any content type
            elif path.startswith("/api/"):
                assert statuses == {*common, "415"}
            for status in statuses:
                response = resolve(doc, operation["responses"][status]["$ref"])
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
                assert response["description"]


async def test_security_is_bearer_and_optional_for_anonymous_operations(
    make_client: MakeClient,
) -> None:
    doc = await fetch(await make_client(anonymous_interactions={"Ping"}))
    assert doc["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert doc["security"] == [{"bearerAuth": []}]
    paths = doc["paths"]
    required: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    optional: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
    assert paths["/api/posts.search"]["post"]["security"] == required
    assert paths["/api/whoami"]["post"]["security"] == optional
    assert paths["/interaction/CreatePost"]["post"]["security"] == required
    assert paths["/interaction/Ping"]["post"]["security"] == optional
    assert paths["/health"]["get"]["security"] == []


async def test_descriptions_title_and_version(make_client: MakeClient) -> None:
    doc = await fetch(await make_client(title="Blog", version="9.9.9"))
    assert doc["info"] == {"title": "Blog", "version": "9.9.9"}
    operation = doc["paths"]["/api/posts.search"]["post"]
    assert operation["summary"] == "Posts whose title starts with a prefix"
    assert doc["paths"]["/api/whoami"]["post"]["summary"] == "API whoami"


@pytest.mark.parametrize("path", ["/openapi.json", "/health"])
async def test_documents_need_no_user(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


async def test_health_documents_its_degraded_answer(client: Client) -> None:
    # /health answers 503 {"status": "degraded", "storage": ...} while the store cannot write
    # (tests/server/test_storage_faults.py); the document says so.
    responses = (await fetch(client))["paths"]["/health"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    schema = responses["503"]["content"]["application/json"]["schema"]
    assert schema["properties"]["status"] == {"const": "degraded"}
    assert schema["required"] == ["status", "storage"]
