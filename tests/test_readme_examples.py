"""The README's code that users copy must work: the webhook receiver's signature check."""

from __future__ import annotations

import pathlib
import re
import time
from typing import Any

from monitor.webhooks.signing import headers, new_secret

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _receiver_check() -> Any:
    text = README.read_text()
    marker = text.index("A receiver checks a request like this:")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.DOTALL)
    assert block is not None, "the README lost its receiver example"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["verify"]


def test_the_readme_receiver_accepts_what_the_service_signs_and_nothing_else() -> None:
    verify = _receiver_check()
    secret, successor = new_secret(), new_secret()
    body = b'{"type":"alert","delivery_id":1,"alert":{"id":1}}'
    now = int(time.time())
    signed = headers([secret], "1", now, body)
    assert verify(secret, signed, body) == {"type": "alert", "delivery_id": 1, "alert": {"id": 1}}
    assert verify(successor, signed, body) is None
    assert verify(secret, signed, body + b" ") is None
    assert verify(secret, signed | {"webhook-id": "2"}, body) is None
    stale = headers([secret], "1", now - 3600, body)
    assert verify(secret, stale, body) is None
    rotating = headers([secret, successor], "1", now, body)
    assert verify(secret, rotating, body) is not None
    assert verify(successor, rotating, body) is not None
