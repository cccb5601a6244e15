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

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
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
    move_on_drain: bool = Field(
        default=True,
        description=(
            "Move a draining worker's sessions, with their state, to workers that stay, "
            "instead of waiting for them to end."
        ),
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


# ---------------------------------------------------------------------------
# The BridgePool resource: spec and status. The CRD's OpenAPI schema is
# generated from these models (bridgepool_operator.crd), so every field
# carries a description and its bounds. Cross-field rules live twice, on
# purpose: as pydantic validators (the operator checks every spec, also on
# clusters too old for CEL) and as CEL rules in ``json_schema_extra`` (the
# API server rejects bad specs where it can).
# ---------------------------------------------------------------------------


def _cel(*rules: tuple[str, str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` entries for a model's schema, from
    (rule, message, field path) triples. The field path (relative to the
    model, e.g. ``.minReplicas``) is the field the API server names when it
    refuses an object."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "message": message, "fieldPath": path} for rule, message, path in rules
        ]
    }


class OpenModel(SpecModel):
    """A model that keeps fields it does not know (pod template internals)."""

    model_config = ConfigDict(extra="allow")


class WorkerContainer(OpenModel):
    """A container of the worker pod; only what the operator needs is checked."""

    name: str = Field(min_length=1, max_length=63, description="Container name.")
    image: str = Field(min_length=1, description="Container image of the bridge worker.")


class PodTemplateMetadata(OpenModel):
    """Labels and annotations copied onto every worker pod."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels for worker pods."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations for worker pods."
    )


class PodTemplateBody(OpenModel):
    """A pod spec. The first container runs the worker; other fields pass through."""

    containers: list[WorkerContainer] = Field(
        min_length=1, description="The pod's containers; the first one runs the worker."
    )


class PodTemplate(SpecModel):
    """A normal pod template (metadata + spec) the worker pods are built from."""

    metadata: PodTemplateMetadata = Field(
        default_factory=PodTemplateMetadata, description="Worker pod metadata."
    )
    spec: PodTemplateBody = Field(description="Worker pod spec.")


class AutoscalingSettings(SpecModel):
    """Utilization-driven sizing between minReplicas and maxReplicas."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.targetUtilizationLow < self.targetUtilizationHigh",
                "autoscaling.targetUtilizationLow must be below targetUtilizationHigh",
                ".targetUtilizationLow",
            )
        )
    )

    enabled: bool = Field(
        default=False,
        description=(
            "Size the pool from utilization (in-flight calls / capacity of ready "
            "workers). When false the pool has spec.replicas workers."
        ),
    )
    target_utilization_low: float = Field(
        default=60.0, ge=0, le=100, description="Below this utilization (%) the pool shrinks."
    )
    target_utilization_high: float = Field(
        default=80.0, gt=0, le=100, description="Above this utilization (%) the pool grows."
    )
    scale_up_stabilization_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="The pool grows only to the smallest size recommended over this window.",
    )
    scale_down_stabilization_seconds: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="The pool shrinks only to the largest size recommended over this window.",
    )

    @model_validator(mode="after")
    def _band(self) -> AutoscalingSettings:
        if self.target_utilization_low >= self.target_utilization_high:
            raise ValueError(
                "spec.autoscaling.targetUtilizationLow "
                f"({self.target_utilization_low}) must be below "
                f"spec.autoscaling.targetUtilizationHigh ({self.target_utilization_high})"
            )
        return self

    @property
    def target_middle(self) -> float:
        """The middle of the band, as a fraction: where scaling aims."""
        return (self.target_utilization_low + self.target_utilization_high) / 200.0


class HealthSettings(SpecModel):
    """How worker health is judged: kubelet probes plus the operator's replacement rule."""

    interval_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Period of the liveness check (/healthz) and unit of the replacement rule.",
    )
    readiness_interval_seconds: int = Field(
        default=5,
        ge=1,
        le=300,
        description="Period of the readiness check (/readyz); a failed one degrades the worker.",
    )
    degrade_after_failures: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Failed readiness checks after which the worker gets no new calls.",
    )
    replace_after_failures: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Consecutive failed checks after which the worker is replaced: the liveness "
            "probe's threshold, and not-ready for this many intervals."
        ),
    )
    max_restarts: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Container restarts after which the worker pod is replaced.",
    )
    startup_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description=(
            "Longest a worker may take from its container's start to its first Ready; "
            "past it the worker is replaced. Until then it is starting, not unhealthy."
        ),
    )


class WorkerSettings(SpecModel):
    """Settings passed to each worker through BRIDGEPOOL_WORKER_* environment variables."""

    capacity: int = Field(default=1, ge=1, le=10000, description="Calls one worker runs at once.")
    max_requests: int | None = Field(
        default=None, ge=1, description="Recycle the worker after this many calls."
    )
    max_age_seconds: float | None = Field(
        default=None, gt=0, description="Recycle the worker after it has run this long."
    )
    max_rss_bytes: int | None = Field(
        default=None, ge=1, description="Recycle the worker once its RSS exceeds this."
    )


class DisruptionSettings(SpecModel):
    """Disruptions from outside the operator: a node drain's evictions."""

    max_unavailable: int = Field(
        default=1,
        ge=1,
        le=1000,
        description=(
            "Workers that evictions (kubectl drain) may take at once; the operator keeps a "
            "PodDisruptionBudget of the pool that allows this many below its desired size."
        ),
    )


class NetworkPolicySettings(SpecModel):
    """Who may reach the pool's workers over the network."""

    enabled: bool = Field(
        default=True,
        description=(
            "Keep a NetworkPolicy that lets only the release's router and operator, the "
            "pool's own workers and the scrape source the operator names reach the workers "
            "(when the operator's own setting is on too)."
        ),
    )


class RolloutSettings(SpecModel):
    """How workers are replaced: surge first, drain, then delete."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.maxSurge > 0 || self.maxUnavailable > 0",
                "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
                ".maxSurge",
            )
        )
    )

    max_surge: int = Field(
        default=1, ge=0, le=1000, description="Workers created above the desired size."
    )
    max_unavailable: int = Field(
        default=0, ge=0, le=1000, description="Ready workers below the desired size allowed."
    )
    drain_timeout_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Longest a draining worker keeps its sessions before it is deleted.",
    )
    termination_grace_period_seconds: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="Grace period of a deleted worker pod to finish in-flight calls.",
    )

    @model_validator(mode="after")
    def _progress_possible(self) -> RolloutSettings:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "spec.rollout.maxSurge and spec.rollout.maxUnavailable cannot both be 0"
            )
        return self


class BridgePoolSpec(SpecModel):
    """``spec`` of a BridgePool: which workers to run and how many."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must be <= spec.maxReplicas",
                ".minReplicas",
            ),
            (
                "!has(self.replicas) || (self.replicas >= self.minReplicas"
                " && self.replicas <= self.maxReplicas)",
                "spec.replicas must be within [spec.minReplicas, spec.maxReplicas]",
                ".replicas",
            ),
            (
                "!has(self.replicas) || !has(self.autoscaling) || !self.autoscaling.enabled",
                "spec.replicas cannot be set while spec.autoscaling.enabled is true",
                ".replicas",
            ),
        )
    )

    template: PodTemplate = Field(description="Pod template of the worker pods.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest workers.")
    max_replicas: int = Field(default=10, ge=0, le=1000, description="Most workers.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Fixed size when autoscaling is off (default: minReplicas).",
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings, description="Utilization-driven sizing."
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings, description="Worker health checks and replacement."
    )
    sessions: SessionSettings = Field(
        default_factory=SessionSettings, description="Session lifetime and per-worker limit."
    )
    worker: WorkerSettings = Field(
        default_factory=WorkerSettings, description="Capacity and recycling limits."
    )
    rollout: RolloutSettings = Field(
        default_factory=RolloutSettings, description="Rolling replacement and drain."
    )
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="Settings the router reads."
    )
    disruptions: DisruptionSettings = Field(
        default_factory=DisruptionSettings,
        description="How many workers evictions may take at once.",
    )
    network_policy: NetworkPolicySettings = Field(
        default_factory=NetworkPolicySettings,
        description="Whether the operator keeps a NetworkPolicy around the workers.",
    )

    @model_validator(mode="after")
    def _sizes(self) -> BridgePoolSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"spec.minReplicas ({self.min_replicas}) must be <= "
                f"spec.maxReplicas ({self.max_replicas})"
            )
        if self.replicas is not None:
            if not self.min_replicas <= self.replicas <= self.max_replicas:
                raise ValueError(
                    f"spec.replicas ({self.replicas}) must be within "
                    f"[spec.minReplicas, spec.maxReplicas] = "
                    f"[{self.min_replicas}, {self.max_replicas}]"
                )
            if self.autoscaling.enabled:
                raise ValueError(
                    "spec.replicas cannot be set while spec.autoscaling.enabled is true"
                )
        return self

    @property
    def fixed_replicas(self) -> int:
        """The size of the pool when autoscaling is off."""
        return self.min_replicas if self.replicas is None else self.replicas


# Status -------------------------------------------------------------------

MAX_WORKER_SUMMARIES = 50
MAX_RECOMMENDATIONS = 128


# What the pool's status says about the pool as a whole, and about each worker.
PoolPhase = Literal["Pending", "Running", "Progressing", "Degraded", "Invalid"]
WorkerSummaryState = Literal[
    "starting", "ready", "busy", "degraded", "draining", "failed", "terminating"
]


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SCALING_LIMITED = "ScalingLimited"


class Condition(SpecModel):
    """A Kubernetes-style condition of the pool."""

    type: str = Field(description="Ready, Progressing, Degraded or ScalingLimited.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why.")
    message: str = Field(default="", description="What a human needs to know.")
    last_transition_time: str = Field(description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition was computed for."
    )


class WorkerSummary(SpecModel):
    """One worker pod as the operator last saw it."""

    name: str = Field(description="Pod name.")
    state: WorkerSummaryState = Field(
        description="starting, ready, busy, degraded, draining, failed or terminating."
    )
    ready: bool = Field(description="Whether the pod is Ready.")
    draining: bool = Field(description="Whether the pod is draining.")
    sessions: int | None = Field(default=None, description="Sessions the worker holds.")
    in_flight: int | None = Field(default=None, description="Calls running on the worker.")
    revision: str = Field(description="Revision of the template the pod was built from.")
    drain_reason: str | None = Field(
        default=None, description="Why the worker drains: rollout, scale-down, unhealthy, recycle."
    )
    drain_deadline: str | None = Field(
        default=None,
        description=(
            "RFC 3339 time when a draining worker is deleted whatever sessions it still holds."
        ),
    )
    not_moved: str | None = Field(
        default=None,
        description="Sessions of this draining worker that cannot move, and why.",
    )


class ScaleRecommendation(SpecModel):
    """One autoscaling recommendation, kept for the stabilization windows."""

    time: str = Field(description="RFC 3339 time of the recommendation.")
    replicas: int = Field(ge=0, description="Recommended size.")


class TemplateRejection(SpecModel):
    """The API server refused the worker pod built from a revision of the template
    (an invalid or unknown field): no pod of it can be made until the template
    changes, so creating one is retried only with a growing delay."""

    revision: str = Field(description="Revision of the template the API server refused.")
    message: str = Field(description="The API server's reason, naming the field.")
    attempts: int = Field(ge=1, description="Refused attempts in a row.")
    last_attempt_time: str = Field(description="RFC 3339 time of the last refused attempt.")


class AutoscalingStatus(SpecModel):
    """Autoscaler memory kept in status so a restarted operator decides the same."""

    recommendations: list[ScaleRecommendation] = Field(
        default_factory=list,
        max_length=MAX_RECOMMENDATIONS,
        description="Recent recommendations, oldest first, within the longest window.",
    )


class BridgePoolStatus(SpecModel):
    """``status`` of a BridgePool, written by the operator."""

    replicas: int = Field(default=0, ge=0, description="Worker pods (not being deleted).")
    ready_replicas: int = Field(default=0, ge=0, description="Ready, non-draining workers.")
    updated_replicas: int = Field(
        default=0, ge=0, description="Non-draining workers of the update revision."
    )
    desired_replicas: int = Field(default=0, ge=0, description="Size the pool is driven to.")
    utilization: float | None = Field(
        default=None,
        description="In-flight calls / capacity across ready workers, in percent.",
    )
    current_revision: str | None = Field(
        default=None, description="Revision most serving workers run."
    )
    update_revision: str | None = Field(
        default=None, description="Revision of the current template."
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation last reconciled."
    )
    selector: str = Field(default="", description="Label selector of the worker pods.")
    phase: PoolPhase = Field(
        default="Pending",
        description=(
            "Pending (never ready yet), Running, Progressing (rolling out a new template), "
            "Degraded or Invalid."
        ),
    )
    workers: list[WorkerSummary] = Field(
        default_factory=list,
        max_length=MAX_WORKER_SUMMARIES,
        description=f"Per-worker summary (at most {MAX_WORKER_SUMMARIES}).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Pool conditions.")
    autoscaling: AutoscalingStatus = Field(
        default_factory=AutoscalingStatus, description="Autoscaler memory."
    )
    template_rejection: TemplateRejection | None = Field(
        default=None,
        description="Why the API server refuses the current template's worker pods, if it does.",
    )
    budget_min_available: int | None = Field(
        default=None,
        ge=0,
        description="minAvailable of the pool's PodDisruptionBudget, as last applied.",
    )
