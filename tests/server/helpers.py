"""Assertions the server tests share."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse

import reactive as r

AUTH = {"Authorization": "Bearer 1"}
BOB = {"Authorization": "Bearer 2"}
JSON = {"Content-Type": "application/json"}


async def error_of(response: ClientResponse, status: int, code: str | None = None) -> str:
    """Assert ``response`` is the error envelope with ``status`` (and ``code``); its message."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    message: str = error["message"]
    return message


async def counts(controller: r.Controller) -> dict[str, Any]:
    """What a failed request must leave unchanged."""
    return {
        "events": await controller.storage.count(r.INTERACTION_EVENT),
        "posts": await controller.storage.count("Post"),
        "likes": await controller.storage.count("Post_liked_by_likes_User"),
        "post_count": await controller.storage.get_dict("post_count"),
        "users": await controller.storage.count("User"),
    }


# The contract keys request storage by strings (``request["user_id"]``); aiohttp recommends
# RequestKey objects and warns once per key. aiohttp silences it outside pytest.
quiet_request_keys = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
