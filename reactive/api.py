"""Custom APIs: named async handlers the server exposes at ``POST /api/{name}``.

Integrations declare them (status queries, webhooks, login); the aiohttp server validates the
declared params, authenticates, and turns :class:`APIError` into its error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from reactive.bounds import Bounds
from reactive.errors import ModelError

if TYPE_CHECKING:
    from reactive.controller import Controller

PARAM_TYPES = ("string", "number", "integer", "boolean", "json", "id")
"""``id`` is a record id: an integer within 64 bits or a string."""


@attrs.frozen
class Param:
    """A declared API param with bounds, where a bare type name is not enough:
    ``params={"username": r.Param("string", min_length=1, max_length=64)}``.

    Bounds are inclusive (see :mod:`reactive.bounds`): ``minimum``/``maximum`` for ``number``
    and ``integer`` params, ``min_length``/``max_length`` for ``string`` ones. The server
    refuses a value outside them (400 ``invalid_param``, naming the param) before the handler
    runs, and the OpenAPI document publishes them."""

    type: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ModelError(
                f"API param has unknown type {self.type!r}; use one of {', '.join(PARAM_TYPES)}"
            )
        self.bounds.check_declaration("API param", self.type)

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.minimum, self.maximum, self.min_length, self.max_length)


def param_spec(declared: str | Param) -> Param:
    """The :class:`Param` a declaration stands for (a bare type name has no bounds)."""
    return declared if isinstance(declared, Param) else Param(declared)


def _params(value: Mapping[str, str | Param] | None) -> dict[str, str | Param]:
    params = dict(value or {})
    for name, declared in params.items():
        if isinstance(declared, Param):
            continue
        if declared not in PARAM_TYPES:
            raise ModelError(
                f"API param {name!r} has unknown type {declared!r}; use one of "
                f"{', '.join(PARAM_TYPES)} (or an r.Param with bounds)"
            )
    return params


def _headers(value: Iterable[str]) -> tuple[str, ...]:
    # A typed converter: with ``converter=tuple`` attrs' mypy plugin gave ``API.__init__``'s
    # ``headers`` the type ``Iterable[_T_co]``, which no typed argument satisfies.
    return tuple(value)


def _errors(value: Mapping[int, str]) -> dict[int, str]:
    errors = dict(value)
    for status, description in errors.items():
        if type(status) is not int or not 400 <= status <= 599 or not isinstance(description, str):
            raise ModelError(
                f"API errors maps an error status (400-599) to its description, got "
                f"{status!r}: {description!r}"
            )
    return errors


@attrs.define(eq=False)
class API:
    """``handler(ctx, params)`` (async); its return value is the JSON body of the 200 answer.

    ``params`` maps each parameter to a type name (:data:`PARAM_TYPES`) or a :class:`Param`
    with bounds; all are required and unknown ones are rejected. ``raw=True`` hands
    ``params=None`` and leaves the body and headers to the handler (``ctx.request``), as
    webhook signature checks need; ``headers`` then names the request headers the handler
    requires (published in the OpenAPI document, e.g. a webhook's signature headers).
    ``errors`` documents the error statuses the handler itself answers beyond the common ones
    (``{409: "the username is already registered"}``).
    """

    handler: Callable[[APIContext, Any], Awaitable[Any]]
    params: dict[str, str | Param] = attrs.field(factory=dict, converter=_params)
    allow_anonymous: bool = False
    raw: bool = False
    description: str = ""
    headers: tuple[str, ...] = attrs.field(default=(), converter=_headers)
    errors: dict[int, str] = attrs.field(factory=dict, converter=_errors)

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
