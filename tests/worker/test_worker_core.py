"""The worker's pure core: session store, lifecycle, recycling, config. Time is
a number passed in; no sockets, no sleeps."""

from __future__ import annotations

import pytest

from bridgepool.config import ConfigError
from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.protocol import WorkerState
from bridgepool_worker.config import SOURCES, WorkerConfig, load_config
from bridgepool_worker.lifecycle import (
    DEGRADE_AFTER_INTERNAL_ERRORS,
    INTERNAL_ERROR_HOLD_SECONDS,
    Lifecycle,
    RecycleLimits,
    recycle_status,
)
from bridgepool_worker.sessions import SessionStore

# -- sessions -------------------------------------------------------------------------


def test_session_is_created_once_and_keeps_its_state() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=5)
    session, created = store.open("a", now=100)
    session.state["n"] = 1
    again, created_again = store.open("a", now=105)

    assert created and not created_again
    assert again is session and again.state == {"n": 1}
    assert again.created_at == 100 and again.last_activity == 105


@pytest.mark.parametrize(
    ("last_use", "now", "alive"),
    [(100, 109.9, True), (100, 110, False), (105, 114, True), (105, 115, False)],
)
def test_idle_ttl_slides_with_use(last_use: float, now: float, alive: bool) -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=5)
    store.open("a", now=100)
    store.touch("a", now=last_use)

    assert (store.get("a", now) is not None) is alive
    expired = store.expire(now)
    assert [s.session_id for s in expired] == ([] if alive else ["a"])
    assert ("a" in store) is alive


def test_touch_never_moves_activity_backwards() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=5)
    store.open("a", now=100)
    store.touch("a", now=90)
    assert store.infos(now=100)[0].last_activity == 100


def test_session_cap_refuses_only_new_sessions() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=2)
    store.open("a", now=0)
    store.open("b", now=0)

    with pytest.raises(BridgePoolError) as refused:
        store.open("c", now=1)
    assert refused.value.status == 503
    assert refused.value.category == ErrorCategory.RESOURCE
    assert refused.value.retryable
    assert store.can_open("a", now=1) is None  # existing sessions still work
    # Once one has expired there is room again, even before a sweep.
    store.touch("a", now=5)
    assert store.can_open("c", now=12) is None


def test_delete_unknown_or_expired_session_is_a_404_session_error() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=2)
    store.open("a", now=0)
    with pytest.raises(BridgePoolError) as unknown:
        store.delete("nobody", now=1)
    assert (unknown.value.status, unknown.value.category) == (404, ErrorCategory.SESSION)
    with pytest.raises(BridgePoolError):
        store.delete("a", now=20)  # expired, not yet swept: gone all the same
    store.open("b", now=0)
    assert store.delete("b", now=1).session_id == "b"
    assert "b" not in store


def test_session_infos_report_idle_and_remaining_time() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=2)
    store.open("a", now=100)
    (info,) = store.infos(now=103)
    assert (info.idle_seconds, info.expires_in_seconds) == (3, 7)
    assert store.infos(now=111) == []


def test_unmovable_sessions_are_listed_with_their_reason_and_counted_while_live() -> None:
    store = SessionStore(ttl_seconds=10, max_sessions=5)
    for session_id, reason in (
        ("big", "session_too_large"),
        ("hooked", "move_refused"),
        ("stale", "move_refused"),
        ("fine", None),
    ):
        store.open(session_id, now=100)[0].unmovable = reason
    store.touch("big", now=105)
    store.touch("hooked", now=105)
    store.touch("fine", now=105)

    assert {i.session_id: i.unmovable for i in store.infos(now=105)} == {
        "big": "session_too_large",
        "hooked": "move_refused",
        "stale": "move_refused",
        "fine": None,
    }
    assert store.unmovable_counts(now=105) == {"session_too_large": 1, "move_refused": 2}
    # "stale" has expired, not yet swept: it counts no more; a deleted one neither.
    store.delete("hooked", now=111)
    assert store.unmovable_counts(now=111) == {"session_too_large": 1}


# -- lifecycle ------------------------------------------------------------------------


def state(life: Lifecycle) -> WorkerState:
    return life.state


def ready_lifecycle(capacity: int = 2) -> Lifecycle:
    life = Lifecycle(capacity=capacity, now=0)
    transition = life.mark_initialized(now=1)
    assert transition is not None and transition.seconds_in_previous == 1
    return life


def test_initializing_worker_is_not_ready() -> None:
    life = Lifecycle(capacity=1, now=0)
    assert state(life) == WorkerState.INITIALIZING
    assert life.readiness(now=0) == (False, "initializing")


def test_busy_at_capacity_and_back() -> None:
    life = ready_lifecycle(capacity=2)
    assert life.try_begin_call(now=2) == (True, None)
    admitted, transition = life.try_begin_call(now=3)
    assert admitted and transition is not None
    assert (transition.previous, transition.state) == (WorkerState.READY, WorkerState.BUSY)
    assert life.readiness(now=3) == (True, None)  # busy is still ready

    assert life.try_begin_call(now=4) == (False, None)  # no queueing here
    assert life.in_flight == 2
    back = life.end_call(now=6)
    assert back is not None and back.state == WorkerState.READY
    assert back.seconds_in_previous == 3


def test_unhealthy_mark_degrades_for_its_period() -> None:
    life = ready_lifecycle()
    transition = life.mark_unhealthy(now=10, seconds=5, reason="injected")
    assert transition is not None and transition.state == WorkerState.DEGRADED
    assert transition.reason == "injected"
    assert life.readiness(now=12) == (False, "degraded: injected")
    assert life.tick(now=14.9) is None
    recovered = life.tick(now=15)
    assert recovered is not None and recovered.state == WorkerState.READY
    assert recovered.seconds_in_previous == 5


def test_unhealthy_without_period_lasts_until_cleared() -> None:
    life = ready_lifecycle()
    life.mark_unhealthy(now=10, seconds=None, reason="injected")
    assert life.tick(now=10_000) is None
    assert state(life) == WorkerState.DEGRADED
    cleared = life.clear_unhealthy(now=10_001)
    assert cleared is not None and cleared.state == WorkerState.READY


def test_repeated_internal_errors_degrade_until_success_or_hold_ends() -> None:
    life = ready_lifecycle()
    for i in range(DEGRADE_AFTER_INTERNAL_ERRORS):
        life.try_begin_call(now=10 + i)
        life.end_call(now=10 + i, internal_error=True)
    assert state(life) == WorkerState.DEGRADED
    assert life.tick(now=12 + INTERNAL_ERROR_HOLD_SECONDS) is not None
    assert state(life) == WorkerState.READY

    for i in range(DEGRADE_AFTER_INTERNAL_ERRORS):
        life.try_begin_call(now=100 + i)
        life.end_call(now=100 + i, internal_error=True)
    assert state(life) == WorkerState.DEGRADED
    life.try_begin_call(now=104)
    life.end_call(now=104)
    assert state(life) == WorkerState.READY


def test_a_slot_freed_without_a_call_says_nothing_of_the_workers_health() -> None:
    """A slot taken for a call that then did not run (its session began to move
    while it waited in line) is freed without counting as a success: the run of
    internal errors around it still degrades the worker."""
    life = ready_lifecycle()
    for i in range(DEGRADE_AFTER_INTERNAL_ERRORS):
        life.try_begin_call(now=10 + i)
        life.end_call(now=10 + i, internal_error=True)
        life.try_begin_call(now=10 + i)
        life.free_slot(now=10 + i)
    assert life.in_flight == 0
    assert state(life) == WorkerState.DEGRADED


def test_termination_refuses_sessions_and_wins_over_everything() -> None:
    life = ready_lifecycle()
    life.mark_unhealthy(now=2, seconds=None, reason="x")
    transition = life.begin_termination(now=3, reason="received SIGTERM")
    assert transition is not None
    assert (transition.previous, transition.state) == (
        WorkerState.DEGRADED,
        WorkerState.TERMINATING,
    )
    assert transition.reason == "received SIGTERM"
    assert not life.accepting_sessions
    assert life.readiness(now=3) == (False, "terminating")
    assert life.try_begin_call(now=4)[0]  # existing sessions' calls still run
    done = life.mark_terminated(now=5, reason="server stopped")
    assert done is not None and done.state == WorkerState.TERMINATED


@pytest.mark.parametrize(
    ("limits", "requests", "age", "rss", "reason"),
    [
        (RecycleLimits(), 10**9, 10**9, 10**12, None),
        (RecycleLimits(max_requests=3), 2, 0, 0, None),
        (RecycleLimits(max_requests=3), 3, 0, 0, "max_requests"),
        (RecycleLimits(max_age_seconds=60), 0, 59, 0, None),
        (RecycleLimits(max_age_seconds=60), 0, 60, 0, "max_age"),
        (RecycleLimits(max_rss_bytes=1000), 0, 0, 999, None),
        (RecycleLimits(max_rss_bytes=1000), 0, 0, 1000, "max_rss"),
        (RecycleLimits(max_requests=1, max_rss_bytes=1), 5, 0, 5, "max_requests"),
    ],
)
def test_recycle_status(
    limits: RecycleLimits, requests: int, age: float, rss: int, reason: str | None
) -> None:
    status = recycle_status(limits, requests, age, rss)
    assert status.due is (reason is not None)
    assert (status.reason or "").startswith(reason or "")


# -- config ---------------------------------------------------------------------------


def test_config_defaults_env_and_flags() -> None:
    env = {
        "BRIDGEPOOL_WORKER_PORT": "9000",
        "BRIDGEPOOL_WORKER_CAPACITY": "3",
        "BRIDGEPOOL_WORKER_HANDLERS": "a.b, c.py",
        "BRIDGEPOOL_WORKER_MAX_REQUESTS": "100",
        "BRIDGEPOOL_WORKER_NAME": "w-1",
    }
    config = load_config(["--port", "9001"], env)
    assert config.port == 9001  # flag wins
    assert config.capacity == 3
    assert config.handlers == ("a.b", "c.py")
    assert config.max_requests == 100 and config.max_age_seconds is None
    assert config.name == "w-1"
    assert config.session_ttl_seconds == 300 and config.grace_seconds == 25
    assert config.call_timeout_seconds == 60 and not config.faults_enabled
    assert load_config(["--handlers", "x", "y"], {}).handlers == ("x", "y")


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {"BRIDGEPOOL_WORKER_CAPACITY": "0"}, "BRIDGEPOOL_WORKER_CAPACITY"),
        ([], {"BRIDGEPOOL_WORKER_SESSION_TTL_SECONDS": "soon"}, "SESSION_TTL_SECONDS"),
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {"BRIDGEPOOL_WORKER_PORT": "1"}, "--port"),
        ([], {"BRIDGEPOOL_WORKER_MAX_RSS_BYTES": "-5"}, "BRIDGEPOOL_WORKER_MAX_RSS_BYTES"),
        ([], {"BRIDGEPOOL_FAULTS_ENABLED": "sometimes"}, "BRIDGEPOOL_FAULTS_ENABLED"),
    ],
)
def test_bad_config_names_its_source(argv: list[str], env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(argv, env)


def test_help_names_every_variable_with_its_default() -> None:
    text = " ".join(SOURCES.parser().format_help().split())
    for name in WorkerConfig.model_fields:
        assert SOURCES.variable(name) in text, name
    assert "--capacity CAPACITY concurrent calls (default: 1; BRIDGEPOOL_WORKER_CAPACITY)" in text
    assert "BRIDGEPOOL_WORKER_MAX_SESSIONS: most sessions held at once (default: 1000)" in text
