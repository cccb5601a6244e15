"""What the operator's passes tell a user when they cannot do their work: a
spec the models reject, a pass that fails (the loop itself is the planner's:
tests/planner/test_planner_passes.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.spec import BridgePoolSpec
from bridgepool_operator.actions import failure_message, spec_json
from bridgepool_operator.loop import invalid_spec_message, last_valid_spec

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


def test_the_last_valid_spec_is_kept_on_the_pool_and_read_back() -> None:
    spec = BridgePoolSpec.model_validate({"template": TEMPLATE, "minReplicas": 2})
    kept = {"annotations": {labels.ANNOTATION_LAST_VALID_SPEC: spec_json(spec)}}
    assert last_valid_spec(kept) == spec
    assert last_valid_spec({}) is None
    # An annotation the operator cannot read is as good as none: no crash loop.
    assert last_valid_spec({"annotations": {labels.ANNOTATION_LAST_VALID_SPEC: "{"}}) is None
