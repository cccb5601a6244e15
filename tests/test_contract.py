"""The shared contract: error model, wire protocol and routing settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, ErrorInfo, counts_against_worker
from bridgepool.protocol import HEADER_TIMEOUT, ExecuteRequest, ExecuteResponse, call_budget
from bridgepool.spec import RoutingSettings


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
