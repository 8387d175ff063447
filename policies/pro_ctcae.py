"""The PRO-CTCAE composite grade of "numbness or tingling in your hands or feet" (POLICY V9).

Patients answer severity and interference (each 0-4, over the past 7 days); the published
composite grading algorithm (Basch et al., Clin Trials 2021) turns the pair into one grade 0-3,
which a patient report carries as its `sensory` grade. Severity 0 ends the item (interference is
not asked), so it is grade 0 whatever interference says.
"""

from __future__ import annotations

# rows: severity 1-4; columns: interference 0-4
_COMPOSITE: tuple[tuple[int, ...], ...] = (
    (1, 1, 1, 2, 2),  # mild
    (1, 1, 2, 2, 3),  # moderate
    (1, 2, 2, 3, 3),  # severe
    (2, 2, 2, 3, 3),  # very severe
)


def composite_grade(severity: int, interference: int | None) -> int:
    """The composite grade 0-3; `interference` may be None only when severity is 0."""
    if not 0 <= severity <= 4:
        raise ValueError(f"severity {severity!r} is not 0-4")
    if severity == 0:
        return 0
    if interference is None or not 0 <= interference <= 4:
        raise ValueError(f"interference {interference!r} is not 0-4 (severity {severity} asks it)")
    return _COMPOSITE[severity - 1][interference]
