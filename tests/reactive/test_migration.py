"""Model evolution: the plan, safe changes with their backfill, refusals, renames, adoption of
a database without a manifest, recompute and verify."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from reactive.fingerprint import fingerprint
from storage import StorageError
from tests.reactive.migration_helpers import (
    Database,
    DatabaseFactory,
    databases,
    open_controller,
)

LINK = "User_posts_author_Post"
SYSTEM_TABLES = {"_Model_", "_Dictionary_", "_Interaction_", "_SideEffect_"}


@pytest.fixture
async def make_db(backend: str, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """``make_db(name)``: a database of the test's backend (a file in ``tmp_path``, or a
    PostgreSQL schema of the test's own, dropped afterwards)."""
    async with databases(backend, tmp_path) as make:
        yield make


@pytest.fixture
def db(make_db: DatabaseFactory) -> Database:
    """The test's database."""
    return make_db("main")


def blog(
    *user_props: r.Property, post_props: tuple[r.Property, ...] = ()
) -> tuple[list[r.Entity], list[r.Relation]]:
    user = r.Entity("User", [r.Property("name"), *user_props])
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number"), *post_props])
    return [user, post], [r.Relation(user, "posts", post, "author", "1:n")]


def count_posts() -> r.Property:
    return r.Property("n", "number", computation=r.Count(property="posts"))


async def seed(db: Database, posts: int = 2) -> None:
    """Version 1: a user with ``posts`` posts (scores 1, 2, ...), and a user without."""
    c = await open_controller(db, *blog())
    try:
        u = await c.storage.create("User", {"name": "ada"})
        await c.storage.create("User", {"name": "bob"})
        for i in range(posts):
            await c.storage.create(
                "Post", {"title": f"p{i}", "score": i + 1, "author": {"id": u["id"]}}
            )
    finally:
        await c.close()


async def test_the_neutral_dump_holds_every_table_column_and_value(db: Database) -> None:
    """What the refusal tests compare: the same content on both backends, and an edit behind
    the engine's back shows in it."""
    await seed(db, posts=1)
    dumped = await db.dump()
    assert dumped["User"] == (("id", "name"), [(1, "ada"), (2, "bob")])
    assert dumped["Post"] == (("id", "title", "score"), [(1, "p0", 1)])
    assert dumped[LINK] == (("id", "source", "target"), [(1, 1, 1)])
    assert set(dumped) == {"User", "Post", LINK, *SYSTEM_TABLES}
    (manifest,) = dumped["_Model_"][1]
    assert '"User"' in manifest[1]
    await db.execute('UPDATE "Post" SET score = 2.5')
    changed = await db.dump()
    assert changed["Post"] == (("id", "title", "score"), [(1, "p0", 2.5)])
    assert {t for t in dumped if dumped[t] != changed[t]} == {"Post"}


async def test_the_issue_example_a_new_count_starts_from_the_stored_data(db: Database) -> None:
    await seed(db)
    c = await open_controller(db, *blog(count_posts()))
    try:
        s = c.storage
        assert await s.find("User", None, ["n"]) == [{"id": 1, "n": 2}, {"id": 2, "n": 0}]
        await s.create("Post", {"title": "3", "author": {"id": 1}})
        row = await s.find_one("User", {"id": 1}, ["n"])
        assert row is not None and row["n"] == 3
        await s.delete("Post", None)
        assert await s.find("User", None, ["n"]) == [{"id": 1, "n": 0}, {"id": 2, "n": 0}]
    finally:
        await c.close()


async def test_the_plan_lists_the_changes_before_anything_is_touched(db: Database) -> None:
    await seed(db)
    before = await db.dump()
    c = r.Controller(db.storage(), *blog(count_posts(), r.Property("city")))
    try:
        plan = await c.plan_migration()
        assert await db.dump() == before
        kinds = {(ch.kind, ch.target, ch.safe) for ch in plan.changes}
        assert kinds == {
            ("add_field", "User.n", True),
            ("add_field", "User.city", True),
            ("add_computation", "User.n", True),
        }
        assert plan.backfill == ["User.n"]
        text = str(plan)
        assert "add_computation" in text and "User.n" in text and "all safe" in text
        await c.setup()
        assert str(await c.plan_migration()) == "Migration plan: nothing to change."
    finally:
        await c.close()


# -- refusals: one test per unsafe change -----------------------------------------------------


async def refused(db: Database, *model: Any) -> r.MigrationError:
    """Set up ``model`` on ``db``: it must be refused and leave the database unchanged."""
    before = await db.dump()
    with pytest.raises(r.MigrationError) as info:
        await open_controller(db, *model)
    assert await db.dump() == before
    assert isinstance(info.value, r.SetupError)
    return info.value


async def test_a_removed_field_with_data_is_refused(db: Database) -> None:
    await seed(db)
    user = r.Entity("User", [])
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    error = await refused(db, [user, post], [r.Relation(user, "posts", post, "author", "1:n")])
    (change,) = error.changes
    assert (change.kind, change.target, change.safe) == ("remove_field", "User.name", False)
    message = str(error)
    assert "User.name" in message
    assert "renamed_from='name'" in message
    assert 'setup(migrate="apply")' in message and "allow_destructive=True" in message


async def test_a_removed_record_type_with_data_is_refused(db: Database) -> None:
    await seed(db)
    error = await refused(db, [r.Entity("User", [r.Property("name")])], [])
    targets = {(c.kind, c.target) for c in error.changes}
    assert targets == {("remove_record", "Post"), ("remove_relation", LINK)}
    assert "Entity(..., renamed_from='Post')" in str(error)
    assert 'setup(migrate="apply")' in str(error)


async def test_a_type_change_is_refused(db: Database) -> None:
    await seed(db)
    user = r.Entity("User", [r.Property("name", "number")])
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    error = await refused(db, [user, post], [r.Relation(user, "posts", post, "author", "1:n")])
    (change,) = error.changes
    assert (change.kind, change.target) == ("change_type", "User.name")
    assert "string -> number" in str(error)
    assert "allow_destructive=True" in str(error)


async def test_a_narrowed_cardinality_is_refused(db: Database) -> None:
    await seed(db)
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    # 1:n -> 1:1: a user may no longer have several posts
    error = await refused(
        db,
        [user, post],
        [r.Relation(user, "posts", post, "author", "1:1", name=LINK)],
    )
    (change,) = error.changes
    assert (change.kind, change.target) == ("change_cardinality", LINK)
    assert "1:n -> 1:1" in str(error)
    # applied, the links are kept and the two posts of user 1 do not fit: nothing changes
    before = await db.dump()
    with pytest.raises(StorageError, match="1:1"):
        await open_controller(
            db,
            [user, post],
            [r.Relation(user, "posts", post, "author", "1:1", name=LINK)],
            migrate="apply",
        )
    assert await db.dump() == before


async def test_a_rename_without_renamed_from_is_refused_and_suggests_it(db: Database) -> None:
    await seed(db)
    error = await refused(
        db,
        [r.Entity("User", [r.Property("full_name")]), *blog()[0][1:]],
        [],
    )
    assert "renamed_from='name'" in str(error)
    assert "Property('full_name', ..., renamed_from='name')" in str(error)


async def test_a_removed_dictionary_with_a_value_is_refused(db: Database) -> None:
    c = await open_controller(db, dictionaries=[r.Dictionary("limit", "number", default=3)])
    await c.close()
    error = await refused(db)
    (change,) = error.changes
    assert (change.kind, change.target) == ("remove_dictionary", "limit")
    assert "Dictionary(..., renamed_from='limit')" in str(error)


async def test_several_unsafe_changes_are_all_listed(db: Database) -> None:
    await seed(db)
    user = r.Entity("User", [r.Property("name", "boolean")])
    error = await refused(db, [user], [])
    assert {c.target for c in error.changes} == {"User.name", "Post", LINK}


# -- applying destructive changes ----------------------------------------------------------------


async def test_migrate_apply_drops_what_it_was_told_to(db: Database) -> None:
    await seed(db)
    user = r.Entity("User", [])
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    model = ([user, post], [r.Relation(user, "posts", post, "author", "1:n")])
    c = await open_controller(db, *model, migrate="apply")
    try:
        assert await c.storage.find("User", None, ["*"]) == [{"id": 1}, {"id": 2}]
        assert (await c.plan_migration()).changes == []
    finally:
        await c.close()


async def test_controller_migrate_with_allow_destructive(db: Database) -> None:
    await seed(db)
    c = r.Controller(db.storage(), [r.Entity("User", [r.Property("name")])])
    try:
        plan = await c.plan_migration()
        assert [ch.safe for ch in plan.changes] == [False, False]
        with pytest.raises(r.MigrationError):
            await c.migrate(plan)
        await c.migrate(plan, allow_destructive=True)
        assert await c.storage.count("User") == 2
        assert "Post" not in await db.tables()
    finally:
        await c.close()


async def test_a_plan_made_before_another_migration_is_refused(db: Database) -> None:
    await seed(db)
    model = blog(count_posts())
    first = r.Controller(db.storage(), *model)
    plan = await first.plan_migration()
    second = await open_controller(db, *blog(count_posts()))
    await second.close()
    try:
        with pytest.raises(r.MigrationError, match="changed after this plan"):
            await first.migrate(plan)
    finally:
        await first.close()


# -- safe removals and renames ---------------------------------------------------------------


async def test_removing_an_empty_field_or_a_derived_one_is_safe(db: Database) -> None:
    c = await open_controller(db, *blog(count_posts(), r.Property("unused")))
    await c.storage.create("User", {"name": "a"})
    await c.close()
    c = await open_controller(db, *blog())
    try:
        assert await c.storage.find("User", None, ["*"]) == [{"id": 1, "name": "a"}]
        assert await db.columns("User") == ["id", "name"]
    finally:
        await c.close()


async def seed_with_count(db: Database) -> None:
    """Version 1's data under version 2 (User.n counts the posts)."""
    await seed(db)
    c = await open_controller(db, *blog(count_posts()))
    await c.close()


async def test_renames_keep_the_data(db: Database) -> None:
    await seed_with_count(db)
    person = r.Entity(
        "Person",
        [
            r.Property("full_name", renamed_from="name"),
            r.Property(
                "post_count", "number", computation=r.Count(property="posts"), renamed_from="n"
            ),
        ],
        renamed_from="User",
    )
    post = r.Entity("Post", [r.Property("title"), r.Property("score", "number")])
    # The relation's default name changes with its end's: it follows without renamed_from.
    relation = r.Relation(person, "posts", post, "author", "1:n")
    planner_only = r.Controller(db.storage(), [person, post], [relation])
    try:
        plan_changes = {
            (ch.kind, ch.target) for ch in (await planner_only.plan_migration()).changes
        }
    finally:
        await planner_only.close()
    assert ("rename_record", "Person_posts_author_Post") in plan_changes
    c = await open_controller(db, [person, post], [relation])
    try:
        people = await c.storage.find(
            "Person", None, ["full_name", "post_count", ("posts", ["title"])]
        )
        assert [(p["full_name"], p["post_count"], len(p["posts"])) for p in people] == [
            ("ada", 2, 2),
            ("bob", 0, 0),
        ]
        await c.storage.create("Post", {"title": "x", "author": {"id": 2}})
        row = await c.storage.find_one("Person", {"id": 2}, ["post_count"])
        assert row is not None and row["post_count"] == 1
        assert (await c.verify()).ok
    finally:
        await c.close()


async def test_a_renamed_dictionary_keeps_its_value(db: Database) -> None:
    c = await open_controller(db, dictionaries=[r.Dictionary("limit", "number", default=3)])
    await c.storage.set_dict("limit", 7)
    await c.close()
    renamed = r.Dictionary("max_items", "number", default=3, renamed_from="limit")
    c = await open_controller(db, dictionaries=[renamed])
    try:
        assert await c.storage.get_dict("max_items") == 7
    finally:
        await c.close()


async def test_a_new_field_gives_existing_rows_its_default(db: Database) -> None:
    await seed(db)
    c = await open_controller(db, *blog(r.Property("city", default="Paris")))
    try:
        assert [u["city"] for u in await c.storage.find("User", None, ["city"])] == [
            "Paris",
            "Paris",
        ]
    finally:
        await c.close()


# -- the backfill of each computation kind ------------------------------------------------------


async def test_every_aggregate_kind_is_backfilled_with_its_running_state(db: Database) -> None:
    await seed(db, posts=3)  # scores 1, 2, 3 for user 1
    props = [
        r.Property(
            "avg", "number", computation=r.Average(property="posts", attribute_query=["score"])
        ),
        r.Property(
            "all_big",
            "boolean",
            computation=r.Every(
                property="posts", callback=lambda p: p["score"] >= 2, attribute_query=["score"]
            ),
        ),
        r.Property(
            "any_big",
            "boolean",
            computation=r.Any(
                property="posts", callback=lambda p: p["score"] >= 3, attribute_query=["score"]
            ),
        ),
        r.Property(
            "w",
            "number",
            computation=r.WeightedSummation(
                property="posts", callback=lambda p: (2, p["score"]), attribute_query=["score"]
            ),
        ),
    ]
    dictionaries = [
        r.Dictionary(
            "total_score",
            "number",
            computation=r.Summation(record="Post", attribute_query=["score"]),
        ),
        r.Dictionary(
            "posts_big",
            "number",
            computation=r.Count(
                record="Post", callback=lambda p: p["score"] >= 2, attribute_query=["score"]
            ),
        ),
    ]
    c = await open_controller(db, *blog(*props), dictionaries)
    try:
        s = c.storage
        query = [
            "avg",
            "all_big",
            "any_big",
            "w",
            "_avg_bound_total",
            "_avg_bound_count",
            "_all_big_bound_total",
            "_all_big_bound_count",
        ]
        ada, bob = await s.find("User", None, query, order_by={"id": "asc"})
        assert (ada["avg"], ada["all_big"], ada["any_big"], ada["w"]) == (2, False, True, 12)
        assert (ada["_avg_bound_total"], ada["_avg_bound_count"]) == (6, 3)
        assert (ada["_all_big_bound_total"], ada["_all_big_bound_count"]) == (2, 3)
        assert (bob["avg"], bob["all_big"], bob["any_big"], bob["w"]) == (0, True, False, 0)
        assert await s.get_dict("total_score") == 6
        assert await s.get_dict("posts_big") == 2
        # later incremental steps start from the right base
        await s.delete("Post", {"score": 1})
        later = await s.find_one("User", {"id": 1}, ["avg", "all_big", "w"])
        assert later is not None
        assert (later["avg"], later["all_big"], later["w"]) == (2.5, True, 10)
        assert await s.get_dict("total_score") == 5
        assert (await c.verify()).ok
    finally:
        await c.close()


def summary_of(post: dict[str, Any]) -> Any:
    return {"title_upper": (post["title"] or "").upper(), "post_ref": post["id"]}


def summary_entity(callback: Any) -> r.Entity:
    return r.Entity(
        "Summary",
        [r.Property("title_upper"), r.Property("post_ref", "number")],
        computation=r.Transform("Post", callback, attribute_query=["title"]),
    )


async def test_an_added_transform_derives_rows_and_a_changed_one_updates_them_in_place(
    db: Database,
) -> None:
    await seed(db)
    entities, relations = blog()
    c = await open_controller(db, [*entities, summary_entity(summary_of)], relations)
    try:
        rows = await c.storage.find("Summary", None, ["title_upper", "post_ref"])
        assert rows == [
            {"id": 1, "title_upper": "P0", "post_ref": 1},
            {"id": 2, "title_upper": "P1", "post_ref": 2},
        ]
    finally:
        await c.close()

    def lower(post: dict[str, Any]) -> Any:
        return {"title_upper": (post["title"] or "").lower(), "post_ref": post["id"]}

    entities, relations = blog()
    c = await open_controller(db, [*entities, summary_entity(lower)], relations)
    try:
        plan_kinds = [ch.kind for ch in (await c.plan_migration()).changes]
        assert plan_kinds == []
        rows = await c.storage.find("Summary", None, ["title_upper", "post_ref"])
        assert rows == [  # same ids: updated in place
            {"id": 1, "title_upper": "p0", "post_ref": 1},
            {"id": 2, "title_upper": "p1", "post_ref": 2},
        ]
        await c.storage.update("Post", {"id": 1}, {"title": "New"})
        row = await c.storage.find_one("Summary", {"id": 1}, ["title_upper"])
        assert row is not None and row["title_upper"] == "new"
    finally:
        await c.close()


async def test_a_state_machine_added_to_existing_records(db: Database) -> None:
    await seed(db, posts=3)
    low, high = r.StateNode("low"), r.StateNode("high")

    def post_itself(event: r.MutationEvent) -> Any:
        return {"id": event.record["id"]}

    machine = r.StateMachine(
        states=[low, high],
        transfers=[
            r.StateTransfer(low, high, r.Trigger("Post", "update", keys=["score"]), post_itself)
        ],
        initial_state=low,
        initial=lambda post: "high" if post["score"] >= 2 else low,
    )
    entities, relations = blog(post_props=(r.Property("level", computation=machine),))
    c = await open_controller(db, entities, relations)
    try:
        rows = await c.storage.find("Post", None, ["score", "level"], order_by={"id": "asc"})
        assert [p["level"] for p in rows] == ["low", "high", "high"]
        await c.storage.update("Post", {"id": 1}, {"score": 9})
        row = await c.storage.find_one("Post", {"id": 1}, ["level"])
        assert row is not None and row["level"] == "high"
        new = await c.storage.create("Post", {"title": "n", "score": 5})
        row = await c.storage.find_one("Post", {"id": new["id"]}, ["level"])
        assert row is not None and row["level"] == "low"
    finally:
        await c.close()


async def test_an_added_custom_and_computed_property(db: Database) -> None:
    await seed(db)
    custom = r.Custom(
        compute=lambda last, event: (last or 0) + 1,
        triggers=[r.Trigger("Post", "update")],
        compute_target=lambda event: {"id": event.record["id"]},
        initial=0,
    )
    entities, relations = blog(
        post_props=(
            r.Property("edits", "number", computation=custom),
            r.Property("shout", computed=lambda p: (p.get("title") or "").upper()),
        )
    )
    c = await open_controller(db, entities, relations)
    try:
        rows = await c.storage.find("Post", None, ["edits", "shout"], order_by={"id": "asc"})
        assert [(p["edits"], p["shout"]) for p in rows] == [(0, "P0"), (0, "P1")]
        report = await c.verify()
        assert report.ok and "Post.edits" in report.skipped
    finally:
        await c.close()


async def test_added_data_deps_customs_and_an_event_transform(db: Database) -> None:
    """A Custom over data_deps added to stored records is computed for each of them (and its
    plan says so); a Transform over events derives nothing from the past."""
    await seed(db)
    label = r.Custom(
        lambda deps, rec: f"{deps['own']['title']}/{deps['own']['score']:g}",
        data_deps={"own": r.OwnFieldsDep(["title", "score"])},
    )
    titles = r.Dictionary(
        "titles",
        "json",
        computation=r.Custom(
            lambda deps: [p["title"] for p in deps["posts"]],
            data_deps={"posts": r.RecordsDep("Post", ["title"])},
        ),
    )
    (user, post), relations = blog(post_props=(r.Property("label", computation=label),))
    archive = r.Entity(
        "PostArchive",
        [r.Property("title")],
        computation=r.Transform(
            event_deps=[r.Trigger(post, "delete")],
            callback=lambda event: {"title": event.record["title"]},
        ),
    )
    c = await open_controller(db, [user, post, archive], relations, [titles])
    try:
        rows = await c.storage.find("Post", None, ["label"], order_by={"id": "asc"})
        assert [p["label"] for p in rows] == ["p0/1", "p1/2"]
        assert await c.storage.get_dict("titles") == ["p0", "p1"]
        assert await c.storage.find("PostArchive") == []
        await c.storage.delete("Post", {"id": rows[0]["id"]})
        assert await c.storage.get_dict("titles") == ["p1"]
        assert await c.storage.find("PostArchive", None, ["title"]) == [{"id": 1, "title": "p0"}]
        report = await c.verify()
        assert report.ok and "PostArchive" in report.skipped
        assert "Post.label" not in report.skipped and "titles" not in report.skipped
    finally:
        await c.close()


async def test_a_changed_callback_is_recomputed(db: Database) -> None:
    await seed(db, posts=3)

    def big(limit: int) -> r.Property:
        return r.Property(
            "big",
            "number",
            computation=r.Count(
                property="posts", callback=lambda p: p["score"] >= limit, attribute_query=["score"]
            ),
        )

    c = await open_controller(db, *blog(big(2)))
    row = await c.storage.find_one("User", {"id": 1}, ["big"])
    assert row is not None and row["big"] == 2
    await c.close()
    c = await open_controller(db, *blog(big(3)))
    try:
        row = await c.storage.find_one("User", {"id": 1}, ["big"])
        assert row is not None and row["big"] == 1
    finally:
        await c.close()


# -- a database without a manifest --------------------------------------------------------------


async def test_a_database_without_a_manifest_is_adopted_and_recomputed(db: Database) -> None:
    """A database from before manifests: set up the old way (the count column was added by
    the old setup() and left NULL). The first setup recomputes every computation."""
    await seed(db)
    c = await open_controller(db, *blog(count_posts()))
    await c.close()
    await db.execute('DROP TABLE "_Model_"')
    await db.execute('UPDATE "User" SET n = NULL, _n_bound_total = NULL, _n_bound_count = NULL')
    c = r.Controller(db.storage(), *blog(count_posts()))
    try:
        plan = await c.plan_migration()
        assert plan.mode == "adopt"
        assert [ch.kind for ch in plan.changes] == ["adopt", "add_computation"]
        assert plan.backfill == ["User.n"]
        await c.setup()
        assert await c.storage.find("User", None, ["n"]) == [{"id": 1, "n": 2}, {"id": 2, "n": 0}]
        assert (await c.plan_migration()).mode == "update"
    finally:
        await c.close()


# -- recompute and verify ---------------------------------------------------------------------


async def test_verify_reports_exactly_the_values_edited_behind_the_engines_back(
    db: Database,
) -> None:
    await seed(db, posts=3)
    total = r.Dictionary("posts", "number", computation=r.Count(record="Post"))
    props = (
        count_posts(),
        r.Property(
            "s", "number", computation=r.Summation(property="posts", attribute_query=["score"])
        ),
    )
    c = await open_controller(db, *blog(*props), [total])
    try:
        assert (await c.verify()).ok
        await db.execute('UPDATE "User" SET n = 7 WHERE id = 2')
        await db.execute('UPDATE "User" SET _s_bound_count = 1 WHERE id = 1')
        await db.execute("""UPDATE "_Dictionary_" SET value = '9' WHERE key = 'posts'""")
        report = await c.verify()
        assert not report.ok
        found = {(d.record, d.id, d.field, d.stored, d.expected) for d in report.differences}
        assert found == {
            ("User", 2, "n", 7, 0),
            ("User", 1, "_s_bound_count", 1, 3),
            (DICTIONARY_RECORD, "posts", "value", 9, 3),
        }
        from reactive.testing import verify

        assert (await verify(c)).differences == report.differences
        assert await c.recompute("User.n") == ["User.n"]
        assert {d.field for d in (await c.verify()).differences} == {"_s_bound_count", "value"}
        await c.recompute(batch_size=1)
        assert (await c.verify()).ok
        row = await c.storage.find_one("User", {"id": 2}, ["n"])
        assert row is not None and row["n"] == 0
    finally:
        await c.close()


async def test_recompute_names_an_unknown_target(db: Database) -> None:
    c = await open_controller(db, *blog(count_posts()))
    try:
        with pytest.raises(r.ModelError, match=r"'User\.nope' is not a computation.*User\.n"):
            await c.recompute("User.nope")
        with pytest.raises(ValueError, match="batch_size"):
            await c.recompute(batch_size=0)
    finally:
        await c.close()


async def test_recompute_in_batches_over_many_hosts(db: Database) -> None:
    c = await open_controller(db, *blog(count_posts()))
    try:
        for i in range(7):
            u = await c.storage.create("User", {"name": str(i)})
            for _ in range(i):
                await c.storage.create("Post", {"title": "t", "author": {"id": u["id"]}})
        await db.execute('UPDATE "User" SET n = -1, _n_bound_total = 0')
        assert len((await c.verify()).differences) == 13  # 7 values, 6 totals (0 is right)
        await c.recompute("User.n", batch_size=3)
        rows = await c.storage.find("User", None, ["n"], order_by={"id": "asc"})
        assert [u["n"] for u in rows] == list(range(7))
        assert (await c.verify()).ok
    finally:
        await c.close()


# -- fingerprints ---------------------------------------------------------------------------


LIMIT = 3


def test_fingerprints_follow_code_closures_and_globals() -> None:
    def make(limit: int) -> Any:
        return lambda item: item["x"] >= limit

    assert fingerprint(make(1)) == fingerprint(make(1))
    assert fingerprint(make(1)) != fingerprint(make(2))
    assert fingerprint(lambda item: item["x"] >= 1) != fingerprint(lambda item: item["x"] > 1)

    def uses_global(item: Any) -> bool:
        return bool(item["x"] >= LIMIT)

    before = fingerprint(uses_global)
    globals()["LIMIT"] = 4
    try:
        assert fingerprint(uses_global) != before
    finally:
        globals()["LIMIT"] = 3
    assert fingerprint(uses_global) == before
    assert fingerprint(None) is None


# -- more changes ---------------------------------------------------------------------------


async def test_two_processes_starting_the_new_model_at_once_both_succeed(db: Database) -> None:
    """Both plan against the old manifest; the second to apply finds the model migrated,
    plans again (nothing to do) and starts."""
    import asyncio

    await seed(db)
    # SQLite's thread executor yields to the loop at every step, and PostgreSQL's statements
    # await the server: the two interleave.
    first = r.Controller(db.storage(executor="thread"), *blog(count_posts()))
    second = r.Controller(db.storage(executor="thread"), *blog(count_posts()))
    try:
        await asyncio.gather(first.setup(), second.setup())
        for c in (first, second):
            assert await c.storage.find("User", None, ["n"]) == [
                {"id": 1, "n": 2},
                {"id": 2, "n": 0},
            ]
    finally:
        await first.close()
        await second.close()


async def test_a_type_change_applied_drops_the_values(db: Database) -> None:
    await seed(db)
    entities, relations = blog()
    entities[0] = r.Entity("User", [r.Property("name", "number", index=True)])
    relations = [r.Relation(entities[0], "posts", entities[1], "author", "1:n")]
    c = await open_controller(db, entities, relations, migrate="apply")
    try:
        assert await c.storage.find("User", None, ["name"]) == [
            {"id": 1, "name": None},
            {"id": 2, "name": None},
        ]
        await c.storage.create("User", {"name": 5})
        assert await c.storage.count("User", {"name": 5}) == 1
    finally:
        await c.close()


async def test_a_removed_computation_leaves_its_values_as_data(db: Database) -> None:
    await seed_with_count(db)
    c = await open_controller(db, *blog(r.Property("n", "number")))
    try:
        assert await c.storage.find("User", None, ["n"]) == [{"id": 1, "n": 2}, {"id": 2, "n": 0}]
        assert await db.columns("User") == ["id", "name", "n"]  # its running totals are gone
        await c.storage.update("User", {"id": 1}, {"n": 40})  # a plain field now
        row = await c.storage.find_one("User", {"id": 1}, ["n"])
        assert row is not None and row["n"] == 40
    finally:
        await c.close()


async def test_verify_and_recompute_a_transform(db: Database) -> None:
    await seed(db)
    entities, relations = blog()
    c = await open_controller(db, [*entities, summary_entity(summary_of)], relations)
    try:
        await db.execute("""UPDATE "Summary" SET title_upper = 'EDITED' WHERE id = 2""")
        await db.execute("""DELETE FROM "Summary" WHERE id = 1""")
        report = await c.verify()
        found = {(d.record, d.id, d.field, d.stored) for d in report.differences}
        assert found == {("Summary", 2, "title_upper", "EDITED"), ("Summary", None, "*", None)}
        assert await c.recompute("Summary") == ["Summary"]
        assert (await c.verify()).ok
        rows = await c.storage.find("Summary", None, ["title_upper", "post_ref"])
        assert sorted((x["post_ref"], x["title_upper"]) for x in rows) == [(1, "P0"), (2, "P1")]
        assert [x["id"] for x in rows if x["post_ref"] == 2] == [2]  # updated in place
    finally:
        await c.close()


async def test_aggregates_over_a_symmetric_relation_in_batches(db: Database) -> None:
    """Friends (symmetric n:n, a link to oneself counts once): a Count and a Summation (SQL)
    and an Every with a callback (per item in Python), backfilled, then recomputed in batches
    of 2 after an edit behind the engine's back."""

    def model(with_computations: bool) -> Any:
        props = [r.Property("age", "number")]
        if with_computations:
            props += [
                r.Property("friend_count", "number", computation=r.Count(property="friends")),
                r.Property(
                    "ages",
                    "number",
                    computation=r.Summation(property="friends", attribute_query=["age"]),
                ),
                r.Property(
                    "all_adults",
                    "boolean",
                    computation=r.Every(
                        property="friends",
                        callback=lambda f: (f["age"] or 0) >= 18,
                        attribute_query=["age"],
                    ),
                ),
            ]
        user = r.Entity("User", props)
        return [user], [r.Relation(user, "friends", user, "friends", "n:n")]

    c = await open_controller(db, *model(False))
    ages = [30, 10, 40, 50, 20]
    for age in ages:
        await c.storage.create("User", {"age": age})
    link = "User_friends_friends_User"
    for a, b in [(1, 2), (1, 3), (3, 3), (4, 5), (2, 5)]:
        await c.storage.create(link, {"source": {"id": a}, "target": {"id": b}})
    await c.close()
    friends = {1: [2, 3], 2: [1, 5], 3: [1, 3], 4: [5], 5: [4, 2]}
    expected = [
        (
            len(friends[u]),
            sum(ages[f - 1] for f in friends[u]),
            all(ages[f - 1] >= 18 for f in friends[u]),
        )
        for u in range(1, 6)
    ]
    c = await open_controller(db, *model(True))
    try:
        query = ["friend_count", "ages", "all_adults"]
        rows = await c.storage.find("User", None, query, order_by={"id": "asc"})
        assert [(u["friend_count"], u["ages"], u["all_adults"]) for u in rows] == expected
        await db.execute('UPDATE "User" SET all_adults = FALSE, _all_adults_bound_count = 9')
        await db.execute('UPDATE "User" SET friend_count = 0, ages = 0')
        assert not (await c.verify()).ok
        await c.recompute(batch_size=2)
        rows = await c.storage.find("User", None, query, order_by={"id": "asc"})
        assert [(u["friend_count"], u["ages"], u["all_adults"]) for u in rows] == expected
        assert (await c.verify()).ok
    finally:
        await c.close()


async def test_attaching_without_install_to_another_model_is_refused(db: Database) -> None:
    c = await open_controller(db, *blog(count_posts()))
    await c.close()
    again = await open_controller(db, *blog(count_posts()), install=False)
    await again.close()
    changed = r.Property(  # same columns, another callback: values would follow the wrong one
        "n",
        "number",
        computation=r.Count(property="posts", callback=lambda p: True, attribute_query=[]),
    )
    with pytest.raises(r.MigrationError, match="another version of the model") as info:
        await open_controller(db, *blog(changed), install=False)
    assert "change_computation" in str(info.value) and "install=True" in str(info.value)


async def test_renamed_from_a_name_still_declared_is_not_a_rename(
    db: Database, make_db: DatabaseFactory
) -> None:
    """``renamed_from`` naming a field, record or dictionary that is still declared adds the
    new one beside it (the old keeps its data)."""
    c = await open_controller(db, dictionaries=[r.Dictionary("a", "number", default=1)])
    await c.storage.set_dict("a", 5)
    await c.close()
    both = [r.Dictionary("a", "number"), r.Dictionary("b", "number", default=2, renamed_from="a")]
    c = await open_controller(db, dictionaries=both)
    try:
        assert (await c.storage.get_dict("a"), await c.storage.get_dict("b")) == (5, 2)
    finally:
        await c.close()
    other = make_db("records")
    await seed(other)
    entities, relations = blog()
    copy = r.Entity(
        "Copy", [r.Property("name"), r.Property("alias", renamed_from="name")], renamed_from="User"
    )
    user = entities[0]
    user.properties.append(r.Property("alias", renamed_from="name"))
    c = await open_controller(other, [*entities, copy], relations)
    try:
        rows = await c.storage.find("User", None, ["name", "alias"], order_by={"id": "asc"})
        assert rows == [
            {"id": 1, "name": "ada", "alias": None},
            {"id": 2, "name": "bob", "alias": None},
        ]
        assert await c.storage.count("Copy") == 0
    finally:
        await c.close()


async def test_a_backfill_that_fails_on_the_stored_data_changes_nothing(db: Database) -> None:
    await seed(db)

    def fragile(post: dict[str, Any]) -> tuple[int, int]:
        if post["score"] == 2:
            raise ValueError("score 2 is not expected")
        return (1, post["score"])

    weighted = r.Property(
        "w",
        "number",
        computation=r.WeightedSummation(
            property="posts", callback=fragile, attribute_query=["score"]
        ),
    )
    before = await db.dump()
    with pytest.raises(r.MigrationError, match=r"backfill of User\.w failed.*score 2") as info:
        await open_controller(db, *blog(weighted))
    assert isinstance(info.value.__cause__, ValueError)
    assert await db.dump() == before

    only = r.StateNode("a")
    machine = r.StateMachine(
        states=[only], transfers=[], initial_state=only, initial=lambda post: "nowhere"
    )
    with pytest.raises(r.MigrationError, match="'nowhere', which is not one of its states"):
        await open_controller(db, *blog(post_props=(r.Property("s", computation=machine),)))
    assert await db.dump() == before


async def test_a_database_holding_only_system_tables_is_adopted(db: Database) -> None:
    """Tables the engine created before manifests (here only its dictionary table, without a
    column a newer engine has) are kept and completed, not created again."""
    from storage import Field, RecordType, Schema

    old_dictionary_table = RecordType(DICTIONARY_RECORD, [Field("key"), Field("value", "json")])
    storage = db.storage()
    await storage.setup(Schema([old_dictionary_table]))
    await storage.run(lambda s: s.insert_internal(DICTIONARY_RECORD, {"key": "x", "value": 4}))
    await storage.close()
    c = await open_controller(db, *blog(), [r.Dictionary("x", "number", default=1)])
    try:
        assert await c.storage.get_dict("x") == 4
        assert "state" in await db.columns(DICTIONARY_RECORD)
    finally:
        await c.close()
