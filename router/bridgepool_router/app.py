"""The router's HTTP face: ``create_app(config)`` builds the aiohttp application.

Handlers parse and validate, hand the call to the dispatcher, and turn its
result into a response. Background work (discovery, health checks) and the
connections to the workers (:mod:`bridgepool_router.upstream`) are owned by a
cleanup context.

What a client can make the router hold, and for how long:

* a request head: aiohttp's parser refuses (400) a request line or header over
  8,190 bytes, or more than 128 headers, before any handler runs;
* a request head's arrival: aiohttp arms the keep-alive timer when a connection
  opens and again after each response, and closes the connection if no complete
  head has arrived when it fires; trickled bytes do not reset it. That is the
  router's header timeout (and its idle keep-alive timeout): ``web.run_app``'s
  ``keepalive_timeout``, 75 s;
* a body: at most ``max_body_bytes`` (413, at once when Content-Length says so),
  and it must arrive within the call's own time budget (408), so a client that
  sends its body slowly, or less of it than it announced, holds nothing for long.

Every pool route passes the front door first
(:mod:`bridgepool_router.front_door`): who is calling, which pool, and whether
RBAC lets the caller do what the route does (the route's
:class:`~bridgepool_router.core.access.Access`, beside it in ``create_app``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridgepool.credentials import PoolKeys
from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.names import check_call_id
from bridgepool.protocol import (
    DEFAULT_MAX_BODY_BYTES,
    HEADER_CALL_ID,
    HEADER_IDEMPOTENT,
    HEADER_PREVIOUS_WORKER,
    HEADER_REBOUND_REASON,
    HEADER_REPLAYED,
    HEADER_SESSION,
    HEADER_SESSION_REBOUND,
    HEADER_TIMEOUT,
    HEADER_WORKER,
    call_budget,
)
from bridgepool_router import router_errors
from bridgepool_router.auth import AuthSettings, front_door
from bridgepool_router.call_body import parse_call
from bridgepool_router.core import Clock
from bridgepool_router.core.access import (
    END_SESSION,
    EXECUTE,
    GET_POOL,
    LIST_POOLS,
    Access,
)
from bridgepool_router.discovery import Discovery
from bridgepool_router.dispatcher import CallResult, Dispatcher, error_result
from bridgepool_router.front_door import Admitted, FrontDoor
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime
from bridgepool_router.registry import PoolRegistry
from bridgepool_router.upstream import Upstream

log = logging.getLogger(__name__)

# Response headers the router adds beside the contract's.
RETRY_AFTER_SECONDS = 1


@dataclass
class RouterConfig:
    discovery: Discovery
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    clock: Clock = time.monotonic
    jitter: Callable[[], float] | None = None
    # Most idle connections kept open to one worker. The connections in use are
    # bounded by the worker's capacity: calls beyond it queue in the router.
    connections_per_worker: int = 256
    auth: AuthSettings = field(default_factory=AuthSettings)
    # Each pool's key, that its workers ask of every caller; None: open workers only.
    worker_keys: PoolKeys | None = None


@dataclass
class RouterState:
    config: RouterConfig
    metrics: RouterMetrics = field(default_factory=RouterMetrics)
    registry: PoolRegistry | None = None
    dispatcher: Dispatcher | None = None
    front_door: FrontDoor | None = None
    shutting_down: bool = False


STATE = web.AppKey("state", RouterState)


ADMITTED = web.RequestKey("admitted", Admitted)
# Bytes of randomness in a session id the router makes (POST .../sessions): 192 bits.
SESSION_ID_BYTES = 24


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def error_response(err: BridgePoolError, request_id: object = None) -> web.Response:
    response = _respond(error_result(err, request_id))
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="bridgepool", error="invalid_token"'
    return response


def _respond(result: CallResult, session_id: str | None = None) -> web.Response:
    headers: dict[str, str] = {}
    if result.worker:
        headers[HEADER_WORKER] = result.worker
    if session_id is not None:
        headers[HEADER_SESSION] = session_id
    if result.rebound_reason:
        headers[HEADER_SESSION_REBOUND] = "true"
        headers[HEADER_REBOUND_REASON] = result.rebound_reason
        if result.previous_worker:
            headers[HEADER_PREVIOUS_WORKER] = result.previous_worker
    if result.replayed:
        headers[HEADER_REPLAYED] = "true"
    if result.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return web.Response(
        body=result.body, status=result.status, headers=headers, content_type="application/json"
    )


def _http_error(exc: web.HTTPException) -> BridgePoolError:
    """aiohttp's own refusals (no route, wrong method, body too large) as error data."""
    if exc.status == 413:
        return BridgePoolError.make(
            ErrorCategory.RESOURCE, "body_too_large", "request body exceeds the limit", status=413
        )
    if exc.status == 405:
        return BridgePoolError.make(
            ErrorCategory.COMMUNICATION,
            "method_not_allowed",
            f"{exc.reason}; allowed: {exc.headers.get('Allow', '')}",
            status=405,
        )
    if exc.status == 404:
        return BridgePoolError.make(
            ErrorCategory.COMMUNICATION, "not_found", "no such endpoint", status=404
        )
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, "http_error", exc.reason, status=exc.status
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answering_errors(handler: Handler) -> Handler:
    """Every failure leaves the router as the structured error body: the
    router's own, and aiohttp's refusals raised in a handler (a body over the
    limit, no route). Each route's handler is wrapped in this rather than the
    app in a middleware, which costs every call more than the wrapper does."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BridgePoolError as err:
            return error_response(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(_http_error(exc))
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    return answer


async def no_route(request: web.Request) -> web.StreamResponse:
    """The last route, taking whatever no other route does: 405 naming the methods
    another route allows for the path, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _pool(request: web.Request, state: RouterState) -> PoolRuntime:
    """The pool the front door resolved for this call."""
    registry = state.registry
    assert registry is not None
    ref = request[ADMITTED].pool
    assert ref is not None
    pool = registry.pools.get(ref)
    if pool is None:
        # Until discovery has delivered its first complete view, a pool not
        # seen yet may still turn up: a retryable answer, not a 404.
        if not registry.synced.is_set():
            raise router_errors.discovery_not_synced(ref)
        raise router_errors.unknown_pool(ref)
    return pool


def _guarded(handler: Handler, access: Access) -> Handler:
    """A pool route behind the front door: the handler finds what it admitted
    in the request (``ADMITTED``)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        door = request.app[STATE].front_door
        assert door is not None
        if door.open:  # nothing to wait for: no review is asked
            request[ADMITTED] = door.resolve(None, request.match_info)
        else:
            authorization = request.headers.get("Authorization")
            request[ADMITTED] = await door.admit(authorization, request.match_info, access)
        return await handler(request)

    return guarded


def _timeout(request: web.Request, pool: PoolRuntime) -> float:
    raw = request.headers.get(HEADER_TIMEOUT)
    try:
        return call_budget(raw, pool.routing.call_timeout_seconds)
    except ValueError as exc:
        raise router_errors.bad_request("invalid_timeout", str(exc), value=raw) from None


def _outcome(status: int) -> str:
    if status < 300:
        return "success"
    if status == 422:
        return "handler_error"
    if status < 500:
        return "rejected"
    return {502: "bad_gateway", 503: "unavailable", 504: "timeout"}.get(status, "worker_error")


async def _read_body(request: web.Request, budget: float, limit: int) -> bytes:
    """The call's body, read within the call's budget and the size ``limit``."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=announced)
    try:
        if request.content.is_eof():  # all of it has arrived: the common case
            body = request.content.read_nowait()
            if len(body) > limit:  # a chunked body says its size only now
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
            return body
        async with asyncio.timeout(budget):
            return await request.read()
    except TimeoutError:
        raise BridgePoolError.make(
            ErrorCategory.TIMEOUT,
            "body_timeout",
            f"the request body did not arrive within the call's {budget:.3f}s",
            status=408,
            timeout_seconds=budget,
        ) from None
    except (ConnectionResetError, web.RequestPayloadError) as exc:
        # A body cut short (the client went away) or not decodable as sent
        # (Content-Encoding): the caller's fault, not a router failure to log.
        detail = " ".join(str(exc).split())  # aiohttp's messages span lines
        raise router_errors.bad_request(
            "invalid_body", f"request body could not be read: {detail}"
        ) from None


async def execute(request: web.Request) -> web.Response:
    """A call: anonymous, or in the session its path names."""
    start = time.perf_counter()
    state = request.app[STATE]
    assert state.dispatcher is not None
    session_id = key = None
    if "session_id" in request.match_info:
        session_id = request.match_info["session_id"]
        key = request[ADMITTED].session_key(session_id)
    pool = _pool(request, state)
    timeout = _timeout(request, pool)
    body = await _read_body(request, timeout, state.config.max_body_bytes)
    call = parse_call(body, session_id, key)
    idempotent = request.headers.get(HEADER_IDEMPOTENT, "").lower() == "true"
    result = await state.dispatcher.execute(
        pool,
        call.payload,
        call.request_id,
        session_id=key,
        idempotent=idempotent,
        timeout=timeout,
        call_id=_call_id(request) if session_id is not None else None,
    )
    response = _respond(result, session_id)
    total = time.perf_counter() - start
    added = max(total - result.upstream_seconds - result.waiting_seconds, 0.0)
    pool.stats.call_done(_outcome(result.status), total, added)
    return response


def _call_id(request: web.Request) -> str:
    """A session call's id: the caller's (``X-BridgePool-Call-Id``, which its
    own retries repeat), or one of the router's for this call's attempts."""
    given = request.headers.get(HEADER_CALL_ID)
    return secrets.token_hex(16) if given is None else check_call_id(given)


async def delete_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    assert state.dispatcher is not None
    session_id = request.match_info["session_id"]
    key = request[ADMITTED].session_key(session_id)
    pool = _pool(request, state)
    result = await state.dispatcher.delete_session(pool, key, _timeout(request, pool))
    # The session is named by the caller's id, not the key it is kept under.
    if result.error is not None and result.error.info.type == "session_not_found":
        result = error_result(router_errors.session_not_found(pool.name, session_id))
    elif result.status == 200 and key != session_id:
        result.body = json.dumps({**json.loads(result.body), "session_id": session_id}).encode()
    return _respond(result)


async def new_session(request: web.Request) -> web.Response:
    """A fresh session id, unguessable (192 random bits), for a caller that
    wants one; the session itself begins with its first call."""
    _pool(request, request.app[STATE])
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    return _json({"session_id": session_id}, status=201)


def _describe_pool(pool: PoolRuntime, now: float) -> dict[str, Any]:
    counts = pool.sessions.count_by_worker()
    workers = []
    for name, w in pool.workers.items():
        workers.append(
            {
                "worker": name,
                "url": w.endpoint.url,
                "state": w.readiness.state.value if w.readiness else "unknown",
                "ready": w.health.up,
                "draining": w.endpoint.draining,
                "breaker": w.breaker.state(now).value,
                "in_flight": w.in_flight,
                "capacity": w.capacity,
                "accepting_sessions": w.accepting_sessions,
                "sessions": counts.get(name, 0),
                "last_error": w.last_error,
            }
        )
    return {
        "namespace": pool.ref.namespace,
        "pool": pool.ref.name,
        "workers": workers,
        "queue_length": len(pool.queue),
        "sessions": len(pool.sessions),
        "routing": pool.routing.model_dump(by_alias=True),
    }


async def list_pools(request: web.Request) -> web.Response:
    """The pools of one namespace, or of all (``/v1/pools`` without a caller's
    own namespace), in namespace and name order."""
    state = request.app[STATE]
    assert state.registry is not None
    now = state.config.clock()
    namespace = request[ADMITTED].namespace
    pools = [
        _describe_pool(state.registry.pools[ref], now)
        for ref in sorted(state.registry.pools)
        if namespace is None or ref.namespace == namespace
    ]
    return _json({"pools": pools})


async def get_pool(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json(_describe_pool(_pool(request, state), state.config.clock()))


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    synced = state.registry is not None and state.registry.synced.is_set()
    ready = synced and not state.shutting_down
    reason = None if ready else ("shutting down" if state.shutting_down else "discovery not synced")
    return _json({"ready": ready, "reason": reason}, status=200 if ready else 503)


async def _router_context(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    config = state.config
    upstream = Upstream(max_idle_per_worker=config.connections_per_worker)
    kwargs = {"jitter": config.jitter} if config.jitter else {}
    state.dispatcher = Dispatcher(upstream, state.metrics, config.clock, **kwargs)
    state.registry = PoolRegistry(state.dispatcher, state.metrics, config.clock, config.worker_keys)
    async with front_door(config.auth, config.clock) as (authenticator, authorizer):
        state.front_door = FrontDoor(state.registry, authenticator, authorizer)
        tasks = [
            asyncio.create_task(config.discovery.run(state.registry), name="discovery"),
            asyncio.create_task(state.registry.expire_sessions(), name="session expiry"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.registry.close()
            upstream.close()


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].shutting_down = True


def create_app(config: RouterConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes)
    app[STATE] = RouterState(config)
    app.cleanup_ctx.append(_router_context)
    app.on_shutdown.append(_on_shutdown)
    # Each pool route in both forms: /v1/namespaces/{namespace}/pools/... and
    # the short /v1/pools/... (see FrontDoor.resolve), with what each asks of RBAC.
    pool_routes: list[tuple[str, str, Handler, Access]] = [
        ("POST", "/pools/{pool}/sessions/{session_id}/execute", execute, EXECUTE),
        ("POST", "/pools/{pool}/execute", execute, EXECUTE),
        ("POST", "/pools/{pool}/sessions", new_session, EXECUTE),
        ("DELETE", "/pools/{pool}/sessions/{session_id}", delete_session, END_SESSION),
        ("GET", "/pools", list_pools, LIST_POOLS),
        ("GET", "/pools/{pool}", get_pool, GET_POOL),
    ]
    routes = [
        web.RouteDef(method, prefix + path, _guarded(handler, access), {})
        for method, path, handler, access in pool_routes
        for prefix in ("/v1/namespaces/{namespace}", "/v1")
    ]
    routes += [
        # Open: probes, and the scrape (no session data, and Prometheus has no
        # caller identity to send by default).
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.route("*", "/{path:.*}", no_route),  # last: what no route above takes
    ]
    app.router.add_routes(
        web.RouteDef(route.method, route.path, _answering_errors(route.handler), route.kwargs)
        for route in routes
        if isinstance(route, web.RouteDef)
    )
    return app
