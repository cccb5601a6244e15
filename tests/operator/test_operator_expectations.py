"""Expectations: a pass's own changes must be visible before the next pass
plans, or it would create the same pods again. A table of views."""

from __future__ import annotations

from typing import Any

import pytest

from bridgepool import labels
from bridgepool_operator.expectations import pass_visible
from bridgepool_planner.passes import PassResult

POOL_AT_7 = {"metadata": {"name": "web", "resourceVersion": "7"}}
POOL_AT_8 = {"metadata": {"name": "web", "resourceVersion": "8"}}


def pod(name: str, *, draining: bool = False, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": {}}
    if draining:
        meta["annotations"][labels.ANNOTATION_DRAINING] = "2026-01-01T00:00:00Z"
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("result", "pool", "pods", "visible"),
    [
        pytest.param(PassResult(), POOL_AT_7, [], True, id="nothing-changed"),
        pytest.param(PassResult(created={"a"}), POOL_AT_7, [], False, id="created-not-yet-seen"),
        pytest.param(PassResult(created={"a"}), POOL_AT_7, [pod("a")], True, id="created-seen"),
        pytest.param(
            PassResult(created={"a", "b"}), POOL_AT_7, [pod("a")], False, id="one-of-two-created"
        ),
        pytest.param(
            PassResult(drained={"a"}), POOL_AT_7, [pod("a")], False, id="drain-mark-not-yet-seen"
        ),
        pytest.param(
            PassResult(drained={"a"}),
            POOL_AT_7,
            [pod("a", draining=True)],
            True,
            id="drain-mark-seen",
        ),
        pytest.param(PassResult(drained={"a"}), POOL_AT_7, [], True, id="drained-pod-gone"),
        pytest.param(
            PassResult(stopped={"a"}), POOL_AT_7, [pod("a")], False, id="delete-not-yet-seen"
        ),
        pytest.param(
            PassResult(stopped={"a"}),
            POOL_AT_7,
            [pod("a", deleting=True)],
            True,
            id="delete-seen-as-terminating",
        ),
        pytest.param(PassResult(stopped={"a"}), POOL_AT_7, [], True, id="deleted-pod-gone"),
        pytest.param(
            PassResult(status_written_over="7"), POOL_AT_7, [], False, id="own-status-not-yet-seen"
        ),
        pytest.param(
            PassResult(status_written_over="7"), POOL_AT_8, [], True, id="own-status-seen"
        ),
        pytest.param(
            PassResult(created={"a"}, status_written_over="7"),
            POOL_AT_8,
            [],
            False,
            id="status-seen-but-pod-not",
        ),
    ],
)
def test_a_pass_waits_until_its_own_changes_are_visible(
    result: PassResult, pool: dict[str, Any], pods: list[dict[str, Any]], visible: bool
) -> None:
    assert pass_visible(result, pool, pods) is visible


def test_workers_changed_counts_creates_drains_and_deletes_not_status_writes() -> None:
    assert not PassResult(status_written_over="7").workers_changed
    assert PassResult(created={"a"}).workers_changed
    assert PassResult(drained={"a"}).workers_changed
    assert PassResult(stopped={"a"}).workers_changed
