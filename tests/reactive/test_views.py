"""Filtered and merged entities and relations (views), modeled on the original framework's
tests of them (filtered membership, merged inputs): reads, events, aggregates over a view,
views of views, and the declarations refused at setup. Every test runs on both backends."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from storage import MatchExp, MutationEvent, StorageError
from tests.conftest import StorageFactory

from .conftest import MakeController

ACTIVE = MatchExp.atom("active", "=", True)


def users_model() -> tuple[r.Entity, r.Entity]:
    user = r.Entity(
        "User",
        [
            r.Property("name"),
            r.Property("active", "boolean"),
            r.Property("salary", "number"),
        ],
    )
    return user, r.Entity("ActiveUser", base=user, match=ACTIVE)


def aggregates_over(view: r.Entity) -> list[r.Dictionary]:
    rich = ["salary"]
    return [
        r.Dictionary("n", "integer", computation=r.Count(record=view)),
        r.Dictionary("total", "number", computation=r.Summation(record=view, attribute_query=rich)),
        r.Dictionary("mean", "number", computation=r.Average(record=view, attribute_query=rich)),
        r.Dictionary(
            "all_rich",
            "boolean",
            computation=r.Every(
                record=view,
                attribute_query=rich,
                callback=lambda u: (u["salary"] or 0) >= 100,
                not_empty=True,
            ),
        ),
        r.Dictionary(
            "any_rich",
            "boolean",
            computation=r.Any(
                record=view, attribute_query=rich, callback=lambda u: (u["salary"] or 0) >= 100
            ),
        ),
        r.Dictionary(
            "doubled",
            "number",
            computation=r.WeightedSummation(
                record=view, attribute_query=rich, callback=lambda u: (2, u["salary"] or 0)
            ),
        ),
    ]


async def values(c: r.Controller, *names: str) -> dict[str, Any]:
    return {name: await c.storage.get_dict(name) for name in names}


ALL = ("n", "total", "mean", "all_rich", "any_rich", "doubled")


async def test_aggregates_over_a_filtered_entity_follow_records_leaving_and_reentering(
    make: MakeController,
) -> None:
    user, active = users_model()
    c = await make([user, active], [], aggregates_over(active))
    u = await c.storage.create("User", {"name": "u1", "active": True, "salary": 100})
    full = {"n": 1, "total": 100, "mean": 100, "all_rich": True, "any_rich": True, "doubled": 200}
    assert await values(c, *ALL) == full
    await c.storage.update("User", {"id": u["id"]}, {"active": False})  # leaves; the row stays
    empty = {"n": 0, "total": 0, "mean": 0, "all_rich": False, "any_rich": False, "doubled": 0}
    assert await values(c, *ALL) == empty
    assert await c.storage.count("User") == 1
    await c.storage.update("User", {"id": u["id"]}, {"active": True})  # enters again
    assert await values(c, *ALL) == full
    # a member's field changes: the aggregates over the view follow
    await c.storage.update("User", {"id": u["id"]}, {"salary": 40})
    assert await values(c, *ALL) == {
        "n": 1,
        "total": 40,
        "mean": 40,
        "all_rich": False,
        "any_rich": False,
        "doubled": 80,
    }
    # a non-member's changes do nothing
    other = await c.storage.create("User", {"name": "u2", "active": False, "salary": 500})
    await c.storage.update("User", {"id": other["id"]}, {"salary": 900})
    assert await c.storage.get_dict("total") == 40
    await c.storage.delete("User", {"id": u["id"]})
    assert await values(c, "n", "total") == {"n": 0, "total": 0}
    assert (await c.verify()).ok


async def test_view_events_create_on_entering_delete_on_leaving_update_while_member(
    make: MakeController,
) -> None:
    user, active = users_model()
    c = await make([user, active])
    seen: list[MutationEvent] = []
    c.stream(active).subscribe(seen.append)
    a = await c.storage.create("User", {"name": "a", "active": True, "salary": 1})
    b = await c.storage.create("User", {"name": "b", "active": False})
    assert [(e.type, e.record["id"]) for e in seen] == [("create", a["id"])]
    assert seen[0].record == {"id": a["id"], "name": "a", "active": True, "salary": 1}
    seen.clear()
    await c.storage.update("User", {"id": b["id"]}, {"name": "b2"})  # not a member: nothing
    assert seen == []
    await c.storage.update("User", {"id": b["id"]}, {"active": True})  # enters: its whole value
    assert [(e.type, e.record) for e in seen] == [
        ("create", {"id": b["id"], "name": "b2", "active": True, "salary": None})
    ]
    seen.clear()
    await c.storage.update("User", {"id": a["id"]}, {"salary": 5})  # stays: an update
    assert [(e.type, e.record, e.keys) for e in seen] == [
        ("update", {"id": a["id"], "salary": 5}, ("salary",))
    ]
    assert seen[0].old_record is not None and seen[0].old_record["salary"] == 1
    seen.clear()
    await c.storage.update("User", {"id": a["id"]}, {"active": False})  # leaves: its old value
    assert [(e.type, e.record["id"], e.record["active"]) for e in seen] == [
        ("delete", a["id"], True)
    ]
    seen.clear()
    await c.storage.delete("User", {"id": b["id"]})
    assert [(e.type, e.record["id"]) for e in seen] == [("delete", b["id"])]
    seen.clear()
    await c.storage.delete("User", {"id": a["id"]})  # not a member any more: nothing
    assert seen == []


async def test_a_dispatch_lists_view_events_among_its_effects(make: MakeController) -> None:
    user, active = users_model()
    join = r.Interaction("Join", r.Payload([r.PayloadItem("name", required=True)]))
    user.computation = r.Transform(
        r.INTERACTION_EVENT,
        lambda ev: (
            {"name": ev["payload"]["name"], "active": True}
            if ev["interaction_name"] == "Join"
            else None
        ),
        attribute_query=["interaction_name", "payload"],
    )
    c = await make([user, active], interactions=[join])
    result = await c.dispatch(join, user=None, payload={"name": "ada"})
    assert result.error is None
    assert ("ActiveUser", "create") in [(e.record_name, e.type) for e in result.effects]


async def test_reading_a_filtered_entity(make: MakeController) -> None:
    user, active = users_model()
    post = r.Entity("Post", [r.Property("title")])
    posts = r.Relation(user, "posts", post, "author", "1:n")
    counted = r.Property("post_count", "integer", computation=r.Count(property="posts"))
    user.properties.append(counted)
    c = await make([user, active, post], [posts])
    ada = await c.storage.create("User", {"name": "ada", "active": True, "salary": 3})
    await c.storage.create("User", {"name": "bob", "active": True, "salary": 9})
    await c.storage.create("User", {"name": "cyd", "active": False, "salary": 5})
    await c.storage.create("Post", {"title": "p", "author": {"id": ada["id"]}})
    # "*" is the base's declared fields (a computation's state stays out)
    assert await c.storage.find("ActiveUser", None, ["*"], order_by={"salary": "desc"}) == [
        {"id": 2, "name": "bob", "active": True, "salary": 9, "post_count": 0},
        {"id": 1, "name": "ada", "active": True, "salary": 3, "post_count": 1},
    ]
    assert await c.storage.count("ActiveUser") == 2
    assert await c.storage.count("ActiveUser", MatchExp.atom("salary", ">", 4)) == 1
    assert await c.storage.find_one("ActiveUser", {"name": "cyd"}) is None
    # the base's relation attributes read (and match) through the view
    assert await c.storage.find(
        "ActiveUser", {"posts.title": "p"}, ["name", ("posts", ["title"])]
    ) == [{"id": 1, "name": "ada", "posts": [{"id": 1, "title": "p"}]}]
    assert await c.storage.find("ActiveUser", None, ["name"], limit=1, offset=1) == [
        {"id": 2, "name": "bob"}
    ]


async def test_reads_inside_a_transaction_see_the_view(make: MakeController) -> None:
    user, active = users_model()
    c = await make([user, active])
    await c.storage.create("User", {"name": "ada", "active": True})

    def body(ctx: r.TransactionContext) -> Any:
        ctx.storage.create("User", {"name": "bob", "active": True})
        return (
            ctx.storage.count("ActiveUser"),
            ctx.storage.find_one("ActiveUser", {"name": "bob"}, ["name"]),
        )

    result, _ = await c.transact(body)
    assert result == (2, {"id": 2, "name": "bob"})


async def test_a_filtered_view_of_a_filtered_view(make: MakeController) -> None:
    user, active = users_model()
    rich = r.Entity("RichActiveUser", base=active, match=MatchExp.atom("salary", ">=", 100))
    n = r.Dictionary("n", "integer", computation=r.Count(record=rich))
    c = await make([user, active, rich], [], [n])
    u = await c.storage.create("User", {"name": "a", "active": True, "salary": 50})
    assert await c.storage.get_dict("n") == 0
    await c.storage.update("User", {"id": u["id"]}, {"salary": 150})
    assert await c.storage.get_dict("n") == 1
    assert await c.storage.find("RichActiveUser", None, ["name"]) == [{"id": 1, "name": "a"}]
    await c.storage.update("User", {"id": u["id"]}, {"active": False})  # leaves both
    assert await c.storage.get_dict("n") == 0
    assert await c.storage.count("RichActiveUser") == 0


async def test_a_transform_over_a_filtered_entity_follows_membership(
    make: MakeController,
) -> None:
    user, active = users_model()
    badge = r.Entity(
        "Badge",
        [r.Property("label")],
        computation=r.Transform(active, lambda u: {"label": f"active {u['name']}"}),
    )
    c = await make([user, active, badge])
    u = await c.storage.create("User", {"name": "a", "active": False})
    assert await c.storage.count("Badge") == 0
    await c.storage.update("User", {"id": u["id"]}, {"active": True})
    assert await c.storage.find("Badge", None, ["label"]) == [{"id": 1, "label": "active a"}]
    await c.storage.update("User", {"id": u["id"]}, {"name": "b"})
    assert await c.storage.find("Badge", None, ["label"]) == [{"id": 1, "label": "active b"}]
    await c.storage.update("User", {"id": u["id"]}, {"active": False})
    assert await c.storage.count("Badge") == 0


async def test_a_state_machine_triggered_by_a_view(make: MakeController) -> None:
    user, active = users_model()
    idle, busy = r.StateNode("idle"), r.StateNode("busy")
    status = r.Dictionary(
        "status",
        computation=r.StateMachine(
            [idle, busy],
            [
                r.StateTransfer(idle, busy, r.Trigger(active, "create")),
                r.StateTransfer(busy, idle, r.Trigger(active, "delete")),
            ],
            idle,
        ),
    )
    c = await make([user, active], [], [status])
    u = await c.storage.create("User", {"name": "a", "active": False})
    assert await c.storage.get_dict("status") == "idle"
    await c.storage.update("User", {"id": u["id"]}, {"active": True})
    assert await c.storage.get_dict("status") == "busy"
    await c.storage.update("User", {"id": u["id"]}, {"active": False})
    assert await c.storage.get_dict("status") == "idle"


async def test_a_filtered_relation(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    friends = r.Relation(
        user, "friends", user, "friends", "n:n", properties=[r.Property("close", "boolean")]
    )
    close = r.Relation(name="CloseFriendship", base=friends, match={"close": True})
    n = r.Dictionary("close_pairs", "integer", computation=r.Count(record=close))
    c = await make([user], [friends, close], [n])
    a = await c.storage.create("User", {"name": "a"})
    b = await c.storage.create("User", {"name": "b"})
    link = await c.storage.create(
        friends, {"source": {"id": a["id"]}, "target": {"id": b["id"]}, "close": False}
    )
    assert await c.storage.get_dict("close_pairs") == 0
    await c.storage.update(friends, {"id": link["id"]}, {"close": True})
    assert await c.storage.get_dict("close_pairs") == 1
    assert await c.storage.find(close, None, ["close", ("source", ["name"])]) == [
        {"id": link["id"], "close": True, "source": {"id": a["id"], "name": "a"}}
    ]
    await c.storage.delete("User", {"id": a["id"]})  # the link goes with its end
    assert await c.storage.get_dict("close_pairs") == 0
    assert (await c.verify()).ok


async def test_a_property_aggregate_over_a_filtered_relation(make: MakeController) -> None:
    """A user's count of close friends: the links of Friendship that match, per user; it
    follows links created, re-flagged (entering and leaving the view) and deleted, and a
    callback reading the friend follows the friend's changes."""
    user = r.Entity("User", [r.Property("name"), r.Property("vip", "boolean")])
    team = r.Entity("Team", [r.Property("name")])
    member = r.Relation(
        team,
        "members",
        user,
        "teams",
        "n:n",
        properties=[r.Property("role"), r.Property("w", "number")],
    )
    leads = r.Relation(name="Leadership", base=member, match={"role": "lead"})
    team.properties += [
        r.Property("leads", "integer", computation=r.Count(record=leads)),
        r.Property(
            "vip_leads",
            "integer",
            computation=r.Count(
                record=leads, attribute_query=["vip"], callback=lambda u: u["vip"] is True
            ),
        ),
        r.Property(
            "lead_weight",
            "number",
            computation=r.Summation(record=leads, attribute_query=[("&", ["w"])]),
        ),
    ]
    c = await make([user, team], [member, leads])
    t = await c.storage.create("Team", {"name": "t"})
    a = await c.storage.create("User", {"name": "a", "vip": True})
    b = await c.storage.create("User", {"name": "b", "vip": False})

    async def team_values() -> dict[str, Any]:
        found = await c.storage.find_one(
            "Team", {"id": t["id"]}, ["leads", "vip_leads", "lead_weight"]
        )
        assert found is not None
        return {k: found[k] for k in ("leads", "vip_leads", "lead_weight")}

    la = await c.storage.create(
        member, {"source": {"id": t["id"]}, "target": {"id": a["id"]}, "role": "lead", "w": 2}
    )
    lb = await c.storage.create(
        member, {"source": {"id": t["id"]}, "target": {"id": b["id"]}, "role": "dev", "w": 5}
    )
    assert await team_values() == {"leads": 1, "vip_leads": 1, "lead_weight": 2}
    await c.storage.update(member, {"id": lb["id"]}, {"role": "lead"})  # enters the view
    assert await team_values() == {"leads": 2, "vip_leads": 1, "lead_weight": 7}
    await c.storage.update(member, {"id": lb["id"]}, {"w": 1})  # a member link's field
    assert await team_values() == {"leads": 2, "vip_leads": 1, "lead_weight": 3}
    await c.storage.update("User", {"id": b["id"]}, {"vip": True})  # the item's field
    assert await team_values() == {"leads": 2, "vip_leads": 2, "lead_weight": 3}
    await c.storage.update(member, {"id": la["id"]}, {"role": "dev"})  # leaves the view
    await c.storage.update("User", {"id": a["id"]}, {"vip": False})  # a non-member's item
    assert await team_values() == {"leads": 1, "vip_leads": 1, "lead_weight": 1}
    await c.storage.delete("User", {"id": b["id"]})  # its link goes with it
    assert await team_values() == {"leads": 0, "vip_leads": 0, "lead_weight": 0}
    assert (await c.verify()).ok
    # verify() and recompute() read the view too: a value written behind the engine's back
    # is found and put right
    await c.storage.create(
        member, {"source": {"id": t["id"]}, "target": {"id": a["id"]}, "role": "lead"}
    )
    await c.backend.run(lambda s: s.write_internal("Team", t["id"], {"leads": 9}))
    report = await c.verify()
    assert [(d.record, d.field, d.stored, d.expected) for d in report.differences] == [
        ("Team", "leads", 9, 1)
    ]
    await c.recompute("Team.leads")
    assert (await team_values())["leads"] == 1
    assert (await c.verify()).ok


# -- merged -----------------------------------------------------------------------------------


def contacts_model() -> tuple[r.Entity, r.Entity, r.Entity]:
    customer = r.Entity(
        "Customer",
        [r.Property("name"), r.Property("active", "boolean", default=True), r.Property("vat")],
    )
    vendor = r.Entity(
        "Vendor",
        [r.Property("name"), r.Property("active", "boolean", default=True), r.Property("score")],
    )
    return customer, vendor, r.Entity("Contact", inputs=[customer, vendor])


async def test_count_over_a_merged_entity_and_an_input_through_input_writes(
    make: MakeController,
) -> None:
    customer, vendor, contact = contacts_model()
    dictionaries = [
        r.Dictionary("contacts", "integer", computation=r.Count(record=contact)),
        r.Dictionary("customers", "integer", computation=r.Count(record=customer)),
        r.Dictionary(
            "active_contacts",
            "integer",
            computation=r.Count(
                record=contact, attribute_query=["active"], callback=lambda x: x["active"]
            ),
        ),
    ]
    c = await make([customer, vendor, contact], [], dictionaries)
    c1 = await c.storage.create("Customer", {"name": "c1"})
    await c.storage.create("Customer", {"name": "c2"})
    v1 = await c.storage.create("Vendor", {"name": "v1"})
    assert await values(c, "contacts", "customers", "active_contacts") == {
        "contacts": 3,
        "customers": 2,
        "active_contacts": 3,
    }
    await c.storage.update("Vendor", {"id": v1["id"]}, {"active": False})
    await c.storage.delete("Customer", {"id": c1["id"]})
    assert await values(c, "contacts", "customers", "active_contacts") == {
        "contacts": 2,
        "customers": 1,
        "active_contacts": 1,
    }
    assert (await c.verify()).ok


async def test_reading_a_merged_entity(make: MakeController) -> None:
    customer, vendor, contact = contacts_model()
    c = await make([customer, vendor, contact])
    await c.storage.create("Customer", {"name": "bo", "vat": "x"})
    await c.storage.create("Vendor", {"name": "al", "score": "9"})
    await c.storage.create("Vendor", {"name": "cy", "active": False})
    # only the common fields; ids name the input; "*" adds __type
    assert await c.storage.find("Contact", None, ["*"]) == [
        {"id": "Customer:1", "name": "bo", "active": True, r.TYPE_FIELD: "Customer"},
        {"id": "Vendor:1", "name": "al", "active": True, r.TYPE_FIELD: "Vendor"},
        {"id": "Vendor:2", "name": "cy", "active": False, r.TYPE_FIELD: "Vendor"},
    ]
    by_name = await c.storage.find("Contact", None, ["name"], order_by={"name": "asc"})
    assert [x["name"] for x in by_name] == ["al", "bo", "cy"]
    page = await c.storage.find(
        "Contact", None, ["name"], order_by={"name": "desc"}, limit=1, offset=1
    )
    assert page == [{"id": "Customer:1", "name": "bo"}]
    assert await c.storage.find_one("Contact", {"id": "Vendor:2"}, ["name"]) == {
        "id": "Vendor:2",
        "name": "cy",
    }
    assert await c.storage.count("Contact", {r.TYPE_FIELD: "Vendor"}) == 2
    assert await c.storage.count("Contact", {"active": True}) == 2
    assert (
        await c.storage.count("Contact", MatchExp.atom("id", "in", ["Vendor:1", "Customer:1"])) == 2
    )
    assert await c.storage.count("Contact", ~MatchExp.atom("id", "=", "Vendor:1")) == 2
    with pytest.raises(StorageError, match="vat"):
        await c.storage.find("Contact", {"vat": "x"})  # not common: named in the error
    with pytest.raises(StorageError, match="score"):
        await c.storage.find("Contact", None, ["score"])


async def test_merged_entity_events_name_the_input(make: MakeController) -> None:
    customer, vendor, contact = contacts_model()
    c = await make([customer, vendor, contact])
    seen: list[MutationEvent] = []
    c.stream(contact).subscribe(seen.append)
    v = await c.storage.create("Vendor", {"name": "v", "score": "1"})
    await c.storage.update("Vendor", {"id": v["id"]}, {"score": "2"})  # not a common field
    await c.storage.update("Vendor", {"id": v["id"]}, {"name": "w"})
    await c.storage.delete("Vendor", {"id": v["id"]})
    assert [(e.type, e.record) for e in seen] == [
        ("create", {"id": "Vendor:1", "name": "v", "active": True, r.TYPE_FIELD: "Vendor"}),
        ("update", {"id": "Vendor:1", "name": "w", r.TYPE_FIELD: "Vendor"}),
        ("delete", {"id": "Vendor:1", "name": "w", "active": True, r.TYPE_FIELD: "Vendor"}),
    ]


async def test_a_merged_view_of_filtered_views(make: MakeController) -> None:
    customer, vendor, _ = contacts_model()
    live_c = r.Entity("LiveCustomer", base=customer, match={"active": True})
    live_v = r.Entity("LiveVendor", base=vendor, match={"active": True})
    live = r.Entity("LiveContact", inputs=[live_c, live_v])
    n = r.Dictionary("live", "integer", computation=r.Count(record=live))
    c = await make([customer, vendor, live_c, live_v, live], [], [n])
    a = await c.storage.create("Customer", {"name": "a"})
    await c.storage.create("Vendor", {"name": "b", "active": False})
    assert await c.storage.get_dict("live") == 1
    assert await c.storage.find("LiveContact", None, ["name"]) == [
        {"id": "LiveCustomer:1", "name": "a"}
    ]
    await c.storage.update("Customer", {"id": a["id"]}, {"active": False})
    assert await c.storage.get_dict("live") == 0
    assert await c.storage.count("LiveContact") == 0


async def test_a_transform_over_a_merged_entity(make: MakeController) -> None:
    customer, vendor, contact = contacts_model()
    card = r.Entity(
        "Card",
        [r.Property("text")],
        computation=r.Transform(contact, lambda x: {"text": f"{x[r.TYPE_FIELD]} {x['name']}"}),
    )
    c = await make([customer, vendor, contact, card])
    await c.storage.create("Customer", {"name": "a"})
    v = await c.storage.create("Vendor", {"name": "b"})
    assert await c.storage.find("Card", None, ["text"]) == [
        {"id": 1, "text": "Customer a"},
        {"id": 2, "text": "Vendor b"},
    ]
    await c.storage.update("Vendor", {"id": v["id"]}, {"name": "c"})
    assert await c.storage.find("Card", None, ["text"]) == [
        {"id": 1, "text": "Customer a"},
        {"id": 2, "text": "Vendor c"},
    ]
    await c.storage.delete("Vendor", {"id": v["id"]})
    assert await c.storage.count("Card") == 1
    assert (await c.verify()).ok
    assert await c.recompute("Card") == ["Card"]
    assert await c.storage.find("Card", None, ["text"]) == [{"id": 1, "text": "Customer a"}]


async def test_recomputing_a_transform_over_a_filtered_entity(make: MakeController) -> None:
    user, active = users_model()
    badge = r.Entity(
        "Badge",
        [r.Property("label")],
        computation=r.Transform(active, lambda u: {"label": u["name"]}),
    )
    c = await make([user, active, badge])
    for i in range(5):
        await c.storage.create("User", {"name": f"u{i}", "active": i % 2 == 0})
    await c.backend.run(lambda s: s.write_internal("Badge", 1, {"label": "wrong"}))
    assert not (await c.verify(batch_size=2)).ok
    await c.recompute("Badge", batch_size=2)
    assert [b["label"] for b in await c.storage.find("Badge", None, ["label"])] == [
        "u0",
        "u2",
        "u4",
    ]
    assert (await c.verify(batch_size=2)).ok


async def test_a_merged_relation(make: MakeController) -> None:
    user = r.Entity("User", [r.Property("name")])
    team = r.Entity("Team", [r.Property("name")])
    member = r.Relation(user, "teams", team, "members", "n:n", properties=[r.Property("since")])
    lead = r.Relation(user, "leads", team, "leaders", "n:n", properties=[r.Property("since")])
    role = r.Relation(name="Role", inputs=[member, lead])
    n = r.Dictionary("roles", "integer", computation=r.Count(record=role))
    c = await make([user, team], [member, lead, role], [n])
    u = await c.storage.create("User", {"name": "u"})
    t = await c.storage.create("Team", {"name": "t"})
    await c.storage.update(
        "User", {"id": u["id"]}, {"teams": [{"id": t["id"]}], "leads": [{"id": t["id"]}]}
    )
    assert await c.storage.get_dict("roles") == 2
    rows = await c.storage.find(role, None, ["since"])
    assert sorted(x["id"] for x in rows) == [f"{lead.name}:1", f"{member.name}:1"]
    await c.storage.delete("Team", {"id": t["id"]})
    assert await c.storage.get_dict("roles") == 0


# -- refused -----------------------------------------------------------------------------------


async def test_writes_to_a_view_are_refused(make: MakeController) -> None:
    user, active = users_model()
    customer, vendor, contact = contacts_model()
    c = await make([user, active, customer, vendor, contact])
    u = await c.storage.create("User", {"name": "a", "active": True})
    with pytest.raises(r.ModelError, match="cannot create ActiveUser: it is a view of User"):
        await c.storage.create("ActiveUser", {"name": "x"})
    with pytest.raises(r.ModelError, match="cannot update ActiveUser"):
        await c.storage.update("ActiveUser", {"id": u["id"]}, {"name": "x"})
    with pytest.raises(
        r.ModelError, match="cannot delete Contact: it is a view of Customer, Vendor"
    ):
        await c.storage.delete("Contact", {"id": "Customer:1"})
    assert await c.storage.find("User", None, ["name"]) == [{"id": 1, "name": "a"}]


def test_bad_view_declarations_fail_at_declaration() -> None:
    user, _ = users_model()
    with pytest.raises(r.ModelError, match="entity V: match= filters a base; give base= too"):
        r.Entity("V", match=ACTIVE)
    with pytest.raises(r.ModelError, match="entity V: a filtered view needs match="):
        r.Entity("V", base=user)
    with pytest.raises(r.ModelError, match="exclude each other"):
        r.Entity("V", base=user, match=ACTIVE, inputs=[user])
    with pytest.raises(r.ModelError, match="entity V: inputs= must be a non-empty list"):
        r.Entity("V", inputs=[])
    with pytest.raises(r.ModelError, match="entity V: a view has no properties of its own"):
        r.Entity("V", [r.Property("x")], base=user, match=ACTIVE)
    friends = r.Relation(user, "friends", user, "friends", "n:n")
    with pytest.raises(r.ModelError, match=r"a relation view .* needs a name"):
        r.Relation(base=friends, match={"id": 1})
    with pytest.raises(r.ModelError, match=r"relation V\.source_property: a relation view adds no"):
        r.Relation(name="V", base=friends, match={"id": 1}, source_property="x")
    team = r.Entity("Team")
    leads = r.Relation(user, "leads", team, "leaders", "n:n")
    with pytest.raises(r.ModelError, match="relation V: merged relations must join the same ends"):
        r.Relation(name="V", inputs=[friends, leads])
    with pytest.raises(r.ModelError, match=r"relation V\.type: a relation view takes type"):
        r.Relation(name="V", base=friends, match={"id": 1}, type="1:n")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda u, t: [r.Entity("V", base=u, match={"nickname": "x"})],
            "filtered view V: match names 'nickname', which is not a value field of User",
        ),
        (
            lambda u, t: [r.Entity("V", base=u, match={"team.name": "x"})],
            "filtered view V: match names 'team.name'.*would change with other records",
        ),
        (
            lambda u, t: [r.Entity("V", base=u, match={"meta": {"a": 1}})],
            "filtered view V: match on json field 'meta'",
        ),
        (
            lambda u, t: [r.Entity("V", inputs=[u, t])],
            "merged entity V: its inputs User, Team have no value field in common",
        ),
    ],
)
def test_bad_view_declarations_fail_at_setup(build: Any, message: str) -> None:
    user = r.Entity("User", [r.Property("name"), r.Property("meta", "json")])
    team = r.Entity("Team", [r.Property("title")])
    with pytest.raises(r.SetupError, match=message):
        r.Controller(r_storage(), [user, team, *build(user, team)])


def test_a_view_whose_base_is_not_declared_fails() -> None:
    _, active = users_model()
    with pytest.raises(r.SetupError, match="entity view ActiveUser: its base 'User' is not among"):
        r.Controller(r_storage(), [active])


def test_a_view_may_not_be_a_relation_end() -> None:
    user, active = users_model()
    post = r.Entity("Post")
    rel = r.Relation(active, "posts", post, "author", "1:n")
    with pytest.raises(
        r.ModelError, match="its source ActiveUser is a view; relations join stored"
    ):
        r.Controller(r_storage(), [user, active, post], [rel])


def test_a_property_aggregate_over_a_merged_or_entity_view_is_refused() -> None:
    user = r.Entity("User", [r.Property("name")])
    team = r.Entity("Team", [r.Property("name")])
    member = r.Relation(user, "teams", team, "members", "n:n")
    lead = r.Relation(user, "leads", team, "leaders", "n:n")
    role = r.Relation(name="Role", inputs=[member, lead])
    user.properties.append(r.Property("n", "integer", computation=r.Count(record=role)))
    with pytest.raises(r.SetupError, match=r"User\.n \(Count\): record=Role is a merged view"):
        r.Controller(r_storage(), [user, team], [member, lead, role])
    person = r.Entity("Person", [r.Property("name")])
    named = r.Entity("Named", base=person, match={"name": "x"})
    person.properties.append(r.Property("n", "integer", computation=r.Count(record=named)))
    with pytest.raises(r.SetupError, match=r"Person\.n \(Count\): record=Named is an entity view"):
        r.Controller(r_storage(), [person, named])


def r_storage() -> Any:
    from storage import SQLiteStorage

    return SQLiteStorage(":memory:")


# -- model evolution -----------------------------------------------------------------------------


async def test_adding_a_view_needs_no_table_and_an_aggregate_over_it_starts_from_the_data(
    make: MakeController, make_storage: StorageFactory
) -> None:
    user, _ = users_model()
    c = await make([user], path="evolve")
    for i, is_active in enumerate([True, False, True]):
        await c.storage.create("User", {"name": f"u{i}", "active": is_active, "salary": 10 * i})
    await c.close()

    user, active = users_model()
    n = r.Dictionary("n", "integer", computation=r.Count(record=active))
    planner = r.Controller(make_storage("evolve"), [user, active], [], [n])
    plan = await planner.plan_migration()
    assert [(ch.kind, ch.target) for ch in plan.changes] == [("add_dictionary", "n")], str(plan)
    assert "ActiveUser" not in str(plan)
    assert plan.operations(False) == []  # no table, no column: the view is no schema change
    await planner.close()

    c = await make([user, active], [], [n], path="evolve")
    assert await c.storage.get_dict("n") == 2  # backfilled from the stored users
    assert await c.storage.find("ActiveUser", None, ["name"]) == [
        {"id": 1, "name": "u0"},
        {"id": 3, "name": "u2"},
    ]
    await c.storage.update("User", {"id": 2}, {"active": True})
    assert await c.storage.get_dict("n") == 3
    assert (await c.verify()).ok


async def test_changing_a_views_match_recomputes_the_aggregates_over_it(
    make: MakeController,
) -> None:
    user, active = users_model()
    n = r.Dictionary("n", "integer", computation=r.Count(record=active))
    c = await make([user, active], [], [n], path="evolve")
    for salary in (5, 50, 500):
        await c.storage.create("User", {"name": "u", "active": True, "salary": salary})
    assert await c.storage.get_dict("n") == 3
    await c.close()

    user, _ = users_model()
    rich = r.Entity("ActiveUser", base=user, match=ACTIVE & MatchExp.atom("salary", ">", 10))
    n = r.Dictionary("n", "integer", computation=r.Count(record=rich))
    c = await make([user, rich], [], [n], path="evolve")
    assert await c.storage.get_dict("n") == 2
    assert (await c.verify()).ok


async def test_verify_reports_a_membership_judged_otherwise_than_the_database(
    make: MakeController,
) -> None:
    """verify() compares each filtered view's members (the database's match) with the ones
    its events are judged on (the match in Python): a disagreement would make every
    aggregate over the view drift, so it is reported. Injected here by a wrong judgement."""
    user, active = users_model()
    rich = r.Entity("RichActiveUser", base=active, match=MatchExp.atom("salary", ">", 5))
    c = await make([user, active, rich])
    for i in range(5):
        await c.storage.create("User", {"name": f"u{i}", "active": i != 1, "salary": i * 3})
    assert (await c.verify(batch_size=2)).ok
    view = c.engine.views["RichActiveUser"]
    view._test = lambda record: record["salary"] >= 0  # wrong for u0 (active, salary 0)
    report = await c.verify(batch_size=2)
    assert [(d.record, d.id, d.field, d.stored, d.expected) for d in report.differences] == [
        ("RichActiveUser", 1, "(member)", False, True)
    ]


async def test_a_side_effect_on_a_view_runs_after_commit_for_records_entering_it(
    make: MakeController,
) -> None:
    user, active = users_model()
    welcomed: list[Any] = []

    async def welcome(event: MutationEvent, controller: r.Controller) -> None:
        welcomed.append((event.record_name, event.type, event.record["name"]))

    effect = r.RecordMutationSideEffect("welcome", active, welcome, on=("create",))
    c = await make([user, active], side_effects=[effect])
    u = await c.storage.create("User", {"name": "a", "active": False})
    await c.drain()
    assert welcomed == []
    await c.storage.update("User", {"id": u["id"]}, {"active": True})
    await c.drain()
    assert welcomed == [("ActiveUser", "create", "a")]


async def test_a_view_update_carries_no_internal_state_of_the_base(
    make: MakeController,
) -> None:
    user, active = users_model()
    post = r.Entity("Post", [r.Property("title")])
    posts = r.Relation(user, "posts", post, "author", "1:n")
    user.properties.append(r.Property("n", "integer", computation=r.Count(property="posts")))
    c = await make([user, active, post], [posts])
    u = await c.storage.create("User", {"name": "a", "active": True})
    seen: list[MutationEvent] = []
    c.stream(active).subscribe(seen.append)
    await c.storage.create("Post", {"title": "p", "author": {"id": u["id"]}})
    # the user's count is a field of the view: one update, with it and nothing internal
    assert [(e.type, e.record) for e in seen] == [("update", {"id": u["id"], "n": 1})]
