"""What does the worker cost over a bare aiohttp app? Measured side by side in one run:

* start-to-ready: spawn the process, poll ``GET /readyz`` until 200 (median of runs);
* latency: sequential ``ping`` calls on one keep-alive connection, p50/p99;
* throughput: ``wrk`` (closed loop, 16 connections) posting ``ping``, calls/s.

The worker runs as in production: closed, with its pool's key directory
(``--keys-dir``, written from a fresh release key as the operator writes a
pool's Secret), and every call shows the key (``Authorization: Bearer KEY``).
Beside it, the same worker started ``--open-access``: the ratio of the two is
what the key check costs. The baseline is a bare aiohttp app answering
``POST /v1/execute`` with a fixed JSON body after parsing the request's JSON
(and ``GET /readyz`` with 200). All three get the very same request bytes,
``Authorization`` header included (the open worker and the baseline ignore it),
so the only difference between the two workers is the check. The server under
test is pinned to CPU 0 (``taskset``), the client and wrk to CPU 1. Loopback
only; about half a minute.

    .venv/bin/python -m benchmarks.worker_ping [--calls 3000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentile
from bridgepool.credentials import Keys, bearer, new_key, pool_key_dir
from bridgepool.names import PoolRef

BIN = Path(sys.executable).parent
PING = json.dumps({"id": 1, "command": "ping", "args": {}, "session_id": None}).encode()
POOL = PoolRef("default", "bench")
# The servers, in the order they run: the baseline, the worker as in production
# (keys on), the same worker without the key check.
BASELINE, WORKER, OPEN = "baseline", "worker", "worker --open-access"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the baseline: a bare aiohttp app --------------------------------------------------


def serve_baseline(port: int) -> None:
    from aiohttp import web

    async def execute(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"id": body.get("id"), "success": True, "result": {"pong": True}, "error": None}
        )

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_post("/v1/execute", execute)
    app.router.add_get("/readyz", readyz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- processes -------------------------------------------------------------------------


def pinned(cmd: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd


def server_command(kind: str, port: int, keys_dir: Path) -> list[str]:
    worker = [str(BIN / "bridgepool-worker"), "--host", "127.0.0.1", "--port", str(port)]
    if kind == WORKER:
        return [*worker, "--keys-dir", str(keys_dir)]
    if kind == OPEN:
        return [*worker, "--open-access"]
    return [sys.executable, "-m", "benchmarks.worker_ping", "--serve-baseline", str(port)]


def start(kind: str, port: int, env: dict[str, str], keys_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        pinned(server_command(kind, port, keys_dir), 0),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_to_ready(
    kind: str, env: dict[str, str], keys_dir: Path
) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    t0 = time.perf_counter()
    proc = start(kind, port, env, keys_dir)
    while not ready(port):
        if proc.poll() is not None:
            raise SystemExit(f"{kind} exited with {proc.returncode}")
        time.sleep(0.002)
    return proc, port, time.perf_counter() - t0


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- latency: sequential calls on one connection ---------------------------------------


async def sequential_latencies(port: int, calls: int, key: str) -> list[float]:
    """``calls`` pings one after another, each showing ``key``; a refusal (401)
    stops the run: a refused call measures nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + bearer(key).encode() + b"\r\n"
        b"Content-Length: " + str(len(PING)).encode() + b"\r\n\r\n" + PING
    )
    latencies = []
    for _ in range(calls):
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected answer: {head[:80]!r}")
        match = re.search(rb"(?i)content-length: *(\d+)", head)
        assert match is not None
        await reader.readexactly(int(match.group(1)))
        latencies.append(time.perf_counter() - t0)
    writer.close()
    await writer.wait_closed()
    return latencies


# -- throughput: wrk --------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{authorization}"
"""


def wrk_rate(port: int, seconds: float, script: Path) -> tuple[float, int]:
    out = subprocess.run(
        pinned(
            [
                "wrk",
                "-t1",
                "-c16",
                f"-d{seconds:g}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/v1/execute",
            ],
            1,
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert rate is not None, out
    return float(rate.group(1)), int(non2xx.group(1)) if non2xx else 0


# -- the run ------------------------------------------------------------------------------


def measure(
    kind: str, args: argparse.Namespace, env: dict[str, str], keys_dir: Path, key: str, script: Path
) -> dict[str, float]:
    starts = []
    for _ in range(args.starts):
        proc, _, seconds = start_to_ready(kind, env, keys_dir)
        starts.append(seconds)
        stop(proc)
    proc, port, _ = start_to_ready(kind, env, keys_dir)
    try:
        asyncio.run(sequential_latencies(port, 200, key))  # warm up
        latencies = asyncio.run(sequential_latencies(port, args.calls, key))
        rate, non2xx = (
            wrk_rate(port, args.seconds, script) if shutil.which("wrk") else (float("nan"), 0)
        )
    finally:
        stop(proc)
    if non2xx:
        print(f"warning: {kind}: {non2xx} non-2xx answers under wrk", file=sys.stderr)
    return {
        "start_ms": statistics.median(starts) * 1000,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "seq_calls_s": len(latencies) / sum(latencies),
        "wrk_calls_s": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="sequential calls for latency")
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration per server")
    parser.add_argument("--starts", type=int, default=5, help="start-to-ready runs per server")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client keeps off the server's core

    # Capacity above wrk's 16 connections, so no call is refused for capacity.
    worker_env = {"BRIDGEPOOL_WORKER_CAPACITY": "64", "BRIDGEPOOL_WORKER_NAME": "bench"}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # The pool's key directory, as the operator writes it into the pool's Secret.
        keys_dir = Path(tmp) / "keys"
        key = pool_key_dir(Keys(new_key()), POOL, keys_dir).current
        script = Path(tmp) / "ping.lua"
        script.write_text(WRK_SCRIPT.format(body=PING.decode(), authorization=bearer(key)))
        for kind in (BASELINE, WORKER, OPEN):
            results[kind] = measure(kind, args, worker_env, keys_dir, key, script)

    base, worker, open_ = results[BASELINE], results[WORKER], results[OPEN]
    print(
        f"{'':26}{'bare aiohttp':>14}{'worker':>12}{'ratio':>9}{'open access':>14}{'keys/open':>11}"
    )
    rows = [
        ("start-to-ready (ms)", "start_ms"),
        ("ping p50 (ms)", "p50_ms"),
        ("ping p99 (ms)", "p99_ms"),
        ("sequential calls/s", "seq_calls_s"),
        ("wrk calls/s (16 conns)", "wrk_calls_s"),
    ]
    for label, k in rows:
        print(
            f"{label:26}{base[k]:14.2f}{worker[k]:12.2f}{worker[k] / base[k]:9.2f}"
            f"{open_[k]:14.2f}{worker[k] / open_[k]:11.2f}"
        )
    print("ratio = worker / bare aiohttp; worker: keys on (--keys-dir), as in production;")
    print("keys/open = worker / the same worker started --open-access: the key check's cost;")
    print("every server got the same requests, Authorization header included;")
    print("server pinned to CPU 0, client and wrk to CPU 1")


if __name__ == "__main__":
    main()
