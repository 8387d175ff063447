"""The composite grade, cell by cell against POLICY V9's table (written out here as rows)."""

import pytest

from policies.pro_ctcae import composite_grade

TABLE = {
    1: (1, 1, 1, 2, 2),
    2: (1, 1, 2, 2, 3),
    3: (1, 2, 2, 3, 3),
    4: (2, 2, 2, 3, 3),
}
CELLS = [(s, i, grade) for s, row in TABLE.items() for i, grade in enumerate(row)]


@pytest.mark.parametrize(("severity", "interference", "grade"), CELLS)
def test_each_cell_of_the_composite_table(severity: int, interference: int, grade: int) -> None:
    assert composite_grade(severity, interference) == grade


@pytest.mark.parametrize("interference", [None, 0, 4])
def test_no_numbness_is_grade_0_whatever_interference_says(interference: int | None) -> None:
    assert composite_grade(0, interference) == 0


@pytest.mark.parametrize(("severity", "interference"), [(5, 0), (-1, 0), (2, None), (2, 5)])
def test_answers_outside_the_scale_are_refused(severity: int, interference: int | None) -> None:
    with pytest.raises(ValueError, match="is not 0-4"):
        composite_grade(severity, interference)
