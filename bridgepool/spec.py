"""The BridgePool resource's models (``spec`` and ``status``), shared by the
operator, which reconciles them, and the router, which reads a pool's routing
settings. Field names are camelCase on the wire (Kubernetes convention) and
snake_case in Python.

Defaults are the seed's: sessions idle out after 300 s; a worker's breaker
opens after 5 consecutive failures, stays open 60 s and closes after 3
successes; at most 3 attempts with exponential backoff; health checks every
2 s at the router (fall 3, rise 2).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Base for resource models: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SessionSettings(SpecModel):
    """How long a session lives without calls, and how many a worker may hold."""

    idle_ttl_seconds: float = Field(
        default=300.0, gt=0, description="A session with no call for this long expires."
    )
    max_per_worker: int = Field(
        default=1000, ge=1, description="Most sessions one worker holds at once."
    )


class CircuitBreakerSettings(SpecModel):
    """Per-worker circuit breaker at the router."""

    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open the breaker."
    )
    success_threshold: int = Field(
        default=3, ge=1, description="Consecutive half-open successes that close it."
    )
    open_seconds: float = Field(
        default=60.0, gt=0, description="How long the breaker stays open before a probe."
    )
    max_ejection_percent: int = Field(
        default=50,
        ge=0,
        le=100,
        description=(
            "Most of the pool's workers the breaker may eject at once; past it the "
            "remaining workers are used even if their breakers would open."
        ),
    )


class RetrySettings(SpecModel):
    """When and how the router retries a call that did not succeed."""

    max_attempts: int = Field(default=3, ge=1, le=10, description="Attempts, the first included.")
    base_backoff_seconds: float = Field(
        default=0.025, ge=0, description="Backoff cap of the first retry; doubles per retry."
    )
    max_backoff_seconds: float = Field(
        default=1.0, ge=0, description="Largest backoff between two attempts."
    )
    budget_percent: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="Retries allowed as a percentage of the requests active in the pool.",
    )
    min_retries_per_second: float = Field(
        default=10.0, ge=0, description="Retries always allowed, whatever the budget says."
    )


class QueueSettings(SpecModel):
    """The per-pool wait queue for calls when every eligible worker is at capacity."""

    max_length: int = Field(default=100, ge=0, description="Most calls waiting at once.")
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest a call waits for a free worker."
    )


class RouterHealthSettings(SpecModel):
    """The router's active health checks of each worker's ``/readyz``."""

    interval_seconds: float = Field(default=2.0, gt=0, description="Time between checks.")
    timeout_seconds: float = Field(default=1.0, gt=0, description="Timeout of one check.")
    fall: int = Field(default=3, ge=1, description="Failed checks that mark a worker down.")
    rise: int = Field(default=2, ge=1, description="Passed checks that mark it up again.")


class RoutingSettings(SpecModel):
    """Everything the router reads from a pool's spec."""

    call_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Per-call timeout; a caller may only lower it."
    )
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    health: RouterHealthSettings = Field(default_factory=RouterHealthSettings)
