"""The router's pure core, by tables of cases: no sockets, no sleeps, a fake clock."""

from __future__ import annotations

import gc

import pytest

from bridgepool.spec import CircuitBreakerSettings, RetrySettings, RouterHealthSettings
from bridgepool_router.core.balancer import WorkerView, candidates, ejected, least_loaded
from bridgepool_router.core.breaker import BreakerState, CircuitBreaker
from bridgepool_router.core.health import HealthTracker
from bridgepool_router.core.retry import (
    FailureKind,
    NextAttempt,
    RetryBudget,
    Tally,
    backoff_seconds,
    may_retry,
    next_attempt,
)
from bridgepool_router.core.sessions import (
    Rebind,
    Rebound,
    SessionCopy,
    SessionTable,
    check_binding,
    choose_holder,
)
from bridgepool_router.core.wait_queue import WaitQueue

# -- session table ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (action, session, worker, time) ... -> lookup result at the last step
        ([("bind", "s", "w1", 0), ("lookup", "s", None, 299)], "w1"),
        ([("bind", "s", "w1", 0), ("lookup", "s", None, 300)], None),
        # sliding: each lookup renews the binding
        ([("bind", "s", "w1", 0), ("lookup", "s", None, 200), ("lookup", "s", None, 450)], "w1"),
        ([("bind", "s", "w1", 0), ("forget", "s", None, 1), ("lookup", "s", None, 2)], None),
        ([("bind", "s", "w1", 0), ("bind", "s", "w2", 1), ("lookup", "s", None, 2)], "w2"),
        ([("lookup", "unknown", None, 0)], None),
    ],
)
def test_session_table(
    steps: list[tuple[str, str, str | None, float]], expected: str | None
) -> None:
    table = SessionTable(idle_ttl_seconds=300)
    result: str | None = None
    for action, sid, worker, now in steps:
        if action == "bind":
            assert worker is not None
            table.bind(sid, worker, now)
        elif action == "forget":
            table.forget(sid)
        else:
            result = table.lookup(sid, now)
    assert result == expected


def test_session_table_expires_and_counts() -> None:
    table = SessionTable(idle_ttl_seconds=10)
    table.bind("a", "w1", 0)
    table.bind("b", "w1", 5)
    table.bind("c", "w2", 5)
    assert table.count_by_worker() == {"w1": 2, "w2": 1}
    assert table.expire(12) == 1
    assert table.count_by_worker() == {"w1": 1, "w2": 1}
    assert len(table) == 2


def test_session_table_marks_and_forgets_per_worker() -> None:
    table = SessionTable(idle_ttl_seconds=10)
    table.bind("a", "w1", 0)
    table.bind("b", "w2", 0)
    assert table.mark_lost("w1") == 1
    assert table.lost_on("a", "w1") and table.is_lost("a")
    assert not table.lost_on("a", "w2") and not table.lost_on("b", "w2")
    table.forget("a", "w2")  # bound elsewhere: kept
    assert table.lookup("a", 1) == "w1"
    table.forget("a", "w1")
    assert table.lookup("a", 1) is None
    table.bind("b", "w3", 1)  # a new binding is not lost
    assert not table.is_lost("b")


@pytest.mark.parametrize(
    ("steps", "counts", "lost"),
    [
        # (action, session, worker, time) ... -> sessions per worker, sessions lost
        ([("bind", "a", "w1", 0), ("bind", "b", "w1", 1)], {"w1": 2}, set()),
        # a rebinding moves the count
        ([("bind", "a", "w1", 0), ("bind", "a", "w2", 1)], {"w2": 1}, set()),
        ([("bind", "a", "w1", 0), ("forget", "a", None, 1)], {}, set()),
        ([("bind", "a", "w1", 0), ("forget", "a", "w2", 1)], {"w1": 1}, set()),
        # a lookup past the TTL drops the binding, and its count
        ([("bind", "a", "w1", 0), ("bind", "b", "w1", 5), ("lookup", "a", None, 10)],
         {"w1": 1}, set()),
        ([("bind", "a", "w1", 0), ("bind", "b", "w2", 5), ("expire", "", None, 10)],
         {"w2": 1}, set()),
        # a restart marks the worker's sessions lost, and keeps their count
        ([("bind", "a", "w1", 0), ("bind", "b", "w2", 0), ("restart", "", "w1", 1)],
         {"w1": 1, "w2": 1}, {"a"}),
        # bound again after the restart: fresh; bound before it: still lost
        ([("bind", "a", "w1", 0), ("bind", "b", "w1", 0), ("restart", "", "w1", 1),
          ("bind", "a", "w1", 2)], {"w1": 2}, {"b"}),
        # lost bindings that go are counted out like any other
        ([("bind", "a", "w1", 0), ("restart", "", "w1", 1), ("forget", "a", None, 2),
          ("bind", "c", "w1", 3)], {"w1": 1}, set()),
        # a worker with no bindings left is forgotten: its next binding is fresh
        ([("bind", "a", "w1", 0), ("restart", "", "w1", 1), ("expire", "", None, 10),
          ("bind", "b", "w1", 11)], {"w1": 1}, set()),
    ],
)  # fmt: skip
def test_session_table_counts_sessions_per_worker(
    steps: list[tuple[str, str, str | None, float]], counts: dict[str, int], lost: set[str]
) -> None:
    table = SessionTable(idle_ttl_seconds=10)
    for action, sid, worker, now in steps:
        if action == "bind":
            assert worker is not None
            table.bind(sid, worker, now)
        elif action == "forget":
            table.forget(sid, worker)
        elif action == "lookup":
            table.lookup(sid, now)
        elif action == "expire":
            table.expire(now)
        else:
            assert worker is not None
            table.mark_lost(worker)
    assert table.count_by_worker() == counts
    assert {w: table.sessions_on(w) for w in ("w1", "w2")} == {
        w: counts.get(w, 0) for w in ("w1", "w2")
    }
    assert sum(counts.values()) == len(table)
    assert {s for s in ("a", "b", "c") if table.is_lost(s)} == lost


def test_session_table_marks_only_fresh_sessions_lost_once() -> None:
    table = SessionTable(idle_ttl_seconds=10)
    table.bind("a", "w1", 0)
    table.bind("b", "w1", 0)
    assert table.mark_lost("w1") == 2
    assert table.mark_lost("w1") == 0  # already marked
    table.bind("c", "w1", 1)
    assert table.mark_lost("w1") == 1
    assert table.mark_lost("w2") == 0  # holds nothing


def test_session_table_expires_the_least_recently_used_first_in_batches() -> None:
    table = SessionTable(idle_ttl_seconds=10)
    for i, sid in enumerate("abcde"):
        table.bind(sid, "w1", i)
    assert table.lookup("a", 9) == "w1"  # renewed: now the most recently used
    assert table.expire(13, limit=2) == 2  # b and c, the oldest
    assert table.expire(13, limit=2) == 1  # d; e (used at 4) and a stay
    assert table.expire(13) == 0
    assert (table.lookup("a", 13), table.lookup("e", 13)) == ("w1", "w1")
    assert table.sessions_on("w1") == 2


def test_session_table_bindings_are_out_of_the_garbage_collectors_sight() -> None:
    """Plain tuples of atoms, which the collector stops tracking: a big table
    costs a full collection nothing (see core.sessions._Binding)."""
    table = SessionTable(idle_ttl_seconds=10)
    for i in range(100):
        table.bind(f"s{i}", "w1", 0)
    table.lookup("s1", 1)
    table.mark_lost("w1")
    gc.collect()
    assert not any(gc.is_tracked(b) for b in table._bindings.values())


# -- rebinding a session ------------------------------------------------------------

GONE, RESTARTED, UNREACHABLE = (
    Rebound.WORKER_GONE,
    Rebound.WORKER_RESTARTED,
    Rebound.WORKER_UNREACHABLE,
)


@pytest.mark.parametrize(
    ("present", "state_lost", "breaker_open", "expected"),
    [
        (True, False, False, None),  # the session stays
        (False, False, False, GONE),
        (False, True, True, GONE),  # gone wins: nothing to reach or restart
        (True, True, False, RESTARTED),
        (True, True, True, RESTARTED),
        (True, False, True, UNREACHABLE),
    ],
)
def test_check_binding(
    present: bool, state_lost: bool, breaker_open: bool, expected: Rebound | None
) -> None:
    rebind = check_binding("w1", present=present, state_lost=state_lost, breaker_open=breaker_open)
    assert (rebind.reason if rebind else None) == expected
    assert rebind is None or rebind.previous == "w1"


def C(worker: str, last_activity: float) -> SessionCopy:
    return SessionCopy(worker, last_activity)


@pytest.mark.parametrize(
    ("reason", "copies", "open_breakers", "expected"),
    [
        # (the binding named w1) nobody holds the session: place it afresh
        (GONE, [], [], None),
        (RESTARTED, [], [], None),
        # another router moved it: follow
        (GONE, [C("w2", 5)], [], "w2"),
        (UNREACHABLE, [C("w2", 5)], [], "w2"),
        (RESTARTED, [C("w2", 5)], [], "w2"),
        # several copies: the most recently used wins
        (GONE, [C("w2", 5), C("w3", 7)], [], "w3"),
        # an unreachable worker's copy, or one behind an open breaker, is no use
        (UNREACHABLE, [C("w1", 9)], [], None),
        (UNREACHABLE, [C("w1", 9), C("w2", 5)], [], "w2"),
        (GONE, [C("w2", 5), C("w3", 7)], ["w3"], "w2"),
        (RESTARTED, [C("w1", 9)], ["w1"], None),
        # the restarted worker's copy is new: a copy elsewhere comes first ...
        (RESTARTED, [C("w1", 9), C("w2", 5)], [], "w2"),
        # ... and it is followed only when it is the only one
        (RESTARTED, [C("w1", 9)], [], "w1"),
    ],
)
def test_a_broken_binding_follows_the_copy_another_router_made(
    reason: Rebound, copies: list[SessionCopy], open_breakers: list[str], expected: str | None
) -> None:
    rebind = Rebind(reason, "w1")
    holder = choose_holder(
        copies, unusable=rebind.unusable(open_breakers), last_resort=rebind.last_resort
    )
    assert holder == expected


def test_choose_holder_on_a_table_miss_takes_the_most_recent_copy() -> None:
    assert choose_holder([]) is None
    assert choose_holder([C("w1", 3), C("w2", 1)]) == "w1"
    assert choose_holder([C("w1", 3), C("w2", 3)]) == "w2"  # ties: by name, the same everywhere


# -- circuit breaker ---------------------------------------------------------------

S = CircuitBreakerSettings(failure_threshold=3, success_threshold=2, open_seconds=10)


@pytest.mark.parametrize(
    ("events", "now", "state", "admits"),
    [
        ([], 0, BreakerState.CLOSED, True),
        (["f@0", "f@1"], 2, BreakerState.CLOSED, True),
        (["f@0", "f@1", "f@2"], 2, BreakerState.OPEN, False),
        # a success resets the consecutive count
        (["f@0", "f@1", "s@1", "f@2", "f@2"], 3, BreakerState.CLOSED, True),
        (["f@0", "f@1", "f@2"], 11.9, BreakerState.OPEN, False),
        (["f@0", "f@1", "f@2"], 12, BreakerState.HALF_OPEN, True),
        # half-open: one probe at a time
        (["f@0", "f@1", "f@2", "d@12"], 12, BreakerState.HALF_OPEN, False),
        (["f@0", "f@1", "f@2", "d@12", "s@12"], 12, BreakerState.HALF_OPEN, True),
        (["f@0", "f@1", "f@2", "d@12", "s@12", "d@12", "s@13"], 13, BreakerState.CLOSED, True),
        # a failed probe reopens for another open period
        (["f@0", "f@1", "f@2", "d@12", "f@12"], 21, BreakerState.OPEN, False),
        (["f@0", "f@1", "f@2", "d@12", "f@12"], 22, BreakerState.HALF_OPEN, True),
        # late successes while open change nothing
        (["f@0", "f@1", "f@2", "s@3", "s@4", "s@5"], 6, BreakerState.OPEN, False),
        # the worker restarted (r): probes go through at once, not after open_seconds
        (["f@0", "f@1", "f@2", "r@3"], 3, BreakerState.HALF_OPEN, True),
        (["f@0", "f@1", "f@2", "r@3", "d@3", "s@3", "d@3", "s@3"], 3, BreakerState.CLOSED, True),
        (["f@0", "f@1", "f@2", "r@3", "d@3", "f@3"], 4, BreakerState.OPEN, False),
        # ... and the old process's failures no longer count
        (["f@0", "f@1", "r@1", "f@2"], 2, BreakerState.CLOSED, True),
    ],
)
def test_breaker(events: list[str], now: float, state: BreakerState, admits: bool) -> None:
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(S, lambda a, b: transitions.append((a, b)))
    for event in events:
        kind, at = event.split("@")
        t = float(at)
        if kind == "r":
            breaker.worker_restarted()
            continue
        {"f": breaker.record_failure, "s": breaker.record_success, "d": breaker.on_dispatch}[kind](
            t
        )
    assert breaker.state(now) is state
    assert breaker.admits(now) is admits
    if state is BreakerState.OPEN:
        assert (BreakerState.CLOSED, BreakerState.OPEN) in transitions or (
            BreakerState.HALF_OPEN,
            BreakerState.OPEN,
        ) in transitions


# -- health tracker -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("checks", "up"),
    [
        ("", True),
        ("ff", True),
        ("fff", False),
        ("fffp", False),
        ("fffpp", True),
        ("ffpff", True),  # not consecutive
        ("x", False),  # refused: down at once
        ("xpp", True),
    ],
)
def test_health_fall_and_rise(checks: str, up: bool) -> None:
    tracker = HealthTracker(RouterHealthSettings(fall=3, rise=2))
    for c in checks:
        {"f": tracker.check_failed, "p": tracker.check_passed, "x": tracker.mark_down}[c]()
    assert tracker.up is up


# -- retry policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attempt", "sticky", "idempotent", "expected"),
    [
        (FailureKind.CONNECT, 1, False, False, True),
        (FailureKind.CONNECT, 1, True, False, True),
        (FailureKind.CONNECT, 3, False, False, False),  # max attempts reached
        (FailureKind.REFUSED_BY_WORKER, 2, True, False, True),
        (FailureKind.BUSY, 3, True, False, True),  # a busy worker: wait, no attempt spent
        (FailureKind.TIMEOUT, 1, False, False, False),
        (FailureKind.TIMEOUT, 1, False, True, True),
        (FailureKind.TIMEOUT, 1, True, True, False),  # sticky calls are never idempotent
        (FailureKind.WORKER_ERROR, 1, False, True, True),
        (FailureKind.WORKER_ERROR, 1, False, False, False),
        (FailureKind.WORKER_ERROR, 2, True, False, False),
        (FailureKind.LOST, 1, False, True, True),
        (FailureKind.LOST, 1, True, False, False),
    ],
)
def test_may_retry(
    kind: FailureKind, attempt: int, sticky: bool, idempotent: bool, expected: bool
) -> None:
    assert (
        may_retry(kind, attempt=attempt, max_attempts=3, sticky=sticky, idempotent=idempotent)
        is expected
    )


@pytest.mark.parametrize(
    ("kind", "attempt", "expected"),
    [
        # The answer did not come back: the worker answers the retry from its first.
        (FailureKind.LOST, 1, True),
        (FailureKind.TIMEOUT, 2, True),
        (FailureKind.LOST, 3, False),  # max attempts reached all the same
        # The worker's own error answer came back: it is the answer.
        (FailureKind.WORKER_ERROR, 1, False),
    ],
)
def test_a_sticky_call_with_a_call_id_is_retried_only_when_its_answer_was_lost(
    kind: FailureKind, attempt: int, expected: bool
) -> None:
    decided = may_retry(
        kind, attempt=attempt, max_attempts=3, sticky=True, idempotent=False, replayable=True
    )
    assert decided is expected


def test_a_retry_of_a_call_with_a_call_id_goes_back_to_its_worker() -> None:
    """A call that placed its session goes elsewhere on a retry; one with a call
    id goes back, where only its kept answer makes the retry safe."""
    decided = [
        next_attempt(
            FailureKind.LOST,
            Tally(),
            settings=RETRY,
            budget=RetryBudget(RETRY),
            now=0.0,
            remaining=5.0,
            sticky=False,
            idempotent=True,
            jitter=lambda: 0.5,
            replayable=replayable,
        )
        for replayable in (False, True)
    ]
    assert [(d.retry, d.elsewhere) for d in decided] == [(True, True), (True, False)]


RETRY = RetrySettings(max_attempts=3, base_backoff_seconds=0.1, max_backoff_seconds=1.0)
BUSY, CONNECT, TIMEOUT = FailureKind.BUSY, FailureKind.CONNECT, FailureKind.TIMEOUT


@pytest.mark.parametrize(
    ("failure", "tally", "sticky", "idempotent", "budget", "remaining", "expected"),
    [
        # a first connect failure: retry after backoff 1, on another worker
        (CONNECT, Tally(), False, False, 1, 9, NextAttempt(True, Tally(1), 0.05, True)),
        # sticky calls retry on their own worker
        (CONNECT, Tally(), True, False, 1, 9, NextAttempt(True, Tally(1), 0.05, False)),
        # backoff doubles with each attempt spent
        (CONNECT, Tally(1), False, False, 1, 9, NextAttempt(True, Tally(2), 0.1, True)),
        # the last attempt is spent: no retry
        (CONNECT, Tally(2), False, False, 1, 9, NextAttempt(False, Tally(3))),
        # not safe to retry: no retry, and no budget spent
        (TIMEOUT, Tally(), False, False, 0, 9, NextAttempt(False, Tally(1))),
        (TIMEOUT, Tally(), False, True, 1, 9, NextAttempt(True, Tally(1), 0.05, True)),
        (TIMEOUT, Tally(), True, True, 1, 9, NextAttempt(False, Tally(1))),
        # the budget is used up
        (CONNECT, Tally(), False, False, 0, 9, NextAttempt(False, Tally(1), budget_denied=True)),
        # busy: a wait, not an attempt; no budget needed; same worker; backoff grows
        # with the busy answers in a row
        (BUSY, Tally(2), False, False, 0, 9, NextAttempt(True, Tally(2, 1), 0.1, False)),
        (BUSY, Tally(0, 3), True, False, 0, 9, NextAttempt(True, Tally(0, 4), 0.4, False)),
        # a real attempt ends a run of busy answers
        (CONNECT, Tally(0, 3), True, False, 1, 9, NextAttempt(True, Tally(1), 0.05, False)),
        # the pause never outlasts the call
        (CONNECT, Tally(1), True, False, 1, 0.02, NextAttempt(True, Tally(2), 0.02, False)),
        (CONNECT, Tally(1), True, False, 1, -1, NextAttempt(True, Tally(2), 0.0, False)),
    ],
)
def test_next_attempt(
    failure: FailureKind,
    tally: Tally,
    sticky: bool,
    idempotent: bool,
    budget: int,
    remaining: float,
    expected: NextAttempt,
) -> None:
    retries = RetryBudget(RetrySettings(min_retries_per_second=budget, budget_percent=0))
    got = next_attempt(
        failure,
        tally,
        settings=RETRY,
        budget=retries,
        now=100.0,
        remaining=remaining,
        sticky=sticky,
        idempotent=idempotent,
        jitter=lambda: 0.5,
    )
    assert got.retry is expected.retry
    assert (got.tally, got.elsewhere, got.budget_denied) == (
        expected.tally,
        expected.elsewhere,
        expected.budget_denied,
    )
    assert got.pause == pytest.approx(expected.pause)
    # a retry spends the budget, except after a busy answer
    spent = got.retry and failure is not BUSY
    assert retries.try_spend(100.0) is (budget > int(spent))


@pytest.mark.parametrize(
    ("retry", "jitter", "expected"),
    [(1, 0.5, 0.05), (2, 0.5, 0.1), (3, 1.0, 0.4), (10, 1.0, 1.0), (10, 0.25, 0.25), (1, 0, 0)],
)
def test_backoff_full_jitter(retry: int, jitter: float, expected: float) -> None:
    settings = RetrySettings(base_backoff_seconds=0.1, max_backoff_seconds=1.0)
    assert backoff_seconds(retry, settings, jitter) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("min_per_s", "percent", "requests", "attempts", "allowed"),
    [
        (0, 0, 100, 5, 0),
        (2, 0, 0, 5, 2),
        (0, 20, 10, 5, 2),
        (1, 10, 50, 10, 6),
        (10, 20, 1000, 500, 210),
    ],
)
def test_retry_budget(
    min_per_s: float, percent: float, requests: int, attempts: int, allowed: int
) -> None:
    budget = RetryBudget(RetrySettings(min_retries_per_second=min_per_s, budget_percent=percent))
    now = 100.0
    for _ in range(requests):
        budget.record_request(now)
    granted = sum(budget.try_spend(now) for _ in range(attempts))
    assert granted == allowed


def test_retry_budget_window_slides() -> None:
    budget = RetryBudget(RetrySettings(min_retries_per_second=2, budget_percent=0))
    assert [budget.try_spend(10.0) for _ in range(3)] == [True, True, False]
    assert budget.try_spend(10.95) is False  # still inside the one-second window
    assert budget.try_spend(11.05) is True  # the first bucket has left the window


# -- worker choice ---------------------------------------------------------------------


def W(name: str, **kw: object) -> WorkerView:
    return WorkerView(worker=name, capacity=4, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("workers", "new_session", "exclude", "expected", "panic"),
    [
        ([W("a"), W("b")], False, (), {"a", "b"}, False),
        ([W("a", up=False), W("b")], False, (), {"b"}, False),
        ([W("a", draining=True), W("b")], True, (), {"b"}, False),
        # draining workers take no anonymous calls either while others can
        ([W("a", draining=True), W("b")], False, (), {"b"}, False),
        ([W("a", accepting_sessions=False), W("b")], True, (), {"b"}, False),
        ([W("a", accepting_sessions=False), W("b")], False, (), {"a", "b"}, False),
        ([W("a"), W("b")], False, ("a",), {"b"}, False),
        # nothing eligible: panic to every non-draining worker
        ([W("a", up=False), W("b", up=False), W("c", draining=True)], False, (), {"a", "b"}, True),
        ([W("a", draining=True)], False, (), set(), False),
        # ejection cap 50% of 2 workers = 1: the earlier opened stays out, the other is used
        (
            [
                W("a", breaker_admits=False, breaker_opened_at=1.0),
                W("b", breaker_admits=False, breaker_opened_at=2.0),
            ],
            False,
            (),
            {"b"},
            False,
        ),
    ],
)
def test_candidates(
    workers: list[WorkerView],
    new_session: bool,
    exclude: tuple[str, ...],
    expected: set[str],
    panic: bool,
) -> None:
    got = candidates(workers, new_session=new_session, max_ejection_percent=50, exclude=exclude)
    assert {w.worker for w in got.workers} == expected
    assert got.panic is panic


@pytest.mark.parametrize(
    ("n_blocked", "n_total", "percent", "n_ejected"),
    [(1, 1, 50, 0), (1, 2, 50, 1), (2, 2, 50, 1), (3, 10, 20, 2), (3, 3, 100, 3), (2, 4, 0, 0)],
)
def test_ejection_cap(n_blocked: int, n_total: int, percent: int, n_ejected: int) -> None:
    workers = [
        W(
            f"w{i}",
            breaker_admits=i >= n_blocked,
            breaker_opened_at=float(i) if i < n_blocked else None,
        )
        for i in range(n_total)
    ]
    out = ejected(workers, percent)
    assert len(out) == n_ejected
    assert out == {f"w{i}" for i in range(n_ejected)}  # earliest opened first


@pytest.mark.parametrize(
    ("workers", "rotation", "expected"),
    [
        ([W("a", in_flight=2), W("b", in_flight=1)], 0, "b"),
        ([W("a", in_flight=4), W("b", in_flight=4)], 0, None),  # all at capacity
        # load is relative to capacity
        (
            [WorkerView("a", in_flight=2, capacity=8), WorkerView("b", in_flight=1, capacity=2)],
            0,
            "a",
        ),
        # equal load: fewer sessions wins
        ([W("a", sessions=3), W("b", sessions=1)], 0, "b"),
        # full tie: rotation spreads calls
        ([W("a"), W("b")], 0, "a"),
        ([W("a"), W("b")], 1, "b"),
    ],
)
def test_least_loaded(workers: list[WorkerView], rotation: int, expected: str | None) -> None:
    best = least_loaded(workers, rotation)
    assert (best.worker if best else None) == expected


# -- wait queue ----------------------------------------------------------------------------


def test_wait_queue_is_fifo_per_serveable_worker() -> None:
    q = WaitQueue(max_length=3)
    a = q.admit(target="w1")
    b = q.admit()
    c = q.admit(target="w2")
    assert a and b and c
    assert q.admit() is None  # full
    # a slot frees on w2: the oldest waiter that can use it is b (any worker)
    assert q.take_first(lambda w: w.target in (None, "w2")) == b
    assert q.take_first(lambda w: w.target in (None, "w2")) == c
    assert q.take_first(lambda w: w.target in (None, "w2")) is None
    assert q.waiting_for("w1") == [a]
    assert q.remove(a.ticket) and not q.remove(a.ticket)
    assert len(q) == 0


def test_wait_queue_of_length_zero_rejects_everything() -> None:
    assert WaitQueue(max_length=0).admit() is None


def test_a_call_turned_away_busy_waits_ahead_of_the_line() -> None:
    from bridgepool_router.core.wait_queue import WaitQueue

    queue = WaitQueue(max_length=10)
    first = queue.admit()
    second = queue.admit()
    bounced = queue.admit(ahead=True)
    assert first and second and bounced
    order = [queue.take_first(lambda w: True) for _ in range(3)]
    assert [w.ticket for w in order if w] == [bounced.ticket, first.ticket, second.ticket]
    assert len(queue) == 0
