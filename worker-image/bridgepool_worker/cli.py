"""``bridgepool-worker``: load settings and handlers, serve, drain on SIGTERM.

SIGTERM drains: calls in flight finish and, with ``--handoff-sessions``, the
worker waits for its sessions to be moved. SIGINT drains without waiting for
that (its pool is stopping as a whole: nobody will take the sessions).

Exit codes: 0 stopped cleanly (every call in flight finished); 1 stopped with
calls abandoned (grace period over, or a second SIGTERM/SIGINT) or could not
listen; 2 bad settings; 3 a handler module could not be loaded; 70 the
``crash`` fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from aiohttp import web

from bridgepool import logs
from bridgepool.config import ConfigError
from bridgepool_worker.app import RUNTIME, create_app
from bridgepool_worker.config import WorkerConfig, load_config
from bridgepool_worker.registry import HandlerLoadError

EXIT_OK = 0
EXIT_ABANDONED = 1
EXIT_CONFIG = 2
EXIT_HANDLERS = 3

log = logging.getLogger("bridgepool_worker")


async def serve(app: web.Application, config: WorkerConfig) -> int:
    """Serve until SIGTERM/SIGINT, then drain: no new sessions, readiness 503,
    calls in flight and sessions frozen for a move finish within the grace
    period (a frozen session is committed, aborted or thawed)."""
    runtime = app[RUNTIME]
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)

    # A short shutdown timeout: by the time the runner stops, the drain below
    # has already waited for (or given up on) the calls in flight.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except OSError as exc:
        log.error(
            "cannot listen",
            extra={"host": config.host, "port": config.port, "error": str(exc)},
        )
        await runner.cleanup()
        return EXIT_ABANDONED
    log.info(
        "worker listening",
        extra={
            "worker": config.name,
            "host": config.host,
            "port": config.port,
            "capacity": config.capacity,
        },
    )

    first = await signals.get()
    runtime.begin_termination(f"received {first.name}")
    deadline = loop.time() + config.grace_seconds
    code = EXIT_OK

    hand_off = config.handoff_sessions and first == signal.SIGTERM

    def sessions_to_hand_off() -> int:
        return runtime.sessions.live_count(runtime.wall()) if hand_off else 0

    while (
        runtime.lifecycle.in_flight > 0
        or runtime.moves.in_progress() > 0
        or sessions_to_hand_off() > 0
    ):
        remaining = deadline - loop.time()
        if remaining <= 0 and runtime.lifecycle.in_flight == 0 and not runtime.moves.in_progress():
            # Calls done, but some sessions did not move in time: they end here.
            log.warning(
                "grace period over, sessions not moved",
                extra={"sessions": sessions_to_hand_off()},
            )
            break
        if remaining <= 0:
            code = EXIT_ABANDONED
            log.warning(
                "grace period over, abandoning calls in flight",
                extra={
                    "in_flight": runtime.lifecycle.in_flight,
                    "sessions_moving": runtime.moves.in_progress(),
                },
            )
            break
        try:
            second = await asyncio.wait_for(signals.get(), timeout=min(0.02, remaining))
        except TimeoutError:
            continue
        code = EXIT_ABANDONED
        log.warning(
            "second signal, abandoning calls in flight",
            extra={"signal": second.name, "in_flight": runtime.lifecycle.in_flight},
        )
        break
    linger = min(config.exit_linger_seconds, deadline - loop.time())
    if code == EXIT_OK and linger > 0:
        # Every answer now closes its connection, and the routers' health
        # checks see this worker terminating and close their idle ones to it:
        # a call sent meanwhile gets its answer (410 naming a moved session's
        # holder) instead of a connection the exit resets.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.get(), timeout=linger)
        while runtime.lifecycle.in_flight > 0 and loop.time() < deadline:
            # A call taken while lingering finishes (within the grace period).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signals.get(), timeout=0.02)
    await runner.cleanup()
    log.info("worker stopped", extra={"worker": config.name, "exit_code": code})
    return code


def main(argv: Sequence[str] | None = None) -> None:
    logs.configure("worker")
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
        logs.configure("worker", config.log_level)
        app = create_app(config)
    except ConfigError as exc:
        print(f"bridgepool-worker: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except HandlerLoadError as exc:
        print(f"bridgepool-worker: cannot load handlers: {exc}", file=sys.stderr)
        sys.exit(EXIT_HANDLERS)
    code = asyncio.run(serve(app, config))
    logging.shutdown()
    # Idle handler threads exit promptly once their pool is shut down.
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):
        # A sync handler still running cannot be stopped; do not wait for it.
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
