"""A small blog served over HTTP: the model, APIs and middlewares the server tests share.

- ``User`` (name); ``Post`` (title, slug, score, published_at, created_at, like_count) created by
  a Transform of ``CreatePost``; ``Post.like_count`` counts the ``liked_by`` relation; the
  dictionary ``post_count`` counts posts.
- Interactions: ``CreatePost`` (payload + two conditions; the computed ``slug`` refuses titles
  longer than 40 characters), ``LikePost`` (a reference; resolve answers the new like count),
  ``Ping`` (anonymous; answers a datetime), ``Broken`` (a condition that raises).
- APIs: ``posts.search`` (typed params), ``whoami`` (anonymous), ``echo.raw`` (raw, anonymous:
  echoes a header and the body length), ``admin.stats`` (403 unless user 1), ``explode``
  (raises with secrets in the message), ``bad.answer`` (returns something JSON cannot carry),
  ``forbid`` (raises ``web.HTTPForbidden``).
- Middlewares: ``bearer_auth`` reads ``Authorization: Bearer <user id>``: a number sets
  ``request["user_id"]``, ``banned`` raises ``r.APIError(403)``, anything else raises
  ``web.HTTPUnauthorized``; ``tracer(name, log)`` records the order middlewares run in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

import reactive as r
from reactive.server import create_app
from storage import SQLiteStorage, Storage

EV = r.INTERACTION_EVENT
SECRET = "s3cr3t-token-do-not-leak"
PING_TIME = datetime(2024, 5, 17, 12, 30, 0, tzinfo=UTC)


def _post_from(event: dict[str, Any]) -> Any:
    if event["interaction_name"] != "CreatePost":
        return None
    payload = event["payload"]
    return {
        "title": payload["title"],
        "score": payload.get("score") or 0,
        "published_at": payload.get("published_at"),
        "author_id": (event.get("user") or {}).get("id"),
    }


def _slug(record: dict[str, Any]) -> str:
    title = record.get("title") or ""
    if len(title) > 40:
        raise ValueError("titles are at most 40 characters")
    return "-".join(title.lower().split())


def _title_not_blank(event: dict[str, Any]) -> bool:
    return bool(str(event["payload"]["title"]).strip())


def _title_not_forbidden(event: dict[str, Any]) -> Any:
    if event["payload"]["title"] == "forbidden":
        return {"allowed": False, "code": "title_forbidden", "message": "that title is taken"}
    return True


def _broken_condition(event: dict[str, Any]) -> bool:
    raise RuntimeError(f"condition crashed, password={SECRET}")


def _like(record: dict[str, Any], ctx: r.TransactionContext) -> Any:
    post_id = record["payload"]["post"]["id"]
    ctx.storage.create(
        "Post_liked_by_likes_User",
        {"source": {"id": post_id}, "target": {"id": record["user"]["id"]}},
    )
    post = ctx.storage.find_one("Post", {"id": post_id}, ["like_count"])
    assert post is not None
    return {"post": post_id, "like_count": post["like_count"]}


def build_controller(path: str | Storage) -> r.Controller:
    """The test app's controller on ``path`` (a SQLite file, or a storage of any backend)."""
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("slug", computed=_slug),
            r.Property("score", "number"),
            r.Property("author_id", "json"),
            r.Property("published_at", "timestamp"),
            r.Property("created_at", "timestamp", default=lambda: datetime.now(UTC)),
            r.Property("like_count", "number", computation=r.Count(property="liked_by")),
        ],
        computation=r.Transform(EV, _post_from),
    )
    likes = r.Relation(post, "liked_by", user, "likes", "n:n")
    post_count = r.Dictionary("post_count", "number", computation=r.Count(record=post))
    interactions = [
        r.Interaction(
            "CreatePost",
            r.Payload(
                [
                    r.PayloadItem("title", required=True),
                    r.PayloadItem("score", "number"),
                    r.PayloadItem("published_at", "timestamp"),
                    r.PayloadItem("tags", "string", is_collection=True),
                ]
            ),
            conditions=[
                r.Condition("title_not_blank", _title_not_blank),
                r.Condition("title_not_forbidden", _title_not_forbidden),
            ],
        ),
        r.Interaction(
            "LikePost",
            r.Payload([r.PayloadItem("post", "json", required=True, base=post, is_ref=True)]),
            resolve=_like,
        ),
        r.Interaction(
            "Ping",
            resolve=lambda record: {"user": record["user"], "at": PING_TIME},
        ),
        r.Interaction("Broken", conditions=[r.Condition("crashes", _broken_condition)]),
    ]
    storage = SQLiteStorage(path) if isinstance(path, str) else path
    return r.Controller(storage, [user, post], [likes], [post_count], interactions)


# -- APIs --------------------------------------------------------------------------------------


async def search_posts(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    posts = await ctx.controller.storage.find(
        "Post",
        None,
        ["title", "slug", "score", "created_at", "published_at", "like_count"],
        order_by={"id": "asc"},
    )
    found = [p for p in posts if str(p["title"]).startswith(params["prefix"])]
    if not params["with_likes"]:
        for p in found:
            del p["like_count"]
    return {"posts": found[: max(int(params["limit"]), 0)], "filter": params["filter"]}


async def whoami(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    return {"user_id": ctx.user_id}


async def echo_raw(ctx: r.APIContext, params: Any) -> Any:
    raw: bytes = ctx.request["raw_body"]
    again = await ctx.request.read()
    return {
        "params": params,
        "signature": ctx.request.headers.get("X-Signature"),
        "length": len(raw),
        "read_again": again == raw,
        "user_id": ctx.user_id,
    }


async def admin_stats(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    if ctx.user_id != 1:
        raise r.APIError(403, "forbidden", "admins only")
    return {"post_count": await ctx.controller.storage.get_dict("post_count")}


async def explode(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    raise RuntimeError(f"database password is {SECRET} at /srv/app/secrets.py")


async def bad_answer(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    return {"value": object()}


async def forbid(ctx: r.APIContext, params: dict[str, Any]) -> Any:
    raise web.HTTPForbidden(text="not for you")


def build_apis() -> dict[str, r.API]:
    return {
        "posts.search": r.API(
            search_posts,
            params={
                "prefix": "string",
                "limit": "number",
                "with_likes": "boolean",
                "filter": "json",
            },
            description="Posts whose title starts with a prefix",
        ),
        "whoami": r.API(whoami, allow_anonymous=True),
        "echo.raw": r.API(echo_raw, raw=True, allow_anonymous=True),
        "admin.stats": r.API(admin_stats),
        "explode": r.API(explode),
        "bad.answer": r.API(bad_answer),
        "forbid": r.API(forbid),
    }


# -- middlewares -------------------------------------------------------------------------------


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise web.HTTPUnauthorized(text="use a bearer token")
        if token == "banned":
            raise r.APIError(403, "banned", "this account is banned")
        if not token.isdigit():
            raise web.HTTPUnauthorized(text="invalid token")
        request["user_id"] = int(token)
    return await handler(request)


def tracer(name: str, log: list[str]) -> Middleware:
    @web.middleware
    async def trace(request: web.Request, handler: Handler) -> web.StreamResponse:
        log.append(f"{name}:in user={request.get('user_id')}")
        try:
            return await handler(request)
        finally:
            log.append(f"{name}:out")

    return trace


def build_app(controller: r.Controller, **options: Any) -> web.Application:
    options.setdefault("middlewares", [bearer_auth])
    return create_app(controller, build_apis(), **options)


async def seed(controller: r.Controller) -> None:
    """Users 1 (ada) and 2 (bob)."""
    await controller.storage.create("User", {"name": "ada"})
    await controller.storage.create("User", {"name": "bob"})
