"""The one backoff every component waits by, by a table of cases."""

from __future__ import annotations

import pytest

from bridgepool.backoff import backoff_seconds


@pytest.mark.parametrize(
    ("retry", "base", "cap", "jitter", "floor", "expected"),
    [
        # the first retry waits the base
        (1, 0.1, 1.0, 1.0, 0.0, 0.1),
        # each retry after it waits twice as long as the one before
        (2, 0.1, 1.0, 1.0, 0.0, 0.2),
        (3, 0.1, 1.0, 1.0, 0.0, 0.4),
        # never longer than the cap
        (5, 0.1, 1.0, 1.0, 0.0, 1.0),
        # a cap below the base wins too (the operator's failed passes take the larger)
        (1, 5.0, 2.0, 1.0, 0.0, 2.0),
        # far along a run of failures: the cap, not an overflow
        (5000, 0.1, 1.0, 1.0, 0.0, 1.0),
        # full jitter: the draw scales the whole wait, the capped one too
        (3, 0.1, 1.0, 0.5, 0.0, 0.2),
        (10, 0.1, 1.0, 0.25, 0.0, 0.25),
        (2, 0.1, 1.0, 0.0, 0.0, 0.0),
        # the floor comes on top of the drawn wait, so a draw of 0 still waits
        (1, 1.0, 30.0, 0.0, 0.1, 0.1),
        (7, 1.0, 30.0, 0.5, 0.1, 15.1),
    ],
)
def test_backoff_seconds(
    retry: int, base: float, cap: float, jitter: float, floor: float, expected: float
) -> None:
    got = backoff_seconds(retry, base=base, cap=cap, jitter=jitter, floor=floor)
    assert got == pytest.approx(expected)


def test_without_jitter_or_floor_the_wait_is_the_schedule() -> None:
    assert [backoff_seconds(n, base=0.05, cap=1.0) for n in range(1, 7)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    )
