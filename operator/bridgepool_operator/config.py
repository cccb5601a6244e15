"""The operator's start-up settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "BRIDGEPOOL_OPERATOR_"


@dataclass(frozen=True)
class OperatorConfig:
    """Operator settings, from BRIDGEPOOL_OPERATOR_* environment variables."""

    interval_seconds: float = 5.0
    stats_timeout_seconds: float = 1.0
    # How long to wait for the pod index to show the pass's own changes
    # before the next pass plans again (so no pod is created twice).
    settle_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        return cls(
            interval_seconds=float(env.get(PREFIX + "INTERVAL_SECONDS", cls.interval_seconds)),
            stats_timeout_seconds=float(
                env.get(PREFIX + "STATS_TIMEOUT_SECONDS", cls.stats_timeout_seconds)
            ),
            settle_timeout_seconds=float(
                env.get(PREFIX + "SETTLE_TIMEOUT_SECONDS", cls.settle_timeout_seconds)
            ),
        )
