"""``verify()`` against a database edited behind the engine's back (writes straight to the
backend: no event, no computation), on every backend: it reports exactly the edited values, in
bounded batches, and a StateMachine's undeclared stored state."""

from __future__ import annotations

from typing import Any

import pytest

import reactive as r
from reactive.engine import DICTIONARY_RECORD
from reactive.testing import Difference, verify
from tests.reactive.conftest import MakeController


def model() -> tuple[list[r.Entity], list[r.Relation], list[r.Dictionary]]:
    draft, live = r.StateNode("draft"), r.StateNode("live")
    user = r.Entity("User", [r.Property("name")])
    post = r.Entity(
        "Post",
        [
            r.Property("title"),
            r.Property("score", "number", default=0),
            r.Property("upper", computed=lambda p: (p["title"] or "").upper()),
            r.Property("like_count", "number", computation=r.Count(property="liked_by")),
            r.Property(
                "status",
                computation=r.StateMachine(
                    states=[draft, live],
                    transfers=[
                        r.StateTransfer(
                            draft,
                            live,
                            r.Trigger("Post", "update", fields={"score": 10}),
                            lambda event: {"id": event.record["id"]},
                        )
                    ],
                    initial_state=draft,
                ),
            ),
        ],
    )
    likes = r.Relation(post, "liked_by", user, "liked", "n:n")
    total = r.Dictionary(
        "score_total", "number", computation=r.Summation(record=post, attribute_query=["score"])
    )
    return [user, post], [likes], [total]


async def edit(c: r.Controller, record: str, record_id: Any, values: dict[str, Any]) -> None:
    """A write the engine never sees: straight to the backend, like another program would."""
    await c.backend.run(lambda session: session.write_internal(record, record_id, values))


async def test_reports_exactly_the_values_edited_behind_its_back(make: MakeController) -> None:
    entities, relations, dictionaries = model()
    c = await make(entities, relations, dictionaries)
    users = [await c.storage.create("User", {"name": f"u{i}"}) for i in range(3)]
    posts = [
        await c.storage.create(
            "Post", {"title": f"p{i}", "score": i, "liked_by": [{"id": u["id"]} for u in users[:i]]}
        )
        for i in range(7)
    ]
    await c.storage.update("Post", {"id": posts[6]["id"]}, {"score": 10})  # draft -> live
    for batch_size in (1, 2, 1000):
        assert (await c.verify(batch_size=batch_size)).ok

    await edit(c, "Post", posts[2]["id"], {"like_count": 99})
    await edit(c, "Post", posts[5]["id"], {"upper": "WRONG"})
    await edit(c, "Post", posts[3]["id"], {"_status_bound_state": "gone"})
    # a score changed without the engine: the dictionary's sum is now stale
    await edit(c, "Post", posts[0]["id"], {"score": 100})

    expected = {
        Difference("Post", posts[2]["id"], "like_count", 99, 2),
        Difference("Post", posts[5]["id"], "upper", "WRONG", "P5"),
        Difference(DICTIONARY_RECORD, "score_total", "value", 25, 125),
    }
    for batch_size in (1, 2, 3, 1000):
        report = await c.verify(batch_size=batch_size)
        assert not report.ok
        state = [d for d in report.differences if d.field == "status"]
        assert len(state) == 1
        assert (state[0].record, state[0].id, state[0].stored) == ("Post", posts[3]["id"], "gone")
        assert state[0].expected == ["draft", "live"]
        rest = {d for d in report.differences if d.field not in ("status", "state")}
        assert rest == expected, batch_size
        assert [d.field for d in report.differences if d.field == "state"] == ["state"]
        assert (await verify(c)).differences == (await c.verify()).differences


async def test_a_row_without_any_state_is_a_difference(make: MakeController) -> None:
    entities, relations, dictionaries = model()
    c = await make(entities, relations, dictionaries)
    post = await c.storage.create("Post", {"title": "a"})
    await edit(c, "Post", post["id"], {"_status_bound_state": None})
    report = await c.verify()
    assert report.differences == [Difference("Post", post["id"], "status", None, ["draft", "live"])]
    assert "Post.status" in report.skipped  # which declared state is right is not judged


async def test_bad_batch_size_is_refused(make: MakeController) -> None:
    entities, relations, dictionaries = model()
    c = await make(entities, relations, dictionaries)
    with pytest.raises(ValueError, match="batch_size"):
        await c.verify(batch_size=0)


async def test_a_transform_creating_linked_rows_verifies(make: MakeController) -> None:
    """A Transform row that names a related record (``{"owner": {"id": ...}}``) or creates
    one nested is linked, not a field of the row: verify() judges only its stored fields."""
    user = r.Entity("User", [r.Property("name")])
    note = r.Entity("Note", [r.Property("text")])
    order = r.Entity(
        "Order",
        [r.Property("text")],
        computation=r.Transform(
            "User",
            lambda u: {"text": u["name"], "owner": {"id": u["id"]}, "notes": [{"text": "n"}]},
        ),
    )
    owns = r.Relation(user, "orders", order, "owner", "1:n")
    notes = r.Relation(order, "notes", note, "order", "1:n")
    c = await make([user, note, order], [owns, notes])
    await c.storage.create("User", {"name": "ada"})
    assert (await c.verify()).differences == []
