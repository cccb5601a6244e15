"""The operator's command line and environment settings, read as the router's
and the worker's are (``bridgepool.config``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kopf
import pytest

from bridgepool.config import ConfigError
from bridgepool.credentials import Keys, new_key, write_keys
from bridgepool.names import PoolRef
from bridgepool_operator.config import load_config, release_keys
from bridgepool_operator.main import start_settings

# What the chart gives the operator besides its namespaces (the key directory
# need not exist for the settings to load).
REQUIRED = {
    "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": "/var/run/bridgepool/release-keys",
    "BRIDGEPOOL_OPERATOR_RELEASE_NAMESPACE": "bridgepool-system",
    "BRIDGEPOOL_OPERATOR_ROUTER_SELECTOR": "app.kubernetes.io/instance=bp,"
    "app.kubernetes.io/component=router",
    "BRIDGEPOOL_OPERATOR_OPERATOR_SELECTOR": "app.kubernetes.io/instance=bp,"
    "app.kubernetes.io/component=operator",
}


def test_settings_come_from_flags_over_the_environment() -> None:
    env = {
        **REQUIRED,
        "BRIDGEPOOL_OPERATOR_METRICS_PORT": "9191",
        "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS": "2",
    }
    assert load_config(["--all-namespaces"], env).metrics_port == 9191
    config = load_config(["--all-namespaces", "--metrics-port", "9292"], env)
    assert (config.metrics_port, config.interval_seconds) == (9292, 2.0)
    spread = load_config([], {**REQUIRED, "BRIDGEPOOL_OPERATOR_NAMESPACE": "a, b"})
    assert spread.namespace == ("a", "b")


def test_a_bad_port_variable_is_refused_naming_the_variable() -> None:
    # What a Service named bridgepool-operator with a port named "metrics"
    # injects into pods that keep service links on.
    env = {"BRIDGEPOOL_OPERATOR_METRICS_PORT": "tcp://198.19.0.9:9090"}
    with pytest.raises(
        ConfigError, match=re.escape("BRIDGEPOOL_OPERATOR_METRICS_PORT='tcp://198.19.0.9:9090'")
    ):
        load_config(["--all-namespaces"], {**REQUIRED, **env})


@pytest.mark.parametrize("argv", [[], ["--namespace", "a", "--all-namespaces"]])
def test_which_namespaces_to_serve_must_be_said_once(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"--namespace NS .* or --all-namespaces"):
        load_config(argv, REQUIRED)


def test_the_release_key_directory_is_required_and_says_how_to_make_one() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR"}
    with pytest.raises(ConfigError) as err:
        load_config(["--all-namespaces"], env)
    assert "--worker-keys-dir DIR (BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR)" in str(err.value)
    assert "`bridgepool-keys new DIR`" in str(err.value)
    config = load_config(["--all-namespaces", "--worker-keys-dir", "/keys"], env)
    assert config.worker_keys_dir == Path("/keys")


def test_a_key_directory_without_a_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = load_config(
        ["--all-namespaces"], {**REQUIRED, "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": str(tmp_path)}
    )
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'key'}: no such key file")):
        release_keys(config)


def test_the_network_policy_needs_to_know_the_router_and_the_operator() -> None:
    env = {"BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": "/keys"}
    with pytest.raises(ConfigError) as err:
        load_config(["--all-namespaces"], env)
    assert str(err.value).startswith(
        "the per-pool network policy (on unless --no-network-policy) needs "
        "--release-namespace (BRIDGEPOOL_OPERATOR_RELEASE_NAMESPACE), "
        "--router-selector (BRIDGEPOOL_OPERATOR_ROUTER_SELECTOR), "
        "--operator-selector (BRIDGEPOOL_OPERATOR_OPERATOR_SELECTOR)"
    )
    off = load_config(["--all-namespaces", "--no-network-policy"], env)
    assert off.network_policy is False
    off = load_config(["--all-namespaces"], {**env, "BRIDGEPOOL_OPERATOR_NETWORK_POLICY": "false"})
    assert off.network_policy is False


def test_the_network_policy_settings_are_read() -> None:
    scrape = '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}]'
    config = load_config(
        ["--all-namespaces", "--router-selector", "app=router, example.com/tier=front"],
        {**REQUIRED, "BRIDGEPOOL_OPERATOR_NETWORK_POLICY_SCRAPE_FROM": scrape},
    )
    assert config.network_policy is True
    assert config.release_namespace == "bridgepool-system"
    assert config.router_selector == {"app": "router", "example.com/tier": "front"}
    assert config.operator_selector == {
        "app.kubernetes.io/instance": "bp",
        "app.kubernetes.io/component": "operator",
    }
    assert config.network_policy_scrape_from == (
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}},
    )
    empty = {**REQUIRED, "BRIDGEPOOL_OPERATOR_NETWORK_POLICY_SCRAPE_FROM": ""}
    assert load_config(["--all-namespaces"], empty).network_policy_scrape_from == ()


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("ROUTER_SELECTOR", "app", "'app' is not key=value"),
        ("ROUTER_SELECTOR", "=router", "'' is not a label key"),
        ("OPERATOR_SELECTOR", "app=an operator", "'an operator' (of app) is not a label value"),
        ("RELEASE_NAMESPACE", "Bridge_Pool", "String should match pattern"),
        ("NETWORK_POLICY_SCRAPE_FROM", "[{", "not JSON"),
        ("NETWORK_POLICY_SCRAPE_FROM", '{"podSelector": {}}', "valid tuple"),
        (
            "NETWORK_POLICY_SCRAPE_FROM",
            '[{"podSelector": {}, "ports": []}]',
            "item 0 is not a NetworkPolicyPeer: it holds podSelector, namespaceSelector "
            "or ipBlock, not ['ports']",
        ),
        (
            "NETWORK_POLICY_SCRAPE_FROM",
            '[{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]',
            "item 0: an ipBlock peer holds no selector",
        ),
        ("NETWORK_POLICY_SCRAPE_FROM", "[{}]", "item 0 is not a NetworkPolicyPeer"),
    ],
)
def test_a_bad_network_policy_setting_is_refused_naming_the_variable(
    setting: str, value: str, problem: str
) -> None:
    variable = f"BRIDGEPOOL_OPERATOR_{setting}"
    with pytest.raises(ConfigError) as err:
        load_config(["--all-namespaces"], {**REQUIRED, variable: value})
    message = str(err.value)
    assert message.startswith(f"bad setting: {variable}={value!r}: "), message
    assert problem in message


def run_operator(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``bridgepool-operator ARGV`` with only ``env`` for its environment."""
    return subprocess.run(
        [sys.executable, "-m", "bridgepool_operator.cli", *argv],
        env=env or {},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_process_stops_on_a_missing_key_directory_with_one_line(tmp_path: Path) -> None:
    done = run_operator(
        "--all-namespaces",
        env={**REQUIRED, "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": str(tmp_path / "none")},
    )
    assert done.returncode == 2
    assert done.stderr == f"bridgepool-operator: {tmp_path / 'none'}: not a directory of keys\n"


def test_the_process_stops_on_a_bad_setting_with_one_line_and_no_traceback() -> None:
    done = run_operator("--all-namespaces", env={"BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS": "soon"})
    assert done.returncode == 2
    assert done.stderr.startswith("bridgepool-operator: bad setting: ")
    assert "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS='soon'" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_shows_each_flag_with_its_default_and_variable() -> None:
    done = run_operator("--help")
    assert done.returncode == 0
    assert "--metrics-port PORT" in done.stdout
    assert "(default: 9090;" in done.stdout
    assert "BRIDGEPOOL_OPERATOR_METRICS_PORT" in done.stdout
    assert "BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS" in done.stdout
    assert "--network-policy, --no-network-policy" in done.stdout


def test_startup_takes_the_settings_and_keys_the_command_line_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``bridgepool-operator`` hands kopf's startup (a Memo, which is a
    dict: its ``keys`` is a method, so the release keys go by another name),
    and what `kopf run` reads from the environment instead."""
    write_keys(tmp_path, Keys(new_key()))
    config = load_config(
        ["--all-namespaces"], {**REQUIRED, "BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": str(tmp_path)}
    )
    keys = release_keys(config)
    assert start_settings(kopf.Memo(config=config, release_keys=keys)) == (config, keys)

    for name, value in {**REQUIRED, "BRIDGEPOOL_OPERATOR_ALL_NAMESPACES": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR", str(tmp_path))
    from_env, env_keys = start_settings(kopf.Memo())
    assert from_env.worker_keys_dir == tmp_path
    assert env_keys.of(PoolRef("team-a", "example")) == keys.of(PoolRef("team-a", "example"))
