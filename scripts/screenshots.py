"""The README's screenshots, made from the demo as a newcomer sees it.

    .venv/bin/python scripts/screenshots.py        (or: make screenshots)

Starts `python -m monitor demo` on a free port with a throwaway data directory (never var/ or
var/demo), acknowledges most alerts (as admin) (the newest few and one urgent stay open),
and photographs, in Debian's chromium (/usr/bin/chromium) driven by Playwright at desktop width:

    docs/nurse-feed.png        the alert feed at /, logged in with the demo's nurse token
    docs/patient-page.png      /patients/BZ-A02: course, grades chart, decision timeline
    docs/adherence-report.png  the HTML adherence report (auditor token) over the demo's period

Needs the dev extra (playwright) and chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.common.browser import CHROMIUM, LAUNCH_ARGS  # noqa: E402

DESKTOP = {"width": 1280, "height": 900}
REPORT = {"width": 1100, "height": 1500}  # the report's column, its headline and first charts
PATIENT = "BZ-A02"  # the D1 reduction chain 1.3 -> 1.0 -> 0.7: the chart shows it
LEFT_OPEN = 7  # the newest alerts, left unacknowledged (the feed shows them on top)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Demo:
    """`python -m monitor demo` in a subprocess; its printed lines and tokens."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env["PYTHONPATH"] = str(ROOT)
        env["MONITOR_DATA_DIR"] = str(directory / "var")  # the demo refuses to wipe it
        command = [sys.executable, "-m", "monitor", "demo", "--port", str(self.port)]
        command += ["--demo-dir", str(directory / "demo")]
        self.log = directory / "demo.log"  # its JSON log, shown if something fails
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        self.printed = self._read_until_tokens()
        self.tokens = dict(line.split() for line in self.printed if line.startswith("  "))
        found = re.search(r"\(first (\d{4}-\d{2}-\d{2})\)", self.printed[0])
        if found is None:
            raise SystemExit(f"screenshots: unexpected demo output: {self.printed[0]!r}")
        self.first = dt.date.fromisoformat(found.group(1))
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._wait_listening()

    def _read_until_tokens(self, timeout: float = 120) -> list[str]:
        lines: queue.Queue[str] = queue.Queue()

        def read(stream: IO[str]) -> None:
            for line in stream:
                lines.put(line.rstrip("\n"))

        assert self.process.stdout is not None
        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        printed: list[str] = []
        while not printed or not printed[-1].lstrip().startswith("auditor"):
            try:
                printed.append(lines.get(timeout=timeout))
            except queue.Empty:
                tail = self.log.read_text()[-2000:]
                raise SystemExit(f"screenshots: the demo printed no tokens:\n{tail}") from None
        return printed

    def _wait_listening(self) -> None:
        for _ in range(400):
            try:
                self.http.get("/healthz")
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise SystemExit(f"screenshots: the demo does not answer at {self.url}")

    def call(self, method: str, path: str, role: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        response = self.http.request(method, path, headers=headers, **kwargs)
        response.raise_for_status()
        return response

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def acknowledge_most(demo: Demo) -> tuple[int, int]:
    """Acknowledge every alert but the newest LEFT_OPEN and the newest urgent one (as admin:
    each care role may acknowledge only its own audiences' alerts)."""
    alerts = demo.call("GET", "/v1/alerts", "admin", params={"limit": 500}).json()["alerts"]
    urgent = [a["id"] for a in alerts if a["severity"] == "urgent"][:1]
    keep = {a["id"] for a in alerts[:LEFT_OPEN]} | set(urgent)
    done = 0
    for alert in alerts:
        if alert["id"] not in keep and not alert["acknowledged"]:
            demo.call("POST", f"/v1/alerts/{alert['id']}/ack", "admin", json={"by": "ward team"})
            done += 1
    return done, len(alerts)


def log_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.locator("#login").wait_for(state="visible")
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("screenshots: playwright is missing (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    if not os.access(CHROMIUM, os.X_OK):
        print(f"screenshots: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bipn-screenshots-") as scratch:
        demo = Demo(pathlib.Path(scratch))
        try:
            print(demo.printed[0])
            acked, total = acknowledge_most(demo)
            print(f"acknowledged {acked} of {total} alerts")
            # the demo's whole period: from the first month of its events to now (the minute)
            start = dt.datetime.combine(demo.first.replace(day=1), dt.time(), dt.UTC)
            # (the next whole minute: the alerts were raised in this one)
            end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
            report = demo.call(
                "GET",
                "/v1/reports/adherence",
                "auditor",
                params={"from": start.isoformat(), "to": end.isoformat(), "format": "html"},
            ).text
            report_file = pathlib.Path(scratch) / "report.html"
            report_file.write_text(report, encoding="utf-8")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=LAUNCH_ARGS
                )
                context = browser.new_context(viewport=DESKTOP)
                page = context.new_page()
                log_in(page, demo.url + "/", demo.tokens["nurse"])
                page.wait_for_selector("#feed", state="visible")
                page.wait_for_selector("#live.on", state="visible")
                page.wait_for_selector("#alerts [data-alert-id]")
                page.screenshot(path=str(args.out / "nurse-feed.png"))
                page.goto(f"{demo.url}/patients/{PATIENT}")
                page.wait_for_selector("#patient", state="visible")
                page.wait_for_selector("#decisions li")
                page.wait_for_selector("#chart line", state="attached")
                page.screenshot(path=str(args.out / "patient-page.png"))
                page.set_viewport_size(REPORT)
                page.goto(report_file.as_uri())
                page.wait_for_selector("figure svg")
                page.screenshot(path=str(args.out / "adherence-report.png"))
                context.close()
                browser.close()
        finally:
            demo.stop()
    for name in ("nurse-feed.png", "patient-page.png", "adherence-report.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
