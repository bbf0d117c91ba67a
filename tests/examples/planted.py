"""Copies of the donations model with a bug planted on purpose, for the ModelMachine to find.

The copy adds what a real application grows next to the example, each piece in a correct and
a buggy version:

- ``donated_total`` (the example's Summation of the amounts in cents). Bug *wrong callback*: a
  WeightedSummation whose callback turns cents into whole dollars.
- ``Donation.payment_state``: a StateMachine mirroring the status of the donation's payment
  call, with a transfer from every status to every other one. Bug *missing transfer*: no
  ``pending -> completed`` (a payment whose "completed" report arrives before its
  "processing" one stays pending).
- ``Receipt``: one per paid donation, created by a side effect when a payment completion is
  stored. Correct: ``donation_id`` is unique and a second create is a no-op. Bug
  *non-idempotent side effect*: a receipt per completion report, so a late or repeated
  report (another provider event id) creates a second one.

The invariants below state what the business expects; ``build`` makes the correct copy.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import attrs

import reactive as r
from examples.donations.model import DonationModel, build_model
from reactive.testing import invariant
from storage import SQLiteStorage, UniqueViolationError

STATUSES = ("pending", "processing", "completed", "failed")


def _payment_state(model: DonationModel, missing: tuple[str, str] | None) -> r.Property:
    nodes = {s: r.StateNode(s) for s in STATUSES}
    call = model.payments.call

    def donation_of(event: r.MutationEvent, ctx: r.TransactionContext) -> Any:
        return ctx.storage.find_one("Donation", {"payment_calls.id": event.record["id"]})

    transfers = [
        r.StateTransfer(
            nodes[a],
            nodes[b],
            r.Trigger(call, "update", fields={"status": b}, keys=["status"]),
            donation_of,
        )
        for a, b in itertools.permutations(STATUSES, 2)
        if (a, b) != missing
    ]
    machine = r.StateMachine(
        states=list(nodes.values()), transfers=transfers, initial_state=nodes["pending"]
    )
    return r.Property("payment_state", computation=machine)


def _receipts(model: DonationModel, idempotent: bool) -> tuple[r.Entity, Any]:
    receipt = r.Entity(
        "Receipt", [r.Property("donation_id", "integer", unique=idempotent, index=True)]
    )

    async def send_receipt(event: r.MutationEvent, controller: r.Controller) -> None:
        if event.record.get("event_type") != "completed":
            return
        call = await controller.storage.find_one(
            model.payments.call, {"external_id": event.record["external_id"]}, ["status"]
        )
        if call is None or call["status"] != "completed":
            return
        donation = await controller.storage.find_one("Donation", {"payment_calls.id": call["id"]})
        if donation is None:
            return
        # already sent: a late or repeated report changes nothing (when donation_id is unique)
        with contextlib.suppress(UniqueViolationError):
            await controller.storage.create("Receipt", {"donation_id": donation["id"]})

    effect = r.RecordMutationSideEffect(
        "send_receipt", model.payments.event, send_receipt, on=("create",)
    )
    return receipt, effect


async def _build(
    database: str,
    *,
    wrong_callback: bool = False,
    missing: tuple[str, str] | None = None,
    idempotent: bool = True,
) -> r.Controller:
    model = build_model()
    donation = attrs.evolve(
        model.donation, properties=[*model.donation.properties, _payment_state(model, missing)]
    )
    # the relations name the original Donation entity: point them at the copy
    relations = []
    for rel in model.relations:
        relations.append(
            attrs.evolve(
                rel,
                source=donation if rel.source is model.donation else rel.source,
                target=donation if rel.target is model.donation else rel.target,
            )
        )
    total = model.dictionaries[0]
    if wrong_callback:
        total = r.Dictionary(
            "donated_total",
            "integer",
            computation=r.WeightedSummation(
                record=donation,
                attribute_query=["amount"],
                callback=lambda d: (1, d["amount"] // 100),
            ),
        )
    else:
        total = attrs.evolve(
            total, computation=r.Summation(record=donation, attribute_query=["amount"])
        )
    receipt, effect = _receipts(model, idempotent)
    entities = [model.user, donation, *model.payments, *model.translations, *model.voices]
    controller = r.Controller(
        SQLiteStorage(database),
        [*entities, receipt],
        relations,
        [total],
        model.interactions,
        side_effects=[effect],
    )
    await controller.setup()
    return controller


async def build(database: str) -> r.Controller:
    """The correct copy."""
    return await _build(database)


async def build_wrong_callback(database: str) -> r.Controller:
    return await _build(database, wrong_callback=True)


async def build_missing_transfer(database: str) -> r.Controller:
    return await _build(database, missing=("pending", "completed"))


async def build_non_idempotent(database: str) -> r.Controller:
    return await _build(database, idempotent=False)


# -- what the business expects ----------------------------------------------------------------


@invariant
async def total_is_the_sum_of_the_amounts(controller: r.Controller) -> None:
    donations = await controller.storage.find("Donation", None, ["amount"])
    total = await controller.storage.get_dict("donated_total")
    assert (total or 0) == sum(d["amount"] for d in donations), (total, donations)


@invariant
async def payment_state_follows_the_payment(controller: r.Controller) -> None:
    rows = await controller.storage.find(
        "Donation", None, ["payment_state", ("payment_calls", ["status"])]
    )
    for row in rows:
        calls = row["payment_calls"]
        status = calls[0]["status"] if calls else "pending"
        assert row["payment_state"] == status, row


@invariant
async def one_receipt_per_donation(controller: r.Controller) -> None:
    receipts = await controller.storage.find("Receipt", None, ["donation_id"])
    ids = [r["donation_id"] for r in receipts]
    assert len(ids) == len(set(ids)), f"receipts sent twice: {sorted(ids)}"


INVARIANTS = [
    total_is_the_sum_of_the_amounts,
    payment_state_follows_the_payment,
    one_receipt_per_donation,
]
