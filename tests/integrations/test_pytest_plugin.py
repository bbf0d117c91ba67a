"""The interaqt pytest plugin, run by pytester in a fresh project that only installs the
package: the fixtures work without any conftest, clean up after themselves, and a bad
``--interaqt-backend`` setup fails with a message naming what is missing."""

from __future__ import annotations

import pytest

import storage

pytest_plugins = ["pytester"]

USER_TESTS = """
import aiohttp
import pytest
import reactive as r

made = []

post = r.Entity("Post", [r.Property("title"),
                         r.Property("likes", "number", computation=r.Count(property="fans"))])
fan = r.Entity("Fan", [r.Property("name")])
fans = r.Relation(post, "fans", fan, "liked", "n:n")


@pytest.mark.asyncio
async def test_controller(interaqt_controller):
    c = await interaqt_controller([post, fan], [fans])
    made.append(c)
    f = await c.storage.create("Fan", {"name": "ada"})
    p = await c.storage.create("Post", {"title": "hi", "fans": [{"id": f["id"]}]})
    assert (await c.storage.find_one("Post", {"id": p["id"]}, ["likes"]))["likes"] == 1
    assert (await c.verify()).ok


@pytest.mark.asyncio
async def test_each_test_gets_a_fresh_database_and_the_last_was_closed(interaqt_controller):
    c = await interaqt_controller([post, fan], [fans])
    assert await c.storage.count("Post") == 0
    with pytest.raises(Exception):
        await made[0].storage.count("Post")  # closed at the end of the previous test


def test_clock(interaqt_clock):
    start = interaqt_clock.now()
    interaqt_clock.advance(5)
    assert (interaqt_clock.now() - start).total_seconds() == 5


@pytest.mark.asyncio
async def test_fake_provider(interaqt_fake_provider):
    assert interaqt_fake_provider.url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        async with session.post(interaqt_fake_provider.url + "/v1/tasks", json={"a": 1}) as resp:
            assert resp.status == 202
    assert len(interaqt_fake_provider.requests) == 1
"""


def test_fixtures_work_in_a_project_without_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_a_failing_user_test_fails(pytester: pytest.Pytester) -> None:
    """The fixtures do not swallow failures (the plugin can make a test fail)."""
    pytester.makepyfile(
        test_user="""
import pytest
import reactive as r

@pytest.mark.asyncio
async def test_wrong(interaqt_controller):
    c = await interaqt_controller([r.Entity("Post", [r.Property("title")])])
    await c.storage.create("Post", {"title": "a"})
    assert await c.storage.count("Post") == 2
"""
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


def test_postgres_backend_without_what_it_needs_is_a_clear_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_user="""
def test_storage(interaqt_storage):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "--interaqt-backend=postgres"
    )
    assert result.ret != 0
    if hasattr(storage, "from_url"):
        result.stdout.fnmatch_lines(["*--interaqt-backend=postgres needs --interaqt-database-url*"])
    else:
        result.stdout.fnmatch_lines(["*PostgreSQL backend not available*"])


PG_USER_TESTS = """
import json
import pathlib

import pytest
import reactive as r

post = r.Entity("Post", [r.Property("title")])
SEEN = pathlib.Path("schemas.jsonl")


async def note(controller):
    rows = await controller.storage.find("Post", None, ["title"])
    with SEEN.open("a") as out:
        out.write(json.dumps({"schema": controller.backend.schema_name, "rows": len(rows)}) + "\\n")


@pytest.mark.asyncio
async def test_first(interaqt_controller):
    c = await interaqt_controller([post])
    await c.storage.create("Post", {"title": "a"})
    await note(c)
    other = await interaqt_controller([post])  # a second controller: a schema of its own
    await note(other)


@pytest.mark.asyncio
async def test_second_sees_nothing_of_the_first(interaqt_controller, interaqt_storage):
    c = await interaqt_controller([post])
    assert c.backend is interaqt_storage
    await note(c)


@pytest.mark.asyncio
async def test_a_failing_test_is_cleaned_up_too(interaqt_controller):
    c = await interaqt_controller([post])
    await c.storage.create("Post", {"title": "b"})
    await note(c)
    raise AssertionError("planted")
"""


def test_postgres_backend_gives_each_test_a_schema_and_drops_it(
    pytester: pytest.Pytester, postgres_url: str
) -> None:
    """Against the real server: every controller is in a schema of its own (a test never
    sees another's rows) and every schema is gone after the run, a failed test's too."""
    import asyncio
    import json

    import asyncpg

    pytester.makepyfile(test_user=PG_USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-q",
        "-p",
        "no:cacheprovider",
        "--interaqt-backend=postgres",
        f"--interaqt-database-url={postgres_url}",
    )
    result.assert_outcomes(passed=2, failed=1)
    seen = [json.loads(line) for line in (pytester.path / "schemas.jsonl").read_text().splitlines()]
    assert [s["rows"] for s in seen] == [1, 0, 0, 1]
    schemas = [s["schema"] for s in seen]
    assert len(set(schemas)) == 4 and all(s.startswith("interaqt_") for s in schemas)

    async def left() -> list[str]:
        connection = await asyncpg.connect(postgres_url, timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", schemas
            )
        finally:
            await connection.close()
        return [row["nspname"] for row in rows]

    assert asyncio.run(left()) == []


def test_an_unknown_backend_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "--interaqt-backend=oracle")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--interaqt-backend*invalid choice*oracle*"])


MACHINE_TESTS = """
from hypothesis import settings

import reactive as r
from reactive.testing import ModelMachine
from storage import SQLiteStorage

user = r.Entity("User", [r.Property("name")])
post = r.Entity("Post", [r.Property("title"),
                         r.Property("fans", "number", computation=r.Count(property="liked_by"))])
likes = r.Relation(post, "liked_by", user, "liked", "n:n")
like = r.Interaction("Like", r.Payload([r.PayloadItem("post", base=post, is_ref=True,
                                                      required=True)]))


async def build(database):
    c = r.Controller(SQLiteStorage(database), [user, post], [likes], interactions=[like])
    await c.setup()
    return c


async def no_posts(controller):
    assert await controller.storage.count("Post") == 0, "a post exists"


TestApp = ModelMachine.for_app(build, users="User", invariants=INVARIANTS, max_examples=50,
                               steps=10).TestCase
TestApp.settings = settings(TestApp.settings, derandomize=True)  # the same run everywhere
"""


def test_a_model_machine_test_case_is_collected_and_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=MACHINE_TESTS.replace("INVARIANTS", "[]"))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_model_machine_finds_a_broken_invariant(pytester: pytest.Pytester) -> None:
    """The same app with an invariant that cannot hold once a post exists: the run fails and
    prints the sequence as a test."""
    pytester.makepyfile(test_app=MACHINE_TESTS.replace("INVARIANTS", "[no_posts]"))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*invariant no_posts failed: a post exists*",
            "*async def test_found_by_model_machine(tmp_path):*",
            "*await controller.storage.create('Post', *",
        ]
    )
