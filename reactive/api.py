"""Custom APIs: named async handlers the server exposes at ``POST /api/{name}``.

Integrations declare them (status queries, webhooks, login); the aiohttp server validates the
declared params, authenticates, and turns :class:`APIError` into its error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from reactive.errors import ModelError

if TYPE_CHECKING:
    from reactive.controller import Controller

PARAM_TYPES = ("string", "number", "boolean", "json")


def _params(value: Mapping[str, str] | None) -> dict[str, str]:
    params = dict(value or {})
    for name, type_name in params.items():
        if type_name not in PARAM_TYPES:
            raise ModelError(
                f"API param {name!r} has unknown type {type_name!r}; use one of "
                f"{', '.join(PARAM_TYPES)}"
            )
    return params


@attrs.define(eq=False)
class API:
    """``handler(ctx, params)`` (async); its return value is the JSON body of the 200 answer.

    ``params`` maps each parameter to a type name; all are required and unknown ones are
    rejected. ``raw=True`` hands ``params=None`` and leaves the body and headers to the handler
    (``ctx.request``), as webhook signature checks need.
    """

    handler: Callable[[APIContext, Any], Awaitable[Any]]
    params: dict[str, str] = attrs.field(factory=dict, converter=_params)
    allow_anonymous: bool = False
    raw: bool = False
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if not callable(self.handler):
            raise ModelError("API handler must be an async function (ctx, params)")


@attrs.define
class APIContext:
    """What an API handler gets: the controller, the authenticated user id, the request."""

    controller: Controller
    user_id: Any = None
    request: Any = None


class APIError(Exception):
    """Raise from a handler to answer with ``status`` and ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
