"""The pure half of the router's front door: bearer tokens, token expiry, the
bounded cache, ServiceAccount namespaces and how an access is described."""

from __future__ import annotations

import base64
import json

import pytest

from bridgepool_router.core.access import (
    END_SESSION,
    EXECUTE,
    LIST_POOLS,
    MAX_TOKEN_LENGTH,
    BearerError,
    Caller,
    TtlCache,
    bearer_token,
    token_expiry,
    token_key,
)


def jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("header", "token", "problem"),
    [
        ("Bearer abc.def", "abc.def", None),
        ("bearer   abc ", "abc", None),
        (None, None, "no Authorization header"),
        ("", None, "no Authorization header"),
        ("Basic dXNlcjpwdw==", None, "scheme must be Bearer, not 'Basic'"),
        ("Bearer", None, "carries no token"),
        ("Bearer    ", None, "carries no token"),
        ("Bearer " + "a" * (MAX_TOKEN_LENGTH + 1), None, f"longer than {MAX_TOKEN_LENGTH}"),
        ("Bearer a b", None, "characters a token cannot have"),
        ("Bearer t\u00f6ken", None, "characters a token cannot have"),
        ("Bearer a\x00b", None, "characters a token cannot have"),
    ],
)
def test_bearer_token(header: str | None, token: str | None, problem: str | None) -> None:
    if problem is None:
        assert bearer_token(header) == token
        return
    with pytest.raises(BearerError, match=problem):
        bearer_token(header)


@pytest.mark.parametrize(
    ("token", "expiry"),
    [
        (jwt({"exp": 1700000000, "sub": "x"}), 1700000000.0),
        (jwt({"exp": 1.5}), 1.5),
        (jwt({"sub": "x"}), None),
        (jwt({"exp": "soon"}), None),
        (jwt({"exp": True}), None),
        (jwt([1, 2]), None),
        ("static-token-from-a-file", None),
        ("a.!!!.c", None),
        ("a.bm90IGpzb24.c", None),  # "not json"
    ],
)
def test_token_expiry_reads_exp_without_trusting_it(token: str, expiry: float | None) -> None:
    assert token_expiry(token) == expiry


def test_the_cache_keeps_a_hash_not_the_token() -> None:
    assert token_key("secret") != "secret" and len(token_key("secret")) == 64


def test_ttl_cache_expires_each_entry_at_its_own_time_and_stays_bounded() -> None:
    cache: TtlCache[str] = TtlCache(max_entries=2)
    cache.put("a", "A", expires=10, now=0)
    cache.put("b", "B", expires=5, now=0)
    assert cache.get("a", 4.9) == "A" and cache.get("b", 4.9) == "B"
    assert cache.get("b", 5) is None  # expired at its time
    assert cache.get("a", 9) == "A"
    cache.put("b", "B", expires=20, now=9)
    cache.put("c", "C", expires=20, now=9)  # over the bound: the oldest goes
    assert len(cache) == 2 and cache.get("a", 9) is None and cache.get("c", 9) == "C"
    cache.put("d", "D", expires=9, now=9)  # already expired: never kept
    assert cache.get("d", 9) is None


@pytest.mark.parametrize(
    ("username", "namespace"),
    [
        ("system:serviceaccount:team-a:app", "team-a"),
        ("system:serviceaccount:team-a:", None),
        ("system:serviceaccount:team-a", None),
        ("jane@example.com", None),
        ("system:admin", None),
    ],
)
def test_serviceaccount_namespace(username: str, namespace: str | None) -> None:
    assert Caller(username).serviceaccount_namespace == namespace


def test_access_is_described_as_kubectl_says_it() -> None:
    assert (
        EXECUTE.describe("team-a", "example")
        == "create bridgepool.io bridgepools/execute 'example' in namespace 'team-a'"
    )
    assert END_SESSION.describe("team-a", "x").startswith(
        "delete bridgepool.io bridgepools/sessions"
    )
    assert LIST_POOLS.describe("", None) == "list bridgepool.io bridgepools at cluster scope"
