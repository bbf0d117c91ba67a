"""Views under random write sequences: after every step a filtered view reads what a Python
filter of its base gives, a merged view the union of its inputs, the aggregates over them equal
a recount, and ``verify()`` finds nothing. Membership is judged from each event in Python (no
read); this checks that judgement against the database's own match, NULLs included."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st

import reactive as r
from storage import FieldRef, MatchExp
from tests._backends import on_both_backends
from tests.conftest import scratch_storage

EXAMPLES = int(os.environ.get("INTERAQT_MAX_EXAMPLES", "40"))

# NULLs on purpose: ~(salary < 10) holds for a NULL salary, status in [a, None] for a NULL one.
KEPT = MatchExp.atom("active", "=", True) & ~MatchExp.atom("salary", "<", 10)
TAGGED = (
    MatchExp.atom("status", "in", ["a", None])
    | MatchExp.atom("name", "like", "x%")
    | MatchExp.atom("name", "contains", "y")
    | (
        MatchExp.atom("salary", "between", [3, 7])
        & MatchExp.atom("status", "=", FieldRef("status"))
    )
)


def kept(u: dict[str, Any]) -> bool:
    return u["active"] is True and not (u["salary"] is not None and u["salary"] < 10)


def tagged(u: dict[str, Any]) -> bool:
    return (
        u["status"] in ("a", None)
        or (u["name"] or "").startswith("x")
        or "y" in (u["name"] or "")
        or (u["salary"] is not None and 3 <= u["salary"] <= 7)
    )


SALARY = st.one_of(st.none(), st.integers(0, 20))
STATUS = st.sampled_from(["a", "b", None])
NAME = st.sampled_from(["x1", "y", "xx", None])
WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("create_user"), st.booleans(), SALARY, STATUS, NAME),
        st.tuples(st.just("create_robot"), st.booleans(), SALARY, STATUS, NAME),
        st.tuples(st.just("active"), st.integers(0, 9), st.sampled_from([True, False, None])),
        st.tuples(st.just("salary"), st.integers(0, 9), SALARY),
        st.tuples(st.just("status"), st.integers(0, 9), STATUS),
        st.tuples(st.just("both"), st.integers(0, 9), st.booleans(), SALARY),
        st.tuples(st.just("delete"), st.integers(0, 9)),
        st.tuples(st.just("delete_robot"), st.integers(0, 9)),
    ),
    max_size=20,
)


FIELDS = [
    r.Property("name"),
    r.Property("active", "boolean"),
    r.Property("salary", "number"),
    r.Property("status"),
]


async def views_follow(writes: list[tuple[Any, ...]], backend: str) -> None:
    user = r.Entity("User", list(FIELDS))
    robot = r.Entity("Robot", [*(r.Property(p.name, p.type) for p in FIELDS), r.Property("model")])
    kept_users = r.Entity("KeptUser", base=user, match=KEPT)
    tagged_kept = r.Entity("TaggedKeptUser", base=kept_users, match=TAGGED)
    kept_robots = r.Entity("KeptRobot", base=robot, match=KEPT)
    everyone = r.Entity("Everyone", inputs=[kept_users, kept_robots])
    dictionaries = [
        r.Dictionary("kept", "integer", computation=r.Count(record=kept_users)),
        r.Dictionary(
            "kept_salary",
            "number",
            computation=r.Summation(record=kept_users, attribute_query=["salary"]),
        ),
        r.Dictionary("tagged", "integer", computation=r.Count(record=tagged_kept)),
        r.Dictionary("everyone", "integer", computation=r.Count(record=everyone)),
        r.Dictionary(
            "everyone_a",
            "integer",
            computation=r.Count(
                record=everyone, attribute_query=["status"], callback=lambda x: x["status"] == "a"
            ),
        ),
    ]
    async with scratch_storage(backend) as storage:
        c = r.Controller(
            storage, [user, robot, kept_users, tagged_kept, kept_robots, everyone], [], dictionaries
        )
        await c.setup()
        try:
            for write in writes:
                await apply(c, write)
                await check(c)
        finally:
            await c.close()


(
    test_views_equal_a_python_filter_after_every_write,
    test_views_equal_a_python_filter_after_every_write_on_postgresql,
) = on_both_backends(
    "test_views_equal_a_python_filter_after_every_write",
    views_follow,
    examples=EXAMPLES,
    pg_examples=max(5, EXAMPLES // 4),
    writes=WRITES,
)


async def apply(c: r.Controller, write: tuple[Any, ...]) -> None:
    op = write[0]
    if op in ("create_user", "create_robot"):
        _, active, salary, status, name = write
        record = "User" if op == "create_user" else "Robot"
        data = {"active": active, "salary": salary, "status": status, "name": name}
        await c.storage.create(record, data)
        return
    record = "Robot" if op == "delete_robot" else "User"
    ids = [x["id"] for x in await c.storage.find(record)]
    if not ids:
        return
    target = {"id": ids[write[1] % len(ids)]}
    if op in ("delete", "delete_robot"):
        await c.storage.delete(record, target)
    elif op == "both":
        await c.storage.update(record, target, {"active": write[2], "salary": write[3]})
    else:
        await c.storage.update(record, target, {op: write[2]})


async def check(c: r.Controller) -> None:
    users = await c.storage.find("User", None, ["*"])
    robots = await c.storage.find("Robot", None, ["*"])
    expected = [u for u in users if kept(u)]
    assert await c.storage.find("KeptUser", None, ["*"]) == expected
    assert await c.storage.count("KeptUser") == len(expected)
    tagged_expected = [u for u in expected if tagged(u)]
    assert await c.storage.find("TaggedKeptUser", None, ["*"]) == tagged_expected
    everyone = [
        *({"id": f"KeptUser:{u['id']}", "status": u["status"]} for u in expected),
        *({"id": f"KeptRobot:{x['id']}", "status": x["status"]} for x in robots if kept(x)),
    ]
    assert await c.storage.find("Everyone", None, ["status"]) == everyone
    assert await c.storage.get_dict("kept") == len(expected)
    assert await c.storage.get_dict("kept_salary") == sum(u["salary"] or 0 for u in expected)
    assert await c.storage.get_dict("tagged") == len(tagged_expected)
    assert await c.storage.get_dict("everyone") == len(everyone)
    assert await c.storage.get_dict("everyone_a") == sum(1 for x in everyone if x["status"] == "a")
    report = await c.verify()
    assert report.ok, str(report)
