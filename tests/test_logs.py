"""One log shape across the worker, the router and the operator: JSON lines
with the same keys for time, level, component, logger and message, and the
same names for the fields they share."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridgepool.credentials import Keys, new_key, pool_key_dir, read_keys, write_keys
from bridgepool.logs import JsonFormatter
from bridgepool.names import PoolRef

BIN = Path(os.environ.get("VIRTUAL_ENV") or Path(__file__).resolve().parents[1] / ".venv") / "bin"
LEADING = ["time", "level", "component", "logger", "message"]


def record(**extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "bridgepool.x", "levelname": "WARNING", "msg": "worker %s down", "args": ("w1",)}
        | extra
    )


def test_a_line_has_the_common_keys_first_then_the_callers_fields() -> None:
    line = json.loads(JsonFormatter("router").format(record(pool="web", worker="w1")))
    assert list(line)[:5] == LEADING
    assert (line["level"], line["component"], line["message"]) == (
        "warning",
        "router",
        "worker w1 down",
    )
    assert (line["pool"], line["worker"]) == ("web", "w1")
    assert line["time"].endswith("Z")


def test_kopfs_object_reference_becomes_namespace_and_pool() -> None:
    ref = {"kind": "BridgePool", "namespace": "team-a", "name": "web", "uid": "u"}
    line = json.loads(JsonFormatter("operator").format(record(k8s_ref=ref, k8s_skip=False)))
    assert (line["namespace"], line["pool"]) == ("team-a", "web")
    assert not [key for key in line if key.startswith("k8s_")]


def first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stderr is not None
    for raw in proc.stderr:
        if raw.startswith("{"):
            parsed: dict[str, Any] = json.loads(raw)
            return parsed
    raise AssertionError(f"no JSON log line; exit code {proc.wait()}")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_every_component_logs_the_same_shape(taken_port: int, tmp_path: Path) -> None:
    # Each component holds its keys, as in a release: its first line is its
    # own, not a warning that it has none.
    release_keys = tmp_path / "release-keys"
    write_keys(release_keys, Keys(new_key()))
    pool_keys = tmp_path / "pool-keys"
    pool_key_dir(read_keys(release_keys), PoolRef("default", "web"), pool_keys)
    commands = {
        # The port is taken: the worker says so in a log line and exits.
        "worker": [
            str(BIN / "bridgepool-worker"),
            "--host",
            "127.0.0.1",
            "--port",
            str(taken_port),
            "--keys-dir",
            str(pool_keys),
        ],
        "router": [
            str(BIN / "bridgepool-router"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--static",
            f"web=http://127.0.0.1:{taken_port}",
            "--worker-keys-dir",
            str(release_keys),
        ],
        # No cluster: kopf logs that it cannot log in, and retries.
        "operator": [
            str(BIN / "bridgepool-operator"),
            "--all-namespaces",
            "--metrics-port",
            "0",
            "--liveness-port",
            "0",
            "--worker-keys-dir",
            str(release_keys),
            # Not this test's subject; on, it needs the chart's selectors.
            "--no-network-policy",
        ],
    }
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    for component, argv in commands.items():
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        try:
            line = first_line(proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert list(line)[:5] == LEADING, (component, line)
        assert line["component"] == component
