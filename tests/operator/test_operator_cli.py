"""The operator's command line and environment settings."""

from __future__ import annotations

import pytest

from bridgepool_operator.cli import parse_args


def test_ports_come_from_flags_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGEPOOL_OPERATOR_METRICS_PORT", "9191")
    assert parse_args(["-A"]).metrics_port == 9191
    assert parse_args(["-A", "--metrics-port", "9292"]).metrics_port == 9292


def test_a_bad_port_variable_stops_it_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a Service named bridgepool-operator with a port named "metrics"
    # injects into pods that keep service links on.
    monkeypatch.setenv("BRIDGEPOOL_OPERATOR_METRICS_PORT", "tcp://198.19.0.9:9090")
    with pytest.raises(SystemExit) as stopped:
        parse_args(["-A"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "BRIDGEPOOL_OPERATOR_METRICS_PORT='tcp://198.19.0.9:9090' is not a port number" in err
    assert "Traceback" not in err
