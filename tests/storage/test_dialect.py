"""The seam of the neutral SQL layer (storage.sql): dialects, the driver interface, the
statement cache a storage owns, and savepoints as the one way to survive an expected failure.

``StandardStorage`` (tests.storage.standard) runs the neutral layer on SQLite with standard
rendering and PostgreSQL's rule that a failed statement aborts the transaction; the whole
storage suite runs on it too (the ``standard`` parameter of the ``storage`` fixture)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage import (
    MatchExp,
    MissingReferenceError,
    Schema,
    Session,
    SQLiteStorage,
    StorageError,
    UniqueViolationError,
)
from storage.sql import bind
from storage.sql.match import MatchCompiler
from storage.sqlite.dialect import SQLITE
from tests.storage.conftest import blog_schema
from tests.storage.standard import STANDARD, AbortedTransactionError, StandardStorage


async def test_a_caller_survives_an_expected_failure_under_a_savepoint(tmp_path: Path) -> None:
    storage = StandardStorage(str(tmp_path / "s.db"))
    await storage.setup(blog_schema())

    def body(tx: Session) -> list[str]:
        tx.create("User", {"name": "ada"})
        outcomes = []
        for name in ("ada", "bob"):
            try:
                with tx.savepoint():
                    tx.create("User", {"name": name})
                outcomes.append("stored")
            except UniqueViolationError as exc:
                assert exc.fields == ("name",)
                outcomes.append("duplicate")
        tx.create("Post", {"title": "after", "author": {"name": "cy"}})
        return outcomes

    try:
        assert await storage.run(body) == ["duplicate", "stored"]
        users = await storage.find("User", None, ["name"], {"id": "asc"})
        assert [u["name"] for u in users] == ["ada", "bob", "cy"]
        assert await storage.count("Post") == 1
    finally:
        await storage.close()


async def test_without_a_savepoint_the_transaction_is_lost_where_failures_abort_it(
    tmp_path: Path,
) -> None:
    """What the harness enforces (PostgreSQL's rule), and why Session.savepoint() is the
    documented way: on plain SQLite the same body would go on."""
    storage = StandardStorage(str(tmp_path / "s.db"))
    await storage.setup(blog_schema())

    def body(tx: Session) -> None:
        tx.create("User", {"name": "ada"})
        with contextlib.suppress(UniqueViolationError):
            tx.create("User", {"name": "ada"})
        tx.create("User", {"name": "bob"})

    try:
        with pytest.raises(StorageError) as info:
            await storage.run(body)
        assert isinstance(info.value.__cause__, AbortedTransactionError)
        assert await storage.count("User") == 0  # the whole transaction rolled back
    finally:
        await storage.close()


async def test_storage_looks_up_a_missing_reference_only_after_rolling_back(
    tmp_path: Path,
) -> None:
    """A create linking to a record that does not exist fails on the link's foreign key; the
    writer then reads which end is missing, which PostgreSQL allows only after a rollback to
    a savepoint. The transaction goes on afterwards."""
    storage = StandardStorage(str(tmp_path / "s.db"))
    await storage.setup(blog_schema())

    def body(tx: Session) -> Any:
        ada = tx.create("User", {"name": "ada"}).record
        assert ada is not None
        with pytest.raises(MissingReferenceError) as info, tx.savepoint():
            tx.create("Post", {"title": "x", "author": {"id": 999}})
        assert (info.value.record, info.value.field) == ("Post", "author")
        with pytest.raises(MissingReferenceError), tx.savepoint():
            tx.create("Post", {"title": "y", "author": {"id": 998}, "tags": [{"id": 5}]})
        return tx.create("Post", {"title": "z", "author": {"id": ada["id"]}}).record

    try:
        post = await storage.run(body)
        assert post is not None
        found = await storage.find("Post", None, ["title", ["author", ["name"]]])
        assert found == [{"id": post["id"], "title": "z", "author": {"id": 1, "name": "ada"}}]
    finally:
        await storage.close()


async def test_the_standard_dialect_rendered_every_statement(tmp_path: Path) -> None:
    storage = StandardStorage(str(tmp_path / "s.db"))
    await storage.setup(blog_schema())
    try:
        await storage.create("User", {"name": "ada", "active": True})
        assert await storage.find("User", MatchExp.atom("name", "in", ["ada", None])) == [{"id": 1}]
        rendered = list(STANDARD.rendered.values())
        assert any(s.startswith('INSERT INTO "User"') and "RETURNING id" in s for s in rendered)
        assert any('"name" IN (?1)' in s for s in rendered)
        for sql in rendered:  # every placeholder numbered
            assert re.search(r"\?(?!\d)", sql) is None, sql
    finally:
        await storage.close()


def test_literals_come_from_the_dialect() -> None:
    schema = blog_schema()
    empty_or = MatchExp("or", children=())
    membership = MatchExp.atom("name", "in", [None])
    for dialect, true, false in ((SQLITE, "1", "0"), (STANDARD, "TRUE", "FALSE")):
        compiler = MatchCompiler(schema, dialect)
        assert compiler.compile("User", empty_or, "t") == (false, [])
        assert compiler.compile("User", ~empty_or, "t") == (true, [])
        sql, _ = compiler.compile("User", membership, "t")
        assert sql == f'COALESCE((t."name" IS NULL), {false})'


def test_sqlite_constraint_failures_are_read_by_its_dialect() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, x, y, UNIQUE (x, y))")
    conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id) NOT NULL)")
    conn.execute("INSERT INTO a (x, y) VALUES (1, 2)")
    failures = []
    for sql in (
        "INSERT INTO a (x, y) VALUES (1, 2)",
        "INSERT INTO b (a) VALUES (7)",
        "INSERT INTO b (a) VALUES (NULL)",
    ):
        with pytest.raises(SQLITE.integrity_errors) as info:
            conn.execute(sql)
        failures.append(SQLITE.violation(info.value))
    assert [(v.kind, v.fields) for v in failures] == [
        ("unique", ("x", "y")),
        ("foreign key", ()),
        ("non-null", ("a",)),
    ]
    assert "NOT NULL" in failures[2].message


def test_sqlite_statements_reach_the_connection_without_a_wrapper() -> None:
    """The neutral form is SQLite's own: no rendering, the driver's execute as it is."""
    conn = sqlite3.connect(":memory:")
    assert bind(conn, SQLITE) == conn.execute
    assert bind(conn, STANDARD) != conn.execute


async def test_two_storages_on_one_schema_keep_their_own_statements(tmp_path: Path) -> None:
    """The statement cache belongs to each storage, not to the schema: a storage rendering
    ``INSERT ... RETURNING id`` and one reading ``lastrowid`` share one Schema object."""
    schema: Schema = blog_schema()
    assert not hasattr(schema, "backend_cache")
    plain = SQLiteStorage(str(tmp_path / "plain.db"))
    standard = StandardStorage(str(tmp_path / "standard.db"))
    await plain.setup(schema)
    await standard.setup(schema)
    try:
        for n in range(3):
            for storage in (plain, standard, plain):
                made = (await storage.create("Tag", {"label": f"t{n}"})).record
                assert made is not None and isinstance(made["id"], int)
        assert await plain.count("Tag") == 6
        assert await standard.count("Tag") == 3
        labels = [t["label"] for t in await standard.find("Tag", None, ["label"])]
        assert labels == ["t0", "t1", "t2"]
    finally:
        await plain.close()
        await standard.close()


async def test_like_has_no_escape_character(storage: SQLiteStorage) -> None:
    """A backslash in a pattern is a plain character, on every backend (PostgreSQL's default
    escape would make ``a\\%`` mean a literal percent sign)."""
    for name in ("a\\b", "a%", "A\\c"):
        await storage.create("User", {"name": name})
    found = await storage.find("User", MatchExp.atom("name", "like", "a\\%"), ["name"])
    assert [u["name"] for u in found] == ["a\\b"]
    found = await storage.find("User", ~MatchExp.atom("name", "like", "a\\%"), ["name"])
    assert sorted(u["name"] for u in found) == ["A\\c", "a%"]
