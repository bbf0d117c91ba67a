"""Bad input: each call raises a clear StorageError subclass naming the record and field at fault,
never a raw driver exception, and changes nothing."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from storage import (
    FieldTypeError,
    InvalidDataError,
    MatchError,
    MatchExp,
    MissingReferenceError,
    QueryError,
    SQLiteStorage,
    StorageError,
    UniqueViolationError,
    UnknownFieldError,
    UnknownRecordError,
)

from .helpers import POSTS, TAGS, dump

Call = Callable[[SQLiteStorage], Awaitable[Any]]


async def _seed(storage: SQLiteStorage) -> None:
    """ada (1) with post 1 (tag 1, weight 1, comment 1); bob (2)."""
    await storage.create(
        "User",
        {
            "name": "ada",
            "posts": [
                {
                    "title": "p",
                    "tags": [{"label": "t", "&": {"weight": 1}}],
                    "comments": [{"body": "c"}],
                }
            ],
        },
    )
    await storage.create("User", {"name": "bob", "age": 3})


def case(
    call: Call,
    error: type[StorageError],
    record: str | None,
    field: str | None,
    fragment: str,
    id: str,
) -> Any:
    return pytest.param(call, error, record, field, fragment, id=id)


DEEP = {
    "name": "new",
    "posts": [
        {
            "title": "n1",
            "tags": [
                {
                    "label": "n2",
                    "posts": [{"title": "n3", "comments": [{"body": "n4", "author": {"id": 999}}]}],
                }
            ],
        }
    ],
}

CASES = [
    # -- unknown record type
    case(
        lambda s: s.create("Nope", {}),
        UnknownRecordError,
        "Nope",
        None,
        "unknown record type 'Nope'",
        "create-unknown-record",
    ),
    case(
        lambda s: s.update("Nope", None, {}),
        UnknownRecordError,
        "Nope",
        None,
        "known: ",
        "update-unknown-record",
    ),
    case(
        lambda s: s.delete("Nope", None),
        UnknownRecordError,
        "Nope",
        None,
        "Nope",
        "delete-unknown-record",
    ),
    case(lambda s: s.find("Nope"), UnknownRecordError, "Nope", None, "Nope", "find-unknown-record"),
    case(
        lambda s: s.find_one("user"),
        UnknownRecordError,
        "user",
        None,
        "User",
        "find-one-wrong-case",
    ),
    case(
        lambda s: s.count("Nope", {"a": 1}),
        UnknownRecordError,
        "Nope",
        None,
        "Nope",
        "count-unknown-record",
    ),
    # -- unknown field
    case(
        lambda s: s.create("User", {"name": "x", "nope": 1}),
        UnknownFieldError,
        "User",
        "nope",
        "User has no field 'nope'",
        "create-unknown-field",
    ),
    case(
        lambda s: s.create("User", {"posts": [{"title": "x", "nope": 1}]}),
        UnknownFieldError,
        "Post",
        "nope",
        "Post has no field 'nope'",
        "nested-create-unknown-field",
    ),
    case(
        lambda s: s.create("Post", {"tags": [{"label": "x", "&": {"nope": 1}}]}),
        UnknownFieldError,
        TAGS,
        "nope",
        "nope",
        "link-values-unknown-field",
    ),
    case(
        lambda s: s.create("Post", {"author": {"id": 1, "&": {"weight": 1}}}),
        UnknownFieldError,
        POSTS,
        "weight",
        "weight",
        "link-values-on-a-link-without-fields",
    ),
    case(
        lambda s: s.update("User", {"id": 1}, {"nope": 1}),
        UnknownFieldError,
        "User",
        "nope",
        "nope",
        "update-unknown-field",
    ),
    case(
        lambda s: s.find("User", None, ["name", "nope"]),
        UnknownFieldError,
        "User",
        "nope",
        "it has: ",
        "find-unknown-field",
    ),
    case(
        lambda s: s.find("User", None, [("posts", ["title", "nope"])]),
        UnknownFieldError,
        "Post",
        "nope",
        "Post has no field 'nope'",
        "find-nested-unknown-field",
    ),
    case(
        lambda s: s.find("User", None, [("nope", ["title"])]),
        UnknownFieldError,
        "User",
        "nope",
        "nope",
        "find-unknown-relation",
    ),
    case(
        lambda s: s.find("User", None, [("name", [])]),
        UnknownFieldError,
        "User",
        "name",
        "name",
        "find-value-field-as-relation",
    ),
    case(
        lambda s: s.find("Post", None, [("tags", [("&", ["nope"])])]),
        UnknownFieldError,
        TAGS,
        "nope",
        "nope",
        "find-unknown-link-field",
    ),
    case(
        lambda s: s.find("User", None, ["name"], order_by={"nope": "asc"}),
        UnknownFieldError,
        "User",
        "nope",
        "nope",
        "order-by-unknown-field",
    ),
    case(
        lambda s: s.find("User", None, order_by={"posts": "asc"}),
        UnknownFieldError,
        "User",
        "posts",
        "posts",
        "order-by-relation",
    ),
    case(
        lambda s: s.find("User", {"nope": 1}),
        MatchError,
        "User",
        "nope",
        "does not name a field",
        "match-unknown-field",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("posts.nope", "=", 1)),
        MatchError,
        "Post",
        "nope",
        "posts.nope",
        "match-unknown-nested-field",
    ),
    case(
        lambda s: s.count("Post", MatchExp.atom("author.nope.x", "=", 1)),
        MatchError,
        "User",
        "nope",
        "author.nope.x",
        "match-unknown-middle",
    ),
    case(
        lambda s: s.find("Post", MatchExp.atom("tags.&.nope", "=", 1)),
        MatchError,
        TAGS,
        "nope",
        "tags.&.nope",
        "match-unknown-link-field",
    ),
    case(
        lambda s: s.find("Post", MatchExp.atom("author.&.x", "=", 1)),
        MatchError,
        POSTS,
        "x",
        "author.&.x",
        "match-link-without-fields",
    ),
    case(
        lambda s: s.find("Post", MatchExp.atom("tags.&", "=", 1)),
        MatchError,
        "Post",
        None,
        "'&' must follow a relation",
        "match-ampersand-alone",
    ),
    case(
        lambda s: s.find("Post", MatchExp.atom("&.weight", "=", 1)),
        MatchError,
        "Post",
        "&",
        "does not name a field",
        "match-ampersand-first",
    ),
    case(
        lambda s: s.delete("User", {"nope": None}),
        MatchError,
        "User",
        "nope",
        "nope",
        "delete-match-unknown-field",
    ),
    case(
        lambda s: s.update("User", {"nope": 1}, {"age": 1}),
        MatchError,
        "User",
        "nope",
        "nope",
        "update-match-unknown-field",
    ),
    # -- wrong value types in writes (every type is covered in test_types)
    case(
        lambda s: s.create("User", {"age": True}),
        FieldTypeError,
        "User",
        "age",
        "expects a number, got bool",
        "bool-for-number",
    ),
    case(
        lambda s: s.create("User", {"age": math.nan}),
        FieldTypeError,
        "User",
        "age",
        "finite",
        "nan",
    ),
    case(
        lambda s: s.update("Post", None, {"score": "high"}),
        FieldTypeError,
        "Post",
        "score",
        "Post.score",
        "update-wrong-type",
    ),
    case(
        lambda s: s.create("User", {"posts": [{"score": "x"}]}),
        FieldTypeError,
        "Post",
        "score",
        "Post.score",
        "nested-wrong-type",
    ),
    # -- wrong value types in matches
    case(
        lambda s: s.find("User", {"age": "3"}),
        MatchError,
        "User",
        "age",
        "expects a number",
        "match-string-for-number",
    ),
    case(
        lambda s: s.find("User", {"age": True}),
        MatchError,
        "User",
        "age",
        "expects a number",
        "match-bool-for-number",
    ),
    case(
        lambda s: s.find("User", {"age": math.nan}),
        MatchError,
        "User",
        "age",
        "finite",
        "match-nan-dict",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", ">", math.inf)),
        MatchError,
        "User",
        "age",
        "finite",
        "match-inf",
    ),
    case(
        lambda s: s.find("User", {"age": 2**64}),
        MatchError,
        "User",
        "age",
        "64 bits",
        "match-int-too-big",
    ),
    case(
        lambda s: s.find("User", {"name": 3}),
        MatchError,
        "User",
        "name",
        "expects a string",
        "match-int-for-string",
    ),
    case(
        lambda s: s.find("User", {"active": 1}),
        MatchError,
        "User",
        "active",
        "expects a boolean",
        "match-int-for-boolean",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", "in", [1, "2"])),
        MatchError,
        "User",
        "age",
        "expects a number",
        "match-in-wrong-item",
    ),
    case(
        lambda s: s.find("User", {"id": 1.5}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "match-float-id",
    ),
    case(
        lambda s: s.find("User", {"id": True}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "match-bool-id",
    ),
    case(
        lambda s: s.find("User", {"id": 2**70}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "match-huge-id",
    ),
    case(
        lambda s: s.delete("User", {"id": 2**70}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "delete-huge-id",
    ),
    case(
        lambda s: s.find("Post", {"author": {"name": "x"}}),
        MatchError,
        "Post",
        "author",
        "must have an 'id'",
        "match-ref-without-id",
    ),
    case(
        lambda s: s.find("Post", {"author": 2**70}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "match-huge-ref",
    ),
    case(
        lambda s: s.find("User", {"name": "\ud800"}),
        MatchError,
        "User",
        "name",
        "lone surrogate",
        "match-surrogate",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("name", "like", "%\udfff")),
        MatchError,
        "User",
        "name",
        "lone surrogate",
        "like-surrogate",
    ),
    case(
        lambda s: s.find("User", {"id": "\ud800"}),
        MatchError,
        "User",
        "id",
        "an id must be",
        "match-surrogate-id",
    ),
    # -- malformed matches
    case(
        lambda s: s.find("User", MatchExp.atom("age", "==", 1)),
        MatchError,
        None,
        None,
        "unknown match operator '=='",
        "bad-operator",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", "includes", 1)),
        MatchError,
        None,
        None,
        "use one of",
        "bad-operator-word",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", 5, 1)),  # type: ignore[arg-type]
        MatchError,
        None,
        None,
        "must be a string",
        "operator-not-a-string",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", "in", 3)),
        MatchError,
        None,
        None,
        "needs a list",
        "in-not-a-list",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("name", "not in", "abc")),
        MatchError,
        None,
        None,
        "needs a list",
        "not-in-a-string",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("name", "in", {"a": 1})),
        MatchError,
        None,
        None,
        "needs a list",
        "in-a-dict",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", "<", None)),
        MatchError,
        None,
        None,
        "use 'is null'",
        "less-than-none",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", ">=", None)),
        MatchError,
        None,
        None,
        "no meaning",
        "ge-none",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("name", "like", 5)),
        MatchError,
        None,
        None,
        "string pattern",
        "like-non-string",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("age", "like", "1%")),
        MatchError,
        "User",
        "age",
        "'like' needs a string field",
        "like-on-number",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("meta", "like", "%")),
        MatchError,
        "User",
        "meta",
        "not json",
        "like-on-json",
    ),
    case(
        lambda s: s.find("Post", MatchExp.atom("author.age", "like", "1")),
        MatchError,
        "User",
        "age",
        "'like' needs a string field",
        "like-on-nested-number",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("", "=", 1)),
        MatchError,
        None,
        None,
        "non-empty",
        "empty-key",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("posts..title", "=", 1)),
        MatchError,
        None,
        None,
        "dotted",
        "empty-segment",
    ),
    case(
        lambda s: s.find("User", [("name", "=", "ada")]),  # type: ignore[arg-type]
        MatchError,
        None,
        None,
        "a match must be a MatchExp or a dict",
        "match-a-list",
    ),
    case(
        lambda s: s.find("User", MatchExp.atom("name", "=", "a") & None),  # type: ignore[operator]
        MatchError,
        None,
        None,
        "None",
        "combine-with-none",
    ),
    # -- references to missing records
    case(
        lambda s: s.create("Post", {"title": "x", "author": {"id": 999}}),
        MissingReferenceError,
        "Post",
        "author",
        "Post.author refers to User id=999",
        "missing-to-one",
    ),
    case(
        lambda s: s.create("User", {"name": "x", "posts": [{"title": "ok"}, {"id": 999}]}),
        MissingReferenceError,
        "User",
        "posts",
        "Post id=999",
        "missing-in-list",
    ),
    case(
        lambda s: s.create("User", DEEP),
        MissingReferenceError,
        "Comment",
        "author",
        "Comment.author refers to User id=999",
        "missing-deep",
    ),
    case(
        lambda s: s.create("Post", {"author": {"id": "nope"}}),
        MissingReferenceError,
        "Post",
        "author",
        "id='nope'",
        "missing-string-id",
    ),
    case(
        lambda s: s.create(TAGS, {"source": {"id": 1}, "target": {"id": 999}}),
        MissingReferenceError,
        TAGS,
        "target",
        "Tag id=999",
        "missing-link-target",
    ),
    case(
        lambda s: s.update("Post", {"id": 1}, {"title": "changed", "author": {"id": 999}}),
        MissingReferenceError,
        "Post",
        "author",
        "999",
        "update-missing-to-one",
    ),
    case(
        lambda s: s.update("Post", None, {"tags": [{"label": "new"}, {"id": 999}]}),
        MissingReferenceError,
        "Post",
        "tags",
        "999",
        "update-missing-in-list",
    ),
    case(
        lambda s: s.update("User", {"name": "bob"}, {"friends": [{"id": 1}, {"id": 999}]}),
        MissingReferenceError,
        "User",
        "friends",
        "999",
        "update-missing-symmetric",
    ),
    # -- malformed references and payloads
    case(
        lambda s: s.create("Post", {"author": {"id": 1.0}}),
        InvalidDataError,
        "Post",
        "author",
        "id must be an int",
        "ref-float-id",
    ),
    case(
        lambda s: s.create("Post", {"author": {"id": None}}),
        InvalidDataError,
        "Post",
        "author",
        "id must be an int",
        "ref-none-id",
    ),
    case(
        lambda s: s.create("Post", {"author": {"id": 2**64}}),
        InvalidDataError,
        "Post",
        "author",
        "id must be an int",
        "ref-huge-id",
    ),
    case(
        lambda s: s.create("Post", {"author": {"id": "\ud800"}}),
        InvalidDataError,
        "Post",
        "author",
        "id must be",
        "ref-surrogate-id",
    ),
    case(
        lambda s: s.create("User", {"posts": [{"title": "ok"}, {"title": "\ud800"}]}),
        FieldTypeError,
        "Post",
        "title",
        "lone surrogate",
        "nested-surrogate",
    ),
    case(
        lambda s: s.create("Post", {"author": 1}),
        InvalidDataError,
        "Post",
        "author",
        "must be a record",
        "ref-bare-id",
    ),
    case(
        lambda s: s.create("Post", {"author": [{"id": 1}]}),
        InvalidDataError,
        "Post",
        "author",
        "must be a record",
        "to-one-given-a-list",
    ),
    case(
        lambda s: s.create("User", {"posts": {"id": 1}}),
        InvalidDataError,
        "User",
        "posts",
        "give a list",
        "to-many-given-a-dict",
    ),
    case(
        lambda s: s.create("User", {"posts": "p"}),
        InvalidDataError,
        "User",
        "posts",
        "give a list",
        "to-many-given-a-string",
    ),
    case(
        lambda s: s.create("Post", {"tags": [{"id": 1, "&": 3}]}),
        InvalidDataError,
        "Post",
        "tags",
        "dict of link fields",
        "link-values-not-a-dict",
    ),
    case(
        lambda s: s.create("User", {"id": 5, "name": "x"}),
        InvalidDataError,
        "User",
        "id",
        "'id' is assigned by the storage",
        "id-in-create",
    ),
    case(
        lambda s: s.update("User", {"id": 1}, {"id": 7}),
        InvalidDataError,
        "User",
        "id",
        "cannot be changed",
        "id-in-update",
    ),
    case(
        lambda s: s.create("User", ["name"]),  # type: ignore[arg-type]
        InvalidDataError,
        "User",
        None,
        "data must be a dict",
        "payload-a-list",
    ),
    case(
        lambda s: s.create("User", None),  # type: ignore[arg-type]
        InvalidDataError,
        "User",
        None,
        "got NoneType",
        "payload-none",
    ),
    case(
        lambda s: s.create("User", "ada"),  # type: ignore[arg-type]
        InvalidDataError,
        "User",
        None,
        "data must be a dict",
        "payload-a-string",
    ),
    case(
        lambda s: s.update("User", {"id": 1}, [("age", 1)]),  # type: ignore[arg-type]
        InvalidDataError,
        "User",
        None,
        "data must be a dict",
        "update-payload-a-list",
    ),
    # -- unique violations
    case(
        lambda s: s.create("User", {"name": "ada"}),
        UniqueViolationError,
        "User",
        "name",
        "another record already has the same name",
        "unique-create",
    ),
    case(
        lambda s: s.create("Comment", {"body": "x", "author": {"name": "bob"}}),
        UniqueViolationError,
        "User",
        "name",
        "'bob'",
        "unique-nested-create",
    ),
    case(
        lambda s: s.update("User", {"name": "bob"}, {"name": "ada"}),
        UniqueViolationError,
        "User",
        "name",
        "name",
        "unique-update-one",
    ),
    case(
        lambda s: s.update("User", None, {"name": "same", "age": 1}),
        UniqueViolationError,
        "User",
        "name",
        "same",
        "unique-update-many",
    ),
    # -- malformed reads
    case(
        lambda s: s.find("User", None, limit=-1),
        QueryError,
        "User",
        None,
        "limit for User must be a non-negative int",
        "limit-negative",
    ),
    case(
        lambda s: s.find("User", None, offset=-5),
        QueryError,
        "User",
        None,
        "offset",
        "offset-negative",
    ),
    case(
        lambda s: s.find("User", None, limit=1.5),  # type: ignore[arg-type]
        QueryError,
        "User",
        None,
        "limit",
        "limit-float",
    ),
    case(
        lambda s: s.find("User", None, limit="3"),  # type: ignore[arg-type]
        QueryError,
        "User",
        None,
        "limit",
        "limit-string",
    ),
    case(
        lambda s: s.find("User", None, limit=True), QueryError, "User", None, "limit", "limit-bool"
    ),
    case(
        lambda s: s.find("User", None, offset=2**63),
        QueryError,
        "User",
        None,
        "offset",
        "offset-too-big",
    ),
    case(
        lambda s: s.find("User", None, order_by=["name"]),  # type: ignore[arg-type]
        QueryError,
        "User",
        None,
        "order_by",
        "order-by-a-list",
    ),
    case(
        lambda s: s.find("User", None, order_by={"name": "up"}),
        QueryError,
        "User",
        "name",
        "'asc' or 'desc'",
        "order-by-bad-direction",
    ),
    case(
        lambda s: s.find("User", None, "name"),
        QueryError,
        "User",
        None,
        "must be a list",
        "attribute-query-a-string",
    ),
    case(
        lambda s: s.find("User", None, {"name": True}),  # type: ignore[arg-type]
        QueryError,
        "User",
        None,
        "must be a list",
        "attribute-query-a-dict",
    ),
    case(
        lambda s: s.find("User", None, [("posts", "title")]),
        QueryError,
        "User",
        None,
        "must be a list",
        "nested-query-a-string",
    ),
    case(
        lambda s: s.find("User", None, [("posts", ["title"], "extra")]),
        QueryError,
        "User",
        None,
        "pair",
        "query-item-a-triple",
    ),
    case(
        lambda s: s.find("User", None, [3]), QueryError, "User", None, "pair", "query-item-an-int"
    ),
    case(
        lambda s: s.find("User", None, [("&", ["weight"])]),
        QueryError,
        "User",
        None,
        "only valid inside a relation",
        "ampersand-at-top",
    ),
]


@pytest.mark.parametrize(("call", "error", "record", "field", "fragment"), CASES)
async def test_bad_input_is_a_clear_error_and_changes_nothing(
    storage: SQLiteStorage,
    call: Call,
    error: type[StorageError],
    record: str | None,
    field: str | None,
    fragment: str,
) -> None:
    await _seed(storage)
    before = await dump(storage)
    with pytest.raises(StorageError) as info:
        await call(storage)
    raised = info.value
    assert type(raised) is error, repr(raised)
    assert not isinstance(raised, sqlite3.Error)
    assert (raised.record, raised.field) == (record, field)
    assert fragment in str(raised)
    assert await dump(storage) == before
    # the storage still works after the error
    assert await storage.count("User") == 2


async def test_missing_reference_error_names_the_target(storage: SQLiteStorage) -> None:
    await _seed(storage)
    with pytest.raises(MissingReferenceError) as info:
        await storage.create("Comment", {"body": "x", "post": {"id": 42}})
    assert (info.value.record, info.value.field, info.value.target, info.value.target_id) == (
        "Comment",
        "post",
        "Post",
        42,
    )


async def test_unique_violation_error_details(storage: SQLiteStorage) -> None:
    await _seed(storage)
    with pytest.raises(UniqueViolationError) as info:
        await storage.create("User", {"name": "bob", "age": 1})
    assert info.value.fields == ("name",)
    assert (
        str(info.value) == "User: another record already has the same name (values {'name': 'bob'})"
    )


async def test_field_type_error_details(storage: SQLiteStorage) -> None:
    with pytest.raises(FieldTypeError) as info:
        await storage.create("User", {"name": "x" * 200})  # fine
        await storage.create("User", {"age": "y" * 200})
    assert info.value.value == "y" * 200
    assert info.value.expected == "a number"
    assert len(str(info.value)) < 150  # long values are cut short in the message
    assert await storage.count("User") == 1


async def test_every_error_class_is_a_storage_error() -> None:
    for error in (
        FieldTypeError,
        InvalidDataError,
        MatchError,
        MissingReferenceError,
        QueryError,
        UniqueViolationError,
        UnknownFieldError,
        UnknownRecordError,
    ):
        assert issubclass(error, StorageError)
    # and the builtin families callers may already catch
    assert issubclass(FieldTypeError, TypeError)
    assert issubclass(UnknownRecordError, LookupError) and issubclass(
        UnknownFieldError, LookupError
    )
    assert issubclass(MatchError, QueryError) and issubclass(QueryError, ValueError)
