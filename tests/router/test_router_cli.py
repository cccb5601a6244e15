"""The router's command line: every flag has a help text with its default and a
``BRIDGEPOOL_ROUTER_*`` variable; flags win; a bad variable is named."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from bridgepool.config import ConfigError
from bridgepool_router.cli import LISTEN_BACKLOG, SOURCES, RouterOptions, load_options
from tests.router.conftest import BIN, Processes, free_port, wait_until


def test_defaults_without_flags_or_variables() -> None:
    assert load_options([], {}) == RouterOptions()
    options = RouterOptions()
    assert (options.host, options.port, options.shutdown_timeout) == ("0.0.0.0", 8000, 30.0)
    assert (options.static, options.namespace, options.kubernetes) == ((), (), False)


def test_every_setting_comes_from_its_variable() -> None:
    env = {
        "BRIDGEPOOL_ROUTER_HOST": "127.0.0.1",
        "BRIDGEPOOL_ROUTER_PORT": "9000",
        "BRIDGEPOOL_ROUTER_STATIC": "a=http://h:1,http://h:2  b=http://h:3",
        "BRIDGEPOOL_ROUTER_STATIC_FILE": "/etc/pools.yaml",
        "BRIDGEPOOL_ROUTER_STATIC_RELOAD_SECONDS": "0.5",
        "BRIDGEPOOL_ROUTER_KUBERNETES": "true",
        "BRIDGEPOOL_ROUTER_NAMESPACE": "team-a, team-b",
        "BRIDGEPOOL_ROUTER_REUSE_PORT": "true",
        "BRIDGEPOOL_ROUTER_SHUTDOWN_TIMEOUT": "5",
        "BRIDGEPOOL_ROUTER_LOG_LEVEL": "WARNING",
        "BRIDGEPOOL_ROUTER_WORKER_KEYS_DIR": "/var/run/bridgepool/release-keys",
    }
    assert load_options([], env) == RouterOptions(
        host="127.0.0.1",
        port=9000,
        static=("a=http://h:1,http://h:2", "b=http://h:3"),
        static_file=Path("/etc/pools.yaml"),
        static_reload_seconds=0.5,
        kubernetes=True,
        namespace=("team-a", "team-b"),
        reuse_port=True,
        shutdown_timeout=5,
        log_level="warning",
        worker_keys_dir=Path("/var/run/bridgepool/release-keys"),
    )


def test_flags_win_over_variables() -> None:
    env = {
        "BRIDGEPOOL_ROUTER_PORT": "9000",
        "BRIDGEPOOL_ROUTER_NAMESPACE": "from-env",
        "BRIDGEPOOL_ROUTER_KUBERNETES": "false",
    }
    options = load_options(["--port", "9001", "--namespace", "a", "--kubernetes"], env)
    assert options.port == 9001
    assert options.namespace == ("a",)  # replaced, not added to
    assert options.kubernetes is True
    assert load_options([], env).namespace == ("from-env",)


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {"BRIDGEPOOL_ROUTER_PORT": "tcp://10.0.0.1:8000"}, "BRIDGEPOOL_ROUTER_PORT="),
        ([], {"BRIDGEPOOL_ROUTER_KUBERNETES": "maybe"}, "BRIDGEPOOL_ROUTER_KUBERNETES="),
        ([], {"BRIDGEPOOL_ROUTER_SHUTDOWN_TIMEOUT": "-1"}, "BRIDGEPOOL_ROUTER_SHUTDOWN_TIMEOUT="),
        ([], {"BRIDGEPOOL_ROUTER_LOG_LEVEL": "loud"}, "BRIDGEPOOL_ROUTER_LOG_LEVEL="),
        (["--static-reload-seconds", "0"], {}, "--static-reload-seconds="),
        (["--port", "70000"], {"BRIDGEPOOL_ROUTER_PORT": "1"}, "--port="),
    ],
)
def test_a_bad_value_names_its_flag_or_variable(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_options(argv, env)


def test_help_gives_every_flag_a_description_default_and_variable() -> None:
    text = " ".join(SOURCES.parser().format_help().split())
    for name in RouterOptions.model_fields:
        assert f"--{name.replace('_', '-')}" in text
        assert f"; BRIDGEPOOL_ROUTER_{name.upper()})" in text, name
    assert text.count("(default: ") == len(RouterOptions.model_fields)
    assert "--port PORT port to listen on (default: 8000; BRIDGEPOOL_ROUTER_PORT)" in text


def router_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without BRIDGEPOOL_* variables, plus ``settings``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEPOOL_")}
    return {**clean, **settings}


def test_a_bad_variable_stops_the_process_naming_it() -> None:
    done = subprocess.run(
        [str(BIN / "bridgepool-router"), "--static", "demo=http://127.0.0.1:1"],
        env=router_env({"BRIDGEPOOL_ROUTER_PORT": "tcp://10.0.0.1:8000"}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "BRIDGEPOOL_ROUTER_PORT='tcp://10.0.0.1:8000'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_router_configured_by_variables_alone(procs: Processes) -> None:
    worker = procs.worker()
    port = free_port()
    settings = {
        "BRIDGEPOOL_ROUTER_HOST": "127.0.0.1",
        "BRIDGEPOOL_ROUTER_PORT": str(port),
        "BRIDGEPOOL_ROUTER_STATIC": f"demo={worker.url}",
        "BRIDGEPOOL_ROUTER_WORKER_KEYS_DIR": str(procs.release_keys),
    }
    router = subprocess.Popen(
        [str(BIN / "bridgepool-router")],
        env=router_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, what="router")
        answer = httpx.post(url + "/v1/pools/demo/execute", json={"command": "ping"})
        assert answer.status_code == 200
    finally:
        router.terminate()
        router.wait(10)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_router_queues_the_connections_a_stall_leaves_unaccepted(procs: Processes) -> None:
    """Past its listen queue the kernel drops a client's SYN, and the client tries
    again a second later: the router's queue is far longer than aiohttp's 128."""
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": [worker.url]}))
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{router.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(listening[2]) == min(LISTEN_BACKLOG, somaxconn)  # Send-Q: the queue's length
