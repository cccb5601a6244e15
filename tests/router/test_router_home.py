"""A new session's home worker: the same in every router, spread evenly, and
moved only when its own worker goes."""

from __future__ import annotations

from collections import Counter

from bridgepool_router.core.balancer import WorkerView, home

WORKERS = [WorkerView(f"web-{c}") for c in "abcd"]


def test_every_router_computes_the_same_home_whatever_order_it_lists_workers_in() -> None:
    for n in range(200):
        session = f"s-{n}"
        first = home(session, WORKERS)
        assert first is not None
        assert home(session, list(reversed(WORKERS))) == first


def test_sessions_spread_evenly() -> None:
    counts = Counter(home(f"s-{n}", WORKERS).worker for n in range(4000))  # type: ignore[union-attr]
    assert set(counts) == {w.worker for w in WORKERS}
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_a_worker_leaving_moves_only_its_own_sessions() -> None:
    before = {f"s-{n}": home(f"s-{n}", WORKERS) for n in range(500)}
    without_b = [w for w in WORKERS if w.worker != "web-b"]
    for session, was in before.items():
        now = home(session, without_b)
        assert was is not None and now is not None
        if was.worker != "web-b":
            assert now == was


def test_no_worker_no_home() -> None:
    assert home("s", []) is None
