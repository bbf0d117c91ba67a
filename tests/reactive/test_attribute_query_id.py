"""``"id"`` in an ``attribute_query`` is always allowed: every item (and every link under
``"&"``) is read with its id, so naming it is the same as not naming it.

Covered for every computation that takes an attribute query: aggregates on a property and on
a dictionary, link fields under ``"&"``, a callback that reads nothing but the id, a
Summation of the id, and a Transform. A property-based test checks that incremental updates of
aggregates whose callback reads the id stay equal to a recount over random write sequences.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import reactive as r
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

from .conftest import MakeController
from .helpers import Calls
from .test_aggregates import likes_model


def keep(item: dict[str, Any]) -> bool:
    """The callback used below: reads the id and a field (odd ids with ok=True)."""
    return bool(item["ok"]) and item["id"] % 2 == 1


async def test_a_property_count_may_name_id_and_its_callback_sees_it(
    make: MakeController,
) -> None:
    calls = Calls(keep)
    user, post, likes = likes_model(
        n=r.Count(property="likes", attribute_query=["id", "ok"], callback=calls)
    )
    c = await make([user, post], [likes])
    kids = [await c.storage.create("User", {"name": str(i), "ok": True}) for i in range(4)]
    p = await c.storage.create("Post", {"title": "p", "likes": [{"id": k["id"]} for k in kids]})

    assert [k["id"] for k in kids] == [1, 2, 3, 4]
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["n"]) or {})["n"] == 2
    assert sorted(item["id"] for item in calls.args) == [1, 2, 3, 4]
    assert all(set(item) == {"id", "ok"} for item in calls.args)

    # Changing ok re-evaluates the item with its id; an unread field does not.
    await c.storage.update("User", {"id": 3}, {"ok": False})
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["n"]) or {})["n"] == 1
    before = calls.count
    await c.storage.update("User", {"id": 1}, {"name": "renamed"})
    assert calls.count == before
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["n"]) or {})["n"] == 1


async def test_a_callback_reading_only_the_id_gets_it(make: MakeController) -> None:
    calls = Calls(lambda item: item["id"] > 2)
    user, post, likes = likes_model(
        n=r.Count(property="likes", attribute_query=["id"], callback=calls)
    )
    c = await make([user, post], [likes])
    kids = [await c.storage.create("User", {"name": str(i)}) for i in range(4)]
    p = await c.storage.create("Post", {"likes": [{"id": k["id"]} for k in kids]})

    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["n"]) or {})["n"] == 2
    assert sorted(item["id"] for item in calls.args) == [1, 2, 3, 4]
    await c.storage.delete("User", {"id": 4})
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["n"]) or {})["n"] == 1


async def test_link_fields_may_name_id(make: MakeController) -> None:
    calls = Calls(lambda item: item["&"]["weight"] > 1 and item["id"] != 2)
    user, post, likes = likes_model(
        heavy=r.Count(property="likes", attribute_query=[("&", ["id", "weight"])], callback=calls)
    )
    c = await make([user, post], [likes])
    kids = [await c.storage.create("User", {"name": str(i)}) for i in range(3)]
    p = await c.storage.create(
        "Post", {"likes": [{"id": k["id"], "&": {"weight": 2}} for k in kids]}
    )

    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["heavy"]) or {})["heavy"] == 2
    links = await c.storage.find(likes, None, ["source", "target"])
    assert sorted(item["&"]["id"] for item in calls.args) == sorted(link["id"] for link in links)

    # A link field change still re-evaluates the item.
    await c.storage.update(likes, {"target": {"id": 1}}, {"weight": 1})
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["heavy"]) or {})["heavy"] == 1


async def test_only_the_link_id_still_hands_the_callback_the_link(make: MakeController) -> None:
    seen: list[Any] = []

    def first_link(item: dict[str, Any]) -> bool:
        seen.append(item["&"]["id"])
        return bool(item["&"]["id"] == 1)

    user, post, likes = likes_model(
        first=r.Count(property="likes", attribute_query=[("&", ["id"])], callback=first_link)
    )
    c = await make([user, post], [likes])
    kids = [await c.storage.create("User", {"name": str(i)}) for i in range(2)]
    p = await c.storage.create("Post", {"likes": [{"id": k["id"]} for k in kids]})

    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["first"]) or {})["first"] == 1
    assert sorted(seen) == [1, 2]


async def test_a_dictionary_count_may_name_id(make: MakeController) -> None:
    calls = Calls(keep)
    child = r.Entity("User", [r.Property("name"), r.Property("ok", "boolean")])
    kept = r.Dictionary(
        "kept",
        "number",
        computation=r.Count(record=child, attribute_query=["id", "ok"], callback=calls),
    )
    id_sum = r.Dictionary(
        "id_sum", "number", computation=r.Summation(record=child, attribute_query=["id"])
    )
    c = await make([child], dictionaries=[kept, id_sum])
    for i in range(5):
        await c.storage.create("User", {"name": str(i), "ok": i != 2})  # id 3 is not ok

    assert await c.storage.get_dict("kept") == 2  # ids 1 and 5
    assert await c.storage.get_dict("id_sum") == 15
    assert sorted(item["id"] for item in calls.args) == [1, 2, 3, 4, 5]
    await c.storage.update("User", {"id": 3}, {"ok": True})
    await c.storage.delete("User", {"id": 5})
    assert await c.storage.get_dict("kept") == 2  # ids 1 and 3
    assert await c.storage.get_dict("id_sum") == 10


async def test_a_property_summation_of_the_id(make: MakeController) -> None:
    user, post, likes = likes_model(ids=r.Summation(property="likes", attribute_query=["id"]))
    c = await make([user, post], [likes])
    kids = [await c.storage.create("User", {"name": str(i)}) for i in range(3)]
    p = await c.storage.create("Post", {"likes": [{"id": k["id"]} for k in kids]})

    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["ids"]) or {})["ids"] == 6


async def test_a_transform_may_name_id(make: MakeController) -> None:
    seen: list[dict[str, Any]] = []

    def tag(source: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(source))
        return {"label": f"{source['id']}:{source['name']}"}

    child = r.Entity("User", [r.Property("name"), r.Property("ok", "boolean")])
    tag_entity = r.Entity(
        "Tag",
        [r.Property("label")],
        computation=r.Transform(record=child, attribute_query=["id", "name"], callback=tag),
    )
    c = await make([child, tag_entity])
    await c.storage.create("User", {"name": "a"})
    await c.storage.create("User", {"name": "b"})
    await c.storage.update("User", {"id": 2}, {"name": "c"})
    await c.storage.update("User", {"id": 2}, {"ok": True})  # not read: no recompute

    assert [t["label"] for t in await c.storage.find("Tag", None, ["label"])] == ["1:a", "2:c"]
    assert seen == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 2, "name": "c"}]


# -- incremental == recount, over random writes ---------------------------------------------

WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.booleans(), st.none()),
        st.tuples(st.just("set_ok"), st.integers(0, 9), st.booleans()),
        st.tuples(st.just("rename"), st.integers(0, 9), st.none()),
        st.tuples(st.just("link"), st.integers(0, 9), st.integers(0, 2)),
        st.tuples(st.just("unlink"), st.integers(0, 9), st.integers(0, 2)),
        st.tuples(st.just("weigh"), st.integers(0, 9), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 9), st.none()),
    ),
    max_size=25,
)


async def aggregates_equal_a_recount(backend: str, writes: list[tuple[str, Any, Any]]) -> None:
    """Run ``writes``; every aggregate whose callback reads the id equals a recount."""
    user, post, likes = likes_model(
        n=r.Count(property="likes", attribute_query=["id", "ok"], callback=keep),
        heavy=r.WeightedSummation(
            property="likes",
            attribute_query=["id", ("&", ["id", "weight"])],
            callback=lambda item: (item["&"]["weight"], item["id"] % 3),
        ),
    )
    kept = r.Dictionary(
        "kept",
        "number",
        computation=r.Count(record=user, attribute_query=["id", "ok"], callback=keep),
    )

    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, [user, post], [likes], [kept])
        await c.setup()
        try:
            parents = [(await c.storage.create("Post", {"title": str(i)}))["id"] for i in range(3)]
            for op, x, y in writes:
                kids = [k["id"] for k in await c.storage.find("User")]
                if op == "create":
                    await c.storage.create("User", {"name": "k", "ok": x})
                    continue
                if not kids:
                    continue
                kid = kids[x % len(kids)]
                if op == "set_ok":
                    await c.storage.update("User", {"id": kid}, {"ok": y})
                elif op == "rename":
                    await c.storage.update("User", {"id": kid}, {"name": "r"})
                elif op == "link":
                    await c.storage.create(
                        likes, {"source": {"id": parents[y]}, "target": {"id": kid}}
                    )
                elif op == "unlink":
                    await c.storage.delete(
                        likes,
                        {"source": {"id": parents[y]}, "target": {"id": kid}},
                    )
                elif op == "weigh":
                    await c.storage.update(likes, {"target": {"id": kid}}, {"weight": y})
                else:
                    await c.storage.delete("User", {"id": kid})

            # The recount, from the stored rows.
            rows = {k["id"]: k for k in await c.storage.find("User", None, ["ok"])}
            links = await c.storage.find(likes, None, ["source", "target", "weight"])
            assert await c.storage.get_dict("kept") == sum(keep(k) for k in rows.values())
            for pid in parents:
                mine = [link for link in links if link["source"]["id"] == pid]
                stored = await c.storage.find_one("Post", {"id": pid}, ["n", "heavy"])
                assert stored == {
                    "id": pid,
                    "n": sum(keep(rows[link["target"]["id"]]) for link in mine),
                    "heavy": sum(link["weight"] * (link["target"]["id"] % 3) for link in mine),
                }
        finally:
            await c.close()


(
    test_aggregates_reading_the_id_equal_a_recount,
    test_aggregates_reading_the_id_equal_a_recount_on_postgresql,
) = on_both_backends(
    "test_aggregates_reading_the_id_equal_a_recount",
    aggregates_equal_a_recount,
    examples=60,
    pg_examples=20,
    writes=WRITES,
)
