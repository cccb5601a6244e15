"""The local executor: the planner's workers are processes on this machine.

- observe: the pool's YAML in the state directory (as an API server holds
  the object: ``bridgepool apply`` and the file watch write it there), the
  worker processes, their readiness and their ``/v1/stats``;
- apply: start, drain (the router's pool file marks it), stop and move
  sessions off workers; events are log lines (the operator's events, in the
  same words); the status is kept in ``status.json`` and served;
- visible: always: the process table is the platform, nothing lags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bridgepool.files import write_private
from bridgepool.moves.mover import move_off
from bridgepool.protocol import WorkerStats
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool.worker_http import WorkerHttp, fetch_stats
from bridgepool_planner.passes import Observed, PassOutcome, PassResult
from bridgepool_planner.planner import (
    Action,
    CreateWorker,
    DrainWorker,
    MoveSessions,
    StopWorker,
    UpdateStatus,
)
from bridgepool_planner.status import (
    EmitEvent,
    after_creates,
    created_event,
    drain_event,
    move_events,
    stop_event,
)

from . import metrics
from .manifest import (
    PoolFile,
    PoolFileError,
    WorkerRecipe,
    handler_paths,
    parse_pool,
    read_text,
    worker_recipe,
)
from .processes import (
    ChildProcess,
    LocalWorker,
    free_port,
    probe_readiness,
    watch_exit,
    worker_name,
)

log = logging.getLogger("bridgepool.local")

# Events kept for ``bridgepool status``.
EVENTS_KEPT = 50
# How long a move may take per pass, and each of its steps (the operator's defaults).
MOVE_BUDGET_SECONDS = 15.0
MOVE_STEP_SECONDS = 10.0


def source_of(pool_path: Path) -> Path:
    """The file the applied pool came from (its handler files are relative to it)."""
    try:
        return Path(pool_path.with_suffix(".source").read_text().strip())
    except OSError:
        return pool_path


def keep_pool(state_dir: Path, source: Path) -> None:
    """Apply ``source``'s pool: copy it into the state directory, with where it came from."""
    write_private(state_dir / "pool.source", str(source.resolve()))
    write_private(state_dir / "pool.yaml", source.read_text())


@dataclass
class Event:
    time: str
    type: str
    reason: str
    message: str


@dataclass
class LocalSettings:
    """What the command line adds to the pool's YAML."""

    state_dir: Path
    handlers: tuple[str, ...] = ()  # override the pool's local-handlers annotation
    worker_command: str | None = None  # in place of this environment's worker


@dataclass
class SpecSeen:
    """The pool's YAML as last read: what it says, and its generation."""

    fingerprint: str = ""  # the YAML's text and the revision of its workers
    pool: PoolFile | None = None
    recipe: WorkerRecipe | None = None
    problem: str | None = None
    generation: int = 0


@dataclass
class LocalExecutor:
    """One pool's workers as processes (see the module's docstring)."""

    pool_path: Path  # the pool's YAML, as applied
    name: str
    namespace: str
    settings: LocalSettings
    http: aiohttp.ClientSession
    workers_http: WorkerHttp
    keys_dir: Path  # the pool's keys, which its workers read
    changed: Callable[[], None]  # wakes the loop: a worker exited or changed readiness
    router_file: Path
    workers: dict[str, LocalWorker] = field(default_factory=dict)
    status: BridgePoolStatus = field(default_factory=BridgePoolStatus)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    seen: SpecSeen = field(default_factory=SpecSeen)
    last_valid: tuple[PoolFile, WorkerRecipe] | None = None
    recipes: dict[str, WorkerRecipe] = field(default_factory=dict)
    stopping: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- observe --------------------------------------------------------------

    def read_spec(self) -> SpecSeen:
        """The pool's YAML now, with its worker recipe: a new generation when
        either changed (the YAML, or a handler file's content)."""
        fingerprint = ""
        try:
            fingerprint = read_text(self.pool_path)
            # Its handler files are relative to the file it was applied from.
            pool = parse_pool(fingerprint, source_of(self.pool_path))
            if (pool.ref.namespace, pool.ref.name) != (self.namespace, self.name):
                raise PoolFileError(
                    pool.source,
                    f"metadata: this supervisor runs the pool {self.label}, not {pool.ref}: "
                    "run another for that pool",
                )
            recipe = worker_recipe(
                pool,
                self.keys_dir,
                handlers=handler_paths(pool, self.settings.handlers),
                command=self.settings.worker_command,
            )
            fingerprint += recipe.revision
            problem = None
        except PoolFileError as err:
            pool, recipe, problem = None, None, err.problem
        if fingerprint != self.seen.fingerprint:
            self.seen = SpecSeen(fingerprint, pool, recipe, problem, self.seen.generation + 1)
        return self.seen

    async def observe(self, now: datetime) -> Observed:
        self.drop_gone()
        seen = self.read_spec()
        if seen.pool is not None and seen.recipe is not None:
            self.last_valid = (seen.pool, seen.recipe)
            self.recipes[seen.recipe.revision] = seen.recipe
        running = [w for w in self.workers.values() if w.running]
        stats = await asyncio.gather(*(fetch_stats(self.workers_http, w.url) for w in running))
        by_name: dict[str, WorkerStats | None] = {
            w.name: s for w, s in zip(running, stats, strict=True)
        }
        observed = [w.observe(by_name.get(w.name)) for w in self.workers.values()]
        valid = None
        if self.last_valid is not None:
            pool, recipe = self.last_valid
            valid = (pool.spec, recipe.revision)
        return Observed(
            name=self.name,
            generation=seen.generation,
            status=self.status,
            valid=valid if seen.problem is None else None,
            problem=seen.problem,
            last_valid=valid,
            workers=observed,
        )

    def last_seen(self) -> Observed:
        return Observed(name=self.name, generation=self.seen.generation, status=self.status)

    # -- apply ----------------------------------------------------------------

    def tell(self, event: EmitEvent) -> None:
        """An event: a log line (as the operator's events are), kept for ``status``."""
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        extra = {"namespace": self.namespace, "pool": self.name, "reason": event.reason}
        log.log(level, event.message, extra=extra)
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.events.append(Event(when, event.type, event.reason, event.message))

    async def apply(
        self, observed: Observed, actions: Sequence[Action], result: PassResult
    ) -> None:
        spec = observed.planned_on
        created_revision: str | None = None
        refused: str | None = None
        started = datetime.now(UTC)
        for action in actions:
            if isinstance(action, CreateWorker):
                assert spec is not None
                created_revision = action.revision
                if refused is not None:
                    continue
                try:
                    worker = await self.start_worker(spec, self.recipes[action.revision])
                except OSError as err:
                    refused = f"the worker command cannot be started: {err}"
                    metrics.METRICS.worker_actions.labels("create-refused", action.reason).inc()
                    continue
                result.created.add(worker.name)
                metrics.METRICS.worker_actions.labels("create", action.reason).inc()
                self.tell(created_event(worker.name, action.revision, action.reason))
            elif isinstance(action, DrainWorker):
                drained = self.workers.get(action.worker)
                if drained is not None:
                    drained.draining_since, drained.drain_reason = started, action.reason
                result.drained.add(action.worker)
                metrics.METRICS.worker_actions.labels("drain", action.reason).inc()
                self.tell(drain_event(action.worker, action.reason, action.message))
            elif isinstance(action, StopWorker):
                self.stop_worker(action.worker, action.grace_seconds)
                result.stopped.add(action.worker)
                metrics.METRICS.worker_actions.labels("delete", action.reason).inc()
                self.tell(stop_event(action.worker, action.message))
            elif isinstance(action, MoveSessions):
                await self.move_sessions(action, result)
            elif isinstance(action, EmitEvent):
                self.tell(action)
            elif isinstance(action, UpdateStatus):
                status = action.status
                if created_revision is not None:
                    status, events = after_creates(
                        observed.status,
                        status,
                        revision=created_revision,
                        refused=refused,
                        generation=observed.generation,
                        now=started,
                    )
                    for event in events:
                        self.tell(event)
                self.write_status(status)
        self.publish()

    async def start_worker(self, spec: BridgePoolSpec, recipe: WorkerRecipe) -> LocalWorker:
        name = worker_name(self.name)
        port = free_port()
        env = {
            **recipe.env,
            "BRIDGEPOOL_WORKER_NAME": name,
            "BRIDGEPOOL_WORKER_HOST": "127.0.0.1",
            "BRIDGEPOOL_WORKER_PORT": str(port),
        }
        child = await ChildProcess.start(name, recipe.argv, env, self.settings.state_dir)
        worker = LocalWorker(name, recipe.revision, port, child, datetime.now(UTC))
        worker.tasks = [
            asyncio.create_task(watch_exit(worker, self.changed)),
            asyncio.create_task(probe_readiness(worker, self.http, spec.health, self.changed)),
        ]
        self.workers[name] = worker
        return worker

    def stop_worker(self, name: str, grace_seconds: float) -> None:
        """Stop a worker: SIGTERM now, SIGKILL after the grace period; it
        leaves the table when its process is gone."""
        worker = self.workers.get(name)
        if worker is None:
            return
        if not worker.running:
            self.forget(worker)
            return
        if worker.stop_asked_at is not None:
            return
        worker.stop_asked_at = datetime.now(UTC)

        async def stop() -> None:
            await worker.child.stop(grace_seconds)
            self.forget(worker)
            self.changed()

        self.stopping.append(asyncio.create_task(stop()))

    def forget(self, worker: LocalWorker) -> None:
        for task in worker.tasks:
            task.cancel()
        worker.child.forget()
        self.workers.pop(worker.name, None)
        self.publish()

    def drop_gone(self) -> None:
        """A worker that exited cleanly, not asked to by the supervisor, was
        stopped from outside (a signal) after handing its sessions off: it
        leaves the pool, as a pod deleted from outside does."""
        for worker in list(self.workers.values()):
            if worker.exit_code == 0 and worker.stop_asked_at is None:
                self.forget(worker)

    async def move_sessions(self, action: MoveSessions, result: PassResult) -> None:
        report = await move_off(
            self.workers_http,
            action.url,
            action.targets,
            budget_seconds=MOVE_BUDGET_SECONDS,
            step_timeout=MOVE_STEP_SECONDS,
        )
        result.sessions_moved += len(report.moved)
        for outcome, count in report.counts().items():
            metrics.METRICS.session_moves.labels(outcome).inc(count)
        for event in move_events(action.worker, report.moved, report.cannot_move):
            self.tell(event)

    def write_status(self, status: BridgePoolStatus) -> None:
        self.status = status
        metrics.METRICS.record_status(self.namespace, self.name, status)
        write_private(self.settings.state_dir / "status.json", json.dumps(self.status_view()))

    def status_view(self) -> dict[str, Any]:
        """The pool as ``bridgepool status`` shows it: what ``kubectl get bp -o
        yaml`` would, with the recent events."""
        return {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": self.status.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "events": [vars(e) for e in self.events],
        }

    def router_view(self) -> dict[str, Any]:
        """The router's pool file: the pool's workers, their drain marks and
        readiness, and the pool's routing and session settings."""
        spec = None if self.last_valid is None else self.last_valid[0].spec
        # A worker is shown to the router once it has been ready: the router
        # then starts with it up, rather than find it not listening yet.
        entry: dict[str, Any] = {
            "workers": [
                {
                    "name": w.name,
                    "url": w.url,
                    "draining": w.draining_since is not None
                    or w.stop_asked_at is not None
                    or w.says_terminating,
                    "ready": w.ready,
                }
                for w in self.workers.values()
                if w.running and w.ever_ready
            ]
        }
        if spec is not None:
            entry["routing"] = spec.routing.model_dump(by_alias=True, mode="json")
            entry["sessions"] = spec.sessions.model_dump(by_alias=True, mode="json")
        return {"namespace": self.namespace, "pools": {self.name: entry}}

    def publish(self) -> None:
        """Write the router's pool file if it says anything new."""
        text = json.dumps(self.router_view(), indent=1, sort_keys=True)
        try:
            if self.router_file.read_text() == text:
                return
        except OSError:
            pass
        write_private(self.router_file, text)

    def visible(self, result: PassResult) -> bool:
        return True

    def record_pass(self, outcome: PassOutcome, seconds: float) -> None:
        metrics.METRICS.record_pass(outcome, seconds)

    def describe_failure(self, err: BaseException) -> str:
        return f"{type(err).__name__}: {err}"

    # -- stop -----------------------------------------------------------------

    async def stop_all(self, grace_seconds: float) -> None:
        """Stop every worker: SIGINT, so each finishes its calls in flight (no
        router sends it more) and exits without waiting for its sessions to be
        handed off: they end with the pool, as when a BridgePool is deleted.
        SIGKILL after the grace period."""
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop_asked_at = worker.stop_asked_at or datetime.now(UTC)
        await asyncio.gather(*(w.child.stop(grace_seconds, signal.SIGINT) for w in workers))
        for task in self.stopping:
            task.cancel()
        for worker in workers:
            self.forget(worker)

    def kill_all(self) -> None:
        """Stop at once (a second Ctrl-C): SIGKILL every worker."""
        for worker in self.workers.values():
            worker.child.send_signal(signal.SIGKILL)
