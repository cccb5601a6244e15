"""Local pool fixtures: ``bridgepool run`` as a user starts it, a real
supervisor with real worker and router processes, and session load checked
call by call."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.router.conftest import free_port, wait_until

HERE = Path(__file__).parent
HANDLERS = HERE / "handlers.py"

# Quick numbers: the pool notices and acts within tenths of a second to a few
# seconds, not the product's minutes. The routers' health checks are the
# router tests' fast ones.
FAST_SPEC: dict[str, Any] = {
    "minReplicas": 2,
    "maxReplicas": 4,
    "worker": {"capacity": 2},
    "health": {
        "intervalSeconds": 1,
        "readinessIntervalSeconds": 1,
        "replaceAfterFailures": 2,
        "startupTimeoutSeconds": 20,
    },
    "rollout": {
        "maxSurge": 1,
        "maxUnavailable": 0,
        "drainTimeoutSeconds": 30,
        "terminationGracePeriodSeconds": 10,
    },
    "routing": {
        "health": {"intervalSeconds": 0.2, "timeoutSeconds": 0.5, "fall": 2, "rise": 1},
        "retries": {"baseBackoffSeconds": 0.005, "maxBackoffSeconds": 0.05},
        "callTimeoutSeconds": 20,
    },
}


def pool_yaml(name: str = "local", handlers: str = "handlers.py", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bridgepool.io/v1alpha1",
        "kind": "BridgePool",
        "metadata": {"name": name, "annotations": {"bridgepool.io/local-handlers": handlers}},
        "spec": {
            **FAST_SPEC,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "bridgepool-worker:dev",
                            "env": [{"name": "BRIDGEPOOL_FAULTS_ENABLED", "value": "1"}],
                        }
                    ]
                }
            },
            **spec,
        },
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for its parent to reap it, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class LocalPool:
    """A ``bridgepool run`` process and what it runs."""

    directory: Path
    state_dir: Path
    port: int
    name: str = "local"
    process: subprocess.Popen[bytes] | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def pool_file(self) -> Path:
        return self.directory / "pool.yaml"

    @property
    def router(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/namespaces/default/pools/{self.name}"

    def write(self, manifest: dict[str, Any]) -> None:
        self.pool_file.write_text(yaml.safe_dump(manifest))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridgepool_local", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, *extra: str, env: dict[str, str] | None = None) -> None:
        self.log = (self.directory / "supervisor.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "bridgepool_local", "run", str(self.pool_file),
                "--port", str(self.port), "--state-dir", str(self.state_dir),
                "--interval", "1", *extra,
            ],
            stdout=self.log,
            stderr=self.log,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        wait_until(self.ready, 30, "the pool Ready and the router serving it")

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "supervisor.log").read_text()[-3000:]
            raise AssertionError(f"bridgepool run exited {self.process.returncode}:\n{log}")
        if not (self.state_dir / "supervisor.json").exists():
            return False
        status = self.status()["status"]
        conditions = status.get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        if not ready:
            return False
        # The router has picked up every ready worker (it reads its pool file
        # and checks each new worker's health first).
        view = self.http.get(self.router)
        if not view.is_success:
            return False
        serving = [w for w in view.json()["workers"] if w["ready"]]
        return len(serving) >= int(status.get("readyReplicas", 0))

    def supervisor(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.state_dir / "supervisor.json").read_text())
        return info

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get(self.supervisor()["control"] + "/v1/status").json()
        return answer

    def workers(self) -> list[dict[str, Any]]:
        """The pool's workers as its status lists them."""
        workers: list[dict[str, Any]] = self.status()["status"].get("workers", [])
        return workers

    def events(self) -> list[tuple[str, str]]:
        return [(e["reason"], e["message"]) for e in self.status()["events"]]

    def pid(self, worker: str) -> int:
        return int((self.state_dir / "pids" / f"{worker}.pid").read_text())

    def pids(self) -> dict[str, int]:
        """Every process the supervisor runs (workers and the router), by name."""
        return {p.stem: int(p.read_text()) for p in (self.state_dir / "pids").glob("*.pid")}

    def settled(self, size: int, revision: str | None = None) -> bool:
        """``size`` workers, all serving and none draining (of ``revision``), as
        the status and the router see them."""
        status = self.status()["status"]
        workers = status.get("workers", [])
        view = self.http.get(self.router).json()["workers"]
        return (
            status.get("readyReplicas") == size
            and len(workers) == size
            # Serving: ready, or busy (every slot taken, under load).
            and all(w["state"] in ("ready", "busy") for w in workers)
            and (revision is None or all(w["revision"] == revision for w in workers))
            and sum(1 for w in view if w["ready"] and not w.get("draining")) == size
        )

    def call(self, command: str, session: str | None = None, **args: Any) -> httpx.Response:
        path = f"/sessions/{session}/execute" if session else "/execute"
        return self.http.post(self.router + path, json={"command": command, "args": args})

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError, ValueError):
            for pid in self.pids().values():
                os.kill(pid, signal.SIGKILL)
        self.http.close()


@pytest.fixture
def local_pool(tmp_path: Path) -> Iterator[LocalPool]:
    (tmp_path / "handlers.py").write_text(HANDLERS.read_text())
    pool = LocalPool(tmp_path, tmp_path / "state", free_port())
    yield pool
    pool.close()


@dataclass
class SessionLoad:
    """Sessions counting up through the router, each call checked: the count
    goes up by one, on whichever worker holds the session. Any other answer
    is a failure, kept with what it was."""

    pool: LocalPool
    sessions: int = 6
    work_seconds: float = 0.0
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    workers_seen: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SessionLoad:
        for n in range(self.sessions):
            thread = threading.Thread(target=self.count, args=(f"s-{n}",), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)

    def count(self, session: str) -> None:
        expected = 1
        with httpx.Client(timeout=60) as http:
            url = f"{self.pool.router}/sessions/{session}/execute"
            while not self.stopped.is_set():
                body = {"command": "incr", "args": {"seconds": self.work_seconds}}
                try:
                    resp = http.post(url, json=body)
                    answer = resp.json()
                except (httpx.HTTPError, ValueError) as err:
                    self.fail(f"{session} call {expected}: {err!r}")
                    return
                if resp.status_code != 200 or answer["result"] != {"count": expected}:
                    self.fail(f"{session} call {expected}: {resp.status_code} {resp.text}")
                    return
                with self.lock:
                    self.calls += 1
                    holder = resp.headers.get("x-bridgepool-worker", "?")
                    self.workers_seen.setdefault(session, set()).add(holder)
                expected += 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def made(self, calls: int) -> Callable[[], bool]:
        """A check: ``calls`` more calls answered than now."""
        target = self.calls + calls
        return lambda: self.calls >= target or bool(self.failures)
