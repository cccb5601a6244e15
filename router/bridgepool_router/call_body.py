"""An execute call's body, checked once and forwarded as the bytes the client sent.

The router parses the body only to check it (a JSON object, a valid
:class:`~bridgepool.protocol.ExecuteRequest`, no session id that disagrees with
the path's) and to learn the call's ``id`` for its own error answers. The
worker gets the client's bytes; a session call's body gets the session's key
(:func:`bridgepool.names.owned_session_key`) spliced in, since the worker reads
it from the body.

A body of the plain, common shape is checked by hand; anything else goes
through the model, so the model stays the one authority on what is valid (and
its errors name the problem).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bridgepool.errors import validation_problems
from bridgepool.protocol import ExecuteRequest
from bridgepool_router import router_errors

_FIELDS = frozenset(ExecuteRequest.model_fields)


def _length_bounds(field: str) -> tuple[int, int]:
    """The model's own length limits for a string field, so the hand check cannot drift."""
    low, high = 0, sys.maxsize
    for constraint in ExecuteRequest.model_fields[field].metadata:
        low = getattr(constraint, "min_length", None) or low
        high = getattr(constraint, "max_length", None) or high
    return low, high


_COMMAND_MIN, _COMMAND_MAX = _length_bounds("command")


@dataclass(slots=True)
class CallBody:
    payload: bytes  # what the worker gets
    request_id: object  # the body's ``id``, echoed in the router's own error answers


def plainly_valid(body: dict[str, Any]) -> bool:
    """True only if the body is certainly a valid execute request: exact types, the
    model's limits (its session id is the path's, checked before). False sends it
    to the model for the final word."""
    command = body.get("command")
    request_id = body.get("id")
    return (
        body.keys() <= _FIELDS
        and type(command) is str
        and _COMMAND_MIN <= len(command) <= _COMMAND_MAX
        and type(body.get("args", body)) is dict
        and (request_id is None or type(request_id) is str or type(request_id) is int)
    )


def parse_call(raw: bytes, session_id: str | None, key: str | None = None) -> CallBody:
    """Check an execute body for a call (``session_id`` from the path, already
    checked, or None for an anonymous call; ``key``, what the session is kept
    under on the workers, by default the id); raise the router's 400 naming the
    problem."""
    key = key or session_id
    utf8 = _is_utf8(raw)
    body = _decode(raw, utf8)
    if not isinstance(body, dict):
        raise router_errors.bad_request("invalid_request", "request body must be a JSON object")
    body_session = body.get("session_id")
    if session_id is None and body_session is not None:
        raise router_errors.bad_request(
            "session_in_anonymous_call",
            "an anonymous call carries no session_id; use /v1/pools/{pool}/sessions/{id}/execute",
        )
    if session_id is not None and body_session is not None and body_session != session_id:
        raise router_errors.session_mismatch(session_id, body_session)
    if not plainly_valid(body):
        try:
            ExecuteRequest.model_validate({**body, "session_id": key})
        except ValidationError as exc:
            raise router_errors.bad_request(
                "invalid_request",
                f"request body is not a valid execute request: {validation_problems(exc)}",
                errors=json.loads(exc.json(include_url=False, include_input=False)),
            ) from exc
    return CallBody(_payload(raw, utf8, body, key), body.get("id"))


_DECODER = json.JSONDecoder()


def _decode(raw: bytes, utf8: bool) -> Any:
    """The body's JSON value; the router's 400 if it is not JSON."""
    if utf8:
        # What json.loads does, without its layers, for the usual body: one
        # JSON value and nothing around it.
        try:
            text = raw.decode("utf-8", "surrogatepass")
            value, end = _DECODER.raw_decode(text)
            if end == len(text):
                return value
        except (ValueError, RecursionError):
            pass  # json.loads gives the verdict, and says what is wrong
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise router_errors.bad_request("invalid_json", f"request body is not JSON: {exc}") from exc
    except RecursionError:
        raise router_errors.bad_request(
            "invalid_json", "request body is not JSON the router reads: it is nested too deeply"
        ) from None


def _is_utf8(raw: bytes) -> bool:
    """Whether the JSON text is UTF-8, as ``json.detect_encoding`` decides; at a
    glance for the usual body, an object opening with ``{`` and no NUL after it
    (no byte-order mark, not UTF-16 or -32)."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        return True
    return json.detect_encoding(raw) == "utf-8"


def _payload(raw: bytes, utf8: bool, body: dict[str, Any], key: str | None) -> bytes:
    if not utf8:
        # Workers read UTF-8 only; other JSON encodings are re-encoded (rare).
        return json.dumps(body if key is None else {**body, "session_id": key}).encode()
    if key is None or body.get("session_id") == key:
        return raw
    if "session_id" in body:  # a null, or the caller's id the key stands for
        return json.dumps({**body, "session_id": key}).encode()
    # The body is an object, so its first non-blank byte is its opening brace.
    brace = raw.index(b"{") + 1
    field = b'"session_id": ' + json.dumps(key).encode()
    return raw[:brace] + field + (b", " if body else b"") + raw[brace:]
