"""Standard Webhooks signing (monitor/webhooks/signing.py): `whsec_` secrets, and headers that
the spec's formula, the `standardwebhooks` library and Svix's verifier all accept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from monitor.webhooks import signing

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NEXT = signing.new_secret()
BODY = b'{"type":"alert","delivery_id":7,"alert":{"id":3}}'


def by_hand(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The spec's formula, written out: base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_a_generated_secret_is_whsec_and_32_random_bytes() -> None:
    made = {signing.new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        assert signing.secret_problem(secret) is None


@pytest.mark.parametrize("size", [24, 32, 64])
def test_secrets_of_24_to_64_bytes_are_accepted_padded_or_not(size: int) -> None:
    encoded = base64.b64encode(b"k" * size).decode()
    assert signing.secret_problem("whsec_" + encoded) is None
    assert signing.secret_problem("whsec_" + encoded.rstrip("=")) is None
    now = int(time.time())
    headers = signing.headers(["whsec_" + encoded.rstrip("=")], "1", now, BODY)
    assert Webhook("whsec_" + encoded).verify(BODY, headers)  # the same key


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("s3cret-of-the-old-kind-xx", "must start with 'whsec_'"),
        (base64.b64encode(KEY).decode(), "must start with 'whsec_'"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "standard base64"),
        ("whsec_" + base64.b64encode(KEY).decode() + "==", "standard base64"),
        ("whsec_", "encodes 0"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "this one encodes 23"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "this one encodes 65"),
    ],
    ids=["old-kind", "no-prefix", "urlsafe", "overpadded", "empty", "23-bytes", "65-bytes"],
)
def test_an_unusable_secret_is_refused_saying_why_without_quoting_it(secret: str, why: str) -> None:
    problem = signing.secret_problem(secret)
    assert problem is not None
    assert why in problem
    assert secret.removeprefix("whsec_") not in problem or secret == "whsec_"


def test_one_secret_signs_as_the_spec_says_and_the_library_verifies() -> None:
    now = int(time.time())
    headers = signing.headers([SECRET], "7", now, BODY)
    assert headers == {
        "webhook-id": "7",
        "webhook-timestamp": str(now),
        "webhook-signature": by_hand(KEY, "7", now, BODY),
    }
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "alert",
        "delivery_id": 7,
        "alert": {"id": 3},
    }
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(NEXT).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY + b" ", headers)  # the body changed
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY, headers | {"webhook-id": "8"})  # another delivery's id


def test_while_rotating_each_active_secret_signs_and_either_verifies() -> None:
    now = int(time.time())
    headers = signing.headers([SECRET, NEXT], "7", now, BODY)
    first, second = headers["webhook-signature"].split(" ")
    assert first == by_hand(KEY, "7", now, BODY)
    next_key = base64.b64decode(NEXT.removeprefix("whsec_"))
    assert second == by_hand(next_key, "7", now, BODY)
    assert Webhook(SECRET).verify(BODY, headers)
    assert Webhook(NEXT).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


@pytest.mark.parametrize("skew_s", [-301, 301])
def test_the_library_refuses_a_timestamp_over_five_minutes_off(skew_s: int) -> None:
    at = int(time.time()) + skew_s
    headers = signing.headers([SECRET], "7", at, BODY)
    with pytest.raises(WebhookVerificationError, match="timestamp too"):
        Webhook(SECRET).verify(BODY, headers)


def test_svix_verifies_the_same_headers_under_either_prefix() -> None:
    now = int(time.time())
    headers = signing.headers([SECRET, NEXT], "7", now, BODY)
    SvixWebhook(SECRET).verify(BODY, headers)  # webhook-* headers as sent
    SvixWebhook(NEXT).verify(BODY, headers)
    as_svix = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    SvixWebhook(SECRET).verify(BODY, as_svix)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(signing.new_secret()).verify(BODY, headers)
