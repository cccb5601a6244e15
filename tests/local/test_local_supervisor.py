"""``bridgepool run``: the same planner as the operator, over worker processes.

Each test starts the supervisor as a user does (a real process, with real
worker and router processes) and drives the pool through what the planner
decides: a crashed or hung worker replaced, a rolling replacement under
load with every session call checked, recycling, scaling; and a stop that
leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import yaml

from tests.local.conftest import LocalPool, SessionLoad, alive, pool_yaml
from tests.router.conftest import wait_until


def revisions(pool: LocalPool) -> set[str]:
    return {w["revision"] for w in pool.workers()}


def test_the_pool_runs_serves_says_its_status_and_stops_leaving_nothing(
    local_pool: LocalPool,
) -> None:
    local_pool.write(pool_yaml())
    local_pool.start()
    assert local_pool.settled(2)
    first = local_pool.call("incr", "s-1").json()["result"]
    assert first == {"count": 1}
    assert local_pool.call("incr", "s-1").json()["result"] == {"count": 2}

    shown = local_pool.cli("status", "--state-dir", str(local_pool.state_dir))
    assert shown.returncode == 0, shown.stderr
    assert "local" in shown.stdout and "Running" in shown.stdout
    assert "WorkerCreated" in shown.stdout
    status = local_pool.status()["status"]
    assert (status["desiredReplicas"], status["readyReplicas"], status["phase"]) == (
        2,
        2,
        "Running",
    )
    # The control port refuses what it does not serve with the structured error.
    control = local_pool.supervisor()["control"]
    for method, path, status, kind in (
        ("GET", "/nope", 404, "route_not_found"),
        ("POST", "/v1/status", 405, "method_not_allowed"),
    ):
        refused = local_pool.http.request(method, control + path)
        assert refused.status_code == status
        assert refused.json()["error"]["type"] == kind
    # One name per worker: the router's header, the status and the process.
    names = {w["name"] for w in local_pool.workers()}
    assert set(local_pool.pids()) == names | {"router"}

    pids = local_pool.pids()
    assert local_pool.stop(signal.SIGTERM) == 0
    assert not any(alive(pid) for pid in pids.values())
    assert not list((local_pool.state_dir / "pids").glob("*.pid"))


def test_a_killed_worker_is_replaced_and_the_pool_heals(local_pool: LocalPool) -> None:
    local_pool.write(pool_yaml())
    local_pool.start()
    (victim, *_) = sorted(w["name"] for w in local_pool.workers())
    os.kill(local_pool.pid(victim), signal.SIGKILL)

    wait_until(
        lambda: victim not in {w["name"] for w in local_pool.workers()} and local_pool.settled(2),
        30,
        "the killed worker replaced",
    )
    reasons = local_pool.events()
    assert ("WorkerUnhealthy", f"{victim} draining (unhealthy): exited with code -9") in reasons
    assert any(r == "WorkerCreated" and "replace" in m for r, m in reasons)


def test_a_hung_worker_is_replaced(local_pool: LocalPool) -> None:
    """A worker that answers nothing (stopped, as a process stuck in a native
    call): unready after its readiness checks fail, replaced after
    ``replaceAfterFailures`` health intervals, killed after its grace."""
    local_pool.write(pool_yaml())
    local_pool.start()
    (victim, *_) = sorted(w["name"] for w in local_pool.workers())
    os.kill(local_pool.pid(victim), signal.SIGSTOP)

    wait_until(
        lambda: victim not in {w["name"] for w in local_pool.workers()} and local_pool.settled(2),
        60,
        "the hung worker replaced",
    )
    assert any(
        r == "WorkerUnhealthy" and m.startswith(f"{victim} draining (unhealthy): not ready for")
        for r, m in local_pool.events()
    )


def test_a_new_handler_file_rolls_out_with_no_failed_call_and_no_lost_session(
    local_pool: LocalPool,
) -> None:
    """The handler file changes while sessions count: new workers start, the
    old ones drain, every session moves with its count, no call fails."""
    local_pool.write(pool_yaml())
    local_pool.start()
    (before,) = revisions(local_pool)
    with SessionLoad(local_pool, sessions=6, work_seconds=0.01) as load:
        wait_until(load.made(60), 30, "calls before the rollout")
        handlers = local_pool.directory / "handlers.py"
        handlers.write_text(handlers.read_text().replace('"version": "1"', '"version": "2"'))
        wait_until(
            lambda: (revisions(local_pool) - {before} and local_pool.settled(2)
            and before not in revisions(local_pool)) or bool(load.failures),
            90,
            "the rollout done",
        )  # fmt: skip
        wait_until(load.made(60), 30, "calls after the rollout")
    assert load.failures == []
    assert local_pool.call("work", seconds=0).json()["result"] == {"version": "2"}
    moved = [m for r, m in local_pool.events() if r == "SessionsMoved"]
    assert moved, "the old workers' sessions moved"
    # Every session went on counting on a new worker.
    assert all(len(seen) >= 2 for seen in load.workers_seen.values())


def test_bridgepool_apply_rolls_out_and_a_refused_file_changes_nothing(
    local_pool: LocalPool,
) -> None:
    local_pool.write(pool_yaml())
    local_pool.start("--no-watch")
    (before,) = revisions(local_pool)
    generation = local_pool.status()["status"]["observedGeneration"]

    bad = local_pool.directory / "bad.yaml"
    manifest = pool_yaml(minReplicas=5, maxReplicas=4)
    bad.write_text(yaml.safe_dump(manifest))
    refused = local_pool.cli("apply", str(bad), "--state-dir", str(local_pool.state_dir))
    assert refused.returncode == 1
    assert "spec.minReplicas (5) must be <= spec.maxReplicas (4)" in refused.stderr
    assert local_pool.status()["status"]["observedGeneration"] == generation

    new = pool_yaml()
    new["spec"]["template"]["metadata"] = {"labels": {"team": "b"}}
    changed = local_pool.directory / "new.yaml"
    changed.write_text(yaml.safe_dump(new))
    applied = local_pool.cli("apply", str(changed), "--state-dir", str(local_pool.state_dir))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "bridgepool/local configured"
    wait_until(
        lambda: before not in revisions(local_pool) and local_pool.settled(2),
        90,
        "the applied template rolled out",
    )
    assert local_pool.status()["status"]["observedGeneration"] == generation + 1


def test_workers_due_for_recycling_are_replaced_and_their_sessions_move(
    local_pool: LocalPool,
) -> None:
    """Workers that served ``maxRequests`` calls are replaced, their sessions
    moved to the new ones, call after call (a worker whose sessions all went
    elsewhere serves nothing, so it is not due: the test counts recycles)."""
    local_pool.write(pool_yaml(worker={"capacity": 2, "maxRequests": 40}))
    local_pool.start()

    def recycled() -> list[str]:
        return [m for r, m in local_pool.events() if r == "WorkerDraining" and "(recycle)" in m]

    with SessionLoad(local_pool, sessions=4) as load:
        wait_until(lambda: len(recycled()) >= 3 or bool(load.failures), 90, "three recycles")
        wait_until(load.made(20), 30, "calls after recycling")
    assert load.failures == []
    assert all("recycling due: max_requests" in m for m in recycled())
    assert any(r == "SessionsMoved" for r, _ in local_pool.events())


def test_the_pool_grows_with_load_and_shrinks_after_its_window(local_pool: LocalPool) -> None:
    autoscaling = {
        "enabled": True,
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 3,
    }
    local_pool.write(pool_yaml(minReplicas=1, maxReplicas=2, autoscaling=autoscaling))
    local_pool.start()
    assert local_pool.settled(1)
    # Six calls at a time on one worker of two slots: above the band.
    with SessionLoad(local_pool, sessions=6, work_seconds=0.3) as load:
        wait_until(lambda: local_pool.settled(2) or bool(load.failures), 60, "grown to 2")
    assert load.failures == []
    wait_until(lambda: local_pool.settled(1), 60, "shrunk back to 1 once idle")
    scaled = [m.split(" (")[0] for r, m in local_pool.events() if r == "Scaled"]
    assert scaled == ["desired workers 1 -> 2", "desired workers 2 -> 1"]


def test_a_second_signal_stops_everything_at_once(local_pool: LocalPool) -> None:
    local_pool.write(pool_yaml())
    local_pool.start()
    pids = local_pool.pids()
    with SessionLoad(local_pool, sessions=2, work_seconds=0.5):
        wait_until(lambda: local_pool.status()["status"].get("utilization", 0) > 0, 10, "load")
        assert local_pool.process is not None
        local_pool.process.send_signal(signal.SIGINT)
        local_pool.process.send_signal(signal.SIGINT)
        local_pool.process.wait(15)
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), 10, "every process gone")


def test_a_killed_supervisor_leaves_no_worker_and_a_restart_finds_no_strays(
    local_pool: LocalPool, tmp_path: Path
) -> None:
    local_pool.write(pool_yaml())
    local_pool.start()
    pids = local_pool.pids()
    assert local_pool.stop(signal.SIGKILL) == -signal.SIGKILL
    # The kernel stops its children with it.
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), 10, "the children gone")
    started = time.monotonic()
    local_pool.start()
    assert time.monotonic() - started < 60
    assert not set(local_pool.pids().values()) & set(pids.values())
    assert local_pool.settled(2)


def test_a_worker_stopped_from_outside_hands_its_sessions_off_and_is_replaced(
    local_pool: LocalPool,
) -> None:
    """SIGTERM to a worker (a user's kill, as a kubectl delete pod on a
    cluster): it waits while the supervisor moves its sessions, then leaves;
    a new worker takes its place; no session call fails or loses its count."""
    local_pool.write(pool_yaml())
    local_pool.start()
    with SessionLoad(local_pool, sessions=6, work_seconds=0.01) as load:
        wait_until(load.made(40), 30, "calls before the stop")
        (victim, *_) = sorted(w["name"] for w in local_pool.workers())
        os.kill(local_pool.pid(victim), signal.SIGTERM)
        wait_until(
            lambda: (victim not in {w["name"] for w in local_pool.workers()}
            and local_pool.settled(2)) or bool(load.failures),
            60,
            "the stopped worker replaced",
        )  # fmt: skip
        wait_until(load.made(40), 30, "calls after the stop")
    assert load.failures == []
    assert any(r == "SessionsMoved" and m.startswith(victim) for r, m in local_pool.events())


def test_a_bad_edit_of_the_pools_yaml_is_shown_and_the_pool_keeps_serving(
    local_pool: LocalPool,
) -> None:
    manifest = pool_yaml()
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    local_pool.write(manifest)
    local_pool.start()
    log = (local_pool.directory / "supervisor.log").read_text()
    assert "spec.template.spec.nodeSelector has no meaning on one machine: ignored" in log

    local_pool.write(pool_yaml(minReplicas=5, maxReplicas=4))  # the file watch applies it
    message = "spec.minReplicas (5) must be <= spec.maxReplicas (4)"

    def degraded() -> tuple[str, str, str] | None:
        status = local_pool.status()["status"]
        found = [c for c in status["conditions"] if c["type"] == "Degraded"]
        return (found[0]["reason"], found[0]["message"], status["phase"]) if found else None

    wait_until(lambda: degraded() == ("InvalidSpec", message, "Invalid"), 20, "InvalidSpec")
    assert local_pool.call("incr", "s-1").json()["result"] == {"count": 1}
    assert len(local_pool.workers()) == 2  # healing on the last valid spec

    local_pool.write(pool_yaml(minReplicas=3))
    wait_until(lambda: local_pool.settled(3), 30, "the fixed spec applied")
    assert degraded() == ("Healthy", "all workers healthy", "Running")


def test_no_kubernetes_client_is_needed(local_pool: LocalPool, tmp_path: Path) -> None:
    """The supervisor, the router and the workers run where the Kubernetes
    client and kopf cannot be imported (``pip install 'bridgepool[local]'``)."""
    shadow = tmp_path / "no-kubernetes"
    for package in ("kubernetes_asyncio", "kubernetes", "kopf"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"raise ImportError('{package} is not installed here')\n"
        )
    local_pool.write(pool_yaml())
    local_pool.start(env={"PYTHONPATH": str(shadow)})
    assert local_pool.call("incr", "s-1").json()["result"] == {"count": 1}
    logs = "".join(p.read_text() for p in (local_pool.state_dir / "logs").glob("*.log"))
    assert "is not installed here" not in logs


def test_a_port_in_use_or_a_missing_handler_file_is_refused_at_once(
    local_pool: LocalPool,
) -> None:
    local_pool.write(pool_yaml())
    state = ["--state-dir", str(local_pool.state_dir)]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused = local_pool.cli("run", str(local_pool.pool_file), "--port", port, *state)
    assert refused.returncode == 2
    assert f"the router cannot listen on 127.0.0.1:{port}" in refused.stderr
    missing = local_pool.cli(
        "run", str(local_pool.pool_file), "--handlers", "gone.py", "--port", port, *state
    )
    assert missing.returncode == 2
    assert "gone.py: no such readable file" in missing.stderr
    assert not list((local_pool.state_dir / "pids").glob("*.pid"))


def test_apply_checks_the_handler_files(
    local_pool: LocalPool,
) -> None:
    local_pool.write(pool_yaml())
    local_pool.start()
    state = ["--state-dir", str(local_pool.state_dir)]
    elsewhere = local_pool.directory / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pool.yaml").write_text(local_pool.pool_file.read_text())
    refused = local_pool.cli("apply", str(elsewhere / "pool.yaml"), *state)
    assert refused.returncode == 1
    assert f"handler file {elsewhere / 'handlers.py'}: no such readable file" in refused.stderr
