"""Stripe-style and Standard Webhooks verification: valid deliveries, every refusal reason,
tolerance boundaries on both sides, rotation, replays, and constant-time comparison."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations import (
    ReplayCache,
    StandardWebhookVerifier,
    StripeVerifier,
    WebhookVerificationError,
    generate_standard_secret,
    sign_standard,
    sign_stripe,
)
from integrations.testing import FakeClock
from integrations.webhooks import (
    STRIPE_HEADER,
    WEBHOOK_SIGNATURE,
    parse_stripe_header,
    standard_key,
    standard_signature,
    stripe_signature,
)

T0 = 1_700_000_000
STRIPE_SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
BODY = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()


class Now:
    """A settable clock giving unix seconds."""

    def __init__(self, value: float = T0):
        self.value = value

    def __call__(self) -> float:
        return self.value


def refused(call: Callable[[], Any]) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        call()
    assert info.value.code == info.value.reason
    return info.value.reason


def stripe(now: Now | None = None, **options: Any) -> StripeVerifier:
    return StripeVerifier(STRIPE_SECRET, clock=now or Now(), **options)


# -- Stripe ---------------------------------------------------------------------------------


def test_stripe_valid_delivery_is_verified() -> None:
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    verified = stripe().verify(BODY, headers)
    assert (verified.scheme, verified.timestamp, verified.body) == ("stripe", T0, BODY)


def test_stripe_signature_is_hmac_sha256_of_timestamp_dot_body_keyed_with_the_secret_string() -> (
    None
):
    expected = hmac.new(STRIPE_SECRET.encode(), f"{T0}.".encode() + BODY, "sha256").hexdigest()
    assert stripe_signature(STRIPE_SECRET, T0, BODY) == expected
    assert sign_stripe(BODY, STRIPE_SECRET, T0) == {STRIPE_HEADER: f"t={T0},v1={expected}"}


def test_stripe_headers_are_found_case_insensitively_in_a_plain_dict() -> None:
    value = sign_stripe(BODY, STRIPE_SECRET, T0)[STRIPE_HEADER]
    assert stripe().verify(BODY, {"stripe-signature": value}).timestamp == T0


def test_stripe_bad_signature_and_tampered_body_are_refused() -> None:
    assert refused(lambda: stripe().verify(BODY, sign_stripe(BODY, "whsec_other", T0))) == (
        "bad_signature"
    )
    tampered = BODY.replace(b"evt_1", b"evt_2")
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    assert refused(lambda: stripe().verify(tampered, headers)) == "bad_signature"
    # The signature covers the timestamp: moving t breaks it.
    moved = {STRIPE_HEADER: headers[STRIPE_HEADER].replace(f"t={T0}", f"t={T0 + 1}")}
    assert refused(lambda: stripe().verify(BODY, moved)) == "bad_signature"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_header"),
        ({STRIPE_HEADER: ""}, "missing_header"),
        ({STRIPE_HEADER: "garbage"}, "malformed_header"),
        ({STRIPE_HEADER: "v1=abc"}, "malformed_header"),
        ({STRIPE_HEADER: f"t={T0}"}, "malformed_header"),
        ({STRIPE_HEADER: f"t={T0},v0=abc"}, "malformed_header"),
        ({STRIPE_HEADER: "t=soon,v1=abc"}, "malformed_header"),
        ({STRIPE_HEADER: "t=-5,v1=abc"}, "malformed_header"),
        ({STRIPE_HEADER: f"t={T0},t={T0},v1=abc"}, "malformed_header"),
        ({STRIPE_HEADER: f"t={T0},v1=abc"}, "bad_signature"),
        ({STRIPE_HEADER: f"t={T0},v1=\u00e9\u00e9"}, "bad_signature"),
    ],
)
def test_stripe_missing_and_malformed_headers(headers: dict[str, str], reason: str) -> None:
    assert refused(lambda: stripe().verify(BODY, headers)) == reason


def test_stripe_header_parser_keeps_every_v1_and_ignores_other_schemes() -> None:
    assert parse_stripe_header(f"t={T0},v1=aa,v0=bb, v1=cc") == (T0, ["aa", "cc"])


@pytest.mark.parametrize(
    ("age", "reason"),
    [(300, None), (301, "stale_timestamp"), (-300, None), (-301, "future_timestamp")],
)
def test_stripe_tolerance_is_two_sided_with_inclusive_boundaries(
    age: int, reason: str | None
) -> None:
    now = Now(T0 + age)
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    if reason is None:
        assert stripe(now).verify(BODY, headers).timestamp == T0
    else:
        assert refused(lambda: stripe(now).verify(BODY, headers)) == reason


def test_stripe_tolerance_is_configurable() -> None:
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    assert refused(lambda: stripe(Now(T0 + 11), tolerance=10).verify(BODY, headers)) == (
        "stale_timestamp"
    )
    assert stripe(Now(T0 + 3000), tolerance=3600).verify(BODY, headers).timestamp == T0
    with pytest.raises(ValueError):
        stripe(tolerance=0)


def test_stripe_rotation_accepts_any_configured_secret_and_any_signature_in_the_header() -> None:
    old, new = STRIPE_SECRET, "whsec_new_secret_after_rotation"
    verifier = StripeVerifier([new, old], clock=Now(), check_replay=False)
    assert verifier.verify(BODY, sign_stripe(BODY, old, T0))
    assert verifier.verify(BODY, sign_stripe(BODY, new, T0))
    # The sender signs with both during its own rotation; a receiver with either accepts it.
    both = sign_stripe(BODY, [new, old], T0)
    assert both[STRIPE_HEADER].count("v1=") == 2
    assert StripeVerifier(old, clock=Now()).verify(BODY, both)
    assert StripeVerifier(new, clock=Now()).verify(BODY, both)
    with pytest.raises(ValueError):
        StripeVerifier([], clock=Now())


def test_stripe_replay_of_the_same_signed_message_is_refused() -> None:
    verifier = stripe()
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    verified = verifier.verify(BODY, headers)
    assert refused(lambda: verifier.verify(BODY, headers)) == "replayed"
    # The provider re-signing the same event later is a new message (dedup happens downstream).
    assert verifier.verify(BODY, sign_stripe(BODY, STRIPE_SECRET, T0 + 1))
    # Releasing (the handler failed) lets the same message through again.
    verifier.release(verified)
    assert verifier.verify(BODY, headers)


def test_stripe_without_replay_check_accepts_a_repeat() -> None:
    verifier = stripe(check_replay=False)
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    assert verifier.verify(BODY, headers).replay_key is None
    assert verifier.verify(BODY, headers)


def test_stripe_replay_is_refused_until_the_timestamp_leaves_the_window() -> None:
    """The cache keeps a message at least until its timestamp is out of tolerance, even with a
    short ttl: a replay is refused as replayed, then as stale."""
    now = Now(T0 - 290)  # a message stamped 290 s in our future is accepted...
    verifier = stripe(now, replay_cache=ReplayCache(ttl=1, clock=now))
    headers = sign_stripe(BODY, STRIPE_SECRET, T0)
    verifier.verify(BODY, headers)
    for moment in (T0 - 200, T0, T0 + 300):
        now.value = moment
        assert refused(lambda: verifier.verify(BODY, headers)) == "replayed"
    now.value = T0 + 301
    assert refused(lambda: verifier.verify(BODY, headers)) == "stale_timestamp"


def test_stripe_uses_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verifier = StripeVerifier(["whsec_a", STRIPE_SECRET], clock=Now())
    verifier.verify(BODY, sign_stripe(BODY, STRIPE_SECRET, T0))
    # Every secret is compared with every candidate; no early exit after the match.
    assert len(calls) == 2
    assert refused(lambda: verifier.verify(BODY, sign_stripe(BODY, "whsec_x", T0 + 1))) == (
        "bad_signature"
    )
    assert len(calls) == 4


# -- Standard Webhooks ------------------------------------------------------------------------

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret (24 bytes)
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"


def standard(now: Now | None = None, **options: Any) -> StandardWebhookVerifier:
    return StandardWebhookVerifier(SECRET, clock=now or Now(), **options)


def test_standard_matches_the_spec_reference_vector() -> None:
    """The example in the Standard Webhooks spec / reference libraries."""
    body = b'{"test": 2432232314}'
    expected = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_signature(SECRET, MSG_ID, 1614265330, body) == expected
    verifier = standard(Now(1614265330))
    headers = sign_standard(body, SECRET, MSG_ID, 1614265330)
    assert headers[WEBHOOK_SIGNATURE] == f"v1,{expected}"
    verified = verifier.verify(body, headers)
    assert (verified.webhook_id, verified.timestamp) == (MSG_ID, 1614265330)


def test_standard_secret_is_base64_after_the_prefix() -> None:
    key = standard_key(SECRET)
    assert key == base64.b64decode(SECRET.removeprefix("whsec_"))
    assert standard_key(SECRET.removeprefix("whsec_")) == key
    generated = generate_standard_secret()
    assert generated.startswith("whsec_") and len(standard_key(generated)) == 32
    for bad in ("whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            standard_key(bad)


def test_standard_valid_delivery_with_a_fake_clock_object() -> None:
    clock = FakeClock(datetime.fromtimestamp(T0, UTC))
    verifier = StandardWebhookVerifier(SECRET, clock=clock)
    assert verifier.verify(BODY, sign_standard(BODY, SECRET, MSG_ID, T0)).webhook_id == MSG_ID


def test_standard_bad_signature_and_tampering_are_refused() -> None:
    headers = sign_standard(BODY, SECRET, MSG_ID, T0)
    other = generate_standard_secret()
    assert refused(lambda: standard().verify(BODY, sign_standard(BODY, other, MSG_ID, T0))) == (
        "bad_signature"
    )
    assert refused(lambda: standard().verify(BODY + b" ", headers)) == "bad_signature"
    assert refused(lambda: standard().verify(BODY, {**headers, "webhook-id": "msg_other"})) == (
        "bad_signature"
    )
    shifted = {**headers, "webhook-timestamp": str(T0 + 1)}
    assert refused(lambda: standard().verify(BODY, shifted)) == "bad_signature"


def _headers(**override: str | None) -> dict[str, str]:
    headers = sign_standard(BODY, SECRET, MSG_ID, T0)
    for key, value in override.items():
        name = key.replace("_", "-")
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    return headers


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (_headers(webhook_id=None), "missing_header"),
        (_headers(webhook_timestamp=None), "missing_header"),
        (_headers(webhook_signature=None), "missing_header"),
        (_headers(webhook_signature=""), "missing_header"),
        (_headers(webhook_timestamp="yesterday"), "malformed_header"),
        (_headers(webhook_timestamp="1.5e9"), "malformed_header"),
        (_headers(webhook_id="msg.with.dots"), "malformed_header"),
        (_headers(webhook_signature="v1"), "malformed_header"),
        (_headers(webhook_signature="garbage"), "malformed_header"),
        (_headers(webhook_signature="v1a,c2lnbmF0dXJl"), "malformed_header"),
        (_headers(webhook_signature="v1,c2lnbmF0dXJl"), "bad_signature"),
    ],
)
def test_standard_missing_and_malformed_headers(headers: dict[str, str], reason: str) -> None:
    assert refused(lambda: standard().verify(BODY, headers)) == reason


@pytest.mark.parametrize(
    ("age", "reason"),
    [(300, None), (301, "stale_timestamp"), (-300, None), (-301, "future_timestamp")],
)
def test_standard_tolerance_is_two_sided_with_inclusive_boundaries(
    age: int, reason: str | None
) -> None:
    headers = sign_standard(BODY, SECRET, MSG_ID, T0)
    if reason is None:
        assert standard(Now(T0 + age)).verify(BODY, headers)
    else:
        assert refused(lambda: standard(Now(T0 + age)).verify(BODY, headers)) == reason


def test_standard_rotation_space_separated_signatures_and_several_secrets() -> None:
    new = generate_standard_secret()
    headers = sign_standard(BODY, [new, SECRET], MSG_ID, T0)
    assert len(headers[WEBHOOK_SIGNATURE].split(" ")) == 2
    assert standard().verify(BODY, headers)
    # An unknown version next to a good v1 is ignored.
    mixed = {**headers, WEBHOOK_SIGNATURE: "v1a,AAAA " + headers[WEBHOOK_SIGNATURE]}
    assert StandardWebhookVerifier(new, clock=Now()).verify(BODY, mixed)
    # A receiver holding both secrets accepts a message signed by either.
    both = StandardWebhookVerifier([new, SECRET], clock=Now(), check_replay=False)
    assert both.verify(BODY, sign_standard(BODY, SECRET, MSG_ID, T0))
    assert both.verify(BODY, sign_standard(BODY, new, MSG_ID, T0))


def test_standard_replay_cache_hit_is_refused_and_release_forgets_it() -> None:
    verifier = standard()
    headers = sign_standard(BODY, SECRET, MSG_ID, T0)
    verified = verifier.verify(BODY, headers)
    assert verifier.replay_cache is not None
    assert verified.replay_key is not None and verified.replay_key in verifier.replay_cache
    assert refused(lambda: verifier.verify(BODY, headers)) == "replayed"
    # Same event id, signed afresh by the provider (a retry): verified, deduplicated downstream.
    assert verifier.verify(BODY, sign_standard(BODY, SECRET, MSG_ID, T0 + 5)).webhook_id == MSG_ID
    verifier.release(verified)
    assert verifier.verify(BODY, headers)


def test_standard_uses_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    headers = sign_standard(BODY, [generate_standard_secret(), SECRET], MSG_ID, T0)
    standard().verify(BODY, headers)
    assert len(calls) == 2  # one key, two candidate signatures: both compared


# -- the replay cache -------------------------------------------------------------------------


def test_replay_cache_expires_keys_with_its_clock() -> None:
    now = Now(0)
    cache = ReplayCache(ttl=10, clock=now)
    assert cache.add("a")
    assert not cache.add("a")
    now.value = 9.9
    assert "a" in cache and not cache.add("a")
    now.value = 10
    assert "a" not in cache and len(cache) == 0
    assert cache.add("a")


def test_replay_cache_keeps_a_key_until_the_later_of_ttl_and_expires_at() -> None:
    now = Now(0)
    cache = ReplayCache(ttl=10, clock=now)
    cache.add("long", expires_at=100)
    now.value = 50
    assert "long" in cache
    now.value = 100
    assert "long" not in cache


def test_replay_cache_is_bounded_and_evicts_what_expires_soonest() -> None:
    now = Now(0)
    cache = ReplayCache(ttl=10, max_size=3, clock=now)
    cache.add("late", expires_at=1000)
    cache.add("soon")
    cache.add("mid", expires_at=500)
    cache.add("new", expires_at=700)
    assert len(cache) == 3
    assert "soon" not in cache
    assert all(k in cache for k in ("late", "mid", "new"))
    for i in range(1000):
        cache.add(f"k{i}")
    assert len(cache) == 3


def test_replay_cache_discard_and_validation() -> None:
    cache = ReplayCache(ttl=10, clock=Now(0))
    cache.add("a")
    cache.discard("a")
    cache.discard("never")
    assert cache.add("a")
    with pytest.raises(ValueError):
        ReplayCache(ttl=0)
    with pytest.raises(ValueError):
        ReplayCache(max_size=0)
