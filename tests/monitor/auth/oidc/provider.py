"""A real OpenID Connect provider for the sign-in tests: panva's oidc-provider (npm), run by
provider.mjs in this directory.

Its packages are installed with `npm ci` from the committed package-lock.json into a cache
directory keyed by the lock file's hash (`MONITOR_TEST_NODE_CACHE`, default
~/.cache/bipn-monitor), once per machine, so a clean clone needs nothing but node and npm. Without
them the tests skip; with CI set they fail instead (the policy of tests/common/browser.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

HERE = pathlib.Path(__file__).parent
SCRIPT = HERE / "provider.mjs"
LOCK = HERE / "package-lock.json"
START_TIMEOUT_S = 30.0
AUDIENCE = "https://bipn-monitor.test/api"
OTHER_AUDIENCE = "https://another-service.test/api"


def require_node() -> tuple[str, str]:
    """The node and npm executables; skips when either is missing, fails when CI is set."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    problem = "node and npm are needed to run the test OpenID Connect provider"
    if os.environ.get("CI"):
        pytest.fail(f"{problem}, and CI is set: the sign-in tests must run")
    pytest.skip(f"{problem}: sign-in tests skipped (set CI to insist)")


def installed_packages(npm: str) -> pathlib.Path:
    """The directory holding package.json, the lock and node_modules (`npm ci` on first use;
    concurrent test runs wait for each other on a file lock)."""
    base = pathlib.Path(
        os.environ.get("MONITOR_TEST_NODE_CACHE") or pathlib.Path.home() / ".cache/bipn-monitor"
    )
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    target = base / f"oidc-provider-{digest}"
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".oidc-provider.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "node_modules" / ".installed").exists():
            target.mkdir(exist_ok=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(HERE / name, target / name)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci of the test OpenID Connect provider failed:\n{done.stderr}")
            (target / "node_modules" / ".installed").touch()
        # the script next to its node_modules, so that its imports resolve there
        copy = target / f"provider.{os.getpid()}.mjs"
        shutil.copyfile(SCRIPT, copy)
        copy.replace(target / "provider.mjs")
    return target


@dataclass(frozen=True)
class RunningProvider:
    issuer: str
    config: dict[str, Any]

    def client_credentials(
        self, client_id: str, secret: str, resource: str = AUDIENCE
    ) -> dict[str, Any]:
        """An access token for a machine client (RFC 6749 4.4), as the provider issues it."""
        response = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "monitor", "resource": resource},
            auth=(client_id, secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        token: dict[str, Any] = response.json()
        return token


@contextlib.contextmanager
def running_provider(port: int, config: dict[str, Any]) -> Iterator[RunningProvider]:
    """oidc-provider on 127.0.0.1:`port` with `config` (see provider.mjs), stopped afterwards."""
    node, npm = require_node()
    directory = installed_packages(npm)
    full = {"port": port, "audience": AUDIENCE, "other_audience": OTHER_AUDIENCE, **config}
    env = {**os.environ, "OIDC_TEST_CONFIG": json.dumps(full)}
    process = subprocess.Popen(
        [node, "provider.mjs"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("ready "):
                ready.set()

    reader = threading.Thread(target=read, name="oidc-provider-output", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.1):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the test OpenID Connect provider did not start:\n" + "\n".join(lines))
        yield RunningProvider(issuer=f"http://127.0.0.1:{port}", config=full)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
