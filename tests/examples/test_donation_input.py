"""What a donor may send, over HTTP to the example app: whole cents from 1 to MAX_AMOUNT, a
message of at most MAX_MESSAGE characters. Anything else is a 400 naming the item, in JSON
words, and stores nothing (no donation, no interaction event, no API call); the total stays an
exact integer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples.donations.__main__ import serve_locally
from examples.donations.model import MAX_AMOUNT, MAX_MESSAGE

from .test_donations import free_port, signed_in

PYTHON_WORDS = re.compile(r"\b(float|int|bool|str|NoneType|\w+Error)\b")
RECORDS = ("Donation", "_Interaction_", "PaymentCall", "TranslationCall", "VoiceCall")


class Donor:
    def __init__(self, app: Any, session: aiohttp.ClientSession, base: str, token: str):
        self.app, self.session, self.base, self.token = app, session, base, token

    async def donate(self, body: bytes) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        async with self.session.post(
            f"{self.base}/interaction/Donate", data=body, headers=headers
        ) as response:
            return response.status, await response.json()

    async def counts(self) -> dict[str, Any]:
        storage = self.app.controller.storage
        found: dict[str, Any] = {name: await storage.count(name) for name in RECORDS}
        found["donated_total"] = await storage.get_dict("donated_total")
        return found


@pytest.fixture
async def donor(tmp_path: Path) -> AsyncIterator[Donor]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        serve_locally(port, str(tmp_path / "donations.db")) as app,
        aiohttp.ClientSession() as session,
    ):
        yield Donor(app, session, base, await signed_in(session, base))


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        (b"1.5", "must be an integer, got a number with a fraction"),
        (b"1e-300", "must be an integer, got a number with a fraction"),
        (b"1e308", "must be an integer within 64 bits"),
        (b"9223372036854775807", f"must be at most {MAX_AMOUNT}"),
        (b"0", "must be at least 1, got 0"),
        (b"-5", "must be at least 1, got -5"),
        (str(MAX_AMOUNT + 1).encode(), f"must be at most {MAX_AMOUNT}"),
        (b"true", "must be an integer, got a boolean"),
        (b'"100"', "must be an integer, got a string"),
    ],
)
async def test_an_amount_that_is_not_whole_cents_in_range_is_400(
    donor: Donor, amount: bytes, fragment: str
) -> None:
    before = await donor.counts()
    status, body = await donor.donate(b'{"payload": {"amount": ' + amount + b"}}")
    assert status == 400, body
    assert body["error"]["code"] == "payload_type"
    assert body["error"]["details"] == {"item": "amount"}
    assert "'amount'" in body["error"]["message"] and fragment in body["error"]["message"]
    assert not PYTHON_WORDS.search(body["error"]["message"]), body
    assert await donor.counts() == before == {**dict.fromkeys(RECORDS, 0), "donated_total": 0}


async def test_a_message_longer_than_the_limit_is_400(donor: Donor) -> None:
    for size in (MAX_MESSAGE + 1, 500_000):
        status, body = await donor.donate(
            b'{"payload": {"amount": 100, "message": "' + b"m" * size + b'"}}'
        )
        assert status == 400, body
        assert body["error"]["code"] == "payload_type"
        assert (
            f"'message' must be at most {MAX_MESSAGE} characters long" in body["error"]["message"]
        )
    assert await donor.counts() == {**dict.fromkeys(RECORDS, 0), "donated_total": 0}


async def test_whole_cents_in_range_are_donated_and_the_total_stays_an_integer(
    donor: Donor,
) -> None:
    amounts = [1, MAX_AMOUNT, 2500]
    for amount in amounts:
        status, body = await donor.donate(
            b'{"payload": {"amount": %d, "message": "%s"}}' % (amount, b"m" * MAX_MESSAGE)
        )
        assert status == 200, body
        assert body["data"]["amount"] == amount
    status, body = await donor.donate(b'{"payload": {"amount": 250.0}}')  # JSON: the integer 250
    assert status == 200 and body["data"]["amount"] == 250
    total = await donor.app.controller.storage.get_dict("donated_total")
    assert total == sum(amounts) + 250 and type(total) is int
    donations = await donor.app.controller.storage.find("Donation", None, ["amount"])
    assert all(type(d["amount"]) is int for d in donations)
    counts = await donor.counts()
    assert counts["Donation"] == counts["PaymentCall"] == 4


async def test_the_document_states_what_the_app_enforces(donor: Donor) -> None:
    async with donor.session.get(f"{donor.base}/openapi.json") as response:
        doc = await response.json()

    def body_of(path: str) -> Any:
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        return content["application/json"]["schema"]["properties"]

    payload = body_of("/interaction/Donate")["payload"]
    assert payload["required"] == ["amount"]
    items = payload["properties"]
    assert items["amount"] == {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT}
    assert items["message"]["anyOf"][0] == {"type": "string", "maxLength": MAX_MESSAGE}
    register = body_of("/api/auth.register")
    assert register["username"] == {"type": "string", "minLength": 1, "maxLength": 64}
    assert register["password"] == {"type": "string", "minLength": 8, "maxLength": 1024}
    assert {"409", "429"} <= set(doc["paths"]["/api/auth.register"]["post"]["responses"])
    assert "429" in doc["paths"]["/api/auth.login"]["post"]["responses"]
    assert body_of("/api/stripe_payments.query")["call_id"]["type"] == ["integer", "string"]
    stripe = doc["paths"]["/api/stripe_payments.webhook"]["post"]
    assert [(p["name"], p["in"], p["required"]) for p in stripe["parameters"]] == [
        ("Stripe-Signature", "header", True)
    ]
    volc = doc["paths"]["/api/volc_tts.callback"]["post"]
    assert {p["name"] for p in volc["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
