"""A small ward for the screens' browser tests (absolute times; the service's clock is
`tests.conftest.FIXED_NOW`, 1 Oct 2026 12:00 UTC), under version 2 (the 72-hour rule).

- PT-A (unit U-A): two dose reductions in January and February, the second not followed (1.0
  given where 0.7 was advised), seven months without a record, then grade 3 in September
  (discontinue) and worse motor a week later (an escalation to immunotherapy, unanswered);
  its body surface area is known (doses in mg too).
- PT-B (U-A): a new course, baseline graded, one dose: cleared (2.0 m², 2.6 mg).
- PT-C (U-A): its reassessment overdue since August.
- PT-D (U-A): dosed yesterday (the 72-hour rule) with its reassessment due in two days.
- PT-E (U-B): discontinued in March; the escalation it raised is about 12 Apr 2026 09:00, but
  its events came in today (the alert is raised 1 Oct 2026).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.common import factories as f


def utc(month: int, day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, tzinfo=dt.UTC)


def ward_events() -> list[dict[str, Any]]:
    a = {"patient": "PT-A"}
    b, c, d, e = ({"patient": f"PT-{p}"} for p in "BCDE")
    return [
        f.enrollment(utc(1, 5), event_id="a-e", unit="U-A", height_cm=170, weight_kg=70, **a),
        f.assessment(utc(1, 5, 8), event_id="a-a0", sensory=0, motor=0, **a),
        f.administration(utc(1, 6), 1.3, event_id="a-d1", **a),
        f.assessment(utc(1, 26), event_id="a-a1", sensory=1, motor=0, **a),
        f.administration(utc(1, 27), 1.0, event_id="a-d2", **a),
        f.assessment(utc(2, 16), event_id="a-a2", sensory=2, motor=0, pain=1, **a),
        f.administration(utc(2, 17), 1.0, event_id="a-d3", **a),
        f.assessment(utc(9, 20), event_id="a-a3", sensory=3, motor=0, pain=1, **a),
        f.assessment(utc(9, 28), event_id="a-a4", sensory=3, motor=2, pain=1, **a),
        f.enrollment(utc(9, 21), event_id="b-e", unit="U-A", height_cm=180, weight_kg=80, **b),
        f.assessment(utc(9, 21, 8), event_id="b-a0", sensory=0, **b),
        f.administration(utc(9, 22), 1.3, event_id="b-d1", **b),
        f.enrollment(utc(7, 20), event_id="c-e", unit="U-A", **c),
        f.assessment(utc(7, 20, 8), event_id="c-a0", sensory=0, **c),
        f.administration(utc(7, 21), 1.3, event_id="c-d1", **c),
        f.enrollment(utc(9, 12), event_id="d-e", unit="U-A", **d),
        f.assessment(utc(9, 12, 8), event_id="d-a0", sensory=0, **d),
        f.administration(utc(9, 13), 1.3, event_id="d-d1", **d),
        f.administration(utc(9, 30), 1.3, event_id="d-d2", **d),
        f.enrollment(utc(3, 2), event_id="e-e", unit="U-B", **e),
        f.assessment(utc(3, 2, 8), event_id="e-a0", sensory=0, motor=0, **e),
        f.administration(utc(3, 3), 1.3, event_id="e-d1", **e),
        f.assessment(utc(3, 30), event_id="e-a1", sensory=3, motor=0, **e),
        f.assessment(utc(4, 12), event_id="e-a2", sensory=3, motor=2, **e),
    ]
