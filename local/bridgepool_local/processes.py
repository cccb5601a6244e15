"""Worker processes on one machine: started, watched and stopped as a kubelet
does a pod's container, and observed in the planner's words.

Each worker is a child process in its own session (a Ctrl-C in the terminal
reaches the supervisor, which stops the pool in order), killed by the kernel
if the supervisor dies (``PR_SET_PDEATHSIG``), and listed by pid in the state
directory, so a supervisor restarted after a SIGKILL stops any stray it left.

What is observed of a worker:

- its process: running, or exited with a code (an exit the supervisor did
  not ask for is ``exited``; one that ends a worker's start, before it was
  ever ready, with a bad-settings or handler-load code, is a start problem
  that a new worker of the same revision would hit again);
- its readiness: ``GET /readyz``, unready once it failed for
  ``degradeAfterFailures`` times ``readinessIntervalSeconds``, as with the
  kubelet's probe. It is asked every second (every 0.1 s until its first
  success, so a new worker joins at once), so a worker that says it is
  terminating (stopped from outside) is seen within a second, where a
  cluster sees the pod's deletion at once;
- its own ``/v1/stats``, read by the executor each pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import secrets
import signal
import socket
import string
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from pydantic import ValidationError

from bridgepool.protocol import Readiness, WorkerState, WorkerStats
from bridgepool.spec import HealthSettings
from bridgepool_planner.workers import ObservedWorker

log = logging.getLogger("bridgepool.local")

# Set in every child's environment: how a restarted supervisor knows its strays.
STATE_DIR_VARIABLE = "BRIDGEPOOL_LOCAL_STATE_DIR"
# The worker's exit codes for a start that cannot succeed (bridgepool_worker.cli).
START_PROBLEM_CODES = {2: "bad settings", 3: "a handler module could not be loaded"}
# How often a new worker's readiness is checked until its first success, and after.
FIRST_READY_POLL_SECONDS = 0.1
PROBE_SECONDS = 1.0
NAME_ALPHABET = string.ascii_lowercase + string.digits
PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the worker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the supervisor dies."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def worker_name(pool: str) -> str:
    """``<pool>-<5 characters>``, as a pod's generated name."""
    return f"{pool}-{''.join(secrets.choice(NAME_ALPHABET) for _ in range(5))}"


def last_line(path: Path) -> str | None:
    """The last line a process wrote to its log (its JSON ``message`` if it is one)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    line = lines[-1]
    if line.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(line).get("message") or line)
    return line


@dataclass
class ChildProcess:
    """A process the supervisor started: its pid file and log go in ``state_dir``."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    pid_path: Path

    @classmethod
    async def start(
        cls,
        name: str,
        argv: tuple[str, ...],
        env: Mapping[str, str],
        state_dir: Path,
    ) -> ChildProcess:
        """Start ``argv``; raises OSError when it cannot be started (no such command)."""
        logs = state_dir / "logs"
        pids = state_dir / "pids"
        logs.mkdir(parents=True, exist_ok=True)
        pids.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **env, STATE_DIR_VARIABLE: str(state_dir)},
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        pid_path = pids / f"{name}.pid"
        pid_path.write_text(str(process.pid))
        return cls(name, process, log_path, pid_path)

    def send_signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def stop(self, grace_seconds: float, sig: signal.Signals = signal.SIGTERM) -> int:
        """``sig``, and SIGKILL once ``grace_seconds`` passed; the exit code."""
        self.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self.send_signal(signal.SIGKILL)
            return await self.process.wait()

    def forget(self) -> None:
        self.pid_path.unlink(missing_ok=True)


def stop_strays(state_dir: Path) -> list[int]:
    """Kill the processes an earlier supervisor of ``state_dir`` left (it was
    killed itself, and the kernel could not stop them): the pids listed in
    its state directory whose environment names it. The pids stopped."""
    stopped = []
    marker = f"{STATE_DIR_VARIABLE}={state_dir}".encode()
    for pid_file in sorted((state_dir / "pids").glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if marker in environ:
                os.kill(pid, signal.SIGKILL)
                stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


@dataclass
class LocalWorker:
    """One worker process of the pool."""

    name: str
    revision: str
    port: int
    child: ChildProcess
    created_at: datetime
    ready: bool = False
    ready_changed_at: datetime | None = None
    ever_ready: bool = False
    draining_since: datetime | None = None
    drain_reason: str | None = None
    stop_asked_at: datetime | None = None
    says_terminating: bool = False  # its readiness answer says so (stopped from outside)
    exit_code: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def start_problem(self) -> str | None:
        """Why this worker could not start, when a new one would fail the same way."""
        if self.exit_code in START_PROBLEM_CODES and not self.ever_ready:
            detail = last_line(self.child.log_path) or START_PROBLEM_CODES[self.exit_code]
            return f"exited at start with code {self.exit_code}: {detail}"
        return None

    def observe(self, stats: WorkerStats | None) -> ObservedWorker:
        problem = self.start_problem()
        exited = not self.running and problem is None
        says_stopping = self.says_terminating or (
            stats is not None and stats.state in (WorkerState.TERMINATING, WorkerState.TERMINATED)
        )
        return ObservedWorker(
            name=self.name,
            revision=self.revision,
            created_at=self.created_at,
            phase="exited" if exited else "pending" if problem else "running",
            ready=self.ready and self.running,
            ready_changed_at=self.ready_changed_at,
            started_at=self.created_at,
            stopping=self.stop_asked_at is not None or says_stopping,
            draining_since=self.draining_since,
            drain_reason=self.drain_reason,
            start_problem="ConfigProblem" if problem else None,
            waiting_reason=problem,
            waiting_message=problem,
            exit_detail=None if not exited else f"exited with code {self.exit_code}",
            url=self.url if self.running else None,
            stats=stats if self.running else None,
        )


async def watch_exit(worker: LocalWorker, changed: Callable[[], None]) -> None:
    """Record the worker's exit the moment it happens."""
    code = await worker.child.process.wait()
    worker.exit_code = code
    worker.ready = False
    worker.ready_changed_at = datetime.now(UTC)
    worker.child.forget()
    level = logging.INFO if worker.stop_asked_at is not None or code == 0 else logging.WARNING
    log.log(
        level,
        "worker process exited",
        extra={"worker": worker.name, "exit_code": code, "log": str(worker.child.log_path)},
    )
    changed()


async def probe_readiness(
    worker: LocalWorker,
    http: aiohttp.ClientSession,
    health: HealthSettings,
    changed: Callable[[], None],
) -> None:
    """``GET /readyz`` until the worker exits (see the module's docstring)."""
    period = min(PROBE_SECONDS, health.readiness_interval_seconds)
    # The failures in a row that span the kubelet's threshold in time.
    threshold = math.ceil(
        health.degrade_after_failures * health.readiness_interval_seconds / period
    )
    failures = 0
    timeout = aiohttp.ClientTimeout(total=min(5, health.readiness_interval_seconds))
    while worker.running:
        terminating = False
        try:
            async with http.get(f"{worker.url}/readyz", timeout=timeout) as resp:
                ok = resp.status == 200
                if not ok:
                    with contextlib.suppress(ValueError, ValidationError):
                        said = Readiness.model_validate(await resp.json(content_type=None))
                        terminating = said.state in (
                            WorkerState.TERMINATING,
                            WorkerState.TERMINATED,
                        )
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        failures = 0 if ok else failures + 1
        ready = ok or (worker.ready and failures < threshold and not terminating)
        if (ready != worker.ready or terminating != worker.says_terminating) and worker.running:
            if ready != worker.ready:
                worker.ready = ready
                worker.ready_changed_at = datetime.now(UTC)
                worker.ever_ready = worker.ever_ready or ready
            worker.says_terminating = terminating
            changed()
        await asyncio.sleep(period if worker.ever_ready else FIRST_READY_POLL_SECONDS)
