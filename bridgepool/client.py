"""Python client for the BridgePool router (needs the ``client`` extra: httpx).

Two flavours over one implementation: :class:`BridgePoolClient` (sync) and
:class:`AsyncBridgePoolClient`. Request building and response parsing live in
:class:`_Calls`; the flavours only send. Failures raise a subclass of
:class:`bridgepool.errors.BridgePoolError` per error category.

    with BridgePoolClient("http://router:8000", pool="demo") as client:
        first = client.execute_in_session("s-1", "predict", {"question": "2+2?"})
        print(first.result, first.worker, first.rebound)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, ErrorInfo
from bridgepool.protocol import (
    HEADER_IDEMPOTENT,
    HEADER_SESSION_REBOUND,
    HEADER_TIMEOUT,
    HEADER_WORKER,
    ExecuteResponse,
)

HEADER_REBOUND_REASON = "X-BridgePool-Session-Rebound-Reason"


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
    pass


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


@dataclass(frozen=True)
class ExecuteResult:
    """A successful call: its result, the worker that served it, and whether the
    session moved to a new worker (its earlier state is then lost)."""

    result: Any
    worker: str | None
    rebound: bool = False
    rebound_reason: str | None = None
    id: str | int | None = None


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


class _Calls:
    """How calls look on the wire and how answers are read; no I/O."""

    def __init__(self, pool: str, timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout

    def _headers(self, timeout: float | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        budget = timeout if timeout is not None else self.timeout
        if budget is not None:
            headers[HEADER_TIMEOUT] = f"{budget:g}"
        return headers

    def execute(
        self,
        command: str,
        args: dict[str, Any] | None,
        session_id: str | None,
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> _Request:
        pool = quote(self.pool, safe="")
        if session_id is None:
            path = f"/v1/pools/{pool}/execute"
        else:
            path = f"/v1/pools/{pool}/sessions/{quote(session_id, safe='')}/execute"
        headers = self._headers(timeout)
        if idempotent:
            headers[HEADER_IDEMPOTENT] = "true"
        body = {"command": command, "args": args or {}, "session_id": session_id}
        return _Request("POST", path, headers, json.dumps(body).encode())

    def delete_session(self, session_id: str) -> _Request:
        path = f"/v1/pools/{quote(self.pool, safe='')}/sessions/{quote(session_id, safe='')}"
        return _Request("DELETE", path, self._headers(None))

    @staticmethod
    def error_of(response: httpx.Response) -> BridgePoolError:
        try:
            data = response.json()
            info = ErrorInfo.model_validate(data.get("error") if isinstance(data, dict) else None)
        except (ValueError, ValidationError):
            info = ErrorInfo(
                category=ErrorCategory.COMMUNICATION,
                type="unexpected_answer",
                message=f"HTTP {response.status_code} without an error body",
                context={"body": response.text[:500]},
            )
        return error_from_info(info, response.status_code)

    @classmethod
    def parse_execute(cls, response: httpx.Response) -> ExecuteResult:
        if response.status_code != 200:
            raise cls.error_of(response)
        try:
            answer = ExecuteResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise error_from_info(
                ErrorInfo(
                    category=ErrorCategory.COMMUNICATION,
                    type="unexpected_answer",
                    message=f"answer is not an execute response: {exc}",
                ),
                502,
            ) from exc
        if not answer.success:
            info = answer.error or ErrorInfo(
                category=ErrorCategory.SYSTEM, type="unknown", message="call failed"
            )
            raise error_from_info(info, response.status_code)
        return ExecuteResult(
            result=answer.result,
            worker=response.headers.get(HEADER_WORKER),
            rebound=response.headers.get(HEADER_SESSION_REBOUND, "").lower() == "true",
            rebound_reason=response.headers.get(HEADER_REBOUND_REASON),
            id=answer.id,
        )

    @classmethod
    def parse_delete(cls, response: httpx.Response) -> None:
        if response.status_code >= 300:
            raise cls.error_of(response)

    @staticmethod
    def transport_error(exc: httpx.TransportError, base_url: str) -> BridgePoolError:
        if isinstance(exc, httpx.TimeoutException):
            return CallTimeoutError.make(
                ErrorCategory.TIMEOUT, "client_timeout", str(exc) or "timed out", status=504
            )
        return ConnectionFailedError.make(
            ErrorCategory.CONNECTION,
            "router_unreachable",
            f"could not reach the router at {base_url}: {exc!r}",
            status=502,
            retryable=True,
        )


def _http_timeout(timeout: float | None) -> httpx.Timeout:
    # The router enforces the call budget; the socket timeout only needs to outlast it.
    return httpx.Timeout(None if timeout is None else timeout + 5.0, connect=5.0)


class BridgePoolClient:
    """Synchronous client bound to one router and one pool."""

    def __init__(
        self,
        base_url: str,
        pool: str,
        *,
        timeout: float | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._calls = _Calls(pool, timeout)
        self._http = http or httpx.Client(base_url=self.base_url, timeout=_http_timeout(timeout))

    def _send(self, request: _Request) -> httpx.Response:
        try:
            return self._http.request(
                request.method, request.path, headers=request.headers, content=request.body
            )
        except httpx.TransportError as exc:
            raise _Calls.transport_error(exc, self.base_url) from exc

    def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecuteResult:
        req = self._calls.execute(command, args, session_id, timeout=timeout)
        return _Calls.parse_execute(self._send(req))

    def execute_anonymous(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        idempotent: bool = False,
        *,
        timeout: float | None = None,
    ) -> ExecuteResult:
        req = self._calls.execute(command, args, None, idempotent=idempotent, timeout=timeout)
        return _Calls.parse_execute(self._send(req))

    def delete_session(self, session_id: str) -> None:
        _Calls.parse_delete(self._send(self._calls.delete_session(session_id)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BridgePoolClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncBridgePoolClient:
    """Asynchronous client bound to one router and one pool."""

    def __init__(
        self,
        base_url: str,
        pool: str,
        *,
        timeout: float | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._calls = _Calls(pool, timeout)
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url, timeout=_http_timeout(timeout)
        )

    async def _send(self, request: _Request) -> httpx.Response:
        try:
            return await self._http.request(
                request.method, request.path, headers=request.headers, content=request.body
            )
        except httpx.TransportError as exc:
            raise _Calls.transport_error(exc, self.base_url) from exc

    async def execute_in_session(
        self,
        session_id: str,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the router's call budget
    ) -> ExecuteResult:
        req = self._calls.execute(command, args, session_id, timeout=timeout)
        return _Calls.parse_execute(await self._send(req))

    async def execute_anonymous(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        idempotent: bool = False,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the router's call budget
    ) -> ExecuteResult:
        req = self._calls.execute(command, args, None, idempotent=idempotent, timeout=timeout)
        return _Calls.parse_execute(await self._send(req))

    async def delete_session(self, session_id: str) -> None:
        _Calls.parse_delete(await self._send(self._calls.delete_session(session_id)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBridgePoolClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
