"""Fault injection for tests of the router, operator and cluster: the ``fault``
command, registered only when ``BRIDGEPOOL_FAULTS_ENABLED=1``.

``{"kind": ..., "seconds": ...}``:

- ``slow``: sleep ``seconds`` (default 1), then succeed;
- ``hang``: never answer; the call ends with the call timeout (504);
- ``error``: a 500 ``system`` error, as from a broken worker;
- ``crash``: the process exits at once with :data:`CRASH_EXIT_CODE`;
- ``unhealthy``: degraded, ``/readyz`` 503, for ``seconds`` (none: until cleared);
- ``clear``: end an ``unhealthy`` period now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool_worker.builtins import parse_args
from bridgepool_worker.registry import CommandRegistry
from bridgepool_worker.sdk import CommandContext

if TYPE_CHECKING:
    from bridgepool_worker.runtime import WorkerRuntime

CRASH_EXIT_CODE = 70  # EX_SOFTWARE
log = logging.getLogger("bridgepool_worker.faults")


class FaultArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["slow", "hang", "error", "crash", "unhealthy", "clear"]
    seconds: float | None = Field(default=None, ge=0)


def register_faults(registry: CommandRegistry, runtime: WorkerRuntime) -> None:
    async def fault(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        parsed = parse_args(FaultArgs, "fault", args)
        log.warning(
            "injected fault",
            extra={"worker": runtime.name, "kind": parsed.kind},
        )
        if parsed.kind == "slow":
            seconds = 1.0 if parsed.seconds is None else parsed.seconds
            await asyncio.sleep(seconds)
            return {"fault": "slow", "slept": seconds}
        if parsed.kind == "hang":
            await asyncio.Event().wait()
        if parsed.kind == "error":
            raise BridgePoolError.make(
                ErrorCategory.SYSTEM,
                "injected_fault",
                "injected worker error",
                status=500,
                injected=True,
            )
        if parsed.kind == "crash":
            logging.shutdown()
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)
        if parsed.kind == "unhealthy":
            runtime.mark_unhealthy(parsed.seconds, "injected unhealthy fault")
            return {"fault": "unhealthy", "seconds": parsed.seconds}
        runtime.clear_unhealthy()
        return {"fault": "clear"}

    registry.add("fault", fault, builtin=True, origin="bridgepool_worker.faults")
