"""A router's share of a worker other routers use too: halved when the worker
says it is busy, grown back as calls go through, never below one call."""

from __future__ import annotations

import pytest

from bridgepool_router.core.balancer import share_after_busy, share_after_success


@pytest.mark.parametrize(("share", "after"), [(8.0, 4.0), (3.0, 1.5), (1.5, 1.0), (1.0, 1.0)])
def test_busy_halves_the_share_down_to_one_call(share: float, after: float) -> None:
    assert share_after_busy(share) == after


def test_calls_that_go_through_grow_it_back_slowly_to_the_capacity() -> None:
    share, calls = 1.0, 0
    while share < 4.0:
        share = share_after_success(share, 4)
        calls += 1
    # About four shares' worth of calls per slot: (4 * 4 - 1) / 2 * 4 = 30.
    assert share == 4.0 and 20 <= calls <= 40
    assert share_after_success(4.0, 4) == 4.0
