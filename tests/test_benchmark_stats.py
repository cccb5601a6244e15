"""The statistics the benchmarks print."""

from __future__ import annotations

import math

import pytest

from benchmarks.router_overhead import added_ratio, print_own_count
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


def test_the_router_histogram_summary_names_the_bucket_each_percentile_falls_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Cumulative counts, as Prometheus histograms keep them: 1,000 calls.
    buckets = {0.00005: 600.0, 0.0001: 980.0, 0.00025: 995.0, 0.001: 1000.0, math.inf: 1000.0}
    print_own_count(buckets)
    line = capsys.readouterr().out
    assert "(1000 calls" in line
    assert "<= 0.1 ms 98.00%" in line and "<= 1 ms 100.00%" in line
    assert "p99 <= 0.25 ms, p99.9 <= 1 ms" in line


def test_an_empty_router_histogram_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_own_count({})
    assert "no calls" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("router_ms", "base_ms", "shown"),
    [(1.0, 0.5, "2.00x"), (0.0, 0.5, "0.00x"), (3.0, 0.0, "-"), (3.0, -0.7, "-")],
)
def test_added_latency_ratio_is_left_out_where_the_baseline_added_nothing(
    router_ms: float, base_ms: float, shown: str
) -> None:
    assert added_ratio(router_ms, base_ms) == shown
