"""The execute body check: the hand check never accepts what the model rejects, and
the worker gets the client's bytes (plus the path's session id where the body has none)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError
from bridgepool.protocol import ExecuteRequest
from bridgepool_router.call_body import parse_call, plainly_valid

LONG = "x" * 257


@pytest.mark.parametrize(
    ("body", "session_id", "plain"),
    [
        ({"command": "ping"}, None, True),
        ({"command": "ping", "args": {"a": [1]}, "id": 7}, None, True),
        ({"command": "ping", "id": "r1", "session_id": "s1"}, None, True),
        ({"command": "ping"}, "s1", True),
        ({"command": "x" * 256}, "s" * 256, True),
        # Everything below is left to the model: some it accepts, some it rejects.
        ({"command": ""}, None, False),
        ({"command": LONG}, None, False),
        ({"command": "ping"}, "", False),
        ({"command": "ping"}, LONG, False),
        ({"command": "ping", "session_id": ""}, None, False),
        ({"command": "ping", "id": True}, None, False),
        ({"command": "ping", "id": 1.0}, None, False),
        ({"command": "ping", "id": [1]}, None, False),
        ({"command": "ping", "args": []}, None, False),
        ({"command": "ping", "args": None}, None, False),
        ({"command": 3}, None, False),
        ({"command": "ping", "bogus": 1}, None, False),
        ({"args": {}}, None, False),
    ],
)
def test_hand_check_accepts_only_what_the_model_accepts(
    body: dict[str, Any], session_id: str | None, plain: bool
) -> None:
    assert plainly_valid(body, session_id) is plain
    if plain:
        ExecuteRequest.model_validate({**body, "session_id": session_id or body.get("session_id")})


@pytest.mark.parametrize(
    ("body", "session_id"),
    [({"command": ""}, None), ({"command": "ping"}, LONG), ({"command": "ping", "id": [1]}, None)],
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
        b'{"command": "ping", "session_id": "s\\"1"}',
    ],
)
def test_session_calls_carry_the_path_session_id(raw: bytes) -> None:
    session_id = 's"1'
    call = parse_call(raw, session_id)
    sent = json.loads(call.payload)
    assert sent == {**json.loads(raw), "session_id": session_id}
    assert json.detect_encoding(call.payload) == "utf-8"
    ExecuteRequest.model_validate_json(call.payload)


def test_a_body_naming_the_same_session_is_forwarded_unchanged() -> None:
    raw = b'{"command": "ping", "session_id": "s1"}'
    assert parse_call(raw, "s1").payload is raw
