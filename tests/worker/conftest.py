"""Worker test fixtures: real ``bridgepool-worker`` processes on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgepool.credentials import Keys, bearer, new_key, write_keys

WORKER_BIN = Path(sys.executable).parent / "bridgepool-worker"
# Short housekeeping interval so expiry and timed states show in tenths of a second.
FAST = {"BRIDGEPOOL_WORKER_SWEEP_INTERVAL_SECONDS": "0.05"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    # The pool's key: the test's client shows it, as the router would.
    key: str | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {} if self.key is None else {"Authorization": bearer(self.key)}
        self.client = httpx.Client(base_url=self.url, timeout=10, headers=headers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        session_id: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        request_id: str | int | None = "t",
    ) -> httpx.Response:
        body = {"id": request_id, "command": command, "args": args or {}, "session_id": session_id}
        return self.client.post("/v1/execute", json=body, headers=headers)

    def result(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        """The result of a call that must succeed."""
        response = self.call(command, args, **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True, body
        return body["result"]

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def logs(self) -> str:
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)


def worker_env(env: dict[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEPOOL_")}
    return {**base, **FAST, **(env or {})}


def wait_ready(worker: Worker, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.popen.poll() is not None:
            raise AssertionError(f"worker exited {worker.popen.returncode}:\n{worker.logs()}")
        try:
            if worker.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"worker not ready within {timeout}s:\n{worker.logs()}")


class Workers:
    """Starts workers of one pool (they share its keys, in ``keys_dir``); every
    one is killed when the test (or module) ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Worker] = []
        self.keys = Keys(new_key(), scrape=new_key())
        self.keys_dir = tmp / "pool-keys"
        write_keys(self.keys_dir, self.keys)

    def start(
        self,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        ready: bool = True,
    ) -> Worker:
        port = free_port()
        log_path = self.tmp / f"worker-{port}.log"
        cmd = [str(WORKER_BIN), "--host", "127.0.0.1", "--port", str(port), *(args or [])]
        keys = (
            {}
            if "--open-access" in (args or [])
            else {"BRIDGEPOOL_WORKER_KEYS_DIR": str(self.keys_dir)}
        )
        env = worker_env({**keys, **(env or {})})
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
            )
        keyed = "BRIDGEPOOL_WORKER_KEYS_DIR" in env
        worker = Worker(popen, port, log_path, self.keys.current if keyed else None)
        self.started.append(worker)
        if ready:
            wait_ready(worker)
        return worker

    def run_to_exit(
        self, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a worker that is expected to refuse to start."""
        cmd = [str(WORKER_BIN), "--host", "127.0.0.1", "--port", str(free_port()), *(args or [])]
        return subprocess.run(
            cmd, env=worker_env(env), capture_output=True, text=True, timeout=20, cwd=self.tmp
        )

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for tests that only need the defaults plus faults; each test
    uses its own session ids."""
    pool = Workers(tmp_path_factory.mktemp("worker"))
    yield pool.start(
        env={
            "BRIDGEPOOL_FAULTS_ENABLED": "1",
            "BRIDGEPOOL_WORKER_CAPACITY": "4",
            "BRIDGEPOOL_WORKER_NAME": "shared-worker",
            "BRIDGEPOOL_WORKER_MAX_BODY_BYTES": "4096",
        }
    )
    pool.stop_all()
