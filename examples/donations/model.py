"""What the data is: donors, donations, and the three API calls each donation causes.

Business logic decides *when*: creating a donation (the ``Donate`` interaction) creates one
payment call, one translation call and one text-to-speech call. The integrations decide *how*;
the donation's ``payment_status``, ``translated_message`` and ``voice_url`` derive from its
latest calls.
"""

from __future__ import annotations

from typing import Any

import attrs

import reactive as r
from integrations import APICallModel, api_call_entities, latest_call_value
from integrations.auth import auth_entities

MAX_AMOUNT = 1_000_000
"""The largest donation, in cents ($10,000.00)."""
MAX_MESSAGE = 1000
"""The longest donation message, in characters."""


@attrs.frozen
class DonationModel:
    user: r.Entity
    donation: r.Entity
    payments: APICallModel
    translations: APICallModel
    voices: APICallModel
    relations: list[r.Relation]
    interactions: list[r.Interaction]
    dictionaries: list[r.Dictionary]

    @property
    def entities(self) -> list[r.Entity]:
        return [
            self.user,
            self.donation,
            *self.payments,
            *self.translations,
            *self.voices,
        ]


def _calls_for(event: dict[str, Any]) -> dict[str, Any] | None:
    if event["interaction_name"] != "Donate":
        return None
    payload, owner = event["payload"], event["user"]["id"]
    amount = payload["amount"]
    message = payload.get("message") or "Thank you!"
    language = payload.get("language") or "fr"
    return {
        "amount": amount,
        "message": message,
        "interaction_id": event["id"],
        "donor": {"id": owner},
        "payment_calls": [
            {"request_params": {"amount": amount, "currency": "usd"}, "owner_id": owner}
        ],
        "translation_calls": [
            {"request_params": {"text": message, "target": language}, "owner_id": owner}
        ],
        "voice_calls": [
            {
                "request_params": {"text": f"Thank you for your gift of {amount / 100:.2f}!"},
                "owner_id": owner,
            }
        ],
    }


def build_model() -> DonationModel:
    user = auth_entities("User")
    payments = api_call_entities("PaymentCall", "PaymentEvent")
    translations = api_call_entities("TranslationCall", "TranslationEvent")
    voices = api_call_entities("VoiceCall", "VoiceEvent")
    donation = r.Entity(
        "Donation",
        [
            r.Property("amount", "integer"),  # cents
            r.Property("message"),
            r.Property("interaction_id", "number", index=True),
            r.Property(
                "payment_status",
                computation=latest_call_value(
                    "Donation",
                    "payment_calls",
                    payments.call,
                    lambda c: c["status"],
                    statuses=("processing", "completed", "failed"),
                    initial="pending",
                ),
            ),
            r.Property(
                "translated_message",
                computation=latest_call_value(
                    "Donation",
                    "translation_calls",
                    translations.call,
                    lambda c: (c["response_data"] or {}).get("text"),
                ),
            ),
            r.Property(
                "voice_url",
                computation=latest_call_value(
                    "Donation",
                    "voice_calls",
                    voices.call,
                    lambda c: (c["response_data"] or {}).get("audio_url"),
                ),
            ),
        ],
        computation=r.Transform(r.INTERACTION_EVENT, _calls_for),
    )
    relations = [
        r.Relation(user, "donations", donation, "donor", "1:n"),
        r.Relation(donation, "payment_calls", payments.call, "donation", "1:n"),
        r.Relation(donation, "translation_calls", translations.call, "donation", "1:n"),
        r.Relation(donation, "voice_calls", voices.call, "donation", "1:n"),
    ]
    donate = r.Interaction(
        "Donate",
        r.Payload(
            [
                # Whole cents, from 1 cent to MAX_AMOUNT: 1.5, 0 or 1e308 never reach a payment.
                r.PayloadItem("amount", "integer", required=True, minimum=1, maximum=MAX_AMOUNT),
                # Each is stored, translated and spoken: bounded like any text users send.
                r.PayloadItem("message", max_length=MAX_MESSAGE),
                r.PayloadItem("language", min_length=2, max_length=35),  # a BCP 47 tag
            ]
        ),
        resolve=lambda event, ctx: ctx.storage.find_one(
            "Donation", {"interaction_id": event["id"]}, ["amount", "message"]
        ),
    )
    total = r.Dictionary(
        "donated_total",
        "integer",  # cents; a total beyond 64 bits is refused, never rounded
        computation=r.Summation(record=donation, attribute_query=["amount"]),
    )
    return DonationModel(
        user, donation, payments, translations, voices, relations, [donate], [total]
    )
