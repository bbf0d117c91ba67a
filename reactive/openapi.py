"""The OpenAPI 3.1 document the server publishes at ``GET /openapi.json``.

Every API and every interaction is one ``POST`` operation with its request body schema; errors
share one envelope schema (``components.schemas.Error``); authenticated operations name the
``bearerAuth`` scheme (how the token is checked is up to the app's auth middleware).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from reactive.api import API, param_spec
from reactive.interaction import Interaction, PayloadItem

OPENAPI_VERSION = "3.1.0"

_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "json": {},
    # a record id; minimum/maximum constrain only the integer form
    "id": {"type": ["integer", "string"], "minimum": -(2**63), "maximum": 2**63 - 1},
}

_PAYLOAD_SCHEMAS: dict[str, dict[str, Any]] = {
    **_PARAM_SCHEMAS,
    "timestamp": {"type": "string", "format": "date-time"},
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

_ERROR_DESCRIPTIONS = {
    "400": "Malformed JSON, a body that is not an object, or bad params/payload",
    "401": "No authenticated user, or invalid credentials",
    "403": "Forbidden",
    "404": "Unknown API or interaction, or a referenced record that does not exist",
    "408": "The request body did not arrive in time",
    "409": "Conflict with the stored data",
    "413": "Request body too large",
    "415": "The body is not application/json",
    "422": "The interaction was rejected (a condition or computation refused it)",
    "429": "Too many requests: retry after the number of seconds in Retry-After",
    "500": "Internal error (details are logged by the server, never sent)",
    "503": "Busy (the database's write lock was held elsewhere too long, the write kept "
    "conflicting with concurrent ones, or every password hash slot is taken): nothing was "
    "written; retry after the seconds in Retry-After",
}


# An auth middleware may answer 401/403 on any operation, even an anonymous one (bad token).
_COMMON_ERRORS = ("400", "401", "403", "404", "408", "413", "500", "503")


def _error_ref(status: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/Error{status}"}


def _json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _security(anonymous: bool) -> list[dict[str, list[str]]]:
    # An empty requirement object makes authentication optional.
    return [{}, {"bearerAuth": []}] if anonymous else [{"bearerAuth": []}]


def _param_schema(declared: Any) -> dict[str, Any]:
    param = param_spec(declared)
    return {**_PARAM_SCHEMAS[param.type], **param.bounds.schema(param.type)}


def _api_operation(name: str, api: API) -> dict[str, Any]:
    if api.raw:
        body: dict[str, Any] = {
            "required": False,
            "description": "Passed to the handler unparsed (raw API)",
            "content": {"*/*": {"schema": {}}},
        }
    else:
        body = {
            # An empty body counts as {}: it may be left out when there is nothing to send.
            "required": bool(api.params),
            "content": _json_content(
                {
                    "type": "object",
                    "properties": {p: _param_schema(t) for p, t in api.params.items()},
                    "required": list(api.params),
                    "additionalProperties": False,
                }
            ),
        }
    responses: dict[str, Any] = {
        "200": {"description": "The handler's answer", "content": _json_content({})},
        **{status: _error_ref(status) for status in _COMMON_ERRORS},
    }
    if not api.raw:
        responses["415"] = _error_ref("415")
    for status, description in sorted(api.errors.items()):
        responses[str(status)] = {
            "description": description,
            "content": _json_content({"$ref": "#/components/schemas/Error"}),
        }
    operation: dict[str, Any] = {
        "operationId": f"api:{name}",
        "summary": api.description or f"API {name}",
        "tags": ["apis"],
        "requestBody": body,
        "responses": dict(sorted(responses.items())),
        "security": _security(api.allow_anonymous),
    }
    if api.headers:
        operation["parameters"] = [
            {"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
            for header in api.headers
        ]
    return operation


def _payload_item_schema(item: PayloadItem) -> dict[str, Any]:
    if item.is_ref:
        one: dict[str, Any] = {
            "type": "object",
            "properties": {"id": dict(_PARAM_SCHEMAS["id"])},
            "required": ["id"],
        }
    else:
        one = {**_PAYLOAD_SCHEMAS[item.type], **item.bounds.schema(item.type)}
        if item.base is not None:
            # A nested record to create is also accepted in place of the value.
            one = {"anyOf": [one, {"type": "object"}]} if one else one
    schema: dict[str, Any] = {"type": "array", "items": one} if item.is_collection else one
    if not item.required and schema:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _interaction_operation(interaction: Interaction, anonymous: bool) -> dict[str, Any]:
    items = interaction.payload.items
    payload = {
        "type": "object",
        "properties": {item.name: _payload_item_schema(item) for item in items},
        "required": [item.name for item in items if item.required],
        "additionalProperties": False,
    }
    return {
        "operationId": f"interaction:{interaction.name}",
        "summary": f"Dispatch the {interaction.name} interaction",
        "tags": ["interactions"],
        "requestBody": {
            "required": bool(payload["required"]),
            "content": _json_content(
                {
                    "type": "object",
                    # null or left out counts as {} (fine when no item is required)
                    "properties": {
                        "payload": payload
                        if payload["required"]
                        else {"anyOf": [payload, {"type": "null"}]}
                    },
                    "required": ["payload"] if payload["required"] else [],
                    "additionalProperties": False,
                }
            ),
        },
        "responses": {
            "200": {
                "description": "Dispatched; data is the interaction's result",
                "content": _json_content(
                    {"type": "object", "required": ["data"], "properties": {"data": {}}}
                ),
            },
            **{
                status: _error_ref(status)
                for status in sorted((*_COMMON_ERRORS, "409", "415", "422"))
            },
        },
        "security": _security(anonymous),
    }


def build_openapi(
    apis: Mapping[str, API],
    interactions: Mapping[str, Interaction],
    anonymous_interactions: Collection[str],
    *,
    title: str,
    version: str,
) -> dict[str, Any]:
    """The document for these APIs and interactions (paths as the server routes them)."""
    paths: dict[str, Any] = {}
    for name, api in apis.items():
        paths[f"/api/{name}"] = {"post": _api_operation(name, api)}
    for name, interaction in interactions.items():
        paths[f"/interaction/{name}"] = {
            "post": _interaction_operation(interaction, name in anonymous_interactions)
        }
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness check",
            "security": [],
            "responses": {
                "200": {
                    "description": "The server is up",
                    "content": _json_content(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                        }
                    ),
                },
                "503": {
                    "description": "The server is up but its store cannot write (full, "
                    "read-only, I/O error); it answers ok again once a write commits",
                    "content": _json_content(
                        {
                            "type": "object",
                            "required": ["status", "storage"],
                            "properties": {
                                "status": {"const": "degraded"},
                                "storage": {"type": "string"},
                            },
                        }
                    ),
                },
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1 document", "content": _json_content({})}
            },
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                f"Error{status}": {
                    "description": description,
                    "content": _json_content({"$ref": "#/components/schemas/Error"}),
                }
                for status, description in _ERROR_DESCRIPTIONS.items()
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


__all__ = ["ERROR_SCHEMA", "OPENAPI_VERSION", "build_openapi"]
