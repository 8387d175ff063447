"""Standard Webhooks signatures (https://www.standardwebhooks.com): `whsec_` secrets and the
`webhook-*` headers, signed with the `standardwebhooks` library so that receivers using it (or
Svix's verifier, the same scheme) accept our requests as they are.

A secret is `whsec_` + the base64 of 24 to 64 random bytes (the spec's bounds for HMAC-SHA256
keys); the HMAC key is the decoded bytes. Each signature is `v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`; while a secret is being rotated there is one per active secret,
space-separated, and a receiver accepts the request when any of them matches the secret it has.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from collections.abc import Sequence

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
GENERATED_KEY_BYTES = 32
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def new_secret() -> str:
    """A fresh `whsec_` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode()


def secret_problem(text: str) -> str | None:
    """Why `text` is not a usable `whsec_` secret, or None. The message never quotes it."""
    if not text.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r} (a Standard Webhooks secret)"
    encoded = text.removeprefix(SECRET_PREFIX)
    try:  # the padding may be left off, as the library allows
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX!r} followed by standard base64 (A-Z, a-z, 0-9, +, /, =)"
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        return (
            f"must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes; "
            f"this one encodes {len(key)}"
        )
    return None


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64>` per secret, in the order given."""
    at = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    payload = body.decode()
    return " ".join(Webhook(secret).sign(msg_id, at, payload) for secret in secrets_)


def headers(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one request."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(secrets_, msg_id, timestamp, body),
    }
