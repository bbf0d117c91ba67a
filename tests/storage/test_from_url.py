"""``storage.from_url``: the backend a URL names, constructed but not opened."""

from __future__ import annotations

from typing import Any

import pytest

from storage import PostgresStorage, SQLiteStorage, StorageError, from_url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///dir/relative.db", "dir/relative.db"),
        ("sqlite:////absolute/path.db", "/absolute/path.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///upper.db", "upper.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    store = from_url(url)
    assert isinstance(store, SQLiteStorage)
    assert store.path == path


def test_options_reach_the_backend() -> None:
    sqlite = from_url("sqlite://:memory:", executor="thread")
    assert isinstance(sqlite, SQLiteStorage) and sqlite.executor == "thread"
    pg = from_url("postgresql://app:pw@db.example:6543/shop", pool_size=7, schema="s1")
    assert isinstance(pg, PostgresStorage)
    assert (pg.pool_size, pg.schema_name) == (7, "s1")
    assert (pg.address.host, pg.address.port, pg.address.database, pg.address.user) == (
        "db.example",
        6543,
        "shop",
        "app",
    )
    assert "pw" not in repr(pg)


def test_postgres_scheme_alias() -> None:
    assert isinstance(from_url("postgres://u@h/d"), PostgresStorage)


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("mysql://u@h/d", "unknown storage URL scheme 'mysql'"),
        ("app.db", "is not a storage URL"),
        ("sqlite://", "names no SQLite file"),
        ("sqlite:///", "names no SQLite file"),
        ("sqlite://relative.db", "names no SQLite file"),
        ("postgresql://u@h:notaport/d", "bad port"),
        (42, "must be a str"),
    ],
)
def test_bad_urls_are_refused(url: Any, fault: str) -> None:
    with pytest.raises(StorageError, match=fault):
        from_url(url)
