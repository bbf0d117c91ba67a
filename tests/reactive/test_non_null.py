"""Non-null constraints (``Entity(..., constraints=[NonNullConstraint("title")])``), enforced
by the database on both backends (a NOT NULL column on PostgreSQL, triggers on SQLite): a
write that leaves the field without a value (a create without it, an update to None, a
computed value of None) raises ``NonNullViolationError`` naming the entity and field, and
nothing of it is stored; adding the constraint (or a new non-null property) to stored rows is
planned, and refused where a row would hold no value; renames and drops keep it right.
Modeled on the original framework's NonNullConstraint tests (a runtime NOT NULL violation
becomes a typed constraint error; the original refuses it on SQLite at setup, this engine
enforces it there too)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactive as r
from storage import NonNullViolationError, SchemaError
from tests.conftest import StorageFactory, scratch_storage

from .conftest import MakeController


def doc_model(*constraints: Any, extra: tuple[r.Property, ...] = ()) -> r.Entity:
    return r.Entity(
        "Doc",
        [r.Property("title"), r.Property("body"), *extra],
        constraints=list(constraints),
    )


async def docs(c: r.Controller) -> list[tuple[Any, ...]]:
    rows = await c.storage.find("Doc", None, ["title", "body"], order_by={"id": "asc"})
    return [(d["title"], d["body"]) for d in rows]


async def test_a_write_leaving_a_non_null_field_empty_is_refused_naming_it(
    make: MakeController,
) -> None:
    c = await make([doc_model(r.NonNullConstraint("title"))])
    first = await c.storage.create("Doc", {"title": "a", "body": "x"})
    seen: list[Any] = []
    c.mutations.subscribe(seen.append)
    for payload in ({"body": "y"}, {"title": None, "body": "y"}):
        with pytest.raises(NonNullViolationError) as info:
            await c.storage.create("Doc", payload)
        assert (info.value.record, info.value.field) == ("Doc", "title")
        assert "Doc.title is non-null" in str(info.value)
    with pytest.raises(NonNullViolationError, match=r"Doc\.title"):
        await c.storage.update("Doc", {"id": first["id"]}, {"title": None, "body": "z"})
    # a field without the constraint still takes None
    await c.storage.update("Doc", {"id": first["id"]}, {"body": None})
    assert await docs(c) == [("a", None)]
    assert [(e.type, e.record_name) for e in seen] == [("update", "Doc")]
    assert (await c.verify()).ok


async def test_a_refused_nested_write_stores_nothing_of_it(make: MakeController) -> None:
    author = r.Entity("Author", [r.Property("name")])
    doc = doc_model(r.NonNullConstraint("title"))
    wrote = r.Relation(author, "docs", doc, "author", "1:n")
    c = await make([author, doc], [wrote])
    with pytest.raises(NonNullViolationError, match=r"Doc\.title"):
        await c.storage.create("Author", {"name": "ada", "docs": [{"title": "t"}, {"body": "b"}]})
    assert await c.storage.count("Author") == 0
    assert await c.storage.count("Doc") == 0
    assert await c.storage.count(wrote.relation_name) == 0


async def test_a_computed_non_null_field_that_computes_none_fails_its_write(
    make: MakeController,
) -> None:
    """The check is the database's, on the value stored: a ``computed`` giving None refuses
    the write; a Count (never None: 0 initially) is fine under the constraint."""
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("slug", computed=lambda rec: rec["title"].lower() if rec["title"] else None),
            r.Property("likes", "integer"),
        ],
        constraints=[r.NonNullConstraint("slug")],
    )
    like = r.Entity("Like", [r.Property("who")])
    liked = r.Relation(post, "likers", like, "post", "1:n")
    post.properties[2].computation = r.Count(record=liked)
    post.constraints.append(r.NonNullConstraint("likes"))
    c = await make([post, like], [liked])
    made = await c.storage.create("Post", {"title": "Hello"})
    await c.storage.create("Like", {"who": "x", "post": {"id": made["id"]}})
    with pytest.raises(NonNullViolationError, match=r"Post\.slug"):
        await c.storage.create("Post", {"title": ""})
    with pytest.raises(NonNullViolationError, match=r"Post\.slug"):
        await c.storage.update("Post", {"id": made["id"]}, {"title": None})
    rows = await c.storage.find("Post", None, ["title", "slug", "likes"])
    assert [(p["title"], p["slug"], p["likes"]) for p in rows] == [("Hello", "hello", 1)]
    assert (await c.verify()).ok


async def test_a_dispatch_that_leaves_a_value_out_answers_missing_value(
    make: MakeController,
) -> None:
    doc = doc_model(r.NonNullConstraint("title"))
    write = r.Interaction("Write", r.Payload([r.PayloadItem("title")]))
    doc.computation = r.Transform(
        r.INTERACTION_EVENT,
        lambda event: {"title": event["payload"].get("title"), "body": "b"},
    )
    c = await make([doc], interactions=[write])
    result = await c.dispatch(write, {"id": "u"}, {})
    assert result.error is not None and result.error.code == "missing_value"
    assert "Doc.title" in result.error.message
    assert await c.storage.count("Doc") == 0
    ok = await c.dispatch(write, {"id": "u"}, {"title": "t"})
    assert ok.error is None
    assert await docs(c) == [("t", "b")]


async def test_adding_the_constraint_is_planned_and_refused_on_rows_without_a_value(
    make_storage: StorageFactory,
) -> None:
    loose = r.Controller(make_storage("db"), [doc_model()])
    await loose.setup()
    try:
        await loose.storage.create("Doc", {"title": "a"})
        hole = await loose.storage.create("Doc", {"body": "no title"})
    finally:
        await loose.close()
    strict = r.Controller(make_storage("db"), [doc_model(r.NonNullConstraint("title"))])
    try:
        plan = await strict.plan_migration()
        assert [(ch.kind, ch.target, ch.safe) for ch in plan.changes] == [
            ("add_constraint", "Doc.title", True)
        ]
        with pytest.raises(SchemaError) as info:
            await strict.setup()
        assert (info.value.record, info.value.field) == ("Doc", "title")
        assert "1 stored row(s) hold no value" in str(info.value)
    finally:
        await strict.close()
    # nothing changed: the table still takes None
    again = r.Controller(make_storage("db"), [doc_model()])
    await again.setup()
    try:
        await again.storage.create("Doc", {"body": "still loose"})
        await again.storage.update("Doc", {"title": None}, {"title": "filled"})
    finally:
        await again.close()
    strict = r.Controller(make_storage("db"), [doc_model(r.NonNullConstraint("title"))])
    await strict.setup()
    try:
        with pytest.raises(NonNullViolationError):
            await strict.storage.update("Doc", {"id": hole["id"]}, {"title": None})
        assert await docs(strict) == [
            ("a", None),
            ("filled", "no title"),
            ("filled", "still loose"),
        ]
    finally:
        await strict.close()
    # and removed again: None is accepted
    relaxed = r.Controller(make_storage("db"), [doc_model()])
    try:
        plan = await relaxed.plan_migration()
        assert [(ch.kind, ch.target) for ch in plan.changes] == [("remove_constraint", "Doc.title")]
        await relaxed.setup()
        await relaxed.storage.update("Doc", {"id": hole["id"]}, {"title": None})
        assert await relaxed.storage.count("Doc", {"title": None}) == 1
    finally:
        await relaxed.close()


async def test_a_new_non_null_property_needs_a_default_on_a_table_with_rows(
    make_storage: StorageFactory,
) -> None:
    first = r.Controller(make_storage("db"), [doc_model()])
    await first.setup()
    try:
        await first.storage.create("Doc", {"title": "a"})
    finally:
        await first.close()
    bare = r.Controller(
        make_storage("db"),
        [doc_model(r.NonNullConstraint("lang"), extra=(r.Property("lang"),))],
    )
    try:
        plan = await bare.plan_migration()
        (change,) = plan.changes
        assert (change.kind, change.target, change.safe) == ("add_field", "Doc.lang", False)
        assert change.fix is not None and "default=" in change.fix
        with pytest.raises(r.MigrationError, match="non-null property without a default"):
            await bare.setup()
        # forced, it still fails on the rows, changing nothing
        with pytest.raises(SchemaError, match=r"Doc\.lang is declared non-null"):
            await bare.migrate(plan, allow_destructive=True)
    finally:
        await bare.close()
    defaulted = r.Controller(
        make_storage("db"),
        [doc_model(r.NonNullConstraint("lang"), extra=(r.Property("lang", default="en"),))],
    )
    await defaulted.setup()
    try:
        rows = await defaulted.storage.find("Doc", None, ["title", "lang"])
        assert [(d["title"], d["lang"]) for d in rows] == [("a", "en")]
        made = await defaulted.storage.create("Doc", {"title": "b"})
        assert made["lang"] == "en"
        with pytest.raises(NonNullViolationError, match=r"Doc\.lang"):
            await defaulted.storage.update("Doc", {"id": made["id"]}, {"lang": None})
    finally:
        await defaulted.close()


async def test_renamed_and_dropped_non_null_fields_keep_the_constraint_right(
    make_storage: StorageFactory,
) -> None:
    first = r.Controller(
        make_storage("db"),
        [doc_model(r.NonNullConstraint("title"), r.NonNullConstraint("body"))],
    )
    await first.setup()
    try:
        await first.storage.create("Doc", {"title": "a", "body": "b"})
    finally:
        await first.close()
    # Doc.title -> Doc.heading, Doc -> Note; Doc.body is dropped (its data with it)
    note = r.Entity(
        "Note",
        [r.Property("heading", renamed_from="title")],
        renamed_from="Doc",
        constraints=[r.NonNullConstraint("heading")],
    )
    second = r.Controller(make_storage("db"), [note])
    await second.setup(migrate="apply")
    try:
        with pytest.raises(NonNullViolationError) as info:
            await second.storage.create("Note", {})
        assert (info.value.record, info.value.field) == ("Note", "heading")
        made = await second.storage.create("Note", {"heading": "h"})
        rows = await second.storage.find("Note", None, ["heading"], order_by={"id": "asc"})
        assert [n["heading"] for n in rows] == ["a", "h"]
        with pytest.raises(NonNullViolationError):
            await second.storage.update("Note", {"id": made["id"]}, {"heading": None})
    finally:
        await second.close()


async def test_a_merged_view_keeps_a_field_non_null_in_one_input_only(
    make: MakeController,
) -> None:
    person = r.Entity("Person", [r.Property("name")], constraints=[r.NonNullConstraint("name")])
    company = r.Entity("Company", [r.Property("name")])
    contact = r.Entity("Contact", inputs=[person, company])
    c = await make([person, company, contact])
    await c.storage.create("Person", {"name": "ada"})
    await c.storage.create("Company", {})
    with pytest.raises(NonNullViolationError, match=r"Person\.name"):
        await c.storage.create("Person", {})
    rows = await c.storage.find("Contact", None, ["name"], order_by={"id": "asc"})
    assert [(x["id"], x["name"]) for x in rows] == [("Person:1", "ada"), ("Company:1", None)]


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: doc_model(r.NonNullConstraint("titel")), "Doc: non-null constraint names 'titel'"),
        (lambda: r.NonNullConstraint(["title"]), "one property name"),  # type: ignore[arg-type]
        (
            lambda: r.Entity(
                "D",
                base=doc_model(),
                match={"body": "x"},
                constraints=[r.NonNullConstraint("title")],
            ),
            "a view declares no constraints",
        ),
    ],
)
def test_bad_non_null_declarations_fail_naming_what_is_wrong(build: Any, fragment: str) -> None:
    with pytest.raises(r.ModelError, match=fragment):
        build()


# -- random writes against a plain model ------------------------------------------------------

writes = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "delete"]),
        st.integers(0, 5),
        st.sampled_from([None, "a", "b"]),
        st.sampled_from([None, "x"]),
    ),
    max_size=14,
)


async def replay(backend: str, history: list[tuple[str, int, Any, Any]]) -> None:
    """Each write either stores exactly what the plain model says, or (leaving the title
    empty) raises NonNullViolationError and changes nothing."""
    model: dict[Any, tuple[Any, Any]] = {}
    async with scratch_storage(backend) as storage:
        c = r.Controller(storage, [doc_model(r.NonNullConstraint("title"))])
        await c.setup()
        try:
            for op, pick, title, body in history:
                ids = sorted(model)
                target = ids[pick % len(ids)] if ids else None
                refused = title is None and op != "delete"
                try:
                    if op == "create":
                        made = await c.storage.create("Doc", {"title": title, "body": body})
                        model[made["id"]] = (title, body)
                    elif op == "update" and target is not None:
                        await c.storage.update(
                            "Doc", {"id": target}, {"title": title, "body": body}
                        )
                        model[target] = (title, body)
                    elif op == "delete" and target is not None:
                        await c.storage.delete("Doc", {"id": target})
                        del model[target]
                    else:
                        refused = False
                    assert not refused, (op, title)
                except NonNullViolationError as exc:
                    assert refused and (exc.record, exc.field) == ("Doc", "title")
                assert await docs(c) == [model[i] for i in sorted(model)]
        finally:
            await c.close()


@settings(
    max_examples=int(os.environ.get("NON_NULL_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(history=writes)
def test_random_writes_match_a_plain_model_on_both_backends(
    postgres_url: str, history: list[tuple[str, int, Any, Any]]
) -> None:
    for backend in ("sqlite", "postgres"):
        asyncio.run(replay(backend, history))
