"""reactive.wire on its own: strict JSON in, engine values out, API params checked."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import attrs
import hypothesis
import pytest
from hypothesis import strategies as st

import reactive as r
from reactive.wire import (
    check_params,
    decode_payload,
    dump_json,
    json_depth,
    parse_json,
    parse_object,
)


class Color(Enum):
    RED = "red"


@attrs.define
class Point:
    x: int
    y: int


def test_dump_json_encodes_engine_values() -> None:
    value = {
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "naive": datetime(2024, 1, 2, 3, 4, 5),
        "day": date(2024, 1, 2),
        "clock": time(3, 4),
        "took": timedelta(seconds=1.5),
        "money": Decimal("2.50"),
        "whole": Decimal("3"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "color": Color.RED,
        "bytes": b"\x00\xff",
        "tags": {"a"},
        "pair": (1, 2),
        "point": Point(1, 2),
        "text": "héllo ✓",
    }
    assert json.loads(dump_json(value)) == {
        "at": "2024-01-02T03:04:05+00:00",
        "naive": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "clock": "03:04:00",
        "took": 1.5,
        "money": 2.5,
        "whole": 3,
        "uuid": "12345678-1234-5678-1234-567812345678",
        "color": "red",
        "bytes": "AP8=",
        "tags": ["a"],
        "pair": [1, 2],
        "point": {"x": 1, "y": 2},
        "text": "héllo ✓",
    }
    assert "héllo ✓".encode() in dump_json({"t": "héllo ✓"})  # UTF-8, not \\u escapes


@pytest.mark.parametrize("value", [object(), math.nan, {"x": math.inf}])
def test_dump_json_refuses_what_json_cannot_carry(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        dump_json(value)


def test_parse_json_is_strict() -> None:
    assert parse_json(b'{"a": [1, 2.5, "\\u00e9", "\\ud83d\\ude00"]}') == {
        "a": [1, 2.5, "é", "😀"]  # a surrogate *pair* is fine
    }
    for body in (b"NaN", b"[Infinity]", b"1e999", b'"\\udc00"', b"\xff", b""):
        with pytest.raises(r.APIError) as caught:
            parse_json(body)
        assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# Strings full of what a bracket counter could trip over: brackets, quotes, backslashes.
_tricky = st.text(alphabet='[]{}"\\ax\n', max_size=8)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky, inner, max_size=4),
    max_leaves=30,
)


@hypothesis.given(_json_values, st.booleans())
def test_json_depth_is_the_nesting_depth(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text) == _depth(value)
    depth = _depth(value)
    assert parse_json(text.encode(), max_depth=max(depth, 1)) == value
    if depth > 1:
        with pytest.raises(r.APIError, match=f"more than {depth - 1} deep") as caught:
            parse_json(text.encode(), max_depth=depth - 1)
        assert caught.value.code == "invalid_json"


def test_a_hostile_depth_is_refused_before_parsing() -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b"[" * 100_000, b'{"a":' * 50_000):
        with pytest.raises(r.APIError, match="more than 64 deep") as caught:
            parse_json(body)
        assert (caught.value.status, caught.value.code) == (400, "invalid_json")
    nested_64 = b"[" * 64 + b"]" * 64
    assert _depth(parse_json(nested_64)) == 64


def test_parse_object() -> None:
    assert parse_object(b"", "body") == {}
    assert parse_object(b' {"a": 1} ', "body") == {"a": 1}
    with pytest.raises(r.APIError, match="must be a JSON object, got array"):
        parse_object(b"[]", "body")


def test_check_params() -> None:
    declared = {"s": "string", "n": "number", "b": "boolean", "j": "json"}
    check_params("x", declared, {"s": "", "n": -1.5, "b": False, "j": None})
    bad = [
        ({"s": "", "n": 1, "b": True}, "missing_param"),
        ({"s": "", "n": 1, "b": True, "j": 1, "k": 2}, "unknown_param"),
        ({"s": "", "n": math.nan, "b": True, "j": 1}, "invalid_param"),
        ({"s": "", "n": False, "b": True, "j": 1}, "invalid_param"),
        ({"s": b"", "n": 1, "b": True, "j": 1}, "invalid_param"),
    ]
    for given, code in bad:
        with pytest.raises(r.APIError) as caught:
            check_params("x", declared, given)
        assert (caught.value.status, caught.value.code) == (400, code)


def test_decode_payload_turns_iso_strings_into_datetimes() -> None:
    interaction = r.Interaction(
        "I",
        r.Payload(
            [
                r.PayloadItem("at", "timestamp"),
                r.PayloadItem("times", "timestamp", is_collection=True),
                r.PayloadItem("text"),
            ]
        ),
    )
    decoded = decode_payload(
        interaction,
        {"at": "2024-01-02T03:04:05Z", "times": ["2024-01-02"], "text": "2024-01-02"},
    )
    assert decoded == {
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "times": [datetime(2024, 1, 2)],
        "text": "2024-01-02",
    }
    assert decode_payload(interaction, {"at": None, "times": "x"}) == {"at": None, "times": "x"}
    with pytest.raises(r.APIError) as caught:
        decode_payload(interaction, {"at": "soon"})
    assert (caught.value.status, caught.value.code) == (400, "payload_type")
