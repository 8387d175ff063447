"""The Makefile's targets run the command lines the README gives (`make -n`: printed, not run)."""

from __future__ import annotations

import pathlib
import shlex
import shutil
import subprocess

import pytest

from monitor.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]


def planned(*args: str) -> list[list[str]]:
    """The commands `make -n ARGS` would run that call the monitor (`.venv/bin/python -m ...`)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    )
    commands = [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]
    return [c for c in commands if c[:3] == [".venv/bin/python", "-m", "monitor"]]


@pytest.mark.parametrize(("target", "command"), [("run", "serve"), ("demo", "demo")])
def test_run_and_demo_listen_on_127_0_0_1_8000_by_default(target: str, command: str) -> None:
    (argv,) = planned(target)
    assert argv[3:] == [command, "--host", "127.0.0.1", "--port", "8000"]


@pytest.mark.parametrize(("target", "command"), [("run", "serve"), ("demo", "demo")])
def test_run_and_demo_take_port_and_host(target: str, command: str) -> None:
    (argv,) = planned(target, "PORT=8123", "HOST=0.0.0.0")
    assert argv[3:] == [command, "--host", "0.0.0.0", "--port", "8123"]
    args = build_parser().parse_args(argv[3:])  # a command line the CLI accepts
    assert (args.host, args.port) == ("0.0.0.0", 8123)
