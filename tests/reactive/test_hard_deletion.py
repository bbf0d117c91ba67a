"""HardDeletionProperty: a record deleted through a state (modeled on the original framework's
tests of it, on an entity and on a relation). Both backends."""

from __future__ import annotations

from typing import Any

import reactive as r
from storage import MutationEvent

from .conftest import MakeController


def deleting_machine(interaction: str, target: Any) -> r.StateMachine:
    return r.StateMachine(
        states=[r.NON_DELETED_STATE, r.DELETED_STATE],
        transfers=[
            r.StateTransfer(
                r.NON_DELETED_STATE,
                r.DELETED_STATE,
                r.Trigger(r.INTERACTION_EVENT, "create", fields={"interaction_name": interaction}),
                compute_target=target,
            )
        ],
        initial_state=r.NON_DELETED_STATE,
    )


def post_target(event: MutationEvent) -> dict[str, Any]:
    return {"id": event.record["payload"]["post"]}


async def test_a_state_machine_moving_to_deleted_deletes_the_record(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [r.Property("title"), r.HardDeletionProperty(deleting_machine("DeletePost", post_target))],
    )
    posts = r.Relation(user, "posts", post, "author", "1:n")
    user.properties.append(
        r.Property("post_count", "integer", computation=r.Count(property="posts"))
    )
    total = r.Dictionary("posts", "integer", computation=r.Count(record=post))
    delete_post = r.Interaction("DeletePost", r.Payload([r.PayloadItem("post", "number")]))
    c = await make([user, post], [posts], [total], [delete_post])
    u = await c.storage.create("User", {"name": "u"})
    p1 = await c.storage.create("Post", {"title": "a", "author": {"id": u["id"]}})
    await c.storage.create("Post", {"title": "b", "author": {"id": u["id"]}})
    # while the record exists the property reads False
    assert await c.storage.find_one("Post", {"id": p1["id"]}, [r.HARD_DELETION_PROPERTY]) == {
        "id": p1["id"],
        r.HARD_DELETION_PROPERTY: False,
    }
    result = await c.dispatch(delete_post, user=None, payload={"post": p1["id"]})
    assert result.error is None
    assert await c.storage.find("Post", None, ["title"]) == [{"id": 2, "title": "b"}]
    assert await c.storage.get_dict("posts") == 1
    assert (await c.storage.find_one("User", {"id": u["id"]}, ["post_count"]) or {})[
        "post_count"
    ] == 1
    effects = [(e.record_name, e.type) for e in result.effects]
    # the link goes first, then the record; no update of the post is published
    assert effects.index((posts.relation_name, "delete")) < effects.index(("Post", "delete"))
    assert ("Post", "update") not in effects
    assert (await c.verify()).ok
    # a second dispatch for the gone record does nothing
    again = await c.dispatch(delete_post, user=None, payload={"post": p1["id"]})
    assert again.error is None
    assert await c.storage.get_dict("posts") == 1


async def test_hard_deleting_a_relation_record_decrements_a_count_with_a_callback(
    make: MakeController,
) -> None:
    parent = r.Entity("Parent", [r.Property("name")])
    child = r.Entity("Child", [r.Property("name"), r.Property("active", "boolean")])

    def link_of(event: MutationEvent, ctx: r.TransactionContext) -> Any:
        found = ctx.storage.find_one(
            "Child_parent_children_Parent", {"source.id": event.record["payload"]["child"]}
        )
        return found

    rel = r.Relation(
        child,
        "parent",
        parent,
        "children",
        "n:1",
        properties=[r.HardDeletionProperty(deleting_machine("Unlink", link_of))],
    )
    parent.properties.append(
        r.Property(
            "active_children",
            "integer",
            computation=r.Count(
                property="children",
                attribute_query=["active"],
                callback=lambda c: c["active"] is True,
            ),
        )
    )
    unlink = r.Interaction("Unlink", r.Payload([r.PayloadItem("child", "number")]))
    c = await make([parent, child], [rel], [], [unlink])
    p = await c.storage.create("Parent", {"name": "p"})
    kid = await c.storage.create("Child", {"name": "k", "active": True, "parent": {"id": p["id"]}})
    assert (await c.storage.find_one("Parent", {"id": p["id"]}, ["active_children"]) or {})[
        "active_children"
    ] == 1
    result = await c.dispatch(unlink, user=None, payload={"child": kid["id"]})
    assert result.error is None
    assert await c.storage.count(rel) == 0
    assert await c.storage.count("Child") == 1  # only the link went
    assert (await c.storage.find_one("Parent", {"id": p["id"]}, ["active_children"]) or {})[
        "active_children"
    ] == 0
    assert (await c.verify()).ok


async def test_writing_the_property_true_deletes_and_false_keeps(make: MakeController) -> None:
    item = r.Entity("Item", [r.Property("name"), r.HardDeletionProperty()])
    n = r.Dictionary("n", "integer", computation=r.Count(record=item))
    c = await make([item], [], [n])
    a = await c.storage.create("Item", {"name": "a"})
    b = await c.storage.create("Item", {"name": "b"})
    seen: list[tuple[str, Any]] = []
    c.stream(item).subscribe(lambda e: seen.append((e.type, e.record["id"])))
    await c.storage.update("Item", {"id": a["id"]}, {r.HARD_DELETION_PROPERTY: False})
    await c.storage.update("Item", {"id": b["id"]}, {r.HARD_DELETION_PROPERTY: True})
    assert seen == [("update", a["id"]), ("delete", b["id"])]
    assert await c.storage.find("Item", None, ["name"]) == [{"id": a["id"], "name": "a"}]
    assert await c.storage.get_dict("n") == 1


def test_the_builtin_states() -> None:
    assert r.NON_DELETED_STATE.name != r.DELETED_STATE.name
    prop = r.HardDeletionProperty()
    assert (prop.name, prop.type, prop.computation) == (r.HARD_DELETION_PROPERTY, "boolean", None)
