"""How a pod, as the API returns it, is read into an ObservedWorker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridgepool_operator.observe import observe_pod
from bridgepool_planner.workers import format_time

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds))


def pod(
    *, ready_changed: float, started: float | None, ready: bool = False, restarts: int = 0
) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"running": {"startedAt": ago(started)}}
        if started is not None
        else {"waiting": {"reason": "ContainerCreating"}}
    )
    return {
        "metadata": {"name": "w", "creationTimestamp": ago(300), "labels": {}},
        "status": {
            "phase": "Running" if started is not None else "Pending",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": ago(ready_changed),
                }
            ],
            "containerStatuses": [
                {"name": "worker", "restartCount": restarts, "ready": ready, "state": state}
            ],
        },
    }


@pytest.mark.parametrize(
    ("observed", "not_ready_for", "never_ready"),
    [
        # Created long ago, the container only started 5 s ago (slow node):
        # the time before the start does not count.
        (pod(ready_changed=300, started=5), 5.0, True),
        # Was ready, went unready 10 s ago: since then.
        (pod(ready_changed=10, started=250), 10.0, False),
        # A restarted container starts its count again.
        (pod(ready_changed=100, started=3, restarts=1), 3.0, True),
        # Not started yet: since the Ready condition was set.
        (pod(ready_changed=40, started=None), 40.0, True),
        (pod(ready_changed=40, started=30, ready=True), 0.0, False),
    ],
)
def test_not_ready_time_counts_from_when_the_worker_could_have_been_ready(
    observed: dict[str, Any], not_ready_for: float, never_ready: bool
) -> None:
    worker = observe_pod(observed)
    assert worker.not_ready_for(NOW) == not_ready_for
    assert worker.never_ready is never_ready


def with_state(phase: str, waiting: str | None = None) -> dict[str, Any]:
    observed = pod(ready_changed=10, started=None)
    observed["status"]["phase"] = phase
    if waiting is not None:
        state = {"waiting": {"reason": waiting, "message": "details"}}
        observed["status"]["containerStatuses"][0]["state"] = state
    return observed


@pytest.mark.parametrize(
    ("observed", "phase", "crash_looping", "start_problem", "exit_detail"),
    [
        (with_state("Pending"), "pending", False, None, None),
        (with_state("Running", "CrashLoopBackOff"), "running", True, None, None),
        # The kubelet alternates these while it retries: one problem for the planner.
        (with_state("Pending", "ErrImagePull"), "pending", False, "ImagePullBackOff", None),
        (with_state("Pending", "ImagePullBackOff"), "pending", False, "ImagePullBackOff", None),
        (
            with_state("Pending", "CreateContainerConfigError"),
            "pending",
            False,
            "CreateContainerConfigError",
            None,
        ),
        (with_state("Failed"), "exited", False, None, "pod phase Failed"),
        (with_state("Succeeded"), "exited", False, None, "pod phase Succeeded"),
        # A node that lost contact: not known to run.
        (with_state("Unknown"), "pending", False, None, None),
    ],
)
def test_pod_phases_and_kubelet_reasons_become_the_planners_words(
    observed: dict[str, Any],
    phase: str,
    crash_looping: bool,
    start_problem: str | None,
    exit_detail: str | None,
) -> None:
    worker = observe_pod(observed)
    assert (worker.phase, worker.crash_looping, worker.start_problem, worker.exit_detail) == (
        phase,
        crash_looping,
        start_problem,
        exit_detail,
    )
