"""Python client for BridgePool (needs the ``client`` extra: httpx).

Two targets, each in a sync and an async flavour, over one implementation:

- :class:`BridgePoolClient` / :class:`AsyncBridgePoolClient`: a pool, through its
  router;
- :class:`WorkerClient` / :class:`AsyncWorkerClient`: one worker, directly (no
  router, no pool: development, tests, a single bridge of your own).

All four speak the interface of :class:`BridgeClient` / :class:`AsyncBridgeClient`
(annotate with those where code works with either target): calls
(``execute_in_session``, ``execute_anonymous``, ``delete_session``), typed helpers
for the worker's program commands (``create_program``, ``execute_program``,
``list_programs``, ``get_program_info``, ``delete_program``; each in a session, as
the worker keeps programs per session) and ``health()``. The router's clients add
``pool_status()``, the worker's ``stats()``.

Requests are built and answers read in :class:`_Calls` (no I/O), once per target;
the flavours only send. Failures raise a subclass of
:class:`bridgepool.errors.BridgePoolError` per error category.

    with BridgePoolClient("http://router:8000", pool="demo", namespace="team-a") as client:
        first = client.execute_in_session("s-1", "predict", {"question": "2+2?"})
        print(first.result, first.worker, first.rebound)

A pool is a namespace and a name. Without ``namespace=`` the client uses the
router's short form, ``/v1/pools/{pool}``, which the router resolves as kubectl
resolves its default namespace. ``token=`` sends ``Authorization: Bearer``
(a string, or a function that reads a rotating one, such as a pod's
ServiceAccount token file). A worker takes only its pool's key
(:mod:`bridgepool.credentials`): the worker clients send it as ``key=``.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, ErrorInfo
from bridgepool.names import check_call_id, check_session_id
from bridgepool.protocol import (
    HEADER_CALL_ID,
    HEADER_IDEMPOTENT,
    HEADER_INCARNATION,
    HEADER_REBOUND_REASON,
    HEADER_REPLAYED,
    HEADER_SESSION_REBOUND,
    HEADER_TIMEOUT,
    HEADER_WORKER,
    ExecuteResponse,
    Readiness,
    WorkerState,
    WorkerStats,
)
from bridgepool.spec import RoutingSettings

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# -- typed errors, one per category ---------------------------------------------------


class InitializationError(BridgePoolError):
    pass


class ConnectionFailedError(BridgePoolError):
    """The router or a worker could not be reached."""


class CommunicationError(BridgePoolError):
    """A malformed request or answer."""


class CallTimeoutError(BridgePoolError):
    pass


class ResourceError(BridgePoolError):
    """No capacity (queue full, no workers), unknown pool, body too large."""


class HealthCheckError(BridgePoolError):
    pass


class SessionError(BridgePoolError):
    """A session or a program in it is missing, or a command needs a session."""


class HandlerError(BridgePoolError):
    """The command's handler raised (category ``python``)."""


class SystemFailureError(BridgePoolError):
    pass


ERROR_CLASSES: dict[ErrorCategory, type[BridgePoolError]] = {
    ErrorCategory.INITIALIZATION: InitializationError,
    ErrorCategory.CONNECTION: ConnectionFailedError,
    ErrorCategory.COMMUNICATION: CommunicationError,
    ErrorCategory.TIMEOUT: CallTimeoutError,
    ErrorCategory.RESOURCE: ResourceError,
    ErrorCategory.HEALTH_CHECK: HealthCheckError,
    ErrorCategory.SESSION: SessionError,
    ErrorCategory.PYTHON: HandlerError,
    ErrorCategory.SYSTEM: SystemFailureError,
}


def error_from_info(info: ErrorInfo, status: int) -> BridgePoolError:
    return ERROR_CLASSES[info.category](info, status)


def _checked(check: Callable[[str], str], value: str) -> str:
    """The router's and the worker's check of an id, before anything is sent:
    the same error, raised as the exception class of its category."""
    try:
        return check(value)
    except BridgePoolError as err:
        raise error_from_info(err.info, err.status) from None


# A bearer token, or a function that returns the current one.
Token = str | Callable[[], str]


def _unexpected(message: str, status: int, **context: Any) -> BridgePoolError:
    """An answer the client cannot read."""
    info = ErrorInfo(
        category=ErrorCategory.COMMUNICATION,
        type="unexpected_answer",
        message=message,
        context=context,
    )
    return error_from_info(info, status)


# -- what the client returns ----------------------------------------------------------


@dataclass(frozen=True)
class ExecuteResult:
    """A successful call: its result, the worker that served it, and whether the
    session moved to a new worker or its worker restarted (its earlier state is
    then lost)."""

    result: Any
    worker: str | None
    rebound: bool = False
    rebound_reason: str | None = None
    id: str | int | None = None
    # A session call's call id (``call_id=``, or one the client made): the
    # same call with it again runs once, and answers as this one did.
    call_id: str | None = None
    replayed: bool = False  # the answer an earlier attempt with this call id got


@dataclass(frozen=True)
class Health:
    """Whether the router (discovery synced, not shutting down) or the worker
    (ready or busy) takes calls, and why not when it does not. A worker's client
    also carries the worker's whole ``/readyz`` answer."""

    ready: bool
    reason: str | None = None
    readiness: Readiness | None = None


class _Answer(BaseModel):
    # Fields a newer server adds are ignored, not refused.
    model_config = ConfigDict(frozen=True, extra="ignore")


ProgramBackend = Literal["offline", "dspy"]


class ProgramInfo(_Answer):
    """A program the worker keeps in a session (``create_program``,
    ``get_program_info``, ``list_programs``)."""

    program_id: str
    signature: str  # "question, context -> answer"
    inputs: list[str]
    outputs: list[str]
    instructions: str
    backend: ProgramBackend
    created_at: float  # unix seconds
    executions: int


class ProgramRun(_Answer):
    """The outputs of one ``execute_program``, named by the program's signature."""

    program_id: str
    backend: ProgramBackend
    outputs: dict[str, Any]


class _ProgramList(_Answer):
    programs: list[ProgramInfo]


class PoolWorkerStatus(_Answer):
    """One worker as the router sees it."""

    worker: str
    url: str
    state: WorkerState | Literal["unknown"]  # unknown: no health check answered yet
    ready: bool  # the router's health checks pass
    draining: bool
    breaker: Literal["closed", "open", "half_open"]
    in_flight: int  # calls from this router
    capacity: int
    accepting_sessions: bool
    sessions: int  # sessions the router knows on it
    last_error: str | None = None


class PoolStatus(_Answer):
    """``GET /v1/namespaces/{namespace}/pools/{pool}`` at the router: its workers,
    queue and sessions."""

    namespace: str
    pool: str
    workers: list[PoolWorkerStatus]
    queue_length: int
    sessions: int
    routing: RoutingSettings

    @property
    def ready_workers(self) -> int:
        return sum(1 for w in self.workers if w.ready)


class _NewSession(_Answer):
    session_id: str


class _RouterReadiness(_Answer):
    ready: bool
    reason: str | None = None


# -- the wire, without I/O ------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class _Op(Generic[T]):
    """A request and how to read its answer."""

    request: _Request
    read: Callable[[httpx.Response], T]


def _error_of(response: httpx.Response) -> BridgePoolError:
    try:
        data = response.json()
        info = ErrorInfo.model_validate(data.get("error") if isinstance(data, dict) else None)
    except (ValueError, ValidationError):
        return _unexpected(
            f"HTTP {response.status_code} without an error body",
            response.status_code,
            body=response.text[:500],
        )
    return error_from_info(info, response.status_code)


def _model_of(
    model: type[M], response: httpx.Response, *, also: int | None = None, ok: int = 200
) -> M:
    """The answer as ``model``: the body of success ``ok``, or that of status
    ``also`` (a not-ready ``/readyz`` is a 503 with the usual body)."""
    if response.status_code not in (ok, also):
        raise _error_of(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        if response.status_code != ok:
            raise _error_of(response) from exc
        raise _unexpected(f"answer is not a {model.__name__}: {exc}", 502) from exc


def _result_as(model: type[M], result: ExecuteResult) -> M:
    """A built-in command's result as its model."""
    try:
        return model.model_validate(result.result)
    except ValidationError as exc:
        raise _unexpected(f"result is not a {model.__name__}: {exc}", 502) from exc


def _http_timeout(timeout: float | None) -> httpx.Timeout:
    # The server enforces the call budget; the socket timeout only needs to outlast it.
    return httpx.Timeout(None if timeout is None else timeout + 5.0, connect=5.0)


class _Calls(ABC):
    """How calls look on the wire and how answers are read. A subclass per target
    says where things are and how a lost session shows."""

    peer: str  # what the client talks to, for messages

    def __init__(self, timeout: float | None, token: Token | None) -> None:
        self.timeout = timeout
        self.token = token

    @abstractmethod
    def execute_path(self, session_id: str | None) -> str: ...

    @abstractmethod
    def session_path(self, session_id: str) -> str: ...

    @abstractmethod
    def rebound_reason(self, response: httpx.Response, session_id: str | None) -> str | None:
        """Why the session's earlier state is gone, if it is."""

    @abstractmethod
    def read_health(self, response: httpx.Response) -> Health: ...

    def headers(self, timeout: float | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        budget = timeout if timeout is not None else self.timeout
        if budget is not None:
            headers[HEADER_TIMEOUT] = f"{budget:g}"
        if self.token is not None:
            token = self.token() if callable(self.token) else self.token
            headers["Authorization"] = f"Bearer {token.strip()}"
        return headers

    def get(self, path: str, read: Callable[[httpx.Response], T]) -> _Op[T]:
        return _Op(_Request("GET", path, self.headers()), read)

    def execute(
        self,
        command: str,
        args: dict[str, Any] | None,
        session_id: str | None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
        call_id: str | None = None,
    ) -> _Op[ExecuteResult]:
        headers = self.headers(timeout)
        if session_id is not None:
            _checked(check_session_id, session_id)
            call_id = secrets.token_hex(16) if call_id is None else _checked(check_call_id, call_id)
            headers[HEADER_CALL_ID] = call_id
        if idempotent:
            headers[HEADER_IDEMPOTENT] = "true"
        body = json.dumps({"command": command, "args": args or {}, "session_id": session_id})
        request = _Request("POST", self.execute_path(session_id), headers, body.encode())
        return _Op(request, lambda response: self.read_execute(response, session_id, call_id))

    def read_execute(
        self, response: httpx.Response, session_id: str | None, call_id: str | None = None
    ) -> ExecuteResult:
        answer = _model_of(ExecuteResponse, response)
        if not answer.success:
            info = answer.error or ErrorInfo(
                category=ErrorCategory.SYSTEM, type="unknown", message="call failed"
            )
            raise error_from_info(info, response.status_code)
        reason = self.rebound_reason(response, session_id)
        return ExecuteResult(
            result=answer.result,
            worker=response.headers.get(HEADER_WORKER),
            rebound=reason is not None,
            rebound_reason=reason,
            id=answer.id,
            call_id=call_id,
            replayed=response.headers.get(HEADER_REPLAYED) == "true",
        )

    def command(
        self,
        session_id: str,
        command: str,
        args: dict[str, Any],
        read: Callable[[ExecuteResult], T],
        timeout: float | None = None,
    ) -> _Op[T]:
        """A built-in command in a session, its result read by ``read``."""
        call = self.execute(command, args, session_id, timeout=timeout)
        return _Op(call.request, lambda response: read(call.read(response)))

    def delete_session(self, session_id: str) -> _Op[None]:
        _checked(check_session_id, session_id)
        request = _Request("DELETE", self.session_path(session_id), self.headers())
        return _Op(request, self.read_done)

    @staticmethod
    def read_done(response: httpx.Response) -> None:
        if response.status_code >= 300:
            raise _error_of(response)

    def health(self) -> _Op[Health]:
        return self.get("/readyz", self.read_health)

    # -- the worker's program commands ------------------------------------------------

    def create_program(self, session_id: str, definition: dict[str, Any]) -> _Op[ProgramInfo]:
        return self.command(
            session_id, "create_program", definition, lambda r: _result_as(ProgramInfo, r)
        )

    def execute_program(
        self,
        session_id: str,
        program_id: str,
        inputs: dict[str, Any],
        timeout: float | None,
    ) -> _Op[ProgramRun]:
        args = {"program_id": program_id, "inputs": inputs}
        return self.command(
            session_id, "execute_program", args, lambda r: _result_as(ProgramRun, r), timeout
        )

    def list_programs(self, session_id: str) -> _Op[list[ProgramInfo]]:
        return self.command(
            session_id, "list_programs", {}, lambda r: _result_as(_ProgramList, r).programs
        )

    def get_program_info(self, session_id: str, program_id: str) -> _Op[ProgramInfo]:
        args = {"program_id": program_id}
        return self.command(
            session_id, "get_program_info", args, lambda r: _result_as(ProgramInfo, r)
        )

    def delete_program(self, session_id: str, program_id: str) -> _Op[None]:
        args = {"program_id": program_id}
        return self.command(session_id, "delete_program", args, lambda r: None)

    def transport_error(self, exc: httpx.TransportError, base_url: str) -> BridgePoolError:
        if isinstance(exc, httpx.TimeoutException):
            return CallTimeoutError.make(
                ErrorCategory.TIMEOUT, "client_timeout", str(exc) or "timed out", status=504
            )
        return ConnectionFailedError.make(
            ErrorCategory.CONNECTION,
            f"{self.peer}_unreachable",
            f"could not reach the {self.peer} at {base_url}: {exc!r}",
            status=502,
            retryable=True,
        )


def _program_definition(
    signature: str | None,
    inputs: Sequence[str] | None,
    outputs: Sequence[str] | None,
    instructions: str,
    program_id: str | None,
    backend: ProgramBackend | None,
) -> dict[str, Any]:
    """``create_program``'s args; the worker checks them (a 400 names what is wrong)."""
    given = {
        "signature": signature,
        "inputs": None if inputs is None else list(inputs),
        "outputs": None if outputs is None else list(outputs),
        "instructions": instructions or None,
        "program_id": program_id,
        "backend": backend,
    }
    return {name: value for name, value in given.items() if value is not None}


class _RouterCalls(_Calls):
    """A pool behind its router: sessions are in the path; the router says when one
    moved."""

    peer = "router"

    def __init__(
        self, pool: str, namespace: str | None, token: Token | None, timeout: float | None
    ) -> None:
        super().__init__(timeout, token)
        self.pool = pool
        path = f"/pools/{quote(pool, safe='')}"
        if namespace is not None:
            path = f"/namespaces/{quote(namespace, safe='')}{path}"
        self._pool_path = "/v1" + path

    def new_session_id(self) -> _Op[str]:
        request = _Request("POST", f"{self._pool_path}/sessions", self.headers())
        return _Op(request, lambda response: _model_of(_NewSession, response, ok=201).session_id)

    def execute_path(self, session_id: str | None) -> str:
        if session_id is None:
            return f"{self._pool_path}/execute"
        return f"{self.session_path(session_id)}/execute"

    def session_path(self, session_id: str) -> str:
        return f"{self._pool_path}/sessions/{quote(session_id, safe='')}"

    def rebound_reason(self, response: httpx.Response, session_id: str | None) -> str | None:
        if response.headers.get(HEADER_SESSION_REBOUND, "").lower() != "true":
            return None
        return str(response.headers.get(HEADER_REBOUND_REASON, ""))

    def read_health(self, response: httpx.Response) -> Health:
        answer = _model_of(_RouterReadiness, response, also=503)
        return Health(ready=answer.ready, reason=answer.reason)

    def pool_status(self) -> _Op[PoolStatus]:
        return self.get(self._pool_path, lambda response: _model_of(PoolStatus, response))


class _WorkerCalls(_Calls):
    """One worker: sessions are in the body. A worker that restarted has lost its
    sessions; its incarnation header tells, so a session's next answer says so
    (``worker_restarted``), as the router's would."""

    peer = "worker"

    def __init__(self, timeout: float | None, key: Token | None) -> None:
        super().__init__(timeout, key)
        # session id -> the worker incarnation that last answered in it
        self._incarnations: dict[str, str] = {}

    def execute_path(self, session_id: str | None) -> str:
        return "/v1/execute"

    def session_path(self, session_id: str) -> str:
        return f"/v1/sessions/{quote(session_id, safe='')}"

    def delete_session(self, session_id: str) -> _Op[None]:
        self._incarnations.pop(session_id, None)
        return super().delete_session(session_id)

    def rebound_reason(self, response: httpx.Response, session_id: str | None) -> str | None:
        incarnation = response.headers.get(HEADER_INCARNATION)
        if session_id is None or incarnation is None:
            return None
        seen = self._incarnations.get(session_id)
        self._incarnations[session_id] = incarnation
        return "worker_restarted" if seen not in (None, incarnation) else None

    def read_health(self, response: httpx.Response) -> Health:
        readiness = _model_of(Readiness, response, also=503)
        return Health(ready=readiness.ready, reason=readiness.reason, readiness=readiness)

    def stats(self) -> _Op[WorkerStats]:
        return self.get("/v1/stats", lambda response: _model_of(WorkerStats, response))


# -- the sync flavour -----------------------------------------------------------------


class BridgeClient:
    """What every synchronous client offers, through a router or to one worker."""

    def __init__(self, base_url: str, calls: _Calls, http: httpx.Client | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._calls = calls
        self._http = http or httpx.Client(
            base_url=self.base_url, timeout=_http_timeout(calls.timeout)
        )

    def _run(self, op: _Op[T]) -> T:
        request = op.request
        try:
            response = self._http.request(
                request.method, request.path, headers=request.headers, content=request.body
            )
        except httpx.TransportError as exc:
            raise self._calls.transport_error(exc, self.base_url) from exc
        return op.read(response)

    def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        call_id: str | None = None,
    ) -> ExecuteResult:
        """``call_id``: send the same one again to retry a call whose answer
        did not come: it runs once (by default each call gets its own)."""
        op = self._calls.execute(command, args, session_id, timeout=timeout, call_id=call_id)
        return self._run(op)

    def execute_anonymous(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        idempotent: bool = False,
        *,
        timeout: float | None = None,
    ) -> ExecuteResult:
        """``idempotent`` lets the router retry the call after a timeout or a 5xx."""
        op = self._calls.execute(command, args, None, idempotent=idempotent, timeout=timeout)
        return self._run(op)

    def delete_session(self, session_id: str) -> None:
        self._run(self._calls.delete_session(session_id))

    def health(self) -> Health:
        """Raises :class:`ConnectionFailedError` when nothing answers."""
        return self._run(self._calls.health())

    def create_program(
        self,
        session_id: str,
        signature: str | None = None,
        *,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        instructions: str = "",
        program_id: str | None = None,
        backend: ProgramBackend | None = None,
    ) -> ProgramInfo:
        """A program in the session, from ``signature`` (``"question -> answer"``)
        or from ``inputs`` and ``outputs``; the worker names it unless
        ``program_id`` does."""
        definition = _program_definition(
            signature, inputs, outputs, instructions, program_id, backend
        )
        return self._run(self._calls.create_program(session_id, definition))

    def execute_program(
        self,
        session_id: str,
        program_id: str,
        inputs: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> ProgramRun:
        return self._run(self._calls.execute_program(session_id, program_id, inputs, timeout))

    def list_programs(self, session_id: str) -> list[ProgramInfo]:
        return self._run(self._calls.list_programs(session_id))

    def get_program_info(self, session_id: str, program_id: str) -> ProgramInfo:
        return self._run(self._calls.get_program_info(session_id, program_id))

    def delete_program(self, session_id: str, program_id: str) -> None:
        self._run(self._calls.delete_program(session_id, program_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BridgePoolClient(BridgeClient):
    """Synchronous client bound to one router and one pool."""

    def __init__(
        self,
        base_url: str,
        pool: str,
        *,
        namespace: str | None = None,
        token: Token | None = None,
        timeout: float | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._router = _RouterCalls(pool, namespace, token, timeout)
        super().__init__(base_url, self._router, http)

    def pool_status(self) -> PoolStatus:
        return self._run(self._router.pool_status())

    def new_session_id(self) -> str:
        """An unguessable session id (192 random bits) the router made."""
        return self._run(self._router.new_session_id())


class WorkerClient(BridgeClient):
    """Synchronous client of one worker, without a router. ``key``: the
    worker's pool key (a string, or a function that reads the current one)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: Token | None = None,
        timeout: float | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._worker = _WorkerCalls(timeout, key)
        super().__init__(base_url, self._worker, http)

    def stats(self) -> WorkerStats:
        return self._run(self._worker.stats())


# -- the async flavour: the same methods, awaited ------------------------------------


class AsyncBridgeClient:
    """What every asynchronous client offers (see :class:`BridgeClient`)."""

    def __init__(self, base_url: str, calls: _Calls, http: httpx.AsyncClient | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._calls = calls
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url, timeout=_http_timeout(calls.timeout)
        )

    async def _run(self, op: _Op[T]) -> T:
        request = op.request
        try:
            response = await self._http.request(
                request.method, request.path, headers=request.headers, content=request.body
            )
        except httpx.TransportError as exc:
            raise self._calls.transport_error(exc, self.base_url) from exc
        return op.read(response)

    async def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call budget
        call_id: str | None = None,
    ) -> ExecuteResult:
        """``call_id``: as :meth:`BridgePoolClient.execute_in_session`."""
        op = self._calls.execute(command, args, session_id, timeout=timeout, call_id=call_id)
        return await self._run(op)

    async def execute_anonymous(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        idempotent: bool = False,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call budget
    ) -> ExecuteResult:
        op = self._calls.execute(command, args, None, idempotent=idempotent, timeout=timeout)
        return await self._run(op)

    async def delete_session(self, session_id: str) -> None:
        await self._run(self._calls.delete_session(session_id))

    async def health(self) -> Health:
        return await self._run(self._calls.health())

    async def create_program(
        self,
        session_id: str,
        signature: str | None = None,
        *,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        instructions: str = "",
        program_id: str | None = None,
        backend: ProgramBackend | None = None,
    ) -> ProgramInfo:
        definition = _program_definition(
            signature, inputs, outputs, instructions, program_id, backend
        )
        return await self._run(self._calls.create_program(session_id, definition))

    async def execute_program(
        self,
        session_id: str,
        program_id: str,
        inputs: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call budget
    ) -> ProgramRun:
        op = self._calls.execute_program(session_id, program_id, inputs, timeout)
        return await self._run(op)

    async def list_programs(self, session_id: str) -> list[ProgramInfo]:
        return await self._run(self._calls.list_programs(session_id))

    async def get_program_info(self, session_id: str, program_id: str) -> ProgramInfo:
        return await self._run(self._calls.get_program_info(session_id, program_id))

    async def delete_program(self, session_id: str, program_id: str) -> None:
        await self._run(self._calls.delete_program(session_id, program_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncBridgePoolClient(AsyncBridgeClient):
    """Asynchronous client bound to one router and one pool."""

    def __init__(
        self,
        base_url: str,
        pool: str,
        *,
        namespace: str | None = None,
        token: Token | None = None,
        timeout: float | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._router = _RouterCalls(pool, namespace, token, timeout)
        super().__init__(base_url, self._router, http)

    async def pool_status(self) -> PoolStatus:
        return await self._run(self._router.pool_status())

    async def new_session_id(self) -> str:
        """An unguessable session id (192 random bits) the router made."""
        return await self._run(self._router.new_session_id())


class AsyncWorkerClient(AsyncBridgeClient):
    """Asynchronous client of one worker, without a router (``key``: as
    :class:`WorkerClient`'s)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: Token | None = None,
        timeout: float | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._worker = _WorkerCalls(timeout, key)
        super().__init__(base_url, self._worker, http)

    async def stats(self) -> WorkerStats:
        return await self._run(self._worker.stats())
