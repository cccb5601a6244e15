"""``bridgepool run``: one pool on this machine, supervised.

The supervisor starts the router (static discovery from a pool file it
keeps) and runs the planner's loop over the local executor: worker processes
are created, replaced, recycled, scaled and rolled out exactly as the
operator does it with pods. It serves its own health, metrics and the pool's
status on a control port, and watches the pool's YAML and handler files: a
change rolls the pool out, moving sessions to the new workers.

The state directory holds the release and pool keys, the pool as applied,
its status, the router's pool file, each process's log and pid. One
supervisor per state directory (a lock says so); one that was killed leaves
strays, which the next one stops first.

Ctrl-C or SIGTERM: the loop ends, the router stops taking calls and
finishes its calls in flight, then every worker finishes its own and exits.
A second one stops everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridgepool.backoff import backoff_seconds
from bridgepool.credentials import KeyDir, Keys, PoolKeys, new_key, pool_key_dir, write_keys
from bridgepool.credentials import read_keys as read_key_dir
from bridgepool.errors import BridgePoolError, ErrorCategory, error_body
from bridgepool.files import write_private
from bridgepool.names import PoolRef
from bridgepool.worker_http import WorkerHttp
from bridgepool_planner.passes import LoopSettings, StopFlag, run_passes

from .executor import LocalExecutor, LocalSettings, keep_pool, source_of
from .manifest import PoolFile, handler_paths, unsupported_fields
from .processes import ChildProcess, stop_strays

log = logging.getLogger("bridgepool.local")

# The operator's defaults: a pass every 5 s with nothing to do, a worker's
# stats within 1 s.
INTERVAL_SECONDS = 5.0
STATS_TIMEOUT_SECONDS = 1.0
# How often the pool's YAML and handler files are checked for changes, and the
# router re-reads its pool file.
WATCH_SECONDS = 0.5
ROUTER_RELOAD_SECONDS = 0.2
# The router finishes its calls in flight within this after SIGTERM.
ROUTER_SHUTDOWN_SECONDS = 10.0
# A worker's grace period when no valid spec ever said one (the spec's default).
DEFAULT_GRACE_SECONDS = 30


class SupervisorError(Exception):
    """The pool cannot run here; the message says why."""


def default_state_dir(ref: PoolRef) -> Path:
    """``$XDG_STATE_HOME/bridgepool/<namespace>/<pool>`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bridgepool" / ref.namespace / ref.name


@dataclass(frozen=True)
class RunOptions:
    pool_file: Path
    pool: PoolFile
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    control_port: int = 0
    handlers: tuple[str, ...] = ()
    worker_command: str | None = None
    watch: bool = True
    interval_seconds: float = INTERVAL_SECONDS


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Hold the state directory's lock for as long as the file stays open."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = (state_dir / "supervisor.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise SupervisorError(
            f"another bridgepool run (pid {holder}) runs this pool from {state_dir}"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def check_port(host: str, port: int) -> None:
    """Refuse to start when the router could not listen on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise SupervisorError(
                f"the router cannot listen on {host}:{port} ({err.strerror}): "
                "another bridgepool run or another program uses it; choose --port"
            ) from None


def release_keys(state_dir: Path) -> Path:
    """The release key directory (made on the first run, kept after)."""
    directory = state_dir / "keys" / "release"
    if not (directory / "key").exists():
        write_keys(directory, Keys(new_key(), scrape=new_key()))
    return directory


@web.middleware
async def structured_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The control port's refusals (no such endpoint, a method it does not
    take) as the project's structured error body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kinds = {404: "route_not_found", 405: "method_not_allowed"}
        err = BridgePoolError.make(
            ErrorCategory.COMMUNICATION,
            kinds.get(exc.status, "http_error"),
            f"{request.method} {request.path}: {exc.reason}",
            status=exc.status,
            path=request.path,
        )
        return web.json_response(error_body(err), status=exc.status)


class Supervisor:
    """One pool: its router, its executor and loop, its control server."""

    executor: LocalExecutor

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.ref = options.pool.ref
        self.state = options.state_dir
        self.wakeup = asyncio.Event()
        self.stopper = StopFlag()
        self.router: ChildProcess | None = None
        self.router_restarts = 0
        self.hurry = False  # a second signal: stop at once
        self.passes = 0

    @property
    def pool_path(self) -> Path:
        return self.state / "pool.yaml"

    async def run(self) -> int:
        stray = stop_strays(self.state)
        if stray:
            log.warning("stopped processes an earlier supervisor left", extra={"pids": stray})
        release = release_keys(self.state)
        pool_dir = self.state / "keys" / "pool"
        pool_key_dir(read_key_dir(release), self.ref, pool_dir)
        keep_pool(self.state, self.options.pool_file)
        for field in unsupported_fields(self.options.pool.spec):
            log.warning(
                "%s has no meaning on one machine: ignored",
                field,
                extra={"namespace": self.ref.namespace, "pool": self.ref.name},
            )
        timeout = aiohttp.ClientTimeout(total=STATS_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            keys = PoolKeys(KeyDir(release)).of(self.ref)
            self.executor = LocalExecutor(
                pool_path=self.pool_path,
                name=self.ref.name,
                namespace=self.ref.namespace,
                settings=LocalSettings(
                    self.state, self.options.handlers, self.options.worker_command
                ),
                http=http,
                workers_http=WorkerHttp(http, keys),
                keys_dir=pool_dir,
                changed=self.wakeup.set,
                router_file=self.state / "router-pools.json",
            )
            self.executor.publish()
            self.install_signals()
            control = await self.start_control()
            tasks = [
                asyncio.create_task(self.keep_router(release)),
                asyncio.create_task(self.watch_files()),
            ]
            try:
                settings = LoopSettings(self.options.interval_seconds, settle_timeout_seconds=5)
                await run_passes(self.executor, settings, self.wakeup, self.stopper, log)
            finally:
                for task in tasks:
                    task.cancel()
                await self.stop_pool()
                await control.cleanup()
        log.info("pool stopped", extra={"namespace": self.ref.namespace, "pool": self.ref.name})
        return 0

    # -- signals and stopping ---------------------------------------------------

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: signal.Signals) -> None:
        if not self.stopper:
            log.info(
                "stopping the pool: the router, then each worker, finish their calls "
                "(again to stop at once)",
                extra={"signal": sig.name},
            )
            self.stopper.set()
            return
        log.warning("stopping at once", extra={"signal": sig.name})
        self.hurry = True
        self.executor.kill_all()
        if self.router is not None:
            self.router.send_signal(signal.SIGKILL)

    async def stop_pool(self) -> None:
        """The router first (no new calls), then the workers."""
        if self.router is not None:
            router, self.router = self.router, None
            await router.stop(0 if self.hurry else ROUTER_SHUTDOWN_SECONDS + 1)
            router.forget()
        valid = self.executor.last_valid
        grace = DEFAULT_GRACE_SECONDS
        if valid is not None:
            grace = valid[0].spec.rollout.termination_grace_period_seconds
        await self.executor.stop_all(0 if self.hurry else grace)
        with contextlib.suppress(OSError):
            (self.state / "supervisor.json").unlink()

    # -- the router ---------------------------------------------------------------

    async def keep_router(self, release: Path) -> None:
        """Run the router; start it again (spaced out) when it exits on its own."""
        argv = (
            sys.executable,
            "-m",
            "bridgepool_router",
            "--host",
            self.options.host,
            "--port",
            str(self.options.port),
            "--static-file",
            str(self.executor.router_file),
            "--static-reload-seconds",
            str(ROUTER_RELOAD_SECONDS),
            "--worker-keys-dir",
            str(release),
            "--shutdown-timeout",
            str(ROUTER_SHUTDOWN_SECONDS),
        )
        while not self.stopper:
            self.router = await ChildProcess.start("router", argv, {}, self.state)
            code = await self.router.process.wait()
            if self.stopper:
                return
            self.router_restarts += 1
            delay = backoff_seconds(self.router_restarts, base=1.0, cap=30.0)
            log.error(
                "the router exited; starting it again",
                extra={"exit_code": code, "in_seconds": delay, "log": str(self.router.log_path)},
            )
            await asyncio.sleep(delay)

    # -- watching the files -------------------------------------------------------

    def watched(self) -> tuple[str, str, tuple[float, ...]]:
        """The file the pool was last applied from (``bridgepool run``'s, or
        ``bridgepool apply``'s), the pool as applied, and its handler files'
        modification times."""
        texts = []
        for path in (source_of(self.pool_path), self.pool_path):
            try:
                texts.append(path.read_text())
            except OSError:
                texts.append("")
        pool = self.executor.last_valid[0] if self.executor.last_valid else self.options.pool
        times = []
        for path in handler_paths(pool, self.options.handlers):
            with contextlib.suppress(OSError):
                times.append(path.stat().st_mtime)
        return texts[0], texts[1], tuple(times)

    async def watch_files(self) -> None:
        """An edit of the file the pool was last applied from is applied (with
        the file watch on); an applied pool or a changed handler file wakes
        the loop, whose pass sees the new spec or revision."""
        last = self.watched()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = self.watched()
            if now == last:
                continue
            if self.options.watch and now[0] != last[0] and now[0] and now[1] == last[1]:
                source = source_of(self.pool_path)
                keep_pool(self.state, source)
                log.info("the pool's YAML changed: applied", extra={"file": str(source)})
                now = self.watched()
            last = now
            self.wakeup.set()

    # -- the control server ---------------------------------------------------------

    async def start_control(self) -> web.AppRunner:
        app = web.Application(middlewares=[structured_errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/status", self.status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.options.control_port)
        await site.start()
        port = runner.addresses[0][1]
        write_private(
            self.state / "supervisor.json",
            json.dumps(
                {
                    "pid": os.getpid(),
                    "pool": str(self.ref),
                    "router": f"http://{self.options.host}:{self.options.port}",
                    "control": f"http://127.0.0.1:{port}",
                    "started": time.time(),
                }
            ),
        )
        log.info(
            "pool supervised",
            extra={
                "namespace": self.ref.namespace,
                "pool": self.ref.name,
                "router": f"http://{self.options.host}:{self.options.port}",
                "control": f"http://127.0.0.1:{port}",
                "state_dir": str(self.state),
            },
        )
        return runner

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready once a pass has written the pool's status and the router runs."""
        running = self.router is not None and self.router.process.returncode is None
        ready = running and self.executor.status.observed_generation is not None
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self, _: web.Request) -> web.Response:
        return web.json_response(self.executor.status_view())
