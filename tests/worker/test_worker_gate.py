"""Who a worker process answers (``bridgepool_worker.gate``): its probes to
anyone; everything else only to a caller with its pool's key (the scrape token
opens ``GET /metrics`` alone). A worker without keys answers only its probes,
unless it is started open; a key directory it cannot use stops it at start."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from bridgepool.credentials import Keys, bearer, new_key, write_keys
from bridgepool.errors import ErrorCategory
from bridgepool.protocol import DEFAULT_MAX_BODY_BYTES, ExecuteResponse

from .conftest import WORKER_BIN, Worker, Workers, free_port, wait_ready, worker_env
from .test_worker_processes import wait_for

# Every endpoint but the probes, as "METHOD PATH".
GUARDED = (
    "POST /v1/execute",
    "GET /v1/stats",
    "GET /v1/sessions",
    "DELETE /v1/sessions/x",
    "POST /v1/sessions/x/export",
    "POST /v1/sessions/x/import",
    "POST /v1/sessions/x/commit",
    "POST /v1/sessions/x/abort",
    "POST /v1/sessions/x/activate",
    "GET /v1/moves",
    "GET /metrics",
)
PROBES = ("/healthz", "/readyz")
TAKEN = "taken"  # the endpoint itself answered: the request got past the gate
REFUSAL_STATUS = {"unauthenticated": 401, "forbidden": 403}
NO_ANSWER_SECONDS = 30  # not a timing check: how long a stuck exchange takes to fail


def everywhere(answer: str) -> dict[str, str]:
    return dict.fromkeys(GUARDED, answer)


def ask(worker: Worker, endpoint: str, key: str | None) -> httpx.Response:
    """``endpoint`` of ``worker``, showing ``key`` (None: no Authorization header)."""
    method, path = endpoint.split(" ")
    headers = {} if key is None else {"Authorization": bearer(key)}
    body = {"command": "ping"} if method == "POST" else None
    return httpx.request(method, worker.url + path, json=body, headers=headers, timeout=10)


def gate_says(response: httpx.Response) -> str:
    """The gate's refusal (its error type, the structured error body checked),
    or TAKEN."""
    if response.status_code not in REFUSAL_STATUS.values():
        assert response.status_code < 500, response.text
        return TAKEN
    answer = ExecuteResponse.model_validate(response.json())
    assert answer.success is False and answer.error is not None, response.text
    assert answer.error.category == ErrorCategory.COMMUNICATION
    assert answer.error.retryable is False
    assert response.status_code == REFUSAL_STATUS[answer.error.type], response.text
    return answer.error.type


def gate(worker: Worker, key: str | None) -> dict[str, str]:
    """What ``worker`` says, showing ``key``, to every guarded endpoint."""
    return {endpoint: gate_says(ask(worker, endpoint, key)) for endpoint in GUARDED}


def takes(worker: Worker, key: str) -> bool:
    return gate_says(ask(worker, "GET /v1/stats", key)) == TAKEN


def refused_callers(worker: Worker, reason: str) -> float:
    """The worker's count of requests refused at the gate for ``reason``."""
    prefix = f'bridgepool_worker_refused_callers_total{{reason="{reason}"}} '
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0  # none refused yet: the series appears at the first


def start_without_keys(workers: Workers) -> Worker:
    """A worker given neither keys nor ``--open-access`` (``Workers.start``
    gives every worker that is not open its pool's keys)."""
    port = free_port()
    log_path = workers.tmp / f"worker-{port}.log"
    cmd = [str(WORKER_BIN), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            cmd, env=worker_env(None), stdout=log, stderr=subprocess.STDOUT, cwd=workers.tmp
        )
    worker = Worker(popen, port, log_path)
    workers.started.append(worker)
    wait_ready(worker)
    return worker


def test_a_worker_without_keys_answers_only_its_probes(workers: Workers) -> None:
    worker = start_without_keys(workers)
    for probe in PROBES:
        assert httpx.get(worker.url + probe).status_code == 200
    assert gate(worker, None) == everywhere("unauthenticated")
    # No key opens it: it has none to match.
    assert gate(worker, workers.keys.current) == everywhere("unauthenticated")
    refusal = ask(worker, "POST /v1/execute", None).json()["error"]
    assert "answers only /healthz and /readyz" in refusal["message"]
    assert "answers only its probes" in worker.logs()


def test_a_keyed_worker_takes_its_pools_keys_and_follows_a_rotation(
    workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start()
    old = workers.keys.current
    other_pool = Workers(tmp_path / "other-pool").keys.current
    for probe in PROBES:
        assert httpx.get(worker.url + probe).status_code == 200
    for stranger in (None, new_key(), other_pool):
        assert gate(worker, stranger) == everywhere("unauthenticated"), stranger
    assert gate(worker, old) == everywhere(TAKEN)

    # A rotation, written while the worker runs: the new key, and the old as previous.
    new = new_key()
    write_keys(workers.keys_dir, Keys(new, previous=old, scrape=workers.keys.scrape))
    wait_for(lambda: takes(worker, new) and takes(worker, old))
    assert gate(worker, new) == everywhere(TAKEN)
    assert gate(worker, old) == everywhere(TAKEN)
    assert gate(worker, other_pool) == everywhere("unauthenticated")
    reloaded = [line for line in worker.logs().splitlines() if "keys reloaded" in line]
    assert reloaded and '"rotated": true' in reloaded[0]

    # The rotation done: the old key leaves the directory, and the worker.
    write_keys(workers.keys_dir, Keys(new, scrape=workers.keys.scrape))
    wait_for(lambda: not takes(worker, old))
    assert gate(worker, old) == everywhere("unauthenticated")
    assert gate(worker, new) == everywhere(TAKEN)


def test_the_scrape_token_opens_metrics_only(workers: Workers) -> None:
    worker = workers.start()
    scrape = workers.keys.scrape
    assert scrape is not None
    assert gate(worker, scrape) == {**everywhere("forbidden"), "GET /metrics": TAKEN}
    assert "bridgepool_worker_refused_callers_total" in ask(worker, "GET /metrics", scrape).text
    assert refused_callers(worker, "forbidden") == len(GUARDED) - 1


async def refused_before_the_body(port: int, announced: int, sent: int) -> httpx.Response:
    """A keyless call announcing ``announced`` body bytes of which ``sent``
    are written and the rest never: the answer, read with the connection held
    open (a worker that waited for the body would not answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            "POST /v1/execute HTTP/1.1\r\nHost: worker\r\nContent-Type: application/json\r\n"
            f"Content-Length: {announced}\r\n\r\n"
        )
        writer.write(head.encode() + b"x" * sent)
        async with asyncio.timeout(NO_ANSWER_SECONDS):
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", answer_head)
            assert length is not None, answer_head
            body = await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()
    status = int(answer_head.split(b" ", 2)[1])
    return httpx.Response(status, content=body)


def test_a_refused_request_costs_the_worker_nothing(workers: Workers) -> None:
    worker = workers.start()
    calls = worker.get("/v1/stats").json()["requests_total"]
    refused = refused_callers(worker, "unauthenticated")
    # Twice the worker's body limit sent (a worker reading it would answer 413),
    # out of 50 MB announced (a worker waiting for the rest would not answer).
    answer = asyncio.run(
        refused_before_the_body(
            worker.port, announced=50 * 1024 * 1024, sent=2 * DEFAULT_MAX_BODY_BYTES
        )
    )
    assert gate_says(answer) == "unauthenticated"
    assert worker.get("/v1/stats").json()["requests_total"] == calls
    assert refused_callers(worker, "unauthenticated") == refused + 1


@pytest.mark.parametrize("given", ["flags", "variables"])
def test_open_access_with_a_keys_dir_is_refused_at_start(workers: Workers, given: str) -> None:
    if given == "flags":
        done = workers.run_to_exit(args=["--open-access", "--keys-dir", str(workers.keys_dir)])
    else:
        done = workers.run_to_exit(
            env={
                "BRIDGEPOOL_WORKER_OPEN_ACCESS": "true",
                "BRIDGEPOOL_WORKER_KEYS_DIR": str(workers.keys_dir),
            }
        )
    assert done.returncode == 2, done.stderr
    assert "--open-access" in done.stderr and "--keys-dir" in done.stderr


def test_an_open_worker_answers_without_a_key_and_says_so(workers: Workers) -> None:
    worker = workers.start(args=["--open-access"])
    assert worker.key is None
    assert gate(worker, None) == everywhere(TAKEN)
    assert "open access: this worker answers every caller, without a key" in worker.logs()


@pytest.mark.parametrize(
    ("layout", "named", "why"),
    [
        ("no directory", "", "not a directory of keys"),
        ("no key file", "/key", "no such key file"),
        ("a short key", "/key", "at least 32 characters"),
    ],
)
def test_a_keys_dir_it_cannot_use_stops_the_worker_at_start(
    workers: Workers, tmp_path: Path, layout: str, named: str, why: str
) -> None:
    keys_dir = tmp_path / "bad-keys"
    if layout != "no directory":
        keys_dir.mkdir()
        (keys_dir / "previous").write_text(new_key())  # a usable key, but not *the* key
    if layout == "a short key":
        (keys_dir / "key").write_text("short\n")
    done = workers.run_to_exit(args=["--keys-dir", str(keys_dir)])
    assert done.returncode == 2, done.stderr
    assert f"bridgepool-worker: {keys_dir}{named}: " in done.stderr
    assert why in done.stderr
