"""The execute body check: the hand check never accepts what the model rejects, and
the worker gets the client's bytes (plus the path's session id where the body has none)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError
from bridgepool.names import owned_session_key
from bridgepool.protocol import ExecuteRequest
from bridgepool_router.call_body import parse_call, plainly_valid

LONG = "x" * 257


@pytest.mark.parametrize(
    ("body", "plain"),
    [
        ({"command": "ping"}, True),
        ({"command": "ping", "args": {"a": [1]}, "id": 7}, True),
        ({"command": "ping", "id": "r1", "session_id": "s1"}, True),
        ({"command": "x" * 256}, True),
        # Everything below is left to the model: some it accepts, some it rejects.
        ({"command": ""}, False),
        ({"command": LONG}, False),
        ({"command": "ping", "id": True}, False),
        ({"command": "ping", "id": 1.0}, False),
        ({"command": "ping", "id": [1]}, False),
        ({"command": "ping", "args": []}, False),
        ({"command": "ping", "args": None}, False),
        ({"command": 3}, False),
        ({"command": "ping", "bogus": 1}, False),
        ({"args": {}}, False),
    ],
)
def test_hand_check_accepts_only_what_the_model_accepts(body: dict[str, Any], plain: bool) -> None:
    """The session id is not the hand check's: the path's id is checked before
    (bridgepool.names), and a body's must equal it."""
    assert plainly_valid(body) is plain
    if plain:
        ExecuteRequest.model_validate(body)


@pytest.mark.parametrize(
    ("body", "session_id"),
    [({"command": ""}, None), ({"command": LONG}, None), ({"command": "ping", "id": [1]}, None)],
)
def test_bodies_the_model_rejects_are_400_with_its_errors(
    body: dict[str, Any], session_id: str | None
) -> None:
    with pytest.raises(ValidationError):
        ExecuteRequest.model_validate({**body, "session_id": session_id})
    with pytest.raises(BridgePoolError) as caught:
        parse_call(json.dumps(body).encode(), session_id)
    info = caught.value.info
    assert (caught.value.status, info.type) == (400, "invalid_request")
    assert info.context["errors"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"command": "ping", "args": {"b": 1, "a": 2}, "id": 9}',
        b'  \n{"id":"r","command":"ping"}  ',
        '{"command": "ping", "args": {"text": "h\u00e9llo \u2603"}}'.encode(),
    ],
)
def test_anonymous_calls_forward_the_exact_bytes(raw: bytes) -> None:
    call = parse_call(raw, None)
    assert call.payload is raw
    assert call.request_id == json.loads(raw).get("id")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"command": "ping", "args": {"n": 1}, "id": 3}',
        b'  {"command":"ping"}',
        b'{"command": "ping", "session_id": null}',
        '{"command": "ping", "args": {"s": "\u00e9"}}'.encode("utf-16"),
        b'{"command": "ping", "session_id": "s:1@x"}',
    ],
)
@pytest.mark.parametrize("owner", [None, "system:serviceaccount:team-a:app"])
def test_session_calls_carry_the_session_key(raw: bytes, owner: str | None) -> None:
    """The worker gets the key the session is kept under: the path's id, or
    behind its owner's tag when callers are authenticated."""
    session_id = "s:1@x"
    key = owned_session_key(owner, session_id)
    call = parse_call(raw, session_id, key)
    sent = json.loads(call.payload)
    assert sent == {**json.loads(raw), "session_id": key}
    assert json.detect_encoding(call.payload) == "utf-8"
    ExecuteRequest.model_validate_json(call.payload)


def test_a_body_naming_the_same_session_is_forwarded_unchanged() -> None:
    raw = b'{"command": "ping", "session_id": "s1"}'
    assert parse_call(raw, "s1").payload is raw
