"""One typed client for the move endpoints of a worker: what a mover (the
operator, the local supervisor) and a worker (activating its target at a
commit) send, with the pool's key, the session id quoted, and every failure
told the same way (:class:`StepFailed`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from bridgepool.errors import ErrorInfo
from bridgepool.moves.wire import (
    ActivateRequest,
    CommitRequest,
    MoveInfo,
    MoveRef,
    SessionEnvelope,
    SessionExport,
)
from bridgepool.protocol import HEADER_WORKER, SessionsResponse
from bridgepool.worker_http import WorkerHttp, sent_key

Answer = TypeVar("Answer", bound=BaseModel)

# A step that got no answer: the worker may or may not have acted on it.
UNREACHABLE = "unreachable"


class StepFailed(Exception):
    """A move step was refused, or got no answer.

    ``error_type`` is the worker's error type, or ``unreachable`` when no
    answer came; ``delivered`` is False only when the request cannot have
    reached the worker (no connection was made), and ``status`` is the
    answer's HTTP status, if one came."""

    def __init__(
        self,
        step: str,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        delivered: bool = True,
        error: ErrorInfo | None = None,
    ) -> None:
        super().__init__(f"{step}: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.status = status
        self.delivered = delivered
        self.error = error


@dataclass(frozen=True)
class Activated:
    """A target's yes to an activation: its answer, the worker that gave it,
    and the key the request showed (which the answer's proof must be over)."""

    info: MoveInfo
    worker: str | None
    sent_key: str | None


def session_url(worker_url: str, session_id: str) -> str:
    """``WORKER/v1/sessions/ID``, the id quoted."""
    return f"{worker_url.rstrip('/')}/v1/sessions/{quote(session_id, safe='')}"


class MoveClient:
    """The move endpoints of any worker of one pool, each call within ``seconds``."""

    def __init__(self, http: WorkerHttp, seconds: float) -> None:
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=seconds)

    async def _post(
        self, step: str, url: str, body: object, answer: type[Answer]
    ) -> tuple[Answer, aiohttp.ClientResponse]:
        try:
            async with self.http.post(url, json=body, timeout=self.timeout) as resp:
                text = await resp.text()
        except aiohttp.ClientConnectorError as err:
            raise StepFailed(step, UNREACHABLE, repr(err), delivered=False) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise StepFailed(step, UNREACHABLE, repr(err)) from err
        if resp.status >= 300:
            try:
                error = ErrorInfo.model_validate(json.loads(text)["error"])
            except (ValueError, KeyError, TypeError, ValidationError):
                raise StepFailed(
                    step, UNREACHABLE, f"HTTP {resp.status}: {text[:200]}", status=resp.status
                ) from None
            raise StepFailed(step, error.type, error.message, status=resp.status, error=error)
        try:
            return answer.model_validate_json(text), resp
        except ValidationError as err:
            raise StepFailed(step, UNREACHABLE, f"not a {answer.__name__}: {err}") from err

    async def export(self, worker_url: str, session_id: str) -> SessionExport:
        """Freeze the session for a move and take its envelope."""
        url = session_url(worker_url, session_id) + "/export"
        exported, _ = await self._post("export", url, {}, SessionExport)
        return exported

    async def import_(
        self, worker_url: str, session_id: str, envelope: SessionEnvelope
    ) -> MoveInfo:
        """Hand the envelope to the target: a pending copy, not served yet."""
        url = session_url(worker_url, session_id) + "/import"
        info, _ = await self._post("import", url, envelope.model_dump(mode="json"), MoveInfo)
        return info

    async def commit(self, worker_url: str, session_id: str, request: CommitRequest) -> MoveInfo:
        """Tell the source to make the target's copy live (200: moved; 202: the
        source is still telling the target, and finishes by itself)."""
        url = session_url(worker_url, session_id) + "/commit"
        info, _ = await self._post("commit", url, request.model_dump(), MoveInfo)
        return info

    async def abort(self, worker_url: str, session_id: str, request: MoveRef) -> MoveInfo:
        """Give up before the commit: thaw the source's session, or drop the
        target's pending copy."""
        url = session_url(worker_url, session_id) + "/abort"
        info, _ = await self._post("abort", url, request.model_dump(), MoveInfo)
        return info

    async def activate(
        self, worker_url: str, session_id: str, request: ActivateRequest
    ) -> Activated:
        """The source, at a commit: tell the target its copy is now the session."""
        url = session_url(worker_url, session_id) + "/activate"
        info, resp = await self._post("activate", url, request.model_dump(), MoveInfo)
        return Activated(info, resp.headers.get(HEADER_WORKER), sent_key(resp))

    async def sessions(self, worker_url: str) -> SessionsResponse | None:
        """The sessions the worker holds (None when it does not say)."""
        try:
            url = f"{worker_url.rstrip('/')}/v1/sessions"
            async with self.http.get(url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    return None
                return SessionsResponse.model_validate(await resp.json())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
