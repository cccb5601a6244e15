"""``bridgepool``: a BridgePool on this machine, from the YAML ``kubectl apply`` takes.

    bridgepool run POOL.yaml [--port 8000]   run it: workers, router, supervisor
    bridgepool apply POOL.yaml               change the running pool (rolls it out)
    bridgepool status [POOL.yaml | NAME]     what ``kubectl get bp`` would show

Exit codes: 0 done (``run``: stopped cleanly); 1 the pool's YAML was refused
(``apply``) or no pool runs (``status``, ``apply``); 2 bad arguments or a
pool that cannot run here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bridgepool import logs
from bridgepool.errors import BridgePoolError
from bridgepool.names import DEFAULT_NAMESPACE, PoolRef

from .executor import keep_pool
from .manifest import PoolFile, PoolFileError, handler_paths, load_pool
from .supervisor import (
    RunOptions,
    Supervisor,
    SupervisorError,
    check_port,
    default_state_dir,
    lock_state_dir,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="bridgepool",
        description="Run a BridgePool on this machine: the same YAML kubectl apply takes.",
    )
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pool: workers, the router, the supervisor")
    run.add_argument("pool_file", type=Path, metavar="POOL.yaml")
    run.add_argument("--host", default="127.0.0.1", help="the router's address (127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="the router's port (8000)")
    run.add_argument(
        "--handlers",
        nargs="+",
        default=(),
        metavar="FILE",
        help="handler files the workers load, in place of the pool's "
        "bridgepool.io/local-handlers annotation",
    )
    run.add_argument(
        "--worker-command",
        metavar="COMMAND",
        help="the command that runs a worker, in place of this environment's "
        "bridgepool worker (it gets the template's args and BRIDGEPOOL_WORKER_* settings)",
    )
    run.add_argument(
        "--control-port",
        type=int,
        default=0,
        help="the supervisor's port for /healthz, /readyz, /metrics and /v1/status "
        "(default: any free port, written to STATE_DIR/supervisor.json)",
    )
    run.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not apply edits of POOL.yaml as they happen (bridgepool apply still does); "
        "the handler files are part of the workers' revision either way",
    )
    run.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between passes over a pool with nothing to do (5, as the operator)",
    )
    run.add_argument("--log-level", default="info", help="debug, info, warning or error")
    state_dir_flag(run)

    apply = commands.add_parser("apply", help="change the running pool to POOL.yaml")
    apply.add_argument("pool_file", type=Path, metavar="POOL.yaml")
    state_dir_flag(apply)

    status = commands.add_parser("status", help="the running pool's status and recent events")
    status.add_argument(
        "pool", nargs="?", help="POOL.yaml, or the pool's [NAMESPACE/]NAME", metavar="POOL"
    )
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    state_dir_flag(status)
    return top


def state_dir_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--state-dir",
        type=Path,
        help="where the pool's keys, status, logs and pids live "
        "(default: $XDG_STATE_HOME/bridgepool/NAMESPACE/NAME, ~/.local/state/... without it)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "run":
        sys.exit(run(args))
    if args.command == "apply":
        sys.exit(apply(args))
    sys.exit(status(args))


def fail(code: int, message: str) -> int:
    print(f"bridgepool: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        pool = load_pool(args.pool_file)
    except PoolFileError as err:
        return fail(EXIT_USAGE, str(err))
    state_dir = (args.state_dir or default_state_dir(pool.ref)).resolve()
    logs.configure("supervisor", args.log_level)
    try:
        lock = lock_state_dir(state_dir)
    except SupervisorError as err:
        return fail(EXIT_USAGE, str(err))
    try:
        check_port(args.host, args.port)
        handlers_readable(pool, args.handlers)
    except (SupervisorError, PoolFileError) as err:
        lock.close()
        return fail(EXIT_USAGE, str(err))
    options = RunOptions(
        pool_file=args.pool_file.resolve(),
        pool=pool,
        state_dir=state_dir,
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        handlers=tuple(args.handlers),
        worker_command=args.worker_command,
        watch=args.watch,
        interval_seconds=args.interval,
    )
    try:
        return asyncio.run(Supervisor(options).run())
    finally:
        lock.close()


def handlers_readable(pool: PoolFile, override: Sequence[str] = ()) -> None:
    """Raise :class:`PoolFileError` naming a handler file that cannot be read."""
    for path in handler_paths(pool, override):
        if not os.access(path, os.R_OK):
            raise PoolFileError(pool.source, f"handler file {path}: no such readable file")


def pool_ref_of(path: Path) -> PoolRef:
    """The pool a YAML file names, even when its spec is invalid (its status
    then says why)."""
    try:
        return load_pool(path).ref
    except PoolFileError as invalid:
        try:
            meta = (yaml.safe_load(path.read_text()) or {}).get("metadata") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            raise invalid from None
        if not isinstance(meta, dict) or not meta.get("name"):
            raise
        return PoolRef(str(meta.get("namespace") or DEFAULT_NAMESPACE), str(meta["name"]))


def running_supervisor(state_dir: Path) -> dict[str, Any] | None:
    """What the supervisor of ``state_dir`` wrote about itself, if it runs."""
    try:
        info: dict[str, Any] = json.loads((state_dir / "supervisor.json").read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def apply(args: argparse.Namespace) -> int:
    """Check POOL.yaml as the API server's admission would, then hand it to the
    running supervisor: a refused file changes nothing."""
    try:
        pool = load_pool(args.pool_file)
        handlers_readable(pool)
    except PoolFileError as err:
        return fail(EXIT_REFUSED, str(err))
    state_dir = (args.state_dir or default_state_dir(pool.ref)).resolve()
    if running_supervisor(state_dir) is None:
        return fail(
            EXIT_REFUSED,
            f"no pool {pool.ref} runs from {state_dir}: start it with bridgepool run",
        )
    keep_pool(state_dir, args.pool_file)
    print(f"bridgepool/{pool.ref.name} configured")
    return 0


def status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir
    if state_dir is None:
        if args.pool is None:
            return fail(EXIT_USAGE, "give POOL.yaml, the pool's [NAMESPACE/]NAME or --state-dir")
        try:
            path = Path(args.pool)
            ref = (
                pool_ref_of(path)
                if path.suffix in (".yaml", ".yml")
                else PoolRef.parse(args.pool, DEFAULT_NAMESPACE)
            )
        except (PoolFileError, BridgePoolError) as err:
            return fail(EXIT_USAGE, str(err))
        state_dir = default_state_dir(ref)
    try:
        view = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return fail(EXIT_REFUSED, f"no pool status in {state_dir}: is bridgepool run running?")
    if running_supervisor(state_dir) is None:
        print(f"# the pool's supervisor is not running; its last status from {state_dir}")
    if args.output == "json":
        print(json.dumps(view, indent=2))
    else:
        print(render(view))
    return 0


def render(view: dict[str, Any]) -> str:
    """The status as ``kubectl get bp`` and ``kubectl describe bp`` would show it."""
    meta, st = view["metadata"], view["status"]
    util = st.get("utilization")
    lines = [
        f"{'NAME':<20} {'DESIRED':>7} {'READY':>5} {'UTILIZATION':>11} {'PHASE':<12}",
        f"{meta['name']:<20} {st.get('desiredReplicas', 0):>7} {st.get('readyReplicas', 0):>5} "
        f"{'-' if util is None else f'{util}%':>11} {st.get('phase', '?'):<12}",
        "",
        "Conditions:",
    ]
    for c in st.get("conditions", []):
        lines.append(f"  {c['type']:<15} {c['status']:<6} {c['reason']:<18} {c.get('message', '')}")
    lines += ["", "Workers:"]
    for w in st.get("workers", []):
        lines.append(
            f"  {w['name']:<24} {w['state']:<12} sessions={w.get('sessions', '-')} "
            f"revision={w.get('revision', '?')}"
        )
    lines += ["", "Events:"]
    for e in view.get("events", [])[-10:]:
        lines.append(f"  {e['time']}  {e['type']:<8} {e['reason']:<18} {e['message']}")
    return "\n".join(lines)
