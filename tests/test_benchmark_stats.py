"""The statistics the benchmarks print."""

from __future__ import annotations

import math

import pytest

from benchmarks.stats import percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),  # nearest rank: ceil(0.5 * 4) = 2nd
        ([1.0, 2.0, 3.0, 4.0], 0.75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 0.25, 1.0),  # order does not matter
        (list(range(1, 1001)), 0.99, 990),
        (list(range(1, 1001)), 0.999, 999),
    ],
)
def test_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_no_values_is_nan() -> None:
    assert math.isnan(percentile([], 0.99))


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5, 99.0])
def test_a_quantile_outside_zero_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="quantile must be in"):
        percentile([1.0], q)
