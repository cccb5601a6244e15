"""Load and faults against a pool, for the soak benchmarks (benchmarks/soak.py
on a cluster, with the chart; benchmarks/local_soak.py on this machine, with
``bridgepool run``) and the short chaos run of the e2e suite.

- :class:`Load` is an open-loop load generator: call *i* is scheduled at
  ``start + i / rate`` and sent then, whether or not earlier calls have
  answered, and its latency counts from that scheduled time, so a stalled
  router shows as latency instead of hiding as fewer calls (no coordinated
  omission). It mixes session calls (each session creates a program once,
  then runs it) with anonymous calls, some marked idempotent.
- :class:`Faults` injects one fault of each kind the pool must survive and
  times, from the fault, detection (the router stops counting the worker as
  ready) and recovery (the pool Ready again with every worker ready). What
  does not depend on where the pool runs (the records, the faults that are
  commands to a worker) is :class:`WorkerFaults`, which the local soak's
  faults share.
- :class:`Watch` samples the pool's status (from the API, or from any
  coroutine function that returns the pool object) and the router's view of
  its workers while the run goes on.
- :func:`summarize` turns all of that into the seed's numbers.

Load and Watch reach the pool by its namespaced route
(:func:`e2e.components.pool_api`). Against a router with authentication on
(the chart's default), give them the caller's ``Authorization`` header;
against one with ``auth.mode: none``, none. The faults that are commands to a
worker (crash, unhealthy, hang) go straight to its pod, which answers only
its pool's key: on a cluster they read it from the Secret the operator
keeps for the pool's workers (``<pool>-bridgepool-keys``).

Everything runs on one asyncio loop; the Kubernetes API calls go through the
synchronous client in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes import client

from benchmarks.stats import percentile
from bridgepool import labels
from bridgepool.credentials import Keys, keys_from_secret
from bridgepool.protocol import (
    HEADER_IDEMPOTENT,
    HEADER_PREVIOUS_WORKER,
    HEADER_SESSION_REBOUND,
    HEADER_WAIT_FOR_SLOT,
    HEADER_WORKER,
    WORKER_PORT,
)
from bridgepool.worker_http import WorkerHttp
from bridgepool.workers import pod_ready
from e2e.components import Pools, has_condition
from e2e.support import Cluster

SESSION, IDEMPOTENT, ANONYMOUS = "session", "idempotent", "anonymous"
# Of every 20 calls: 12 in sessions, 5 anonymous idempotent, 3 anonymous.
MIX = [SESSION] * 12 + [IDEMPOTENT] * 5 + [ANONYMOUS] * 3
# The worker's error type when every call slot of it is taken.
WORKER_BUSY = "capacity_exceeded"
# A fault's effects are attributed to it for this long.
FAULT_WINDOW_SECONDS = 15.0
# Faults that kill a worker's process without warning: its calls in flight
# and its sessions' state are lost, by design (README, "Sessions").
# ``force-kill`` is the local soak's ``force-delete``: SIGKILL to the process.
ABRUPT = {"crash", "force-delete", "force-kill"}
# Faults aimed at one worker, whose detection the router's view shows
# (``graceful-stop`` is the local soak's ``graceful-delete``: SIGTERM).
WORKER_FAULTS = {
    "crash",
    "force-delete",
    "force-kill",
    "graceful-delete",
    "graceful-stop",
    "unhealthy",
}


@dataclass
class Call:
    kind: str
    scheduled: float  # monotonic
    done: float = 0.0
    status: int = 0  # 0: no HTTP answer
    category: str = ""  # the error body's category, or "transport"
    error_type: str = ""
    worker: str = ""
    session: str = ""
    rebound: bool = False
    previous_worker: str = ""  # on a rebound: the worker that held the session

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


@dataclass
class FaultRecord:
    kind: str
    at: float  # monotonic
    target: str = ""
    expected_workers: int = 0  # the fewest ready workers that count as recovered
    detected: float | None = None  # seconds after ``at``
    recovered: float | None = None


class Load:
    """Open-loop calls to the pool at ``api`` (:func:`~e2e.components.pool_api`),
    each with ``headers`` (the caller's ``Authorization``, where the router
    wants one)."""

    def __init__(
        self,
        api: str,
        rate: float,
        sessions: int,
        work_seconds: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        self.headers = dict(headers or {})
        self.rate = rate
        # Anonymous calls hold their worker this long (ping's sleep, with the
        # worker's faults enabled), so the pool has work to size itself to.
        self.work_seconds = work_seconds
        self.sessions = [f"soak-{i}" for i in range(sessions)]
        self.programs: dict[str, str] = {}  # session -> program id
        self.creating: set[str] = set()  # sessions whose create_program is in flight
        self.last_worker: dict[str, str] = {}
        self.calls: list[Call] = []
        self.affinity_hits = 0
        self.affinity_checks = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, http: aiohttp.ClientSession) -> None:
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        i = session_calls = 0
        while not self._stop.is_set():
            at = start + i / self.rate
            delay = at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            call = Call(MIX[i % len(MIX)], at)
            if call.kind == SESSION:
                call.session = self.sessions[session_calls % len(self.sessions)]
                session_calls += 1
            task = asyncio.create_task(self._send(http, call))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks)

    async def _send(self, http: aiohttp.ClientSession, call: Call) -> None:
        headers = dict(self.headers)
        if call.kind == SESSION:
            url = f"{self.api}/sessions/{call.session}/execute"
            program = self.programs.get(call.session)
            creating = program is None and call.session not in self.creating
            if creating:
                self.creating.add(call.session)
                body: dict[str, Any] = {
                    "command": "create_program",
                    "args": {"signature": "question -> answer"},
                }
            elif program is None:  # its program is on the way: a plain call meanwhile
                body = {"command": "ping", "args": {}}
            else:
                body = {
                    "command": "execute_program",
                    "args": {"program_id": program, "inputs": {"question": "2+2?"}},
                }
        else:
            url = f"{self.api}/execute"
            body = {"command": "ping", "args": {"sleep": self.work_seconds}}
            if call.kind == IDEMPOTENT:
                headers[HEADER_IDEMPOTENT] = "true"
        try:
            async with http.post(url, json=body, headers=headers) as resp:
                payload = await resp.json(content_type=None)
                call.status = resp.status
                call.worker = resp.headers.get(HEADER_WORKER, "")
                call.rebound = resp.headers.get(HEADER_SESSION_REBOUND) == "true"
                call.previous_worker = resp.headers.get(HEADER_PREVIOUS_WORKER, "")
                if resp.status != 200:
                    error = (payload or {}).get("error") or {}
                    call.category = str(error.get("category", "unknown"))
                    call.error_type = str(error.get("type", "unknown"))
                elif call.kind == SESSION and creating:
                    self.programs[call.session] = payload["result"]["program_id"]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            call.category, call.error_type = "transport", type(exc).__name__
        finally:
            if call.kind == SESSION and creating:
                self.creating.discard(call.session)
        call.done = time.monotonic()
        if call.kind == SESSION:
            self._track_session(call)
        self.calls.append(call)

    def _track_session(self, call: Call) -> None:
        if call.rebound or (call.status == 404 and call.category == "session"):
            # The state is gone (the worker died): start the session again.
            self.programs.pop(call.session, None)
        if call.ok and call.worker:
            previous = self.last_worker.get(call.session)
            if previous is not None:
                self.affinity_checks += 1
                self.affinity_hits += previous == call.worker
            self.last_worker[call.session] = call.worker


@dataclass
class Sample:
    at: float
    desired: int = 0
    ready: int = 0
    utilization: float = 0.0
    pool_ready: bool = False
    router_ready: frozenset[str] = frozenset()

    def settled(self, at_least: int) -> bool:
        """The pool Ready: every desired worker ready, and at least ``at_least`` of them."""
        return self.pool_ready and self.ready >= max(self.desired, at_least)


# The pool object now (``status`` as the BridgePool's), or {} when it cannot be read.
PoolReader = Callable[[], Awaitable[Mapping[str, Any]]]


def cluster_pool(pools: Pools, pool: str) -> PoolReader:
    """The BridgePool ``pool``, read through the API server."""

    async def read() -> Mapping[str, Any]:
        try:
            found: Mapping[str, Any] = await asyncio.to_thread(pools.get, pool)
        except client.ApiException:
            return {}
        return found

    return read


class Watch:
    """Samples the pool (``pools``: the cluster's BridgePools, in which
    ``pool`` is read by name, or a :data:`PoolReader`) and the router's view
    of its workers (GET of the pool at ``api``,
    :func:`~e2e.components.pool_api`, with ``headers``)."""

    def __init__(
        self,
        pools: Pools | PoolReader,
        pool: str,
        api: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.read_pool = cluster_pool(pools, pool) if isinstance(pools, Pools) else pools
        self.pool = pool
        self.api = api.rstrip("/")
        self.headers = dict(headers or {})
        self.samples: list[Sample] = []
        self.router_view: list[tuple[float, frozenset[str]]] = []
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(self._pool_loop(), self._router_loop(http))

    async def _pool_loop(self) -> None:
        while not self._stop.is_set():
            pool = await self.read_pool()
            status = pool.get("status") or {}
            ready_cond = has_condition(pool, "Ready", "True")
            self.samples.append(
                Sample(
                    time.monotonic(),
                    int(status.get("desiredReplicas") or 0),
                    int(status.get("readyReplicas") or 0),
                    float(status.get("utilization") or 0.0),
                    ready_cond,
                )
            )
            await _pause(self._stop, 0.5)

    async def _router_loop(self, http: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            try:
                async with http.get(
                    self.api, headers=self.headers, timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status in (401, 403):
                        # Not a fault: a view of no workers would time every
                        # detection as immediate, so stop the run instead.
                        raise RuntimeError(
                            f"the router refused the watch ({resp.status}): {await resp.text()}"
                        )
                    workers = (await resp.json())["workers"] if resp.status == 200 else []
                ready = frozenset(
                    w["worker"] for w in workers if w["ready"] and not w.get("draining")
                )
                self.router_view.append((time.monotonic(), ready))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await _pause(self._stop, 0.1)

    def pool_settled_after(self, at: float, at_least: int) -> float | None:
        """Seconds from ``at`` until the pool was Ready again: every desired
        worker ready, and at least ``at_least`` of them."""
        for s in self.samples:
            if s.at > at and s.settled(at_least):
                return s.at - at
        return None

    def router_dropped_after(self, at: float, worker: str) -> float | None:
        """Seconds from ``at`` until the router no longer counted ``worker`` as
        ready; None when it did not within FAULT_WINDOW_SECONDS (a crashed
        worker restarted in place between two samples)."""
        for when, ready in self.router_view:
            if at < when <= at + FAULT_WINDOW_SECONDS and worker not in ready:
                return when - at
        return None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def error_type(answer: str) -> str:
    """The ``error.type`` of a worker's JSON answer ("" if it has none)."""
    try:
        error = (json.loads(answer) or {}).get("error") or {}
    except (ValueError, AttributeError):
        return ""
    return str(error.get("type", ""))


@dataclass(frozen=True)
class Victim:
    """The worker a fault is aimed at: its name (its pod's, or its process's
    on one machine) and its own address."""

    name: str
    url: str


class WorkerFaults(ABC):
    """Fault injection, wherever the pool runs: each fault's record, and the
    faults that are commands to a worker (crash, unhealthy, hang), sent
    straight to it with its pool's key. A subclass says which worker and
    which key, and injects the other kinds its own way."""

    http: aiohttp.ClientSession
    replicas: int  # the scale faults' starting point
    capacity: int  # the workers' call slots, which the hang fault fills
    records: list[FaultRecord]
    _hanging: set[asyncio.Task[None]]

    @abstractmethod
    def kinds(self) -> dict[str, Callable[[], Awaitable[str]]]:
        """Every fault kind, in the order a run injects them."""

    @abstractmethod
    async def _victim(self) -> Victim:
        """A ready worker that is not draining: the oldest one."""

    @abstractmethod
    async def _pool_keys(self) -> Keys:
        """The keys the pool's workers answer now."""

    async def inject(self, kind: str) -> FaultRecord:
        record = FaultRecord(kind, time.monotonic())
        record.target = await self.kinds()[kind]()
        record.expected_workers = self.replicas
        self.records.append(record)
        return record

    async def _fault_command(
        self, victim: Victim, args: dict[str, Any], seconds: float = 5, keys: Keys | None = None
    ) -> None:
        """Send the fault command straight to ``victim`` with the pool's key (its
        previous one too, should the worker not have seen a rotation yet).

        It is a call like any other, so a worker with every call slot taken
        turns it away (503 ``capacity_exceeded``): it waits in the worker's
        line for a slot and is sent again until ``seconds`` ran out. A success,
        or no answer (a crash, a hang), is the fault injected; any other
        answer raises: a worker that injected nothing would be timed as if it
        had."""
        url = f"{victim.url}/v1/execute"
        body = {"command": "fault", "args": args}
        keys = keys or await self._pool_keys()
        deadline = time.monotonic() + seconds
        # WorkerHttp sets the request's headers itself (the key): the
        # line's header goes as the session's.
        async with aiohttp.ClientSession(headers={HEADER_WAIT_FOR_SLOT: "true"}) as session:
            http = WorkerHttp(session, keys)
            while True:
                left = max(0.1, deadline - time.monotonic())
                try:
                    async with http.post(
                        url, json=body, timeout=aiohttp.ClientTimeout(total=left)
                    ) as resp:
                        answer = await resp.text()
                except (aiohttp.ClientError, TimeoutError):
                    return  # a crash or a hang answers nothing
                if resp.status == 200:
                    return
                if error_type(answer) != WORKER_BUSY or time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"{victim.name} refused the fault command ({resp.status}: {answer})"
                    )
                await asyncio.sleep(0.05)

    async def crash(self) -> str:
        victim = await self._victim()
        await self._fault_command(victim, {"kind": "crash"}, seconds=2)
        return victim.name

    async def unhealthy(self) -> str:
        victim = await self._victim()
        await self._fault_command(victim, {"kind": "unhealthy", "seconds": 20})
        return victim.name

    async def hang(self) -> str:
        """Every call slot of one worker taken by a call that never answers
        (each gives up after 20 s): the worker is alive but serves nothing."""
        victim = await self._victim()
        keys = await self._pool_keys()
        for _ in range(self.capacity):
            command = self._fault_command(victim, {"kind": "hang"}, seconds=20, keys=keys)
            task = asyncio.create_task(command)
            self._hanging.add(task)
            task.add_done_callback(self._hanging.discard)
        return victim.name


@dataclass
class Faults(WorkerFaults):
    """Fault injection on a pool the chart's operator and router serve."""

    cluster: Cluster
    pools: Pools
    pool: str
    release_namespace: str
    release_selector: str
    replicas: int  # the scale faults' starting point
    http: aiohttp.ClientSession
    # What the scale faults change: ``replicas``, or ``minReplicas`` of an
    # autoscaled pool.
    scale_field: str = "replicas"
    capacity: int = 4  # the workers' call slots, which the hang fault fills
    records: list[FaultRecord] = field(default_factory=list)
    _hanging: set[asyncio.Task[None]] = field(default_factory=set)

    def kinds(self) -> dict[str, Callable[[], Awaitable[str]]]:
        return {
            "crash": self.crash,
            "force-delete": self.force_delete,
            "graceful-delete": self.graceful_delete,
            "unhealthy": self.unhealthy,
            "hang": self.hang,
            "rollout": self.rollout,
            "scale-up": self.scale_up,
            "scale-down": self.scale_down,
            "router-restart": self.router_restart,
            "operator-restart": self.operator_restart,
        }

    async def _victim(self) -> Victim:
        pods = await asyncio.to_thread(self.pools.pods, self.pool)
        for pod in pods:
            annotations = pod.metadata.annotations or {}
            if pod_ready(pod) and labels.ANNOTATION_DRAINING not in annotations:
                return Victim(str(pod.metadata.name), f"http://{pod.status.pod_ip}:{WORKER_PORT}")
        raise RuntimeError(f"no ready worker of {self.pool} to inject a fault into")

    async def _pool_keys(self) -> Keys:
        """The pool's keys, from the Secret the operator writes for its workers
        (read afresh for each fault: a rotation may have happened meanwhile)."""
        name = labels.keys_secret_name(self.pool)
        secret: Any = await asyncio.to_thread(
            self.pools.core.read_namespaced_secret, name, self.pools.namespace
        )
        return keys_from_secret(secret.data)

    async def _kubectl(self, *args: str) -> None:
        await asyncio.to_thread(self.cluster.kubectl, *args)

    async def force_delete(self) -> str:
        pod = await self._victim()
        await self._kubectl(
            "-n", self.pools.namespace, "delete", "pod", pod.name,
            "--force", "--grace-period=0", "--wait=false",
        )  # fmt: skip
        return pod.name

    async def graceful_delete(self) -> str:
        pod = await self._victim()
        await self._kubectl("-n", self.pools.namespace, "delete", "pod", pod.name, "--wait=false")
        return pod.name

    async def rollout(self) -> str:
        pool = await asyncio.to_thread(self.pools.get, self.pool)
        template = pool["spec"]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {})["soak-rollout"] = str(
            int(time.time())
        )
        await asyncio.to_thread(self.pools.patch_spec, self.pool, {"template": template})
        return self.pool

    async def _scale(self, by: int) -> str:
        self.replicas += by
        patch = {self.scale_field: self.replicas}
        await asyncio.to_thread(self.pools.patch_spec, self.pool, patch)
        return f"{self.scale_field} {self.replicas - by} -> {self.replicas}"

    async def scale_up(self) -> str:
        return await self._scale(+2)

    async def scale_down(self) -> str:
        return await self._scale(-2)

    async def _delete_component_pod(self, component: str) -> str:
        core = client.CoreV1Api(self.pools.api)
        selector = f"{self.release_selector},app.kubernetes.io/component={component}"
        found: Any = await asyncio.to_thread(
            core.list_namespaced_pod, self.release_namespace, label_selector=selector
        )
        live = sorted(p.metadata.name for p in found.items if p.metadata.deletion_timestamp is None)
        victim: str = live[0]
        await self._kubectl("-n", self.release_namespace, "delete", "pod", victim, "--wait=false")
        return victim

    async def router_restart(self) -> str:
        return await self._delete_component_pod("router")

    async def operator_restart(self) -> str:
        return await self._delete_component_pod("operator")


async def run_chaos(
    load: Load,
    watch: Watch,
    faults: WorkerFaults,
    kinds: Sequence[str],
    *,
    warmup: float,
    seconds: float,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Load and watch for ``seconds``; after ``warmup``, inject ``kinds`` one
    by one, evenly spaced; then time each fault's detection and recovery."""
    runners = [
        asyncio.create_task(load.run(faults.http)),
        asyncio.create_task(watch.run(faults.http)),
    ]
    started = time.monotonic()
    spacing = (seconds - warmup) / (len(kinds) + 1)
    try:
        for n, kind in enumerate(kinds, start=1):
            await asyncio.sleep(max(0.0, started + warmup + n * spacing - time.monotonic()))
            record = await faults.inject(kind)
            progress(f"fault {kind}: {record.target}")
        await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    finally:
        # Also when a fault could not be injected: the calls in flight end
        # before the caller closes their HTTP session.
        load.stop()
        watch.stop()
        done = await asyncio.gather(*runners, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    time_faults(watch, faults.records)


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------


def fault_at(records: Sequence[FaultRecord], at: float) -> FaultRecord | None:
    """The latest fault injected within FAULT_WINDOW_SECONDS before ``at``."""
    latest = None
    for r in records:
        if r.at <= at <= r.at + FAULT_WINDOW_SECONDS:
            latest = r
    return latest


def fault_of(records: Sequence[FaultRecord], call: Call) -> FaultRecord | None:
    """The fault a call's outcome is judged by: the latest one injected while
    the call was in flight, or within FAULT_WINDOW_SECONDS before it was sent.
    A call sent a moment before a worker is killed, and in flight on it then,
    is that fault's as much as one sent a moment after."""
    latest = None
    for r in records:
        if call.scheduled <= r.at + FAULT_WINDOW_SECONDS and r.at <= max(call.done, call.scheduled):
            latest = r
    return latest


# Faults after which the operator drains workers of its own accord.
DRAINING = ("rollout", "scale-down")


def lost_to(call: Call, faults: Sequence[FaultRecord]) -> str:
    """The fault that took a rebound session's worker: the one aimed at that
    worker, else the latest rollout or scale-down (the operator drained it)."""
    for fault in reversed(faults):
        if fault.at <= call.scheduled and fault.target == call.previous_worker:
            return fault.kind
    for fault in reversed(faults):
        if fault.at <= call.scheduled and fault.kind in DRAINING:
            return f"{fault.kind} (drain timed out)"
    return "none"


def allowed(call: Call, fault: FaultRecord | None) -> str | None:
    """Why the product's semantics allow this failed call, or None:

    - a call that cannot be retried safely (not idempotent, or tied to its
      session's worker) in flight on a worker killed without warning;
    - a session call that finds its state gone with its worker (the router
      says so with the rebound header): a worker's sessions die with it when
      it crashes (and maybe restarts in place), and a session that could not
      move off a draining worker ends with the drain's timeout.
    """
    state_lost = call.kind == SESSION and call.status == 404 and call.category == "session"
    if state_lost and call.rebound:
        return "session state lost with its worker"
    if fault is None or fault.kind not in ABRUPT or call.kind == IDEMPOTENT:
        return None
    if call.error_type in {"worker_disconnected", "worker_unreachable"} or (
        call.category == "transport"
    ):
        return f"{call.kind} call in flight on a killed worker"
    return None


@dataclass
class Summary:
    calls: int
    failed: int
    allowed_failures: int
    raw_availability: float  # every failure counts
    availability: float  # excluding allowed failures
    by_kind: dict[str, tuple[int, int]]  # kind -> (calls, failures not allowed)
    failures_by_category: Counter[str]
    allowed_by_reason: Counter[str]
    sessions_lost: Counter[str]  # fault kind -> sessions whose state was lost
    affinity: float
    latency_ms: dict[str, tuple[float, float, float, int]]  # phase -> p50, p99, p99.9, n
    utilization: float  # mean over steady samples
    faults: list[FaultRecord]


def time_faults(watch: Watch, faults: Sequence[FaultRecord]) -> None:
    """Fill in each fault's detection and recovery times from the samples."""
    for fault in faults:
        if fault.kind in WORKER_FAULTS:
            fault.detected = watch.router_dropped_after(fault.at, fault.target)
        fault.recovered = watch.pool_settled_after(fault.at, fault.expected_workers)


def summarize(load: Load, watch: Watch, faults: Sequence[FaultRecord]) -> Summary:
    failed = [c for c in load.calls if not c.ok]
    allowed_calls = [c for c in failed if allowed(c, fault_of(faults, c)) is not None]
    allowed_ids = {id(c) for c in allowed_calls}
    by_kind: dict[str, tuple[int, int]] = {}
    for kind in (SESSION, IDEMPOTENT, ANONYMOUS):
        of_kind = [c for c in load.calls if c.kind == kind]
        bad = [c for c in of_kind if not c.ok and id(c) not in allowed_ids]
        by_kind[kind] = (len(of_kind), len(bad))
    sessions_lost: Counter[str] = Counter()
    for c in load.calls:
        if c.kind == SESSION and c.rebound:
            sessions_lost[lost_to(c, faults)] += 1
    # Latency of the session calls: the anonymous ones carry the load's
    # simulated work, which would hide the pool's own cost.
    phases: dict[str, list[float]] = defaultdict(list)
    for c in load.calls:
        if c.ok and c.kind == SESSION:
            fault = fault_at(faults, c.scheduled)
            phases[fault.kind if fault else "steady"].append(c.latency * 1000)
    steady_util = [
        s.utilization for s in watch.samples if fault_at(faults, s.at) is None and s.pool_ready
    ]
    total = len(load.calls)
    real_failures = len(failed) - len(allowed_calls)
    return Summary(
        calls=total,
        failed=len(failed),
        allowed_failures=len(allowed_calls),
        raw_availability=(total - len(failed)) / total if total else math.nan,
        availability=(total - real_failures) / total if total else math.nan,
        by_kind=by_kind,
        failures_by_category=Counter(
            f"{c.category}/{c.error_type}" for c in failed if id(c) not in allowed_ids
        ),
        allowed_by_reason=Counter(
            f"{allowed(c, fault_of(faults, c))} ({lost_to(c, faults)})" for c in allowed_calls
        ),
        sessions_lost=sessions_lost,
        affinity=load.affinity_hits / load.affinity_checks if load.affinity_checks else math.nan,
        latency_ms={
            phase: (
                percentile(values, 0.5),
                percentile(values, 0.99),
                percentile(values, 0.999),
                len(values),
            )
            for phase, values in sorted(phases.items())
        },
        utilization=sum(steady_util) / len(steady_util) if steady_util else math.nan,
        faults=list(faults),
    )
