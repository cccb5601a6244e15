"""The operator's command line and environment settings, read as the router's
and the worker's are (``bridgepool.config``)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bridgepool.config import ConfigError
from bridgepool_operator.config import load_config


def test_settings_come_from_flags_over_the_environment() -> None:
    env = {"BRIDGEPOOL_OPERATOR_METRICS_PORT": "9191", "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS": "2"}
    assert load_config(["--all-namespaces"], env).metrics_port == 9191
    config = load_config(["--all-namespaces", "--metrics-port", "9292"], env)
    assert (config.metrics_port, config.interval_seconds) == (9292, 2.0)
    spread = load_config([], {"BRIDGEPOOL_OPERATOR_NAMESPACE": "a, b"})
    assert spread.namespace == ("a", "b")


def test_a_bad_port_variable_is_refused_naming_the_variable() -> None:
    # What a Service named bridgepool-operator with a port named "metrics"
    # injects into pods that keep service links on.
    env = {"BRIDGEPOOL_OPERATOR_METRICS_PORT": "tcp://198.19.0.9:9090"}
    with pytest.raises(
        ConfigError, match=re.escape("BRIDGEPOOL_OPERATOR_METRICS_PORT='tcp://198.19.0.9:9090'")
    ):
        load_config(["--all-namespaces"], env)


@pytest.mark.parametrize("argv", [[], ["--namespace", "a", "--all-namespaces"]])
def test_which_namespaces_to_serve_must_be_said_once(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"--namespace NS .* or --all-namespaces"):
        load_config(argv, {})


def test_the_process_stops_on_a_bad_setting_with_one_line_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridgepool_operator.cli", "--all-namespaces"],
        env={"BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS": "soon"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bridgepool-operator: bad setting: ")
    assert "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS='soon'" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_shows_each_flag_with_its_default_and_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridgepool_operator.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--metrics-port PORT" in done.stdout
    assert "(default: 9090;" in done.stdout
    assert "BRIDGEPOOL_OPERATOR_METRICS_PORT" in done.stdout
    assert "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS" in done.stdout
