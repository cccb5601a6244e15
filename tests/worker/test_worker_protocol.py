"""The worker protocol on a real process: endpoints, built-in commands, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from bridgepool.errors import ErrorCategory
from bridgepool.moves.wire import WORKER_RESTARTED
from bridgepool.protocol import (
    HEADER_EXPECT_INCARNATION,
    HEADER_INCARNATION,
    HEADER_TIMEOUT,
    HEADER_WORKER,
    Readiness,
    SessionInfo,
    SessionsResponse,
    WorkerState,
    WorkerStats,
)
from bridgepool_worker.metrics import WorkerMetrics

from .conftest import Worker


def test_ping_names_the_worker_in_body_and_header(shared_worker: Worker) -> None:
    response = shared_worker.call("ping", request_id=7)

    assert response.status_code == 200
    assert response.headers[HEADER_WORKER] == "shared-worker"
    body = response.json()
    assert body["id"] == 7
    assert body["success"] is True
    assert body["error"] is None
    assert body["result"]["pong"] is True
    assert body["result"]["worker"] == "shared-worker"


def test_health_readiness_and_stats_bodies(shared_worker: Worker) -> None:
    assert shared_worker.get("/healthz").status_code == 200
    ready = shared_worker.get("/readyz")
    assert ready.status_code == 200
    readiness = Readiness.model_validate(ready.json())
    assert readiness.ready and readiness.state == WorkerState.READY
    assert readiness.capacity == 4 and readiness.accepting_sessions
    assert readiness.recycle.due is False

    stats = WorkerStats.model_validate(shared_worker.get("/v1/stats").json())
    assert stats.worker == "shared-worker"
    assert stats.capacity == 4
    assert stats.max_sessions == 1000 and stats.session_ttl_seconds == 300
    assert stats.memory_rss_bytes > 0
    assert stats.unmovable_sessions == {}
    older = shared_worker.get("/v1/stats").json()
    del older["unmovable_sessions"]  # as a worker that predates it answers
    assert WorkerStats.model_validate(older).unmovable_sessions == {}

    via_command = shared_worker.result("get_stats")
    assert WorkerStats.model_validate(via_command).worker == "shared-worker"


def test_program_lifecycle_in_a_session(shared_worker: Worker) -> None:
    sid = "programs-1"
    created = shared_worker.result(
        "create_program",
        {"signature": "question, context -> answer", "instructions": "Be brief."},
        session_id=sid,
    )
    pid = created["program_id"]
    assert created["inputs"] == ["question", "context"]
    assert created["outputs"] == ["answer"]
    assert created["backend"] == "offline"

    inputs = {"question": "2+2?", "context": "arithmetic"}
    first = shared_worker.result(
        "execute_program", {"program_id": pid, "inputs": inputs}, session_id=sid
    )
    again = shared_worker.result(
        "execute_program", {"program_id": pid, "inputs": inputs}, session_id=sid
    )
    other = shared_worker.result(
        "execute_program",
        {"program_id": pid, "inputs": {**inputs, "question": "3+3?"}},
        session_id=sid,
    )
    assert set(first["outputs"]) == {"answer"}
    assert first["outputs"] == again["outputs"]  # deterministic
    assert other["outputs"] != first["outputs"]

    explicit = shared_worker.result(
        "create_program",
        {"program_id": "p2", "inputs": ["text"], "outputs": ["summary", "title"]},
        session_id=sid,
    )
    assert explicit["program_id"] == "p2"
    listed = shared_worker.result("list_programs", session_id=sid)["programs"]
    assert sorted(p["program_id"] for p in listed) == sorted([pid, "p2"])
    info = shared_worker.result("get_program_info", {"program_id": pid}, session_id=sid)
    assert info["executions"] == 3
    assert info["signature"] == "question, context -> answer"

    assert shared_worker.result("delete_program", {"program_id": "p2"}, session_id=sid)
    missing = shared_worker.call("get_program_info", {"program_id": "p2"}, session_id=sid)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "program_not_found"

    # Programs belong to their session.
    elsewhere = shared_worker.call("get_program_info", {"program_id": pid}, session_id="other")
    assert elsewhere.status_code == 404

    reset = shared_worker.result("reset_state", session_id=sid)
    assert reset["programs_dropped"] == 1
    assert shared_worker.result("list_programs", session_id=sid)["programs"] == []


def test_program_errors_name_the_problem(shared_worker: Worker) -> None:
    sid = "programs-2"
    pid = shared_worker.result(
        "create_program", {"signature": "question -> answer"}, session_id=sid
    )["program_id"]

    no_session = shared_worker.call("create_program", {"signature": "a -> b"})
    assert no_session.status_code == 400
    assert no_session.json()["error"]["category"] == "session"
    assert no_session.json()["error"]["type"] == "session_required"

    missing = shared_worker.call(
        "execute_program", {"program_id": pid, "inputs": {}}, session_id=sid
    )
    assert missing.status_code == 400
    assert "missing inputs ['question']" in missing.json()["error"]["message"]

    bad_signature = shared_worker.call("create_program", {"signature": "oops"}, session_id=sid)
    assert bad_signature.status_code == 400
    assert "inputs -> outputs" in bad_signature.json()["error"]["message"]

    both = shared_worker.call(
        "create_program", {"signature": "a -> b", "inputs": ["a"]}, session_id=sid
    )
    assert both.status_code == 400

    duplicate = shared_worker.call(
        "create_program", {"signature": "a -> b", "program_id": pid}, session_id=sid
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["type"] == "program_exists"


def test_sessions_listing_and_cleanup(shared_worker: Worker) -> None:
    shared_worker.result("ping", session_id="list-me")
    listing = SessionsResponse.model_validate(shared_worker.get("/v1/sessions").json())
    assert listing.worker == "shared-worker"
    mine = [s for s in listing.sessions if s.session_id == "list-me"]
    assert len(mine) == 1
    assert 0 < mine[0].expires_in_seconds <= 300
    assert mine[0].unmovable is None
    older = mine[0].model_dump(exclude={"unmovable"})  # as a worker that predates it lists
    assert SessionInfo.model_validate(older) == mine[0]

    assert shared_worker.result("cleanup_session", {"session_id": "list-me"})["cleaned"]
    listing = SessionsResponse.model_validate(shared_worker.get("/v1/sessions").json())
    assert "list-me" not in {s.session_id for s in listing.sessions}

    again = shared_worker.call("cleanup_session", {"session_id": "list-me"})
    assert again.status_code == 404
    assert again.json()["error"]["category"] == "session"

    shared_worker.result("ping", session_id="delete-me")
    assert shared_worker.client.delete("/v1/sessions/delete-me").status_code == 200
    gone = shared_worker.client.delete("/v1/sessions/delete-me")
    assert gone.status_code == 404
    assert gone.json()["error"]["type"] == "session_not_found"


BAD_INPUTS: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    # (case, method, path, body, headers, status, error type)
    ("malformed json", "POST", "/v1/execute", b"{nope", {}, 400, "malformed_json"),
    ("not an object", "POST", "/v1/execute", b"[1, 2]", {}, 400, "invalid_request"),
    ("missing command", "POST", "/v1/execute", b'{"args": {}}', {}, 400, "invalid_request"),
    (
        "args not a dict",
        "POST",
        "/v1/execute",
        b'{"command": "ping", "args": [1]}',
        {},
        400,
        "invalid_request",
    ),
    (
        "unknown field",
        "POST",
        "/v1/execute",
        b'{"command": "ping", "extra": 1}',
        {},
        400,
        "invalid_request",
    ),
    (
        "bad built-in args",
        "POST",
        "/v1/execute",
        b'{"command": "ping", "args": {"sleep": "x"}}',
        {},
        400,
        "invalid_args",
    ),
    ("unknown command", "POST", "/v1/execute", b'{"command": "nope"}', {}, 404, "unknown_command"),
    (
        "bad timeout header",
        "POST",
        "/v1/execute",
        b'{"command": "ping"}',
        {HEADER_TIMEOUT: "soon"},
        400,
        "invalid_timeout",
    ),
    ("oversized body", "POST", "/v1/execute", b"x" * 10_000, {}, 413, "body_too_large"),
    ("unknown route", "GET", "/v2/nothing", None, {}, 404, "route_not_found"),
    ("wrong method", "GET", "/v1/execute", None, {}, 405, "method_not_allowed"),
    ("wrong method on sessions", "POST", "/v1/sessions", b"{}", {}, 405, "method_not_allowed"),
    ("unknown session", "DELETE", "/v1/sessions/nobody", None, {}, 404, "session_not_found"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "type_"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_a_structured_error(
    shared_worker: Worker,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    type_: str,
) -> None:
    response = shared_worker.client.request(method, path, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers[HEADER_WORKER] == "shared-worker"
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    assert "Traceback" not in response.text
    # The worker is still fine afterwards.
    assert shared_worker.call("ping").status_code == 200


def test_field_errors_name_the_field(shared_worker: Worker) -> None:
    response = shared_worker.client.post("/v1/execute", json={"command": 3, "session_id": ""})
    error = response.json()["error"]
    assert response.status_code == 400
    assert error["context"]["fields"] == ["command", "session_id"]
    assert "command" in error["message"] and "session_id" in error["message"]


def test_metrics_are_exposed_without_session_ids(shared_worker: Worker) -> None:
    shared_worker.result("ping", session_id="metrics-secret-session")
    shared_worker.call("nope")
    text = shared_worker.get("/metrics").text

    assert 'bridgepool_worker_calls_total{command="ping",status="200"}' in text
    assert 'bridgepool_worker_calls_total{command="unknown",status="404"}' in text
    assert "bridgepool_worker_call_duration_seconds_bucket" in text
    assert 'bridgepool_worker_state{state="ready"} 1.0' in text
    assert 'bridgepool_worker_state{state="degraded"} 0.0' in text
    assert "bridgepool_worker_sessions_opened_total" in text
    assert 'bridgepool_worker_errors_total{category="python"}' in text
    assert "metrics-secret-session" not in text


def test_a_fresh_worker_exports_every_error_category_at_zero() -> None:
    # Dashboards rate() these; a category with no series would read "no data".
    text = generate_latest(WorkerMetrics().registry).decode()

    for category in ErrorCategory:
        assert f'bridgepool_worker_errors_total{{category="{category.value}"}} 0.0' in text


def test_a_call_for_another_process_runs_nothing_and_names_the_restart(
    shared_worker: Worker,
) -> None:
    incarnation = shared_worker.get("/readyz").json()["incarnation"]
    stale = shared_worker.call(
        "ping", session_id="stale-view", headers={HEADER_EXPECT_INCARNATION: "an-old-process"}
    )
    assert stale.status_code == 412
    error = stale.json()["error"]
    assert (error["category"], error["type"], error["retryable"]) == (
        "session",
        WORKER_RESTARTED,
        True,
    )
    assert error["context"] == {"incarnation": incarnation, "expected": "an-old-process"}
    assert stale.headers[HEADER_INCARNATION] == incarnation
    sessions = shared_worker.get("/v1/sessions").json()["sessions"]
    assert "stale-view" not in {s["session_id"] for s in sessions}  # nothing ran

    current = shared_worker.call(
        "ping", session_id="stale-view", headers={HEADER_EXPECT_INCARNATION: incarnation}
    )
    assert current.status_code == 200
    sessions = shared_worker.get("/v1/sessions").json()["sessions"]
    assert "stale-view" in {s["session_id"] for s in sessions}
