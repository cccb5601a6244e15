"""What does the router add to a call? Same load, five paths, one run:

* direct to the worker (``POST /v1/execute``): the baseline;
* through the BridgePool router
  (``POST /v1/namespaces/default/pools/bench/sessions/{id}/execute``);
* through the router with authentication on (``--auth kubernetes``: every call
  carries a bearer token, checked by TokenReview and authorized by
  SubjectAccessReview), with warm caches: the cost of the front door on the
  hot path. Its reviews go to a stand-in for the API server on this machine
  (``benchmarks/review_server.py``), which warm caches ask once per token and
  access;
* through a bare aiohttp forwarder (``benchmarks/forwarder.py``: the router's own
  inbound stack, aiohttp server and uvloop, with aiohttp's ClientSession to the
  worker and no routing logic);
* through HAProxy, sticky on the ``X-BridgePool-Session`` header (consistent hash).

Latency: an open-loop load at a fixed rate (default 1,000 calls/s): every call
has a scheduled send time on a fixed timetable and its latency is measured from
that time, so a slow response delays no measurement (no coordinated omission).
Every call through a proxy has a twin sent straight to the worker at the same
scheduled time, and what the proxy added is the difference within each pair.
On this shared VM the load generator's and the worker's core now and then
stalls for several milliseconds; such a stall delays a call and its twin alike,
so it cancels out of the pair's difference, where it would otherwise decide a
percentile on its own. Each path's run is cut into one-second slices taken in
turns with the other paths'. Printed: p50/p99/p99.9 per path, of its twins, and
added per pair; beside them, the router's own histogram of the time it adds
(what it spends on a call, without the time the process waits to be scheduled).

Throughput: ``wrk`` (C, with a Lua script for the session paths) drives each
path closed-loop; printed: calls/s, and the CPU time the proxy process spent
per call (from /proc: steadier than calls/s on a shared machine, since time
taken by other processes is not counted). A Python load generator could not
saturate the router on this machine, hence wrk.

Then the ratios router/forwarder and router/HAProxy, for throughput (and CPU per
call) and for the added p50/p99/p99.9 (none where the baseline added under 1 us),
and the router with authentication against the router without it.

Scale-out last: the router as one process and as two processes sharing its port
(``--reuse-port``, as in one pod), one per core, wrk with two threads and 64
connections.

The worker is a minimal asyncio server that speaks the worker protocol (fixed
answers), so the measured cost is the proxy's, not the handler's. Like a real
worker it is closed: past ``/readyz`` and ``/healthz`` it answers only a request
that shows its pool's key (``Authorization: Bearer KEY``), and refuses any other
with 401, so a path that does not send the key fails its calls instead of
measuring something production never does. Every path sends the key as
production would: the router derives it from a release key directory
(``--worker-keys-dir``, as the chart mounts it), the direct calls show it
themselves, and the forwarder (``--keys-dir``) and HAProxy (``set-header``) add it
to every call they pass on. So each proxy writes the same one extra header
upstream, and the comparison stays like for like. The router and
HAProxy (and the forwarder) are pinned to CPU 0 (``taskset``), the worker, the
load generator and wrk to CPU 1. Loopback only; runtime about two and a half
minutes. The load average is printed before and after: the numbers are only as
quiet as the machine.

    .venv/bin/python -m benchmarks.router_overhead [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.review_server import review_kubeconfig, token_of
from benchmarks.stats import percentile
from bridgepool.credentials import Keys, bearer, new_key, pool_key_dir, read_keys, write_keys
from bridgepool.names import PoolRef

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SESSIONS = 64
POOL = "bench"
POOL_PATH = f"/v1/namespaces/default/pools/{POOL}"
TOKEN = token_of("bench")  # what the callers of the router with auth on send
PERCENTILES = ("50", "99", "99.9")

# -- a minimal worker ------------------------------------------------------------------

READYZ = json.dumps(
    {
        "worker": "bench",
        "ready": True,
        "state": "ready",
        "capacity": 1024,
        "in_flight": 0,
        "accepting_sessions": True,
    }
).encode()
SESSIONS_BODY = json.dumps({"worker": "bench", "sessions": []}).encode()
RESULT = b'{"id": null, "success": true, "result": {"pong": true}, "error": null}'
REFUSED = json.dumps(
    {"error": {"type": "unauthenticated", "category": "auth", "message": "no pool key"}}
).encode()
PROBES = ("/readyz", "/healthz")  # open to anyone, as on a real worker


def _response(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


@dataclass(frozen=True)
class WorkerKeys:
    """The keys of a run: the release key directory the routers derive the pool's
    key from, and the pool's own key directory (what the operator writes into the
    pool's Secret), which the workers and the forwarder read."""

    release_dir: Path
    pool_dir: Path
    key: str  # the pool's key: what every call to a worker shows


def worker_keys(tmp: Path) -> WorkerKeys:
    """A fresh release key, and the key directory of the pool ``POOL`` derived from it."""
    release = Keys(new_key())
    write_keys(tmp / "release-keys", release)
    pool = pool_key_dir(release, PoolRef.parse(POOL), tmp / "pool-keys")
    return WorkerKeys(tmp / "release-keys", tmp / "pool-keys", pool.current)


class _WorkerProtocol(asyncio.Protocol):
    def __init__(self, key: str | None) -> None:
        # The header line a caller must send (names are case-insensitive; HAProxy
        # sends them lowercase). None: open, as a worker started --open-access.
        self.authorization = None if key is None else f"authorization: {bearer(key)}".lower()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            match = re.search(r"(?i)content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            path = head.split(" ", 2)[1]
            if not self._admitted(path, head):
                self.transport.write(_response(REFUSED, b"401 Unauthorized"))
                continue
            if path == "/readyz":
                body = READYZ
            elif path.startswith("/v1/sessions"):
                body = SESSIONS_BODY
            else:
                body = RESULT
            self.transport.write(_response(body))

    def _admitted(self, path: str, head: str) -> bool:
        if self.authorization is None or path in PROBES:
            return True
        return any(line.lower() == self.authorization for line in head.split("\r\n")[1:])


def run_worker(port: int, keys_dir: str | None = None) -> None:
    """The minimal worker on ``port``: closed, taking the key in ``keys_dir``
    (a pool's key directory), or open when none is given."""
    key = None if keys_dir is None else read_keys(Path(keys_dir)).current

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _WorkerProtocol(key), "127.0.0.1", port, backlog=1024
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- a lean open-loop client ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    sticky_path: bool  # router: session in the path; others: POST /v1/execute
    # Sent as Authorization: Bearer: the caller's token to the router with auth
    # on; the pool's key straight to the worker.
    token: str | None = None

    def request(self, session: str) -> bytes:
        if self.sticky_path:
            path = f"{POOL_PATH}/sessions/{session}/execute"
            body = b'{"command": "ping", "args": {}}'
        else:
            path = "/v1/execute"
            body = json.dumps({"command": "ping", "args": {}, "session_id": session}).encode()
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{auth}X-BridgePool-Session: {session}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


async def send_call(
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], port: int, payload: bytes
) -> int:
    """Send one request on a kept-alive connection from ``pool`` (or a new one) and
    read its answer; returns the HTTP status."""
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    await reader.readexactly(int(match.group(1)) if match else 0)
    pool.append((reader, writer))
    return int(head[9:12])


async def _timed_call(
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    port: int,
    payload: bytes,
    scheduled: float,
) -> float | None:
    """One call's latency from its scheduled send time; None if it failed."""
    try:
        status = await send_call(pool, port, payload)
    except (OSError, asyncio.IncompleteReadError):
        return None
    return time.perf_counter() - scheduled if status == 200 else None


@dataclass
class Pairs:
    """A path's latencies beside the direct calls sent at the same moments."""

    path: list[float]  # each call's latency through the path, s
    direct: list[float]  # its twin's, sent straight to the worker
    errors: int = 0

    def added(self) -> list[float]:
        return [p - d for p, d in zip(self.path, self.direct, strict=True)]


async def paired_open_loop(target: Target, direct: Target, rate: float, seconds: float) -> Pairs:
    """Send ``rate`` calls/s through ``target`` for ``seconds``, each with a twin
    sent straight to the worker at the same scheduled time (which goes first
    alternates). A stall of the load generator's or the worker's core delays a
    call and its twin alike, so the difference is what the path added."""
    pools: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {
        target.port: [],
        direct.port: [],
    }
    sessions = [f"s{i}" for i in range(SESSIONS)]
    through = [target.request(s) for s in sessions]
    straight = [direct.request(s) for s in sessions]
    pairs = Pairs([], [])
    total = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter() + 0.05

    async def pair(i: int, scheduled: float) -> None:
        call = _timed_call(pools[target.port], target.port, through[i % SESSIONS], scheduled)
        twin_call = _timed_call(pools[direct.port], direct.port, straight[i % SESSIONS], scheduled)
        if i % 2:  # gather starts them in the order given
            twin, path = await asyncio.gather(twin_call, call)
        else:
            path, twin = await asyncio.gather(call, twin_call)
        if path is None or twin is None:
            pairs.errors += 1
            return
        pairs.path.append(path)
        pairs.direct.append(twin)

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(pair(i, scheduled)))
    await asyncio.gather(*tasks)
    for pool in pools.values():
        for _, writer in pool:
            writer.close()
    return pairs


def paired_in_turns(
    targets: list[Target], direct: Target, rate: float, seconds: float
) -> dict[str, Pairs]:
    """``paired_open_loop`` for every target, ``seconds`` each, in one-second
    slices taken in turns: what happens on the machine meanwhile falls on all alike."""
    results = {t.name: Pairs([], []) for t in targets}
    for _ in range(max(round(seconds), 1)):
        for target in targets:
            run = asyncio.run(paired_open_loop(target, direct, rate, 1.0))
            into = results[target.name]
            into.path += run.path
            into.direct += run.direct
            into.errors += run.errors
    return results


# -- wrk ----------------------------------------------------------------------------------

WRK_LUA = """
local n = 0
local sticky = {sticky}
local headers = {{["Content-Type"] = "application/json"}}
if "{token}" ~= "" then headers["Authorization"] = "Bearer {token}" end
request = function()
  n = n + 1
  local s = "s" .. (n % {sessions})
  if sticky then
    return wrk.format("POST", "{pool_path}/sessions/" .. s .. "/execute",
      headers, '{{"command": "ping", "args": {{}}}}')
  end
  headers["X-BridgePool-Session"] = s
  return wrk.format("POST", "/v1/execute", headers,
    '{{"command": "ping", "args": {{}}, "session_id": "' .. s .. '"}}')
end
"""


@dataclass(frozen=True)
class Throughput:
    calls_per_second: float
    non_2xx: int
    cpu_us_per_call: float | None  # of the proxy processes, when given


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk_throughput(
    target: Target,
    seconds: float,
    tmp: Path,
    pids: list[int] | None = None,
    *,
    cpus: str = "1",
    threads: int = 1,
    connections: int = 32,
) -> Throughput:
    script = tmp / f"{target.name}.lua"
    script.write_text(
        WRK_LUA.format(
            sticky="true" if target.sticky_path else "false",
            sessions=SESSIONS,
            pool_path=POOL_PATH,
            token=target.token or "",
        )
    )
    cpu_before = cpu_seconds(pids or [])
    out = subprocess.run(
        ["taskset", "-c", cpus, "wrk", f"-t{threads}", f"-c{connections}",
         f"-d{round(seconds)}s", "-s", str(script), f"http://127.0.0.1:{target.port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = cpu_seconds(pids or []) - cpu_before
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    calls = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    return Throughput(
        rps, int(non2xx.group(1)) if non2xx else 0, cpu / calls * 1e6 if pids and calls else None
    )


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


HAPROXY_CFG = """
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    default_backend workers
backend workers
    balance hdr(X-BridgePool-Session)
    hash-type consistent
    http-reuse always
    http-request set-header Authorization "{authorization}"
{servers}
"""


@dataclass(frozen=True)
class Proxy:
    port: int
    pids: list[int]  # the processes serving it (taskset execs: the Popen pid is theirs)


def start(
    procs: list[subprocess.Popen[bytes]],
    cpus: str | None,
    *cmd: str,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``cmd`` (pinned to ``cpus``, if given; ``env`` added to the
    environment), keep it in ``procs``; its pid."""
    pin = ["taskset", "-c", cpus] if cpus else []
    environ = {**os.environ, **(env or {})}
    procs.append(subprocess.Popen([*pin, *cmd], cwd=REPO, stdout=subprocess.DEVNULL, env=environ))
    return procs[-1].pid


def router_command(port: int, worker_ports: list[int], keys: WorkerKeys, *extra: str) -> list[str]:
    """The router of the pool ``POOL`` (``default/bench``), its workers' key derived
    from the release key directory, as on a cluster."""
    urls = ",".join(f"http://127.0.0.1:{p}" for p in worker_ports)
    return [str(BIN / "bridgepool-router"), "--host", "127.0.0.1", "--port", str(port),
            "--static", f"{POOL}={urls}", "--worker-keys-dir", str(keys.release_dir),
            "--log-level", "WARNING", *extra]  # fmt: skip


@contextmanager
def stopped_at_exit() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):  # the workers last: nothing calls a gone one
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_workers(procs: list[subprocess.Popen[bytes]], count: int, keys: WorkerKeys) -> list[int]:
    """``count`` minimal workers taking the pool's key, on CPU 1; their ports."""
    ports = [free_port() for _ in range(count)]
    for port in ports:
        code = (
            "from benchmarks.router_overhead import run_worker; "
            f"run_worker({port}, {str(keys.pool_dir)!r})"
        )
        start(procs, "1", sys.executable, "-c", code)
    return ports


@contextmanager
def processes(tmp: Path, workers: int) -> Iterator[tuple[list[int], dict[str, Proxy], WorkerKeys]]:
    """The workers (their ports), the proxies and the review stand-in, pinned as the
    module says; and the keys of the run, fresh in ``tmp``."""
    keys = worker_keys(tmp)
    with stopped_at_exit() as procs:
        worker_ports = start_workers(procs, workers, keys)
        router_port, forwarder_port, haproxy_port = free_port(), free_port(), free_port()
        router = start(procs, "0", *router_command(router_port, worker_ports, keys))
        reviews_port, guarded_port = free_port(), free_port()
        serve = f"import benchmarks.review_server as r; r.run_review_server({reviews_port})"
        start(procs, "1", sys.executable, "-c", serve)
        guarded = start(
            procs, "0", *router_command(guarded_port, worker_ports, keys, "--auth", "kubernetes"),
            env={"KUBECONFIG": str(review_kubeconfig(tmp, reviews_port))},
        )  # fmt: skip
        forwarder = start(
            procs, "0", sys.executable, "-m", "benchmarks.forwarder", "--port",
            str(forwarder_port), "--upstream", f"http://127.0.0.1:{worker_ports[0]}",
            "--keys-dir", str(keys.pool_dir),
        )  # fmt: skip
        servers = "\n".join(
            f"    server w{i} 127.0.0.1:{p} maxconn 1024" for i, p in enumerate(worker_ports)
        )
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CFG.format(port=haproxy_port, servers=servers, authorization=bearer(keys.key))
        )
        haproxy = start(procs, "0", "haproxy", "-db", "-f", str(cfg))
        for port in [*worker_ports, router_port, forwarder_port, haproxy_port, reviews_port,
                     guarded_port]:  # fmt: skip
            wait_port(port)
        time.sleep(0.5)  # the router's first health checks
        yield (
            worker_ports,
            {
                "router": Proxy(router_port, [router]),
                "router+auth": Proxy(guarded_port, [guarded]),
                "forwarder": Proxy(forwarder_port, [forwarder]),
                "haproxy": Proxy(haproxy_port, [haproxy]),
            },
            keys,
        )


@contextmanager
def routers_sharing_a_port(
    worker_ports: list[int], count: int, keys: WorkerKeys
) -> Iterator[Proxy]:
    """``count`` router processes on one port (``--reuse-port``), the i-th pinned
    to CPU i: left to itself, the scheduler keeps processes that wake each other
    on one core."""
    with stopped_at_exit() as procs:
        port = free_port()
        pids = [
            start(procs, str(i % (os.cpu_count() or 1)),
                  *router_command(port, worker_ports, keys, "--reuse-port"))
            for i in range(count)
        ]  # fmt: skip
        wait_port(port)
        time.sleep(1.0)  # every process listening, its first health checks done
        yield Proxy(port, pids)


def added_latency_buckets(router_url: str) -> dict[float, float]:
    """The router's own histogram of the time it adds to a call (its total minus
    the worker's time): upper bound in seconds -> calls at most that long."""
    text = httpx.get(f"{router_url}/metrics", timeout=10, trust_env=False).text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bridgepool_router_added_latency_seconds_bucket"
    }


def print_own_count(buckets: dict[float, float]) -> None:
    """What the router's histogram says of the latency run: the share of calls
    under each bound up to 1 ms, and the bound p99 and p99.9 fall under. Time
    the process spends waiting to be scheduled, or in the kernel before the
    request reaches it, is not in it: that is the gap to the numbers above."""
    total = buckets.get(math.inf, 0.0)
    if not total:
        print("the router's own count: no calls in its histogram")
        return
    bounds = sorted(buckets)
    shares = "  ".join(
        f"<= {le * 1000:g} ms {100 * buckets[le] / total:.2f}%" for le in bounds if le <= 0.001
    )

    def under(q: float) -> str:
        le = next(le for le in bounds if buckets[le] >= q * total)
        return f"<= {le * 1000:g} ms" if le != math.inf else "> the largest bucket"

    print(f"the router's own count of the time it adds ({total:.0f} calls, its histogram): "
          f"{shares}; p99 {under(0.99)}, p99.9 {under(0.999)}")  # fmt: skip


def added_ratio(router_ms: float, base_ms: float) -> str:
    """router/baseline for an added percentile; "-" when the baseline added
    under 1 us (a percentile of the per-pair differences can even come out
    below zero)."""
    if base_ms < 1e-3:
        return "-"
    return f"{max(router_ms, 1e-3) / base_ms:.2f}x"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="calls/s of the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    args = parser.parse_args()
    if not shutil.which("haproxy") or not shutil.which("wrk"):
        sys.exit("needs haproxy and wrk: apt-get install -y haproxy wrk")
    os.sched_setaffinity(0, {1})
    print(f"load average (1, 5, 15 min) before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmpdir, processes(Path(tmpdir), 1) as running:
        tmp, (worker_ports, proxies, keys) = Path(tmpdir), running
        targets = [
            Target("direct", worker_ports[0], sticky_path=False, token=keys.key),
            Target("router", proxies["router"].port, sticky_path=True),
            Target("router+auth", proxies["router+auth"].port, sticky_path=True, token=TOKEN),
            Target("forwarder", proxies["forwarder"].port, sticky_path=False),
            Target("haproxy", proxies["haproxy"].port, sticky_path=False),
        ]
        direct, paths = targets[0], targets[1:]
        print(f"latency: open loop, {args.rate:.0f} calls/s per path for {args.seconds:.0f}s "
              f"(1 s slices in turns), {SESSIONS} sessions. Each call has a twin sent "
              "straight to the worker at the same scheduled time; ms from that time, and "
              "added = call - twin, per pair")  # fmt: skip
        for target in paths:  # warm-up (connections, sessions)
            asyncio.run(paired_open_loop(target, direct, args.rate, 1.0))
        router_url = f"http://127.0.0.1:{proxies['router'].port}"
        before = added_latency_buckets(router_url)
        runs = paired_in_turns(paths, direct, args.rate, args.seconds)
        own = {le: n - before.get(le, 0.0) for le, n in added_latency_buckets(router_url).items()}
        print(f"  {'':9s} {'through the path':>23s}   {'its twins, direct':>23s}   "
              f"{'added (per pair)':>23s}")  # fmt: skip
        print(f"  {'':9s}" + "   ".join(["{:>7s} {:>7s} {:>7s}".format("p50", "p99", "p99.9")] * 3))
        added: dict[str, dict[str, float]] = {}
        for target in paths:
            pairs = runs[target.name]
            columns = [pairs.path, pairs.direct, pairs.added()]
            ms = [{p: percentile(xs, float(p) / 100) * 1000 for p in PERCENTILES} for xs in columns]
            added[target.name] = ms[2]
            cells = "   ".join(" ".join(f"{m[p]:7.3f}" for p in PERCENTILES) for m in ms)
            print(f"  {target.name:9s}{cells}   errors {pairs.errors}")
        print_own_count(own)
        print(f"throughput: wrk, 1 thread, 32 connections, {args.seconds:.0f}s per path; "
              "CPU per call of the proxy process")  # fmt: skip
        done: dict[str, Throughput] = {}
        for target in targets:
            pids = proxies[target.name].pids if target.name in proxies else None
            t = done[target.name] = wrk_throughput(target, args.seconds, tmp, pids)
            cpu = f"{t.cpu_us_per_call:6.1f} us CPU/call" if t.cpu_us_per_call else ""
            print(f"  {target.name:9s} {t.calls_per_second:9.0f} calls/s  {cpu:19s} "
                  f"(non-2xx: {t.non_2xx})")  # fmt: skip
        router = done["router"]
        print("router / baseline (throughput, and calls per CPU-second of the proxy: higher "
              "is better; added latency: lower is better):")  # fmt: skip
        print(f"  {'':9s} {'calls/s':>8s} {'calls/CPU-s':>12s} {'added p50':>10s} "
              f"{'added p99':>10s} {'added p99.9':>12s}")  # fmt: skip
        for base in ("forwarder", "haproxy"):
            x = {p: added_ratio(added["router"][p], added[base][p]) for p in PERCENTILES}
            rps = router.calls_per_second / done[base].calls_per_second
            efficiency = (done[base].cpu_us_per_call or 0) / (router.cpu_us_per_call or 1)
            print(f"  {base:9s} {rps:7.2f}x {efficiency:11.2f}x {x['50']:>10s} "
                  f"{x['99']:>10s} {x['99.9']:>12s}")  # fmt: skip
        print("  (-: the baseline added nothing measurable at that percentile)")
        guarded = done["router+auth"]
        print("authentication on (warm caches) / off, same run:")
        print(f"  calls/s {guarded.calls_per_second / router.calls_per_second:.2f}x"
              f" ({guarded.calls_per_second:.0f} / {router.calls_per_second:.0f}),"
              f" CPU per call {guarded.cpu_us_per_call or 0:.1f} / "
              f"{router.cpu_us_per_call or 0:.1f} us; added p50 "
              f"{added['router+auth']['50'] - added['router']['50']:+.3f} ms, p99 "
              f"{added['router+auth']['99'] - added['router']['99']:+.3f} ms")  # fmt: skip
        print(
            "targets (reported, not asserted): router >= 1.5x the forwarder's calls/s; "
            f"router-added p99 <= 1 ms and p99.9 <= 5 ms at {args.rate:.0f} calls/s; "
            "auth on >= 0.90x the calls/s of auth off, adding <= 0.1 ms at p50"
        )
        scale_out(worker_ports, args.seconds, tmp, keys)
    print(f"load average (1, 5, 15 min) after: {load_average()}")


def scale_out(worker_ports: list[int], seconds: float, tmp: Path, keys: WorkerKeys) -> None:
    print(f"scale-out: router processes sharing one port (--reuse-port), the i-th on CPU i, "
          f"beside the worker (CPU 1) and wrk (2 threads, 64 connections, either CPU); "
          f"{seconds:.0f}s")  # fmt: skip
    results: dict[int, Throughput] = {}
    for count in (1, 2):
        with routers_sharing_a_port(worker_ports, count, keys) as proxy:
            target = Target(f"routers{count}", proxy.port, sticky_path=True)
            wrk_throughput(target, 1.0, tmp, cpus="0,1", threads=2, connections=64)  # warm-up
            t = results[count] = wrk_throughput(
                target, seconds, tmp, proxy.pids, cpus="0,1", threads=2, connections=64
            )
            print(f"  {count} process{'es' if count > 1 else '  '} {t.calls_per_second:9.0f} "
                  f"calls/s  {t.cpu_us_per_call or 0:6.1f} us CPU/call  "
                  f"(non-2xx: {t.non_2xx})")  # fmt: skip
    gain = results[2].calls_per_second / results[1].calls_per_second
    print(f"  2 processes / 1: {gain:.2f}x")


if __name__ == "__main__":
    main()
