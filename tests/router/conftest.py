"""Router test fixtures: worker and router processes on real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.review_server import review_kubeconfig, token_of
from bridgepool.credentials import (
    Keys,
    bearer,
    new_key,
    pool_key_dir,
    pool_keys,
    read_keys,
    write_keys,
)
from bridgepool.names import PoolRef

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
REPO = HERE.parent.parent

# The real worker, with the example commands and the router tests' own, and
# fault injection (the ``fault`` command's ``error`` kind is a worker-side 500).
WORKER_HANDLERS = (str(REPO / "examples" / "worker_handlers.py"), str(HERE / "worker_commands.py"))

# Short intervals so failures are seen in tenths of a second, not seconds.
FAST_ROUTING: dict[str, Any] = {
    "health": {"intervalSeconds": 0.2, "timeoutSeconds": 0.5, "fall": 2, "rise": 1},
    "retries": {"baseBackoffSeconds": 0.005, "maxBackoffSeconds": 0.05},
    "queue": {"maxLength": 100, "timeoutSeconds": 2},
    "callTimeoutSeconds": 10,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a TCP socket listening on ``port`` (Linux)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            sockets.add(os.readlink(fd))
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        listens = state == "0A" and int(local.split(":")[1], 16) == port  # 0A: LISTEN
        if listens and f"socket:[{inode}]" in sockets:
            return True
    return False


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    url: str
    port: int

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(10)


DEMO = PoolRef("default", "demo")


class Processes:
    """Workers and routers of one release: they share its keys (``release_keys``),
    and a worker holds its pool's."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.release_keys = tmp / "release-keys"
        write_keys(self.release_keys, Keys(new_key()))

    def key(self, pool: PoolRef = DEMO) -> str:
        """The key a worker of ``pool`` asks of its callers."""
        return pool_keys(read_keys(self.release_keys), pool).current

    def key_header(self, pool: PoolRef = DEMO) -> dict[str, str]:
        return {"Authorization": bearer(self.key(pool))}

    def worker(
        self,
        capacity: int = 8,
        port: int | None = None,
        pool: PoolRef = DEMO,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """A worker of ``pool`` named after its port; ``port`` restarts one in its
        place; ``env``: more settings."""
        port = port or free_port()
        keys_dir = self.tmp / f"keys-{pool.namespace}-{pool.name}"
        pool_key_dir(read_keys(self.release_keys), pool, keys_dir)
        cmd = [str(BIN / "bridgepool-worker"), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--capacity", str(capacity), "--name", f"worker-{port}"]
        cmd += ["--handlers", *WORKER_HANDLERS, "--keys-dir", str(keys_dir)]
        env = {**os.environ, "BRIDGEPOOL_FAULTS_ENABLED": "1", **(env or {})}
        log = open(self.tmp / f"worker-{port}.log", "ab")  # noqa: SIM115 - outlives this call
        popen = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        proc = Proc(popen, f"http://127.0.0.1:{port}", port)
        self.procs.append(proc)
        wait_until(lambda: httpx.get(proc.url + "/readyz").status_code == 200, what="worker")
        return proc

    def write_pools(self, pools: dict[str, Any], name: str = "pools.json") -> Path:
        path = self.tmp / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pools": pools}))
        tmp.replace(path)  # atomic: the router never reads half a file
        return path

    def router(
        self,
        pools_file: Path,
        port: int | None = None,
        reuse_port: bool = False,
        *,
        kubeconfig: Path | None = None,
    ) -> Proc:
        """A router; ``reuse_port``: one of several router processes on ``port``;
        ``kubeconfig``: with authentication on, reviews asked where it points
        (``benchmarks.review_server``), and ready once a known caller sees it."""
        port = port or free_port()
        cmd = [str(BIN / "bridgepool-router"), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--static-file", str(pools_file), "--static-reload-seconds", "0.1"]
        cmd += ["--worker-keys-dir", str(self.release_keys)]
        if reuse_port:
            cmd.append("--reuse-port")
        env = {**os.environ}
        headers = {}
        if kubeconfig is not None:
            cmd += ["--auth", "kubernetes"]
            env["KUBECONFIG"] = str(kubeconfig)
            headers["Authorization"] = f"Bearer {token_of('test-harness')}"
        name = f"router-{port}-{len(self.procs)}" if reuse_port else f"router-{port}"
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - outlives this call
        popen = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        proc = Proc(popen, f"http://127.0.0.1:{port}", port)
        self.procs.append(proc)

        def ready() -> bool:
            if httpx.get(proc.url + "/readyz").status_code != 200:
                return False
            pools = httpx.get(proc.url + "/v1/pools", headers=headers).json()["pools"]
            # every worker has answered a health check (capacity learned)
            return all(w["state"] != "unknown" for p in pools for w in p["workers"])

        wait_until(ready, what="router")
        if reuse_port:  # the port answered, but maybe another process on it
            wait_until(lambda: listening(popen.pid, port), what="router listening")
        return proc

    def review_server(self) -> Path:
        """A stand-in for the API server's reviews (``benchmarks.review_server``);
        the kubeconfig that points a router at it."""
        port = free_port()
        code = f"import benchmarks.review_server as r; r.run_review_server({port})"
        log = open(self.tmp / "reviews.log", "ab")  # noqa: SIM115 - outlives this call
        popen = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=log, stderr=log)
        self.procs.append(Proc(popen, f"http://127.0.0.1:{port}", port))
        wait_until(lambda: listening(popen.pid, port), what="review stand-in")
        return review_kubeconfig(self.tmp, port)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill(signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.close()
