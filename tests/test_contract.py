"""The shared contract: error model, wire protocol and routing settings."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, ErrorInfo, counts_against_worker
from bridgepool.protocol import (
    HEADER_TIMEOUT,
    WORKER_PORT,
    ExecuteRequest,
    ExecuteResponse,
    call_budget,
)
from bridgepool.spec import RoutingSettings
from bridgepool.workers import pod_ready, worker_port, worker_url


def test_nine_error_categories() -> None:
    assert {c.value for c in ErrorCategory} == {
        "initialization",
        "connection",
        "communication",
        "timeout",
        "resource",
        "health_check",
        "session",
        "python",
        "system",
    }


def test_error_round_trips_through_json() -> None:
    err = BridgePoolError.make(
        ErrorCategory.RESOURCE, "capacity_exceeded", "busy", status=503, retryable=True, limit=1
    )
    wire = ExecuteResponse(id=7, success=False, error=err.info).model_dump_json()
    back = ExecuteResponse.model_validate_json(wire)
    assert back.error == ErrorInfo(
        category=ErrorCategory.RESOURCE,
        type="capacity_exceeded",
        message="busy",
        context={"limit": 1},
        retryable=True,
    )
    assert err.status == 503
    assert str(err) == "resource/capacity_exceeded: busy"


@pytest.mark.parametrize(
    ("status", "counted"),
    [(200, False), (400, False), (404, False), (422, False), (500, True), (503, True), (504, True)],
)
def test_only_5xx_counts_against_a_worker(status: int, counted: bool) -> None:
    assert counts_against_worker(status) is counted


def test_request_rejects_unknown_fields_and_empty_command() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ExecuteRequest.model_validate({"command": "ping", "bogus": 1})
    with pytest.raises(ValidationError, match="command"):
        ExecuteRequest.model_validate({"command": ""})


def test_routing_settings_speak_camel_case_with_seed_defaults() -> None:
    settings = RoutingSettings.model_validate(
        {"callTimeoutSeconds": 5, "circuitBreaker": {"failureThreshold": 2}}
    )
    assert settings.call_timeout_seconds == 5
    assert settings.circuit_breaker.failure_threshold == 2
    assert settings.circuit_breaker.open_seconds == 60
    assert settings.retries.max_attempts == 3
    with pytest.raises(ValidationError, match="failureThreshold"):
        RoutingSettings.model_validate({"circuitBreaker": {"failureThreshold": 0}})


@pytest.mark.parametrize(
    ("requested", "default", "budget"),
    [(None, 60.0, 60.0), ("2", 60.0, 2.0), ("0.25", 60.0, 0.25), ("99", 10.0, 10.0)],
)
def test_call_budget_may_only_lower_the_default(
    requested: str | None, default: float, budget: float
) -> None:
    assert call_budget(requested, default) == budget


@pytest.mark.parametrize("requested", ["0", "-1", "soon", "nan", "inf", ""])
def test_call_budget_rejects_what_is_not_a_positive_duration(requested: str) -> None:
    with pytest.raises(ValueError, match=HEADER_TIMEOUT):
        call_budget(requested, 60.0)


# -- a worker pod: its worker's URL and its readiness ---------------------------------


def worker_pod(
    ip: str | None = "10.0.0.7",
    *,
    phase: str = "Running",
    ready: str | None = "True",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A worker pod as the API's JSON has it."""
    conditions = [{"type": "PodScheduled", "status": "True"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": "demo-abc"},
        "spec": {"containers": [{"name": "sidecar"}, {"name": "worker", "ports": ports}]},
        "status": {"phase": phase, "podIP": ip, "conditions": conditions},
    }


def as_client_model(pod: dict[str, Any]) -> client.V1Pod:
    """The same pod as the ``kubernetes`` client returns it (e2e and benchmarks)."""
    spec, status = pod["spec"], pod["status"]
    containers = [
        client.V1Container(
            name=c["name"],
            ports=[
                client.V1ContainerPort(name=p["name"], container_port=p["containerPort"])
                for p in c.get("ports") or []
            ],
        )
        for c in spec["containers"]
    ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=pod["metadata"]["name"]),
        spec=client.V1PodSpec(containers=containers),
        status=client.V1PodStatus(
            phase=status["phase"],
            pod_ip=status["podIP"],
            conditions=[
                client.V1PodCondition(type=c["type"], status=c["status"])
                for c in status["conditions"]
            ],
        ),
    )


BRIDGE_9000 = [
    {"name": "metrics", "containerPort": 9090},
    {"name": "bridge", "containerPort": 9000},
]

WORKER_PODS = [
    ("defaults", worker_pod(), "http://10.0.0.7:8080", True),
    ("named bridge port", worker_pod(ports=BRIDGE_9000), "http://10.0.0.7:9000", True),
    ("other ports only", worker_pod(ports=BRIDGE_9000[:1]), "http://10.0.0.7:8080", True),
    ("IPv6 in brackets", worker_pod("fd00::7", ports=BRIDGE_9000), "http://[fd00::7]:9000", True),
    ("not ready", worker_pod(ready="False"), "http://10.0.0.7:8080", False),
    ("no Ready condition yet", worker_pod(ready=None), "http://10.0.0.7:8080", False),
    ("no IP yet", worker_pod(None, phase="Pending", ready="False"), None, False),
    ("not running", worker_pod(phase="Succeeded", ready="False"), None, False),
]


@pytest.mark.parametrize(
    ("pod", "url", "ready"),
    [case[1:] for case in WORKER_PODS],
    ids=[case[0] for case in WORKER_PODS],
)
@pytest.mark.parametrize("shape", ["json", "client model"])
def test_worker_pod_url_and_readiness(
    pod: dict[str, Any], url: str | None, ready: bool, shape: str
) -> None:
    seen: object = pod if shape == "json" else as_client_model(pod)
    assert worker_url(seen) == url
    assert pod_ready(seen) is ready


def test_a_pod_without_status_or_spec_has_no_worker_yet() -> None:
    assert worker_url({"metadata": {"name": "new"}}) is None
    assert not pod_ready({"metadata": {"name": "new"}})
    assert worker_port({}) == WORKER_PORT


def test_validation_problems_name_each_field_in_the_callers_terms() -> None:
    from pydantic import BaseModel, Field, ValidationError, model_validator

    from bridgepool.errors import validation_problems

    class Sizes(BaseModel):
        low: int = Field(ge=0)
        high: int = 1

        @model_validator(mode="after")
        def _order(self) -> Sizes:
            if self.low > self.high:
                raise ValueError("spec.low must be <= spec.high")
            return self

    with pytest.raises(ValidationError) as negative:
        Sizes.model_validate({"low": -1})
    with pytest.raises(ValidationError) as crossed:
        Sizes.model_validate({"low": 3})
    with pytest.raises(ValidationError) as not_an_object:
        Sizes.model_validate([])
    assert validation_problems(negative.value) == "low: Input should be greater than or equal to 0"
    assert validation_problems(negative.value, root="spec") == (
        "spec.low: Input should be greater than or equal to 0"
    )
    # A validator's own message names its field already; pydantic's prefix is dropped.
    assert validation_problems(crossed.value, root="spec") == "spec.low must be <= spec.high"
    assert validation_problems(crossed.value) == "body: spec.low must be <= spec.high"
    assert validation_problems(not_an_object.value).startswith("body: Input should be")
