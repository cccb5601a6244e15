"""A worker hands a session only to a peer of its own pool: one that takes
the pool's key and proves it in its answer. A worker of another pool, or an
open one that takes anything, never gets the session, whoever asked for the
commit; the session stays live where it was. And an import is refused from
its head alone when the worker has no room for one more session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Worker, Workers
from .test_worker_session_move import FAST_MOVES, envelope, error, export, step

REPO = Path(__file__).resolve().parents[2]
# The example handlers: ``incr`` counts in its session's state.
MOVES: dict[str, Any] = {
    **FAST_MOVES,
    "BRIDGEPOOL_WORKER_HANDLERS": str(REPO / "examples" / "worker_handlers.py"),
}


def counted(worker: Worker, session_id: str) -> int:
    return int(worker.result("incr", session_id=session_id)["count"])


@pytest.fixture
def strangers(tmp_path: Path) -> Iterator[Workers]:
    """Workers of another pool (their own keys), started where the test says."""
    other = tmp_path / "other-pool"
    other.mkdir()
    pool = Workers(other)
    yield pool
    pool.stop_all()


def test_a_commit_to_a_worker_of_another_pool_leaves_the_session_where_it_was(
    workers: Workers, strangers: Workers
) -> None:
    source = workers.start(env=MOVES)
    other = strangers.start(env=MOVES)
    assert counted(source, "s") == 1
    exported = export(source, "s")
    # The other pool's worker takes the copy (its own key) but refuses the
    # activation sent with this pool's key: it is no peer.
    assert step(other, "s", "import", envelope(exported)).status_code == 200
    move = {"move_id": exported.move.move_id, "holder_url": other.url}
    committed = step(source, "s", "commit", move)
    assert committed.status_code == 409, committed.text
    refusal = error(committed)
    assert refusal["type"] == "activation_refused"
    assert refusal["context"]["target_error"]["type"] == "target_not_a_peer"
    assert counted(source, "s") == 2  # live here, as it was
    assert "move target is not a worker of this pool" in source.logs()


def test_a_commit_to_an_open_worker_that_cannot_prove_the_key_leaves_the_session(
    workers: Workers,
) -> None:
    """A worker started open answers the activation yes, but cannot show the
    proof only a holder of the pool's key can make: the session stays."""
    source = workers.start(env=MOVES)
    impostor = workers.start(env=MOVES, args=["--open-access"])
    assert counted(source, "s") == 1
    exported = export(source, "s")
    assert step(impostor, "s", "import", envelope(exported)).status_code == 200
    committed = step(
        source, "s", "commit", {"move_id": exported.move.move_id, "holder_url": impostor.url}
    )
    assert committed.status_code == 409, committed.text
    assert error(committed)["context"]["target_error"]["type"] == "target_not_a_peer"
    assert counted(source, "s") == 2


def test_a_commit_to_a_peer_carries_its_proof(workers: Workers) -> None:
    source, peer = workers.start(env=MOVES), workers.start(env=MOVES)
    assert counted(source, "s") == 1
    exported = export(source, "s")
    assert step(peer, "s", "import", envelope(exported)).status_code == 200
    committed = step(
        source, "s", "commit", {"move_id": exported.move.move_id, "holder_url": peer.url}
    )
    assert committed.status_code == 200, committed.text
    assert committed.json()["state"] == "moved"
    assert counted(peer, "s") == 2


def test_an_import_is_refused_from_its_head_when_the_worker_is_full(workers: Workers) -> None:
    """A worker at ``max_sessions`` answers an import at once, reading none of
    a body announced as 50 MB."""
    full = workers.start(env={**MOVES, "BRIDGEPOOL_WORKER_MAX_SESSIONS": "1"})
    assert counted(full, "resident") == 1
    key = full.client.headers["Authorization"]
    head = (
        "POST /v1/sessions/newcomer/import HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{full.port}\r\nAuthorization: {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", full.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"{")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the worker closed the connection without an answer"
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 503 " in status_line, answer[:300]
    assert b"session" in answer.split(b"\r\n\r\n", 1)[1] or b"limit" in answer
