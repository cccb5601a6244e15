"""Soak on this machine: the soak benchmark's load and faults
(benchmarks/soak.py) against the same pool run by ``bridgepool run``, which
sizes, replaces and rolls its worker processes with the operator's planner,
and the same table of the seed's numbers, with the cluster's last figures
beside it.

The pool is soak.py's (minReplicas 2 of at most 8, autoscaled, a 30 s
scale-down, a 30 s drain, a 10 s grace period and call timeout), its workers
with fault injection on; the load only calls built-in commands, so the
workers load no handler file. ``bridgepool run`` runs it from a state
directory under ``--out`` (each process's log in ``state/logs/``, the
supervisor's own in ``supervisor.log``), its pool changed only by
``bridgepool apply``, as a cluster's only through the API.

The faults, and what each is on one machine:

- ``crash``: the worker's ``fault`` command (SIGKILL-like exit), as on a cluster;
- ``force-kill``: SIGKILL to the worker's process, the analog of ``kubectl
  delete pod --force --grace-period=0`` (a force-deleted pod's container is
  killed without warning);
- ``graceful-stop``: SIGTERM to the worker's process, the analog of a
  graceful pod delete: the worker drains, the supervisor moves its sessions;
- ``unhealthy``, ``hang``: the worker's ``fault`` commands, as on a cluster;
- ``rollout``, ``scale-up``, ``scale-down``: ``bridgepool apply`` of the
  pool's YAML with a new template label, and minReplicas two up, then down.

``router-restart`` and ``operator-restart`` have no analog here and are not
injected: they are listed as "n/a locally". On a cluster they delete one of
two router pods behind a Service (the other keeps taking calls) and the
operator pod (the workers keep serving while it restarts). Here there is one
router process, which the supervisor starts again when it dies, and the
supervisor is the operator: killing either is an outage of the pool by
design, not a fault it must survive without failed calls. ``--router-kill``
adds a SIGKILL of the router anyway, to time how soon the supervisor has it
answering again; the calls that fail meanwhile count as failures and are
expected.

After the run the supervisor gets SIGTERM and must stop within its own
bounds, leaving no process behind: no pid file in ``state/pids/`` and no
process whose environment names the state directory. Its warnings and
errors are listed under the table.

    .venv/bin/python -m benchmarks.local_soak [--minutes 5] [--rate 40]
        [--sessions 20] [--capacity 2] [--replicas 2] [--router-kill] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

from benchmarks import soak
from benchmarks.chaos import (
    FAULT_WINDOW_SECONDS,
    FaultRecord,
    Load,
    PoolReader,
    Summary,
    Victim,
    Watch,
    WorkerFaults,
    run_chaos,
    summarize,
)
from bridgepool.credentials import Keys, read_keys
from bridgepool.names import DEFAULT_NAMESPACE
from bridgepool_local.processes import STATE_DIR_VARIABLE, free_port
from e2e.components import has_condition, pool_api

POOL = soak.POOL
WARMUP_SECONDS = soak.WARMUP_SECONDS
# Eight faults after the warm-up, 30 s apart: the unhealthy fault lasts 20 s
# and the readiness probe takes up to 5 s more to see it end, so closer
# faults overlap (the next one's recovery would wait for that worker).
DEFAULT_MINUTES = 5.0
# The pool is up within this: two worker processes start in a second or two.
READY_SECONDS = 60.0
# The supervisor stops within its router's shutdown (10 s, and 1 s more) and
# the pool's grace period (10 s): this leaves room over both.
STOP_SECONDS = 45.0

# The cluster's last soak: README.md, "Soak: load and faults", the default
# 8-minute run with workers closed to strangers and every fault command
# waiting out a busy worker (2026-12-08; 40 calls/s, 20 sessions, capacity 2,
# minReplicas 2, 160 ms anonymous work, every fault once, the router and
# operator restarts among them). Keyed by soak.seed_rows' metric.
CLUSTER_COLUMN = "cluster (README, 2026-12-08)"
CLUSTER_FIGURES: dict[str, str] = {
    "availability (allowed failures apart)": "98.328 % (19,201 calls, 352 failed, 31 allowed)",
    "availability (every failure counts)": "98.167 %",
    "detection (fault -> router drops worker)": "mean 1.51 s, max 5.28 s",
    "recovery (fault -> pool Ready, full size)": "mean 1.14 s, max 6.76 s (scale-up)",
    "session affinity": "99.40 %",
    "utilization, steady (autoscaled)": "58 %",
    "p99 latency of session calls, whole run": "5024.6 ms, steady baseline 5324.9 ms",
}

# The faults that are commands to a worker, which it logs taking.
WORKER_COMMANDS = ("crash", "unhealthy", "hang")
# The cluster's faults with no local analog, and why (see the docstring).
NOT_LOCAL = {
    "router-restart": "one router process here (the cluster deletes one of two pods)",
    "operator-restart": "the supervisor is the operator and the pool's parent process",
}


def bridgepool_command() -> str:
    """This environment's ``bridgepool`` (the one beside its Python)."""
    beside = Path(sys.executable).with_name("bridgepool")
    found = str(beside) if beside.exists() else shutil.which("bridgepool")
    if found is None:
        raise SystemExit("no bridgepool command: pip install -e '.[dev]' in this environment")
    return found


# --------------------------------------------------------------------------
# The pool's supervisor
# --------------------------------------------------------------------------


@dataclass
class LocalPool:
    """``bridgepool run`` of ``pool_file`` in a subprocess of its own session
    (a Ctrl-C here stops it through :meth:`stop`, not twice)."""

    pool_file: Path
    state_dir: Path
    port: int
    log_path: Path  # the supervisor's stdout and stderr
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _control: str | None = None

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return pool_api(self.router_url, DEFAULT_NAMESPACE, POOL)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                bridgepool_command(), "run", str(self.pool_file),
                "--port", str(self.port), "--state-dir", str(self.state_dir), "--no-watch",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def control(self) -> str | None:
        """The supervisor's control URL, once it wrote it (read once)."""
        if self._control is None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                info = json.loads((self.state_dir / "supervisor.json").read_text())
                self._control = str(info["control"])
        return self._control

    def status_reader(self, http: aiohttp.ClientSession) -> PoolReader:
        """The pool as the supervisor serves it (``GET /v1/status``)."""

        async def read() -> Mapping[str, Any]:
            control = self.control()
            if control is None:
                return {}
            try:
                async with http.get(
                    f"{control}/v1/status", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    found: Mapping[str, Any] = await resp.json() if resp.status == 200 else {}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return {}
            return found

        return read

    async def router_workers(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """The router's view of the pool's workers (as the Watch reads it)."""
        try:
            async with http.get(self.api, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status != 200:
                    return []
                workers: list[dict[str, Any]] = (await resp.json())["workers"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return []
        return workers

    async def wait_ready(self, http: aiohttp.ClientSession, replicas: int) -> None:
        """Until the pool is Ready with ``replicas`` workers, rolled out, and
        the router takes calls on all of them."""
        read = self.status_reader(http)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if (code := self.exited()) is not None:
                raise SystemExit(f"bridgepool run exited with {code}: see {self.log_path}")
            pool = await read()
            status = pool.get("status") or {}
            ready_workers = [
                w for w in await self.router_workers(http) if w["ready"] and not w["draining"]
            ]
            if (
                status.get("readyReplicas") == status.get("desiredReplicas") == replicas
                and has_condition(pool, "Ready", "True")
                and has_condition(pool, "Progressing", "False", "Complete")
                and len(ready_workers) == replicas
            ):
                return
            await asyncio.sleep(0.2)
        raise SystemExit(
            f"the pool was not ready within {READY_SECONDS:.0f} s: see {self.log_path}"
        )

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM, as a user's Ctrl-C; its exit code (None: it did not stop
        within STOP_SECONDS and was killed) and how long it took."""
        assert self.process is not None
        started = time.monotonic()
        code: int | None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        if self._log is not None:
            self._log.close()
        return code, time.monotonic() - started

    def pid(self, name: str) -> int:
        """The pid the supervisor listed for ``name`` (a worker, or ``router``)."""
        return int((self.state_dir / "pids" / f"{name}.pid").read_text().strip())

    def leftovers(self) -> list[str]:
        """What a stopped supervisor left: pid files, and live processes whose
        environment names its state directory (its children are marked so)."""
        left = [f"pid file {p.name}" for p in sorted((self.state_dir / "pids").glob("*.pid"))]
        marker = f"{STATE_DIR_VARIABLE}={self.state_dir}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    left.append(f"process {proc.name}: {cmdline.strip()}")
        return left

    def injected(self) -> Counter[str]:
        """The fault commands the workers logged taking, by kind."""
        found: Counter[str] = Counter()
        for path in (self.state_dir / "logs").glob("*.log"):
            for entry in json_lines(path):
                if entry.get("message") == "injected fault":
                    found[str(entry.get("kind"))] += 1
        return found

    def complaints(self) -> Counter[str]:
        """The supervisor's warnings and errors, by level and message."""
        found: Counter[str] = Counter()
        for entry in json_lines(self.log_path):
            if entry.get("level") in ("warning", "error"):
                found[f"{entry['level']}: {entry.get('message', '')}"] += 1
            elif "level" not in entry:
                found[f"(not a log line) {entry.get('text', '')[:160]}"] += 1
        return found


def json_lines(path: Path) -> list[dict[str, Any]]:
    """A process's log: its JSON lines, and any other line as ``{"text": line}``."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in filter(str.strip, lines):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"text": line})
    return entries


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


@dataclass
class LocalFaults(WorkerFaults):
    """Fault injection on a pool ``bridgepool run`` supervises (the kinds:
    the module's docstring)."""

    pool: LocalPool
    manifest: dict[str, Any]  # the pool's YAML as last applied
    replicas: int
    http: aiohttp.ClientSession
    scale_field: str = "minReplicas"
    capacity: int = soak.CAPACITY
    router_kill: bool = False
    records: list[FaultRecord] = field(default_factory=list)
    _hanging: set[asyncio.Task[None]] = field(default_factory=set)

    def kinds(self) -> dict[str, Callable[[], Awaitable[str]]]:
        kinds: dict[str, Callable[[], Awaitable[str]]] = {
            "crash": self.crash,
            "force-kill": self.force_kill,
            "graceful-stop": self.graceful_stop,
            "unhealthy": self.unhealthy,
            "hang": self.hang,
            "rollout": self.rollout,
            "scale-up": self.scale_up,
            "scale-down": self.scale_down,
        }
        if self.router_kill:
            kinds["router-kill"] = self.kill_router
        return kinds

    async def _victim(self) -> Victim:
        """From the router's pool file, the supervisor's own list of its
        running workers, oldest first."""
        path = self.pool.state_dir / "router-pools.json"
        view = json.loads(await asyncio.to_thread(path.read_text))
        for worker in view["pools"][POOL]["workers"]:
            if worker["ready"] and not worker["draining"]:
                return Victim(worker["name"], worker["url"])
        raise RuntimeError(f"no ready worker of {POOL} to inject a fault into")

    async def _pool_keys(self) -> Keys:
        return await asyncio.to_thread(read_keys, self.pool.state_dir / "keys" / "pool")

    async def _signal_worker(self, sig: signal.Signals) -> str:
        victim = await self._victim()
        os.kill(self.pool.pid(victim.name), sig)
        return victim.name

    async def force_kill(self) -> str:
        return await self._signal_worker(signal.SIGKILL)

    async def graceful_stop(self) -> str:
        return await self._signal_worker(signal.SIGTERM)

    async def _apply(self) -> None:
        """``bridgepool apply`` of the changed YAML, as a user would."""
        text = yaml.safe_dump(self.manifest, sort_keys=False)
        await asyncio.to_thread(self.pool.pool_file.write_text, text)
        apply = await asyncio.create_subprocess_exec(
            bridgepool_command(), "apply", str(self.pool.pool_file),
            "--state-dir", str(self.pool.state_dir),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await apply.communicate()
        if apply.returncode != 0:
            raise RuntimeError(f"bridgepool apply failed ({apply.returncode}): {out.decode()}")

    async def rollout(self) -> str:
        template = self.manifest["spec"]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {})["soak-rollout"] = str(
            int(time.time())
        )
        await self._apply()
        return POOL

    async def _scale(self, by: int) -> str:
        self.replicas += by
        self.manifest["spec"][self.scale_field] = self.replicas
        await self._apply()
        return f"{self.scale_field} {self.replicas - by} -> {self.replicas}"

    async def scale_up(self) -> str:
        return await self._scale(+2)

    async def scale_down(self) -> str:
        return await self._scale(-2)

    async def kill_router(self) -> str:
        pid = self.pool.pid("router")
        os.kill(pid, signal.SIGKILL)
        return f"router (pid {pid})"


def status_showed(watch: Watch, fault: FaultRecord) -> tuple[float | None, float | None]:
    """Seconds from ``fault`` until the pool's status first showed it (not
    settled, within FAULT_WINDOW_SECONDS), and until it was settled again
    after that. The seed's recovery counts from the fault to the first
    settled sample, which may come before the status showed the fault at all."""
    showed = None
    for s in watch.samples:
        if s.at <= fault.at:
            continue
        if showed is None:
            if s.at > fault.at + FAULT_WINDOW_SECONDS:
                return None, None
            if not s.settled(fault.expected_workers):
                showed = s.at - fault.at
        elif s.settled(fault.expected_workers):
            return showed, s.at - fault.at
    return showed, None


def router_back_after(watch: Watch, at: float) -> float | None:
    """Seconds from ``at`` until the router answered the watch again."""
    for when, _ in watch.router_view:
        if when > at:
            return when - at
    return None


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


@dataclass
class Run:
    load: Load
    watch: Watch
    faults: LocalFaults
    exit_code: int | None  # the supervisor's, after SIGTERM (None: killed)
    stop_seconds: float
    leftovers: list[str]
    complaints: Counter[str]
    injected: Counter[str]  # fault commands the workers logged taking


async def drive(pool: LocalPool, manifest: dict[str, Any], args: argparse.Namespace) -> Run:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    pool.start()
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await pool.wait_ready(http, args.replicas)
            soak.progress(
                f"pool ready; load at {args.rate:.0f} calls/s for {args.minutes} min "
                f"(router {pool.router_url}, state {pool.state_dir})"
            )
            load = Load(pool.api, args.rate, args.sessions, work_seconds=args.work)
            watch = Watch(pool.status_reader(http), POOL, pool.api)
            faults = LocalFaults(
                pool, manifest, args.replicas, http,
                capacity=args.capacity, router_kill=args.router_kill,
            )  # fmt: skip
            await run_chaos(
                load, watch, faults, list(faults.kinds()),
                warmup=WARMUP_SECONDS, seconds=args.minutes * 60, progress=soak.progress,
            )  # fmt: skip
            for record in faults.records:
                if record.kind == "router-kill":
                    # The pool's status never sees the router: its recovery
                    # is the router answering again.
                    record.recovered = router_back_after(watch, record.at)
    finally:
        soak.progress("stopping the pool (SIGTERM to bridgepool run)")
        code, seconds = await asyncio.to_thread(pool.stop)
    return Run(
        load, watch, faults, code, seconds, pool.leftovers(), pool.complaints(), pool.injected()
    )


def comparison(summary: Summary, load: Load) -> list[str]:
    """The seed's numbers measured here beside the cluster's (README)."""
    rows = [
        (metric, goal, measured, CLUSTER_FIGURES.get(metric, "-"))
        for metric, goal, measured, _ in soak.seed_rows(summary, load)
    ]
    return soak.table(("seed metric", "goal", "local (this run)", CLUSTER_COLUMN), rows)


def local_report(summary: Summary, run: Run, args: argparse.Namespace) -> str:
    lines = [soak.report(summary, run.load), "\nfaults of the cluster's soak not injected here:"]
    for kind, why in NOT_LOCAL.items():
        lines.append(f"  {kind:<17} n/a locally: {why}")
    if args.router_kill:
        lines.append(
            "  (router-kill: recovered = the router answering again; its failed calls are expected)"
        )
    sent = Counter(f.kind for f in summary.faults if f.kind in WORKER_COMMANDS)
    sent["hang"] *= args.capacity
    lines.append(
        "\nfault commands the workers logged taking: "
        + (", ".join(f"{k} {n}" for k, n in sorted(run.injected.items())) or "none")
        + f" (sent: {', '.join(f'{k} {n}' for k, n in sorted(sent.items()))})"
    )
    lines.append(
        "\nper fault, as the supervisor's status showed it (s from the fault: first not"
        " Ready or short of workers, within 15 s; Ready again after that):"
    )
    for fault in summary.faults:
        showed, settled = status_showed(run.watch, fault)
        lines.append(
            f"  {fault.kind:<17} {fault.target:<28} showed {seconds(showed, 'never'):>8}"
            f"  settled again {seconds(settled, '-'):>8}"
        )
    lines.append(
        f"\nlocal beside cluster (local: {args.minutes:g} min, capacity {args.capacity}, "
        f"minReplicas {args.replicas}; cluster: 8 min, capacity 2, minReplicas 2; "
        f"both {args.rate:.0f} calls/s, {args.sessions} sessions):"
    )
    lines += comparison(summary, run.load)
    stopped = (
        f"exit code {run.exit_code} after {run.stop_seconds:.1f} s"
        if run.exit_code is not None
        else f"did not stop within {STOP_SECONDS:.0f} s: killed"
    )
    lines.append(f"\nsupervisor after SIGTERM: {stopped}")
    lines.append("left behind: " + ("; ".join(run.leftovers) or "nothing"))
    lines.append("supervisor warnings and errors:")
    for what, n in run.complaints.most_common() or [("none", 0)]:
        lines.append(f"  {n:>4} x {what}" if n else f"  {what}")
    return "\n".join(lines)


def seconds(value: float | None, none: str) -> str:
    return none if value is None else f"{value:.2f} s"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument(
        "--minutes", type=float, default=DEFAULT_MINUTES, help="length of the run (default 5)"
    )
    p.add_argument("--rate", type=float, default=40.0, help="calls per second (default 40)")
    p.add_argument("--sessions", type=int, default=20, help="sessions in the mix (default 20)")
    p.add_argument(
        "--capacity", type=int, default=soak.CAPACITY, help="call slots per worker (default 2)"
    )
    p.add_argument("--replicas", type=int, default=2, help="the pool's minReplicas (default 2)")
    p.add_argument(
        "--work", type=float, default=0.16, help="seconds each anonymous call works (default 0.16)"
    )
    p.add_argument(
        "--router-kill",
        action="store_true",
        help="also SIGKILL the router (its failed calls are expected: one router here)",
    )
    p.add_argument("--out", type=Path, default=None, help="where the PNG, JSON and state go")
    args = p.parse_args(argv)
    if args.minutes * 60 < WARMUP_SECONDS + 60:
        p.error("--minutes must leave at least a minute after the 30 s warm-up")
    out = (args.out or Path(tempfile.mkdtemp(prefix="bridgepool-local-soak-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_dir = out / "state"
    if state_dir.exists():
        p.error(f"{state_dir} exists: give a fresh --out")

    manifest = soak.pool_manifest(args.replicas, args.capacity)
    pool_file = out / "pool.yaml"
    pool_file.write_text(yaml.safe_dump(manifest, sort_keys=False))
    pool = LocalPool(pool_file, state_dir, free_port(), out / "supervisor.log")
    soak.progress(f"bridgepool run {pool_file} (state {state_dir})")
    run = asyncio.run(drive(pool, manifest, args))

    summary = summarize(run.load, run.watch, run.faults.records)
    text = local_report(summary, run, args)
    print(text)
    cluster = dict(CLUSTER_FIGURES, column=CLUSTER_COLUMN)
    supervisor = {
        "exit_code": run.exit_code,
        "stop_seconds": round(run.stop_seconds, 2),
        "leftovers": run.leftovers,
        "complaints": run.complaints,
    }
    soak.save(
        out / "local-soak", text, run.load, run.watch, summary, args,
        extra={
            "cluster": cluster, "supervisor": supervisor, "injected_by_workers": run.injected,
            "latency_ms": summary.latency_ms,
        },
    )  # fmt: skip
    print(f"state, logs: {state_dir}  supervisor: {pool.log_path}")
    if run.leftovers or run.exit_code != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
