"""The service's two times, read in one place each.

- Service time, `Settings.now()`: every clinical and audit time (the fixed `fixed_now` in tests
  and replays, else the real time). Route handlers get it from `monitor.api.deps.Clock`.
- Real time, `wall_now()`: what is compared with other machines' clocks or with elapsed time:
  scheduler leases, retry and redelivery times, webhook signature timestamps, JWT replay
  windows.
"""

from __future__ import annotations

import datetime as dt


def wall_now() -> dt.datetime:
    """The machine's real time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
