"""dispatch: one interaction event per dispatch; invalid payloads and rejections store nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from storage import SQLiteStorage

from .conftest import MakeController
from .helpers import table_counts

EV = r.INTERACTION_EVENT
ALL_TABLES = ("User", "Post", "Post_tags_posts_Tag", "Tag", "_SideEffect_")


def blog(*conditions: r.Condition) -> tuple[list[Any], list[Any], list[Any], list[Any], list[Any]]:
    """Users, posts (created by a Transform of CreatePost), tags; counts and a side effect."""
    user = r.Entity("User", [r.Property("name"), r.Property("banned", "boolean", default=False)])
    tag = r.Entity("Tag", [r.Property("label")])

    def post_from(event: dict[str, Any]) -> Any:
        if event["interaction_name"] != "CreatePost":
            return None
        payload = event["payload"]
        return {
            "title": payload["title"],
            "score": payload.get("score", 0),
            "author_id": payload["author"]["id"],
            "tags": payload.get("tags", []),
        }

    post = r.Entity(
        "Post",
        [r.Property("title"), r.Property("score", "number"), r.Property("author_id", "number")],
        computation=r.Transform(EV, post_from),
    )
    tags = r.Relation(post, "tags", tag, "posts", "n:n")
    dicts = [
        r.Dictionary("posts", "number", computation=r.Count(record=post)),
        # Count(record=...) takes Entity/Relation objects only; count interaction events by hand
        r.Dictionary(
            "dispatches",
            "number",
            computation=r.Custom(
                lambda last, ev: last + 1, triggers=[r.Trigger(EV, "create")], initial=0
            ),
        ),
    ]
    create = r.Interaction(
        "CreatePost",
        r.Payload(
            [
                r.PayloadItem("title", required=True),
                r.PayloadItem("score", "number"),
                r.PayloadItem("draft", "boolean"),
                r.PayloadItem("author", base=user, is_ref=True, required=True),
                r.PayloadItem("tags", "json", base=tag, is_ref=True, is_collection=True),
                r.PayloadItem("meta", "json"),
            ]
        ),
        conditions=list(conditions),
    )

    async def noop(event: r.MutationEvent, controller: r.Controller) -> None:
        return None

    effects = [r.RecordMutationSideEffect("on_post", post, noop, on=("create",))]
    return [user, tag, post], [tags], dicts, [create, r.Interaction("Ping")], effects


async def setup_blog(make: MakeController, *conditions: r.Condition) -> r.Controller:
    entities, relations, dicts, interactions, effects = blog(*conditions)
    return await make(entities, relations, dicts, interactions, effects)


async def test_dispatch_records_one_interaction_event(make: MakeController) -> None:
    c = await setup_blog(make)
    ada = await c.storage.create("User", {"name": "ada"})
    t = await c.storage.create("Tag", {"label": "py"})
    payload = {"title": "hi", "score": 3, "author": {"id": ada["id"]}, "tags": [{"id": t["id"]}]}

    result = await c.dispatch(
        "CreatePost", user={"id": ada["id"], "role": "admin"}, payload=payload
    )

    assert result.error is None
    events = await c.storage.find(EV, None, ["*"])
    assert events == [
        {
            "id": result.data["id"],
            "interaction_name": "CreatePost",
            "user": {"id": ada["id"], "role": "admin"},
            "payload": payload,
        }
    ]
    posts = await c.storage.find("Post", None, ["title", "score", ("tags", ["label"])])
    assert [(p["title"], p["score"], [x["label"] for x in p["tags"]]) for p in posts] == [
        ("hi", 3, ["py"])
    ]
    assert await c.storage.get_dict("posts") == 1
    assert await c.storage.get_dict("dispatches") == 1

    ping = await c.dispatch("Ping")
    assert ping.error is None
    assert await c.storage.find_one(EV, {"id": ping.data["id"]}, ["*"]) == {
        "id": ping.data["id"],
        "interaction_name": "Ping",
        "user": None,
        "payload": {},
    }
    assert await c.storage.get_dict("dispatches") == 2
    assert await c.storage.get_dict("posts") == 1
    await c.drain()


async def test_effects_are_the_committed_events(make: MakeController) -> None:
    c = await setup_blog(make)
    ada = await c.storage.create("User", {"name": "ada"})
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)

    result = await c.dispatch("CreatePost", payload={"title": "x", "author": {"id": ada["id"]}})

    assert result.error is None
    assert result.effects == seen
    assert sorted((e.record_name, e.type) for e in result.effects) == sorted(
        [
            (EV, "create"),
            ("Post", "create"),
            (DICTIONARY_RECORD, "update"),
            (DICTIONARY_RECORD, "update"),
        ]
    )
    await c.drain()


async def test_resolve_gives_the_result_data(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("name")])
    add = r.Interaction(
        "Add",
        r.Payload([r.PayloadItem("name", required=True)]),
        resolve=lambda ev, ctx: {
            "created": ctx.storage.create("Item", {"name": ev["payload"]["name"]})["id"],
            "total": ctx.storage.count("Item"),
        },
    )
    c = await make([item], interactions=[add])

    result = await c.dispatch(add, payload={"name": "a"})

    assert result.error is None
    assert result.data == {"created": 1, "total": 1}
    assert sorted((e.record_name, e.type) for e in result.effects) == sorted(
        [(EV, "create"), ("Item", "create")]
    )


BAD_PAYLOADS = [
    pytest.param({"title": "x", "author": "REF", "nope": 1}, "payload_unknown", id="unknown-key"),
    pytest.param({"author": "REF"}, "payload_missing", id="missing-required"),
    pytest.param({"title": None, "author": "REF"}, "payload_missing", id="required-none"),
    pytest.param({"title": 5, "author": "REF"}, "payload_type", id="number-for-string"),
    pytest.param({"title": "x", "author": "REF", "score": "5"}, "payload_type", id="str-number"),
    pytest.param({"title": "x", "author": "REF", "score": True}, "payload_type", id="bool-number"),
    pytest.param(
        {"title": "x", "author": "REF", "score": float("nan")}, "payload_type", id="nan-number"
    ),
    pytest.param({"title": "x", "author": "REF", "draft": 1}, "payload_type", id="int-boolean"),
    pytest.param(
        {"title": "x", "author": "REF", "tags": {"id": 1}}, "payload_type", id="not-a-list"
    ),
    pytest.param({"title": "x", "author": 1}, "payload_type", id="bare-id-for-ref"),
    pytest.param({"title": "x", "author": {"id": 999}}, "payload_ref_missing", id="missing-ref"),
    pytest.param(
        {"title": "x", "author": "REF", "tags": [{"id": 999}]},
        "payload_ref_missing",
        id="missing-ref-in-collection",
    ),
    pytest.param(["not", "a", "dict"], "payload_invalid", id="not-a-mapping"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_PAYLOADS)
async def test_invalid_payloads_are_rejected_and_store_nothing(
    make: MakeController, payload: Any, code: str
) -> None:
    c = await setup_blog(make)
    ada = await c.storage.create("User", {"name": "ada"})
    if isinstance(payload, dict):
        payload = {k: ({"id": ada["id"]} if v == "REF" else v) for k, v in payload.items()}
    before = await table_counts(c, *ALL_TABLES)
    seen: list[r.MutationEvent] = []
    c.mutations.subscribe(seen.append)

    result = await c.dispatch("CreatePost", user={"id": ada["id"]}, payload=payload)

    assert result.error is not None
    assert result.error.code == code
    assert result.error.interaction == "CreatePost"
    assert result.data is None and result.effects == []
    assert await table_counts(c, *ALL_TABLES) == before
    assert before[EV] == 0
    assert await c.storage.get_dict("dispatches") == 0
    assert seen == []


async def test_a_valid_payload_with_every_item(make: MakeController) -> None:
    c = await setup_blog(make)
    ada = await c.storage.create("User", {"name": "ada"})
    t = await c.storage.create("Tag", {"label": "a"})

    result = await c.dispatch(
        "CreatePost",
        payload={
            "title": "x",
            "score": 2.5,
            "draft": False,
            "author": {"id": ada["id"]},
            "tags": [{"id": t["id"]}],
            "meta": {"any": ["json", 1]},
        },
    )

    assert result.error is None
    assert await c.storage.count("Post") == 1
    await c.drain()


def condition_cases() -> list[Any]:
    def boom(event: dict[str, Any]) -> bool:
        raise RuntimeError("condition exploded")

    return [
        pytest.param(r.Condition("no", lambda ev: False), "condition_rejected", id="false"),
        pytest.param(r.Condition("none", lambda ev: None), "condition_rejected", id="none"),
        pytest.param(
            r.Condition(
                "quota",
                lambda ev: {"allowed": False, "code": "over_quota", "message": "too many"},
            ),
            "over_quota",
            id="dict-code",
        ),
        pytest.param(r.Condition("boom", boom), "condition_error", id="raises"),
        pytest.param(r.Condition("weird", lambda ev: "yes"), "condition_invalid_result", id="str"),
    ]


@pytest.mark.parametrize(("condition", "code"), condition_cases())
async def test_rejected_conditions_store_nothing(
    make: MakeController, condition: r.Condition, code: str
) -> None:
    c = await setup_blog(make, r.Condition("pass", lambda ev: True), condition)
    ada = await c.storage.create("User", {"name": "ada"})
    before = await table_counts(c, *ALL_TABLES)

    result = await c.dispatch(
        "CreatePost", user={"id": ada["id"]}, payload={"title": "x", "author": {"id": ada["id"]}}
    )

    assert result.error is not None
    assert result.error.code == code
    assert result.error.details.get("condition") == condition.name
    assert result.effects == []
    assert await table_counts(c, *ALL_TABLES) == before
    assert before[EV] == 0


async def test_condition_error_keeps_its_cause(make: MakeController) -> None:
    def boom(event: dict[str, Any]) -> bool:
        raise RuntimeError("condition exploded")

    c = await setup_blog(make, r.Condition("boom", boom))
    ada = await c.storage.create("User", {"name": "ada"})

    result = await c.dispatch("CreatePost", payload={"title": "x", "author": {"id": ada["id"]}})

    assert result.error is not None and result.error.code == "condition_error"
    assert isinstance(result.error.cause, RuntimeError)


async def test_condition_dict_message_and_details(make: MakeController) -> None:
    reject = r.Condition(
        "quota",
        lambda ev: {"allowed": False, "code": "X", "message": "no more", "details": {"limit": 3}},
    )
    c = await setup_blog(make, reject)
    ada = await c.storage.create("User", {"name": "ada"})

    result = await c.dispatch("CreatePost", payload={"title": "x", "author": {"id": ada["id"]}})

    assert result.error is not None
    assert result.error.code == "X"
    assert "no more" in result.error.message
    assert result.error.details == {"condition": "quota", "limit": 3}


async def test_conditions_see_the_event_and_can_read_storage(make: MakeController) -> None:
    seen: list[dict[str, Any]] = []

    def not_banned(event: dict[str, Any], ctx: r.TransactionContext) -> Any:
        seen.append(event)
        user = ctx.storage.find_one("User", {"id": event["user"]["id"]}, ["banned"])
        if user is None or user["banned"]:
            return {"allowed": False, "code": "banned"}
        return {"allowed": True}

    c = await setup_blog(make, r.Condition("not_banned", not_banned))
    ada = await c.storage.create("User", {"name": "ada"})
    eve = await c.storage.create("User", {"name": "eve", "banned": True})
    payload = {"title": "x", "author": {"id": ada["id"]}}

    ok = await c.dispatch("CreatePost", user={"id": ada["id"]}, payload=payload)
    banned = await c.dispatch("CreatePost", user={"id": eve["id"]}, payload=payload)

    assert ok.error is None
    assert banned.error is not None and banned.error.code == "banned"
    assert seen[0] == {
        "interaction_name": "CreatePost",
        "user": {"id": ada["id"]},
        "payload": payload,
    }
    assert await c.storage.count("Post") == 1
    assert await c.storage.count(EV) == 1
    await c.drain()


async def test_unknown_interaction(make: MakeController) -> None:
    c = await setup_blog(make)
    stranger = r.Interaction("CreatePost")  # same name, not the registered object

    by_name = await c.dispatch("Nope", user={"id": 1}, payload={})
    by_object = await c.dispatch(stranger, payload={})

    for result in (by_name, by_object):
        assert result.error is not None
        assert result.error.code == "unknown_interaction"
        assert result.effects == []
    assert by_name.error is not None and by_name.error.interaction == "Nope"
    assert await c.storage.count(EV) == 0


def test_interaction_declaration_errors() -> None:
    with pytest.raises(r.ModelError):
        r.PayloadItem("x", is_ref=True)
    with pytest.raises(r.ModelError):
        r.PayloadItem("x", "decimal")  # type: ignore[arg-type]
    with pytest.raises(r.ModelError):
        r.Payload([r.PayloadItem("x"), r.PayloadItem("x")])
    with pytest.raises(r.ModelError):
        r.Controller(
            SQLiteStorage(":memory:"), interactions=[r.Interaction("A"), r.Interaction("A")]
        )


async def test_writes_made_by_a_rejecting_condition_are_rolled_back(make: MakeController) -> None:
    def sneaky(event: dict[str, Any], ctx: r.TransactionContext) -> bool:
        ctx.storage.create("User", {"name": "written by a condition"})
        return False

    c = await setup_blog(make, r.Condition("sneaky", sneaky))
    ada = await c.storage.create("User", {"name": "ada"})
    before = await table_counts(c, *ALL_TABLES)

    result = await c.dispatch("CreatePost", payload={"title": "x", "author": {"id": ada["id"]}})

    assert result.error is not None and result.error.code == "condition_rejected"
    assert await table_counts(c, *ALL_TABLES) == before


async def test_concurrent_dispatches_all_commit(make: MakeController) -> None:
    c = await setup_blog(make)
    ada = await c.storage.create("User", {"name": "ada"})

    results = await asyncio.gather(
        *(
            c.dispatch("CreatePost", payload={"title": f"p{i}", "author": {"id": ada["id"]}})
            for i in range(20)
        )
    )
    await c.drain()

    assert [res.error for res in results] == [None] * 20
    assert await c.storage.count("Post") == 20
    assert await c.storage.get_dict("posts") == 20
    assert await c.storage.get_dict("dispatches") == 20
    assert len({res.data["id"] for res in results}) == 20


async def test_resolve_may_take_only_the_event(make: MakeController) -> None:
    echo = r.Interaction(
        "Echo", r.Payload([r.PayloadItem("text")]), resolve=lambda ev: ev["payload"]
    )
    c = await make(interactions=[echo])

    result = await c.dispatch(echo, payload={"text": "hi"})

    assert result.error is None
    assert result.data == {"text": "hi"}


async def test_a_failing_resolve_is_an_error_result(make: MakeController) -> None:
    def resolve(event: dict[str, Any], ctx: r.TransactionContext) -> Any:
        ctx.storage.create("Item", {"name": "half done"})
        raise LookupError("no such thing")

    item = r.Entity("Item", [r.Property("name")])
    find = r.Interaction("Find", resolve=resolve)
    c = await make([item], interactions=[find])

    result = await c.dispatch(find)

    assert result.error is not None
    assert isinstance(result.error.cause, LookupError)
    assert await table_counts(c, "Item") == {"Item": 0, EV: 0, DICTIONARY_RECORD: 0}
