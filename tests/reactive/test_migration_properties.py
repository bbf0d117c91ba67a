"""Property: a model changed under stored data holds exactly what an engine that had the new
model from the start would hold.

Hypothesis draws a model A (a random set of computations over ``Host`` 1:n ``Item`` and
``Host`` n:n ``Item`` with a link field, each in one of two variants), a random history of
writes, and a model B (another set: computations added, removed, changed by their callback or
arguments, renamed with ``renamed_from=`` (``s`` -> ``s_renamed``, a rename only when ``s``
goes), a plain field added or removed). The history runs on A; ``setup()`` with B
migrates. The reference is a second database that had model B from the start and saw the same
history: every computed value (aggregates with their hidden running state, dictionaries,
Transform rows, ``computed=`` fields) must be equal, ``verify()`` must find nothing, and further
random writes applied to both keep them equal. A refused migration (model B drops a field that
holds data) must leave the database unchanged (every table, column and row, in the neutral dump
of ``migration_helpers``); it is then applied with ``migrate="apply"``. Both backends; the
PostgreSQL half runs fewer examples (``MIGRATION_PG_EXAMPLES``).
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

from hypothesis import strategies as st

import reactive as r
from tests._backends import on_both_backends
from tests.reactive.migration_helpers import Database, databases, open_controller

ITEMS = "Host_items_host_Item"
LIKES = "Host_likes_liked_by_Item"
KEYS = [
    "n",
    "s",
    "s_renamed",
    "avg",
    "w",
    "every",
    "any",
    "okc",
    "lk",
    "lw",
    "d_n",
    "d_s",
    "d_avg",
    "d_every",
    "tf",
    "label",
    "note",
]


def build(spec: dict[str, int]) -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    """The model with the computations named in ``spec`` (key -> variant 0 or 1)."""
    host_props: list[r.Property] = [r.Property("name"), r.Property("score", "number")]
    item_props: list[r.Property] = [r.Property("val", "number"), r.Property("ok", "boolean")]
    if "note" in spec:
        item_props.append(r.Property("note", default="n"))
    item = r.Entity("Item", item_props)
    view_computation = None
    if "tf" in spec:
        factor = 2 + spec["tf"]
        view_computation = r.Transform(
            item,
            lambda i: (
                None if i["val"] is None else {"val2": i["val"] * factor, "item_ref": i["id"]}
            ),
            attribute_query=["val"],
        )
    view = r.Entity(
        "View",
        [r.Property("val2", "number"), r.Property("item_ref", "number")],
        computation=view_computation,
    )

    def add(key: str, type_: Any, computation: Any) -> None:
        if key in spec:
            host_props.append(r.Property(key, type_, computation=computation))

    def ok_true(i: dict[str, Any]) -> bool:
        return i["ok"] is True

    variant = spec.get
    add("n", "number", r.Count(property="items"))
    add("s", "number", r.Summation(property="items", attribute_query=["val"]))
    if "s_renamed" in spec:  # the same Summation under a new name: a rename when "s" goes
        host_props.append(
            r.Property(
                "s_renamed",
                "number",
                computation=r.Summation(property="items", attribute_query=["val"]),
                renamed_from="s",
            )
        )
    add("avg", "number", r.Average(property="items", attribute_query=["val"]))
    k = 2 + (variant("w") or 0)
    add(
        "w",
        "number",
        r.WeightedSummation(
            property="items", callback=lambda i: (k, i["val"]), attribute_query=["val"]
        ),
    )
    add(
        "every",
        "boolean",
        r.Every(
            property="items",
            callback=ok_true,
            attribute_query=["ok"],
            not_empty=bool(variant("every")),
        ),
    )
    add("any", "boolean", r.Any(property="items", callback=ok_true, attribute_query=["ok"]))
    limit = 5 * (variant("okc") or 0)
    add(
        "okc",
        "number",
        r.Count(
            property="items", callback=lambda i: (i["val"] or 0) >= limit, attribute_query=["val"]
        ),
    )
    add("lk", "number", r.Count(property="likes"))
    add("lw", "number", r.Summation(property="likes", attribute_query=[("&", ["weight"])]))
    if "label" in spec:
        upper = spec["label"] == 1
        host_props.append(
            r.Property(
                "label",
                computed=lambda h: (
                    (h.get("name") or "").upper() if upper else (h.get("name") or "").lower()
                ),
            )
        )
    host = r.Entity("Host", host_props)  # the properties are copied: declare it last
    dictionaries = []
    if "d_n" in spec:
        dictionaries.append(r.Dictionary("d_n", "number", computation=r.Count(record=item)))
    if "d_s" in spec:
        dictionaries.append(
            r.Dictionary(
                "d_s", "number", computation=r.Summation(record=item, attribute_query=["val"])
            )
        )
    if "d_avg" in spec:
        dictionaries.append(
            r.Dictionary(
                "d_avg", "number", computation=r.Average(record=item, attribute_query=["val"])
            )
        )
    if "d_every" in spec:
        dictionaries.append(
            r.Dictionary(
                "d_every",
                "boolean",
                computation=r.Every(record=item, callback=ok_true, attribute_query=["ok"]),
            )
        )
    relations = [
        r.Relation(host, "items", item, "host", "1:n"),
        r.Relation(
            host, "likes", item, "liked_by", "n:n", properties=[r.Property("weight", "number")]
        ),
    ]
    return [host, item, view], relations, dictionaries


specs = st.dictionaries(st.sampled_from(KEYS), st.sampled_from([0, 1]))
picks = st.integers(0, 50)
vals = st.one_of(st.none(), st.integers(-3, 9))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("host"), st.sampled_from(["Ann", "bob"]), vals),
        st.tuples(st.just("item"), st.one_of(st.none(), picks), vals, st.booleans()),
        st.tuples(st.just("update"), picks, vals, st.booleans()),
        st.tuples(st.just("move"), picks, st.one_of(st.none(), picks)),
        st.tuples(st.just("del_item"), picks),
        st.tuples(st.just("del_host"), picks),
        st.tuples(st.just("like"), picks, picks, vals),
        st.tuples(st.just("unlike"), picks),
        st.tuples(st.just("rename"), picks, st.sampled_from(["Cy", "dee"])),
    ),
    max_size=14,
)


async def ids(c: r.Controller, record: str) -> list[Any]:
    return [x["id"] for x in await c.storage.find(record, None, order_by={"id": "asc"})]


async def apply_ops(c: r.Controller, history: list[tuple[Any, ...]], note: bool) -> None:
    s = c.storage
    for op in history:
        hosts, items = await ids(c, "Host"), await ids(c, "Item")

        def pick(options: list[Any], index: int) -> Any:
            return options[index % len(options)] if options else None

        kind = op[0]
        if kind == "host":
            await s.create("Host", {"name": op[1], "score": op[2]})
        elif kind == "item":
            data: dict[str, Any] = {"val": op[2], "ok": op[3]}
            if note:
                data["note"] = "kept"
            host = None if op[1] is None else pick(hosts, op[1])
            if host is not None:
                data["host"] = {"id": host}
            await s.create("Item", data)
        elif kind == "update" and items:
            await s.update("Item", {"id": pick(items, op[1])}, {"val": op[2], "ok": op[3]})
        elif kind == "move" and items:
            host = None if op[2] is None else pick(hosts, op[2])
            await s.update(
                "Item", {"id": pick(items, op[1])}, {"host": None if host is None else {"id": host}}
            )
        elif kind == "del_item" and items:
            await s.delete("Item", {"id": pick(items, op[1])})
        elif kind == "del_host" and hosts:
            await s.delete("Host", {"id": pick(hosts, op[1])})
        elif kind == "like" and hosts and items:
            await s.create(
                LIKES,
                {
                    "source": {"id": pick(hosts, op[1])},
                    "target": {"id": pick(items, op[2])},
                    "weight": op[3],
                },
            )
        elif kind == "unlike":
            links = await ids(c, LIKES)
            if links:
                await s.delete(LIKES, {"id": pick(links, op[1])})
        elif kind == "rename" and hosts:
            await s.update("Host", {"id": pick(hosts, op[1])}, {"name": op[2]})


HOST_FIELDS = {"n", "s", "s_renamed", "avg", "w", "every", "any", "okc", "lk", "lw"}


async def computed_values(c: r.Controller, spec: dict[str, int]) -> dict[str, Any]:
    """Every computed value of model ``spec``, with the aggregates' hidden running state."""
    fields: list[str] = []
    for key in sorted(HOST_FIELDS & set(spec)):
        fields += [key, f"_{key}_bound_total", f"_{key}_bound_count"]
    if "label" in spec:
        fields.append("label")
    hosts = await c.storage.find("Host", None, fields, order_by={"id": "asc"})
    for host in hosts:  # a host that never had an item holds None totals: the same as 0
        for field in fields:
            if field.startswith("_") and host[field] is None:
                host[field] = 0
    out: dict[str, Any] = {
        "hosts": hosts,
        "dicts": {d: await c.storage.get_dict(d) for d in sorted(spec) if d.startswith("d_")},
    }
    if "tf" in spec:
        rows = await c.storage.find("View", None, ["val2", "item_ref", "_View_bound_index"])
        out["views"] = sorted((v["item_ref"], v["_View_bound_index"], v["val2"]) for v in rows)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b and type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


async def scenario(
    backend: str,
    folder: str,
    a: dict[str, int],
    b: dict[str, int],
    history: list[tuple[Any, ...]],
    later: list[tuple[Any, ...]],
) -> None:
    async with databases(backend, folder) as make:
        await compare(make("migrated"), make("fresh"), a, b, history, later)


async def compare(
    migrated: Database,
    fresh: Database,
    a: dict[str, int],
    b: dict[str, int],
    history: list[tuple[Any, ...]],
    later: list[tuple[Any, ...]],
) -> None:
    c = await open_controller(migrated, *build(a))
    await apply_ops(c, history, "note" in a)
    await c.close()

    before = await migrated.dump()
    try:
        c = await open_controller(migrated, *build(b))
    except r.MigrationError as refused:
        assert await migrated.dump() == before, "a refused migration changed the database"
        assert {(x.kind, x.target) for x in refused.changes} == {("remove_field", "Item.note")}
        assert "note" in a and "note" not in b
        c = await open_controller(migrated, *build(b), migrate="apply")
    reference = await open_controller(fresh, *build(b))
    try:
        await apply_ops(reference, history, "note" in a and "note" in b)
        got, want = await computed_values(c, b), await computed_values(reference, b)
        assert same(got, want), f"after migration:\n{got}\nfrom the start:\n{want}"
        report = await c.verify()
        assert report.ok, str(report)
        await apply_ops(c, later, "note" in b)
        await apply_ops(reference, later, "note" in b)
        got, want = await computed_values(c, b), await computed_values(reference, b)
        assert same(got, want), f"after more writes:\n{got}\nfrom the start:\n{want}"
        assert (await c.verify()).ok
    finally:
        await c.close()
        await reference.close()


async def in_a_folder(backend: str, **drawn: Any) -> None:
    """:func:`scenario` with a folder of its own for the SQLite files (PostgreSQL: two
    schemas of its own, no folder)."""
    if backend != "sqlite":
        await scenario(backend, "", **drawn)
        return
    with tempfile.TemporaryDirectory() as folder:
        await scenario(backend, folder, **drawn)


# Each PostgreSQL example sets up two databases' tables on the server: fewer of them.
(
    test_a_migrated_database_holds_what_the_new_model_would_have,
    test_a_migrated_database_holds_what_the_new_model_would_have_on_postgresql,
) = on_both_backends(
    "test_a_migrated_database_holds_what_the_new_model_would_have",
    in_a_folder,
    examples=int(os.environ.get("MIGRATION_EXAMPLES", "100")),
    pg_examples=int(os.environ.get("MIGRATION_PG_EXAMPLES", "15")),
    sqlite_param=True,
    a=specs,
    b=specs,
    history=ops,
    later=ops,
)
