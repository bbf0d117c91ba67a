"""What every computation handle offers the scheduler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from storage import Field, Index, MutationEvent

if TYPE_CHECKING:
    from reactive.computations import Trigger
    from reactive.context import TransactionContext
    from storage import Schema

Route = tuple[str, str]
"""(record name, event type) a handle listens to."""


class Handle:
    """A computation at run time. Subclasses fill in the hooks they need."""

    #: readable name used in errors, e.g. "Post.like_count (Count)"
    name: str = "?"
    #: the record whose property this handle owns, or None (dictionary / entity outputs)
    host: str | None = None
    #: the owned property or dictionary name
    target: str = ""

    def hidden_fields(self) -> list[tuple[str, Field]]:
        """Extra stored fields (bound state) this handle needs, as (record name, field)."""
        return []

    def indexes(self) -> list[tuple[str, Index]]:
        """Indexes this handle looks records up by."""
        return []

    def declared_triggers(self) -> list[Trigger]:
        """The triggers the computation was declared with (none for most kinds)."""
        return []

    def bind(self, schema: Schema) -> None:
        """Check the handle against the finished storage schema (names, attributes)."""

    def routes(self) -> list[Route]:
        """The (record, type) event streams this handle subscribes to."""
        return []

    def initial(self, data: Mapping[str, Any], ctx: TransactionContext) -> dict[str, Any]:
        """Fields to write on a new host record (property handles)."""
        return {}

    def install(self, ctx: TransactionContext) -> None:
        """Write the initial value at install (dictionary handles)."""

    def on_event(self, event: MutationEvent, ctx: TransactionContext) -> None:
        """React to one mutation event inside the transaction."""
        raise NotImplementedError
