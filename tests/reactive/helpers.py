"""Small helpers shared by the reactive tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reactive as r
from reactive.engine import DICTIONARY_RECORD


class Calls:
    """Wraps a function and counts its calls (and keeps their first arguments)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.args: list[Any] = []

    @property
    def count(self) -> int:
        return len(self.args)

    def __call__(self, item: Any) -> Any:
        self.args.append(item)
        return self.fn(item)


async def table_counts(controller: r.Controller, *names: str) -> dict[str, int]:
    """How many rows each named record (plus the interaction events) has."""
    wanted = dict.fromkeys([*names, r.INTERACTION_EVENT, DICTIONARY_RECORD])
    return {name: await controller.storage.count(name) for name in wanted}
