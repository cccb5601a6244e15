"""The pool planner: ``(pool, observed workers, revision, now) -> actions``,
and the loop that runs it over an executor. Pure by its imports (no
Kubernetes client, no kopf, no HTTP), so the Kubernetes operator and the
local supervisor (``bridgepool run``) drive their workers with the same
decisions."""
