"""The README's code that users copy must work: the webhook receiver's signature check."""

from __future__ import annotations

import pathlib
import re
import time
from typing import Any

from monitor.webhooks.delivery import sign

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _receiver_check() -> Any:
    text = README.read_text()
    marker = text.index("A receiver checks it like this:")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.DOTALL)
    assert block is not None, "the README lost its receiver example"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["verify"]


def test_the_readme_receiver_accepts_what_the_service_signs_and_nothing_else() -> None:
    verify = _receiver_check()
    body = b'{"type":"alert","delivery_id":1,"alert":{"id":1}}'
    now = int(time.time())
    headers = {
        "X-BIPN-Timestamp": str(now),
        "X-BIPN-Signature": sign("s3cret-s3cret-xx", now, body),
    }
    assert verify("s3cret-s3cret-xx", headers, body)
    assert not verify("another-secret-xx", headers, body)
    assert not verify("s3cret-s3cret-xx", headers, body + b" ")
    old = now - 3600
    stale = {"X-BIPN-Timestamp": str(old), "X-BIPN-Signature": sign("s3cret-s3cret-xx", old, body)}
    assert not verify("s3cret-s3cret-xx", stale, body)
