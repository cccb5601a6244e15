"""The worker's HTTP surface: parse, call the runtime, write what it returns.

| method, path                 | what                                              |
|------------------------------|---------------------------------------------------|
| POST /v1/execute             | run a command (ExecuteRequest -> ExecuteResponse) |
| GET /healthz                 | alive                                             |
| GET /readyz                  | Readiness; 200 when ready, 503 otherwise          |
| GET /v1/stats                | WorkerStats                                       |
| GET /v1/sessions             | SessionsResponse                                  |
| DELETE /v1/sessions/{id}     | end a session (404 ``session`` error if unknown)  |
| POST /v1/sessions/{id}/export   | freeze for a move -> SessionExport             |
| POST /v1/sessions/{id}/import   | body: a SessionEnvelope -> MoveInfo (pending)  |
| POST /v1/sessions/{id}/commit   | CommitRequest -> MoveInfo (200 moved, 202)     |
| POST /v1/sessions/{id}/abort    | MoveRef -> MoveInfo (live, or discarded)       |
| POST /v1/sessions/{id}/activate | ActivateRequest (from the source) -> MoveInfo  |
| GET /v1/moves                | MovesResponse                                     |
| GET /metrics                 | Prometheus metrics                                |

Moving a session: :mod:`bridgepool_worker.moves`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from bridgepool.config import ConfigError
from bridgepool.errors import BridgePoolError, ErrorCategory, problem_message, validation_problems
from bridgepool.moves.wire import WORKER_RESTARTED, ActivateRequest, CommitRequest, MoveRef
from bridgepool.names import check_call_id, invalid_session_id
from bridgepool.protocol import (
    HEADER_CALL_ID,
    HEADER_EXPECT_INCARNATION,
    HEADER_INCARNATION,
    HEADER_REPLAYED,
    HEADER_TIMEOUT,
    HEADER_WAIT_FOR_SLOT,
    HEADER_WORKER,
    ExecuteRequest,
    call_budget,
)
from bridgepool_worker.builtins import register_builtins
from bridgepool_worker.config import WorkerConfig
from bridgepool_worker.faults import register_faults
from bridgepool_worker.metrics import WorkerMetrics
from bridgepool_worker.mover import IMPORT_BODY_FACTOR, session_too_large
from bridgepool_worker.programs import configure_dspy_model, dspy_available
from bridgepool_worker.registry import CommandRegistry
from bridgepool_worker.runtime import WorkerRuntime, error_json

RUNTIME = web.AppKey("runtime", WorkerRuntime)
log = logging.getLogger("bridgepool_worker")
M = TypeVar("M", bound=BaseModel)

_HTTP_ERRORS = {
    404: "route_not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _bad_request(type_: str, message: str, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(ErrorCategory.COMMUNICATION, type_, message, status=400, **context)


def _error_response(err: BridgePoolError, request_id: Any = None) -> web.Response:
    return web.Response(
        text=error_json(err, request_id), status=err.status, content_type="application/json"
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> BridgePoolError:
    type_ = _HTTP_ERRORS.get(exc.status, "http_error")
    if exc.status == 404:
        message = f"no route {request.method} {request.path}"
    elif exc.status == 405:
        message = f"method {request.method} not allowed on {request.path}"
    elif exc.status == 413:
        limit = request.app[RUNTIME].config.max_body_bytes
        message = f"request body larger than {limit} bytes"
    else:
        message = exc.reason
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, type_, message, status=exc.status, path=request.path
    )


@web.middleware
async def structured_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer names the worker; every failure is the structured error body."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_response(_from_http_exception(request, exc))
    except BridgePoolError as err:
        response = _error_response(err)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        response = _error_response(
            BridgePoolError.make(
                ErrorCategory.SYSTEM, "internal_error", "the worker failed unexpectedly", status=500
            )
        )
    runtime = request.app[RUNTIME]
    response.headers[HEADER_WORKER] = runtime.name
    response.headers[HEADER_INCARNATION] = runtime.incarnation
    if runtime.lifecycle.terminating:
        # No caller keeps a connection to this process, so none
        # sends a call down one the exit is about to close (a reset, not a
        # refusal: the caller could not tell whether the call ran).
        response.force_close()
    return response


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Only the pool's router, operator and workers get past the probes
    (:mod:`bridgepool_worker.gate`); a refusal reads nothing but the head."""
    runtime = request.app[RUNTIME]
    try:
        runtime.gate.admit(request.method, request.path, request.headers.get(hdrs.AUTHORIZATION))
    except BridgePoolError as err:
        runtime.metrics.refused_callers.labels(reason=err.info.type).inc()
        raise
    return await handler(request)


def _call_timeout(request: web.Request, config: WorkerConfig) -> float:
    try:
        return call_budget(request.headers.get(HEADER_TIMEOUT), config.call_timeout_seconds)
    except ValueError as exc:
        raise _bad_request("invalid_timeout", str(exc)) from None


def _rejected_body(
    raw: bytes, exc: ValidationError, what: str = "ExecuteRequest"
) -> BridgePoolError:
    """Why a body is not the request it should be, in the caller's terms."""
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return _bad_request("malformed_json", f"body is not valid JSON: {errors[0]['msg']}")
    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
        return _bad_request("invalid_request", f"body must be a JSON object (an {what})")
    session_errors = [e for e in errors if e["loc"][:1] == ("session_id",)]
    if session_errors and len(session_errors) == len(errors):
        # One error for a bad session id, wherever it is caught (bridgepool.names).
        return invalid_session_id(problem_message(session_errors[0]["msg"]), _session_id(raw))
    fields = sorted({str(e["loc"][0]) for e in errors if e["loc"]})
    return _bad_request("invalid_request", validation_problems(exc), fields=fields)


def _session_id(raw: bytes) -> object:
    """The session id a rejected body gave, for the error's context."""
    try:
        return json.loads(raw).get("session_id")
    except (ValueError, AttributeError, RecursionError):
        return None


def _request_id(raw: bytes) -> str | int | None:
    """The caller's id from a body that failed validation, if it has a usable one."""
    try:
        request_id = json.loads(raw).get("id")
    except (ValueError, AttributeError):
        return None
    return request_id if isinstance(request_id, str | int) else None


def _restarted(incarnation: str, expected: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        WORKER_RESTARTED,
        f"this worker is a new process ({incarnation}, not {expected}): the session's "
        "state is not here; nothing ran",
        status=412,
        retryable=True,
        incarnation=incarnation,
        expected=expected,
    )


async def execute(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    raw = await request.read()
    try:
        # pydantic parses the JSON itself: one pass, no intermediate dict.
        call = ExecuteRequest.model_validate_json(raw)
    except ValidationError as exc:
        return _error_response(_rejected_body(raw, exc), _request_id(raw))
    expected = request.headers.get(HEADER_EXPECT_INCARNATION)
    if expected is not None and expected != runtime.incarnation:
        runtime.metrics.rejected.labels(reason="restarted").inc()
        return _error_response(_restarted(runtime.incarnation, expected), call.id)
    timeout = _call_timeout(request, runtime.config)
    wait_for_slot = request.headers.get(HEADER_WAIT_FOR_SLOT, "").lower() == "true"
    call_id = request.headers.get(HEADER_CALL_ID)
    if call_id is not None:
        try:
            check_call_id(call_id)
        except BridgePoolError as err:
            return _error_response(err, call.id)
    status, body, replayed = await runtime.execute_once(
        call, timeout, call_id, wait_for_slot=wait_for_slot
    )
    response = web.Response(text=body, status=status, content_type="application/json")
    if replayed:
        response.headers[HEADER_REPLAYED] = "true"
    return response


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return web.json_response({"alive": True, "worker": runtime.name})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[RUNTIME].readiness()
    return web.json_response(
        readiness.model_dump(mode="json"), status=200 if readiness.ready else 503
    )


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].stats().model_dump(mode="json"))


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].sessions_response().model_dump(mode="json"))


async def delete_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    request.app[RUNTIME].delete_session(session_id)
    return web.json_response({"session_id": session_id, "deleted": True})


async def _body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _rejected_body(raw, exc, model.__name__) from None


async def _read_up_to(request: web.Request, limit: int, session_id: str) -> bytes:
    """A body that may be larger than the worker's usual limit (an envelope)."""
    if request.content_length is not None and request.content_length > limit:
        raise session_too_large(session_id, request.content_length, limit, status=413)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise session_too_large(session_id, size, limit, status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def export_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    exported = await request.app[RUNTIME].moves.export(session_id)
    return web.json_response(exported.model_dump(mode="json"))


async def import_session(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    session_id = request.match_info["session_id"]
    runtime.moves.check_room(session_id)  # before a byte of the body is read
    limit = runtime.config.max_session_state_bytes * IMPORT_BODY_FACTOR
    raw = await _read_up_to(request, limit, session_id)
    info = await runtime.moves.import_(session_id, raw)
    return web.json_response(info.model_dump(mode="json"))


async def commit_move(request: web.Request) -> web.Response:
    commit = await _body(request, CommitRequest)
    moves = request.app[RUNTIME].moves
    status, info = await moves.commit(request.match_info["session_id"], commit)
    return web.json_response(info.model_dump(mode="json"), status=status)


async def abort_move(request: web.Request) -> web.Response:
    ref = await _body(request, MoveRef)
    info = request.app[RUNTIME].moves.abort(request.match_info["session_id"], ref)
    return web.json_response(info.model_dump(mode="json"))


async def activate_move(request: web.Request) -> web.Response:
    activation = await _body(request, ActivateRequest)
    runtime = request.app[RUNTIME]
    # The answer proves this worker holds the key the source sent (the gate let it in).
    caller_key = runtime.gate.admit(
        request.method, request.path, request.headers.get(hdrs.AUTHORIZATION)
    )
    info = runtime.moves.activate(request.match_info["session_id"], activation, caller_key)
    return web.json_response(info.model_dump(mode="json"))


async def list_moves(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].moves.moves_response().model_dump(mode="json"))


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    runtime.sweep()  # fresh gauges (rss, uptime, sessions) for each scrape
    body = generate_latest(runtime.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _housekeeping(runtime: WorkerRuntime) -> None:
    while True:
        try:
            await runtime.initialize()
            break
        except Exception as exc:
            log.error("initialization failed, retrying", extra={"error": str(exc)})
            await asyncio.sleep(runtime.config.sweep_interval_seconds)
    while True:
        await asyncio.sleep(runtime.config.sweep_interval_seconds)
        try:
            runtime.sweep()
        except Exception:
            log.exception("housekeeping failed")


async def _background(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    loop = asyncio.get_running_loop()
    # Own pool for sync handlers: a hung handler thread must not block shutdown
    # the way the loop's default executor would.
    executor = ThreadPoolExecutor(
        max_workers=runtime.config.capacity + 4, thread_name_prefix="handler"
    )
    loop.set_default_executor(executor)
    task = asyncio.create_task(_housekeeping(runtime), name="worker-housekeeping")
    await runtime.moves.start()
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await runtime.moves.close()
    runtime.mark_terminated("server stopped")
    executor.shutdown(wait=False, cancel_futures=True)


def create_app(config: WorkerConfig) -> web.Application:
    """The worker app. Loads the handler modules now: raises
    :class:`bridgepool_worker.registry.HandlerLoadError` if any cannot be used."""
    if config.program_backend == "dspy" and not dspy_available():
        raise ConfigError(
            "BRIDGEPOOL_WORKER_PROGRAM_BACKEND=dspy needs the dspy package "
            "(pip install 'bridgepool[dspy]')"
        )
    registry = CommandRegistry()
    runtime = WorkerRuntime(config, registry, WorkerMetrics())
    register_builtins(registry, runtime)
    if config.faults_enabled:
        register_faults(registry, runtime)
    registry.load_modules(config.handlers)
    if config.program_backend == "dspy" and config.dspy_model:
        configure_dspy_model(config.dspy_model)

    app = web.Application(
        middlewares=[structured_errors, guard], client_max_size=config.max_body_bytes
    )
    app[RUNTIME] = runtime
    app.router.add_post("/v1/execute", execute)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_delete("/v1/sessions/{session_id}", delete_session)
    app.router.add_post("/v1/sessions/{session_id}/export", export_session)
    app.router.add_post("/v1/sessions/{session_id}/import", import_session)
    app.router.add_post("/v1/sessions/{session_id}/commit", commit_move)
    app.router.add_post("/v1/sessions/{session_id}/abort", abort_move)
    app.router.add_post("/v1/sessions/{session_id}/activate", activate_move)
    app.router.add_get("/v1/moves", list_moves)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_background)
    return app
