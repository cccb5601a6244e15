"""The per-pool loop and what it tells a user when a pass cannot do its work:
a spec the models reject, a pass that fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.credentials import PoolKeys
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool_operator import actions, loop
from bridgepool_operator.actions import failure_message, spec_json
from bridgepool_operator.config import OperatorConfig
from bridgepool_operator.loop import failure_delay, invalid_spec_message, last_valid_spec, run_pool
from bridgepool_operator.runtime import Runtime

TEMPLATE = {"spec": {"containers": [{"name": "worker", "image": "i"}]}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"minReplicas": 3, "maxReplicas": 2},
            "spec.minReplicas (3) must be <= spec.maxReplicas (2)",
        ),
        (
            {"autoscaling": {"targetUtilizationLow": 80, "targetUtilizationHigh": 60}},
            "spec.autoscaling.targetUtilizationLow (80.0) must be below "
            "spec.autoscaling.targetUtilizationHigh (60.0)",
        ),
        (
            {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
            "spec.rollout.maxSurge and spec.rollout.maxUnavailable cannot both be 0",
        ),
        ({"minReplicas": -1}, "spec.minReplicas: Input should be greater than or equal to 0"),
    ],
)
def test_an_invalid_spec_is_told_in_the_pools_words(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        BridgePoolSpec.model_validate({"template": TEMPLATE, **fields})
    assert invalid_spec_message(err.value) == message


def test_a_failure_is_one_stable_line() -> None:
    assert failure_message(ValueError("min() arg is an empty sequence")) == (
        "ValueError: min() arg is an empty sequence"
    )
    quota = ApiException(status=403, reason="Forbidden")
    quota.body = (
        b'{"kind":"Status","message":"pods \\"web-8tzll\\" is forbidden: exceeded quota: q, '
        b'requested: pods=1, used: pods=0, limited: pods=0","reason":"Forbidden","code":403}'
    )
    assert failure_message(quota) == (
        "the API server answered 403 Forbidden: pods forbidden: exceeded quota: q, "
        "requested: pods=1, used: pods=0, limited: pods=0"
    )


@pytest.mark.parametrize(
    ("interval", "failures", "delay"),
    [(5, 1, 5), (5, 2, 10), (5, 4, 40), (5, 5, 60), (5, 50, 60), (120, 3, 120)],
)
def test_failing_passes_back_off(interval: float, failures: int, delay: float) -> None:
    assert failure_delay(interval, failures) == delay


class Stopper:
    """kopf's DaemonStopped, as far as the loop uses it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = "test over"

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


async def test_a_failing_pass_shows_on_the_pool_with_one_event_and_one_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, release_keys: PoolKeys
) -> None:
    """Every pass fails the same way (as the planner did with a stabilization
    window of 0): the pool says so in a condition and one event, the log has
    the traceback once, and the passes space out."""
    raw: dict[str, Any] = {
        "apiVersion": "bridgepool.io/v1alpha1",
        "kind": "BridgePool",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {"template": TEMPLATE, "minReplicas": 1},
    }
    stopper = Stopper()
    passes = 0

    def failing_plan(*_: Any) -> Any:
        nonlocal passes
        passes += 1
        if passes == 4:
            stopper.event.set()
        raise ValueError("min() arg is an empty sequence")

    async def write_status(
        _runtime: Any, _ns: str, _name: str, status: BridgePoolStatus, _raw: Any
    ) -> bool:
        def seen_by_kopf() -> None:  # a moment later, as kopf's watch would
            raw["status"] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
            raw["metadata"]["resourceVersion"] = str(int(raw["metadata"]["resourceVersion"]) + 1)

        asyncio.get_running_loop().call_soon(seen_by_kopf)
        return True

    waits: list[float] = []
    real_next_wakeup = loop.next_wakeup

    async def next_wakeup(wakeup: asyncio.Event, stopped: Any, delay: float) -> bool:
        waits.append(delay)
        return await real_next_wakeup(wakeup, stopped, 0.001)

    async def keep_access(*_: Any) -> bool:
        return True  # written: this test is about the plan failing

    monkeypatch.setattr(loop, "keep_access", keep_access)
    monkeypatch.setattr(loop, "plan", failing_plan)
    monkeypatch.setattr(actions, "write_status", write_status)
    monkeypatch.setattr(loop, "next_wakeup", next_wakeup)
    posted: list[tuple[str, str, str]] = []

    def post_event(_body: Any, /, *, type: str, reason: str, message: str) -> None:
        posted.append((type, reason, message))

    config = OperatorConfig(interval_seconds=2.0, settle_timeout_seconds=1.0)
    async with k8s.ApiClient(k8s.Configuration()) as api:
        runtime = Runtime(config, api, cast(Any, None), release_keys, post_event=post_event)
        logger = logging.getLogger("test.pool")
        with caplog.at_level(logging.INFO):
            body = kopf.Body(cast(kopf.RawBody, raw))
            await asyncio.wait_for(run_pool(runtime, body, cast(Any, {}), stopper, logger), 10)

    assert passes == 4
    message = "ValueError: min() arg is an empty sequence"
    assert posted == [("Warning", "ReconcileError", message)]
    status = BridgePoolStatus.model_validate(raw["status"])
    degraded = [c for c in status.conditions if c.type == "Degraded"]
    assert [(c.status, c.reason, c.message) for c in degraded] == [
        ("True", "ReconcileError", message)
    ]
    assert status.phase == "Degraded"
    failed = [r for r in caplog.records if r.getMessage().startswith("pass over ns/web failed")]
    assert len(failed) == 4
    assert [r.exc_info is not None for r in failed] == [True, False, False, False]
    assert waits == [2.0, 4.0, 8.0, 16.0]
    assert "did not show" not in caplog.text


def test_the_last_valid_spec_is_kept_on_the_pool_and_read_back() -> None:
    spec = BridgePoolSpec.model_validate({"template": TEMPLATE, "minReplicas": 2})
    kept = {"annotations": {labels.ANNOTATION_LAST_VALID_SPEC: spec_json(spec)}}
    assert last_valid_spec(kept) == spec
    assert last_valid_spec({}) is None
    # An annotation the operator cannot read is as good as none: no crash loop.
    assert last_valid_spec({"annotations": {labels.ANNOTATION_LAST_VALID_SPEC: "{"}}) is None
