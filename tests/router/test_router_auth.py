"""The router's front door in-process: namespaced pools, authentication,
authorization and session ownership, in front of real workers.

The API server's reviews come from :class:`ApiServer`, a table of tokens and
RBAC grants that answers TokenReviews and SubjectAccessReviews in their wire
shape: the real API server cannot run in a unit test (the e2e suite runs the
same cases against one, ``e2e/test_tenancy.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridgepool.credentials import KeyDir, Keys, PoolKeys, new_key, pool_key_dir, write_keys
from bridgepool.errors import BridgePoolError, ErrorInfo
from bridgepool.names import PoolRef, check_session_id
from bridgepool_router.app import RouterConfig, create_app
from bridgepool_router.auth import (
    AuthSettings,
    SubjectAccessReviewAuthorizer,
    TokenReviewAuthenticator,
)
from bridgepool_router.core.access import EXECUTE, Caller
from bridgepool_router.discovery.static import StaticDiscovery
from bridgepool_worker.app import create_app as create_worker_app
from bridgepool_worker.config import WorkerConfig
from tests.router.conftest import WORKER_HANDLERS

Client = TestClient[web.Request, web.Application]

APP_A = "system:serviceaccount:team-a:app"
OTHER_A = "system:serviceaccount:team-a:other"
APP_B = "system:serviceaccount:team-b:app"
VIEWER_A = "system:serviceaccount:team-a:viewer"
LONER_A = "system:serviceaccount:team-a:loner"  # authenticated, bound to nothing


@dataclass
class ApiServer:
    """Tokens the API server knows (token -> username) and what RBAC grants:
    (username, namespace, verb, subresource)."""

    tokens: dict[str, str]
    grants: set[tuple[str, str, str, str]]
    down: bool = False
    token_reviews: int = 0
    access_reviews: list[dict[str, Any]] = field(default_factory=list)

    async def token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.token_reviews += 1
        if self.down:
            raise ConnectionRefusedError("the API server is down")
        user = self.tokens.get(body["spec"]["token"])
        if user is None:
            return {"status": {"authenticated": False, "error": "invalid bearer token"}}
        return {
            "status": {
                "authenticated": True,
                "user": {
                    "username": user,
                    "uid": f"uid-{user}",
                    "groups": ["system:authenticated"],
                },
                "audiences": ["https://kubernetes.default.svc"],
            }
        }

    async def subject_access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.access_reviews.append(body["spec"])
        if self.down:
            raise ConnectionRefusedError("the API server is down")
        attrs = body["spec"]["resourceAttributes"]
        assert (attrs["group"], attrs["resource"]) == ("bridgepool.io", "bridgepools")
        wanted = (
            body["spec"]["user"],
            attrs["namespace"],
            attrs["verb"],
            attrs.get("subresource", ""),
        )
        return {"status": {"allowed": wanted in self.grants}}


def caller_grants(user: str, namespace: str) -> set[tuple[str, str, str, str]]:
    """What the chart's caller ClusterRole grants, bound in one namespace."""
    return {
        (user, namespace, "create", "execute"),
        (user, namespace, "delete", "sessions"),
        (user, namespace, "get", ""),
        (user, namespace, "list", ""),
    }


def api_server() -> ApiServer:
    return ApiServer(
        tokens={
            "tok-app-a": APP_A,
            "tok-app-a-pod-2": APP_A,  # another pod of the same ServiceAccount
            "tok-other-a": OTHER_A,
            "tok-app-b": APP_B,
            "tok-viewer-a": VIEWER_A,
            "tok-loner-a": LONER_A,
        },
        grants=caller_grants(APP_A, "team-a")
        | caller_grants(OTHER_A, "team-a")
        | caller_grants(APP_B, "team-b")
        | {(VIEWER_A, "team-a", "get", ""), (VIEWER_A, "team-a", "list", "")},
    )


@dataclass
class Stack:
    router: Client
    api: ApiServer
    workers: dict[str, str]  # namespace -> the name its worker answers with
    # A second router of the same pools: another replica, or this one restarted.
    other_router: Client


@pytest.fixture
async def stack(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
) -> Stack:
    """Two pools named ``example``, in team-a and team-b, one worker each, each
    pool's worker with its own pool's key."""
    write_keys(tmp_path / "release", Keys(new_key()))
    release = KeyDir(tmp_path / "release")
    flags, names = [], {}
    for namespace in ("team-a", "team-b"):
        name = f"worker-{namespace}"
        keys_dir = tmp_path / f"{namespace}-keys"
        pool_key_dir(release.keys(), PoolRef(namespace, "example"), keys_dir)
        worker_config = WorkerConfig(
            name=name, capacity=4, handlers=WORKER_HANDLERS, keys_dir=keys_dir
        )
        worker = await aiohttp_server(create_worker_app(worker_config))
        flags.append(f"{namespace}/example={str(worker.make_url('')).rstrip('/')}")
        names[namespace] = worker.make_url("").authority
    api = api_server()
    routers = [
        await aiohttp_client(
            create_app(
                RouterConfig(
                    discovery=StaticDiscovery(flags),
                    auth=AuthSettings(mode="kubernetes", reviews=api),
                    worker_keys=PoolKeys(release),
                )
            )
        )
        for _ in range(2)
    ]
    return Stack(routers[0], api, names, routers[1])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(resp: Any) -> ErrorInfo:
    body = await resp.json()
    assert body["success"] is False
    return ErrorInfo.model_validate(body["error"])


A = "/v1/namespaces/team-a/pools/example"
B = "/v1/namespaces/team-b/pools/example"
PING = {"command": "ping"}
INCR = {"command": "incr"}


async def test_pools_of_one_name_in_two_namespaces_are_two_pools(stack: Stack) -> None:
    for path, token, namespace in ((A, "tok-app-a", "team-a"), (B, "tok-app-b", "team-b")):
        for _ in range(3):
            resp = await stack.router.post(
                f"{path}/sessions/s/execute", json=INCR, headers=bearer(token)
            )
            assert resp.status == 200
            assert resp.headers["X-BridgePool-Worker"] == stack.workers[namespace]
        detail = await (await stack.router.get(path, headers=bearer(token))).json()
        assert (detail["namespace"], detail["pool"]) == (namespace, "example")
        assert [w["url"].split("//")[1] for w in detail["workers"]] == [stack.workers[namespace]]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no Authorization header"),
        ({"Authorization": "Basic YTpi"}, "scheme must be Bearer"),
        ({"Authorization": "Bearer"}, "carries no token"),
        ({"Authorization": "Bearer not-a-jwt-nobody-issued"}, "refused the bearer token"),
    ],
)
async def test_a_caller_without_a_valid_token_gets_401(
    stack: Stack, headers: dict[str, str], reason: str
) -> None:
    for method, path in (("POST", f"{A}/execute"), ("GET", A), ("GET", "/v1/pools")):
        resp = await stack.router.request(method, path, json=PING, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        error = await error_of(resp)
        assert error.type == "unauthenticated" and reason in error.message
    # Nothing reached a worker, and the router keeps serving.
    assert (await stack.router.post(f"{A}/execute", json=PING, headers=bearer("tok-app-a"))).ok


@pytest.mark.parametrize(
    ("token", "method", "path", "status", "missing"),
    [
        ("tok-app-a", "POST", f"{A}/execute", 200, None),
        ("tok-app-a", "POST", f"{A}/sessions/s1/execute", 200, None),
        ("tok-app-a", "GET", A, 200, None),
        ("tok-app-a", "GET", "/v1/namespaces/team-a/pools", 200, None),
        ("tok-app-a", "POST", f"{B}/execute", 403, "create bridgepool.io bridgepools/execute"),
        ("tok-app-a", "GET", B, 403, "get bridgepool.io bridgepools 'example'"),
        ("tok-app-a", "DELETE", f"{B}/sessions/s1", 403, "delete bridgepool.io bridgepools/"),
        ("tok-loner-a", "POST", f"{A}/execute", 403, "create bridgepool.io bridgepools/execute"),
        ("tok-viewer-a", "GET", A, 200, None),
        ("tok-viewer-a", "POST", f"{A}/execute", 403, "bridgepools/execute"),
        ("tok-viewer-a", "POST", f"{A}/sessions", 403, "bridgepools/execute"),
        # A list across namespaces needs the right at cluster scope, as kubectl get -A does.
        ("tok-viewer-a", "GET", "/v1/pools", 200, None),  # short form: its own namespace
        ("tok-app-b", "GET", "/v1/namespaces/team-a/pools", 403, "list bridgepool.io"),
    ],
)  # fmt: skip
async def test_rbac_decides_each_call(
    stack: Stack, token: str, method: str, path: str, status: int, missing: str | None
) -> None:
    resp = await stack.router.request(method, path, json=PING, headers=bearer(token))
    assert resp.status == status, await resp.text()
    if missing is not None:
        error = await error_of(resp)
        assert error.type == "forbidden" and missing in error.message
        assert error.context["user"] == stack.api.tokens[token]


async def test_the_short_form_is_the_callers_own_namespace(stack: Stack) -> None:
    for token, namespace in (("tok-app-a", "team-a"), ("tok-app-b", "team-b")):
        resp = await stack.router.post(
            "/v1/pools/example/execute", json=PING, headers=bearer(token)
        )
        assert resp.headers["X-BridgePool-Worker"] == stack.workers[namespace]
        listing = await (await stack.router.get("/v1/pools", headers=bearer(token))).json()
        assert [p["namespace"] for p in listing["pools"]] == [namespace]


async def test_a_session_belongs_to_the_identity_that_made_it(stack: Stack) -> None:
    router = stack.router
    session = f"{A}/sessions/user-42"

    async def count(token: str) -> int:
        resp = await router.post(f"{session}/execute", json=INCR, headers=bearer(token))
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["result"]["count"])

    assert [await count("tok-app-a"), await count("tok-app-a")] == [1, 2]
    # Another identity with the same id: it cannot end app's session, nor tell it
    # exists (the answer is the one for a session nobody has) ...
    resp = await router.delete(session, headers=bearer("tok-other-a"))
    assert resp.status == 404
    error = await error_of(resp)
    assert error.type == "session_not_found" and error.context["session_id"] == "user-42"
    # ... and a call of its own with that id is a fresh session of its own.
    assert await count("tok-other-a") == 1
    # app's session is untouched, and another pod of its ServiceAccount shares it.
    assert await count("tok-app-a") == 3
    assert await count("tok-app-a-pod-2") == 4
    ended = await router.delete(session, headers=bearer("tok-app-a-pod-2"))
    assert (ended.status, await ended.json()) == (200, {"session_id": "user-42", "deleted": True})
    assert await count("tok-app-a") == 1
    assert await count("tok-other-a") == 2


async def test_ownership_holds_through_another_router(stack: Stack) -> None:
    """A router that has never seen a session (a second replica, or this one
    after a restart) finds it on the workers under its owner's key."""
    session = f"{A}/sessions/shared-id/execute"
    for router, token, count in (
        (stack.router, "tok-app-a", 1),
        (stack.router, "tok-other-a", 1),
        (stack.other_router, "tok-app-a", 2),
        (stack.other_router, "tok-other-a", 2),
        (stack.other_router, "tok-app-a-pod-2", 3),
    ):
        resp = await router.post(session, json=INCR, headers=bearer(token))
        assert (await resp.json())["result"] == {"count": count}, token
        assert resp.headers.get("X-BridgePool-Session-Rebound") is None


async def test_the_router_makes_unguessable_session_ids(stack: Stack) -> None:
    ids = set()
    for _ in range(3):
        resp = await stack.router.post(f"{A}/sessions", headers=bearer("tok-app-a"))
        assert resp.status == 201
        session_id = (await resp.json())["session_id"]
        assert check_session_id(session_id) == session_id
        assert len(session_id) * 6 >= 128  # base64url: 6 bits a character
        ids.add(session_id)
    assert len(ids) == 3
    resp = await stack.router.post(
        f"{A}/sessions/{ids.pop()}/execute", json=INCR, headers=bearer("tok-app-a")
    )
    assert (await resp.json())["result"] == {"count": 1}


async def test_warm_caches_ask_the_api_server_nothing(stack: Stack) -> None:
    for _ in range(20):
        resp = await stack.router.post(f"{A}/execute", json=PING, headers=bearer("tok-app-a"))
        assert resp.status == 200
    assert (stack.api.token_reviews, len(stack.api.access_reviews)) == (1, 1)
    review = stack.api.access_reviews[0]
    assert review["user"] == APP_A and review["uid"] == f"uid-{APP_A}"
    assert review["resourceAttributes"] == {
        "group": "bridgepool.io",
        "resource": "bridgepools",
        "verb": "create",
        "subresource": "execute",
        "namespace": "team-a",
        "name": "example",
    }


async def test_it_fails_closed_when_the_api_server_does_not_answer(stack: Stack) -> None:
    stack.api.down = True
    for token in ("tok-app-a", "tok-app-b"):
        resp = await stack.router.post(f"{A}/execute", json=PING, headers=bearer(token))
        assert resp.status == 503
        error = await error_of(resp)
        assert error.type == "auth_unavailable" and error.retryable
    stack.api.down = False
    ok = await stack.router.post(f"{A}/execute", json=PING, headers=bearer("tok-app-a"))
    assert ok.status == 200


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        ("/v1/namespaces/Team_A/pools/example/execute", 400, "invalid_name"),
        ("/v1/namespaces/team-a/pools/Ex_ample/execute", 400, "invalid_name"),
        ("/v1/namespaces/" + "a" * 64 + "/pools/example/execute", 400, "invalid_name"),
        ("/v1/namespaces/team-a/pools/nope/execute", 404, "unknown_pool"),
        (f"{A}/sessions/a%0D%0AX-Evil:%201/execute", 400, "invalid_session_id"),
        (f"{A}/sessions/{'s' * 257}/execute", 400, "invalid_session_id"),
    ],
)
async def test_bad_names_get_a_structured_4xx(
    stack: Stack, path: str, status: int, error_type: str
) -> None:
    grants = stack.api.grants
    grants |= {(APP_A, "team-a", "create", "execute")}
    resp = await stack.router.post(path, json=PING, headers=bearer("tok-app-a"))
    assert resp.status == status
    assert (await error_of(resp)).type == error_type


# -- the caches, on their own clock -------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_token_review_is_kept_for_its_time_and_never_past_its_expiry() -> None:
    api, clock = api_server(), Clock()
    wall = {"now": 1_700_000_000.0}
    authn = TokenReviewAuthenticator(
        api, cache_seconds=120, clock=clock, wall_clock=lambda: wall["now"]
    )
    assert await authn.authenticate("Bearer tok-app-a") == Caller(
        APP_A, f"uid-{APP_A}", ("system:authenticated",)
    )
    clock.now += 119
    await authn.authenticate("Bearer tok-app-a")
    assert api.token_reviews == 1
    clock.now += 1
    await authn.authenticate("Bearer tok-app-a")
    assert api.token_reviews == 2
    # A JWT that expires in 30 s is reviewed again after 30 s, not 120.
    from tests.router.test_router_access import jwt

    token = jwt({"exp": wall["now"] + 30})
    api.tokens[token] = APP_A
    await authn.authenticate(f"Bearer {token}")
    clock.now += 29
    await authn.authenticate(f"Bearer {token}")
    assert api.token_reviews == 3
    clock.now += 1
    await authn.authenticate(f"Bearer {token}")
    assert api.token_reviews == 4


async def test_concurrent_calls_with_a_new_token_share_one_review() -> None:
    api = api_server()
    authn = TokenReviewAuthenticator(api)
    callers = await asyncio.gather(*(authn.authenticate("Bearer tok-app-a") for _ in range(10)))
    assert {c.username for c in callers if c} == {APP_A} and api.token_reviews == 1


async def test_an_audience_is_required_when_one_is_set() -> None:
    authn = TokenReviewAuthenticator(api_server(), audiences=["bridgepool"])
    with pytest.raises(BridgePoolError) as caught:
        await authn.authenticate("Bearer tok-app-a")
    assert caught.value.status == 401 and "audience" in caught.value.info.message


async def test_allows_are_kept_longer_than_denies() -> None:
    api, clock = api_server(), Clock()
    authz = SubjectAccessReviewAuthorizer(
        api, allow_cache_seconds=300, deny_cache_seconds=30, clock=clock
    )
    loner = Caller(LONER_A)
    with pytest.raises(BridgePoolError):
        await authz.authorize(loner, EXECUTE, "team-a", "example")
    api.grants |= {(LONER_A, "team-a", "create", "execute")}  # a RoleBinding is made
    clock.now += 29
    with pytest.raises(BridgePoolError):  # the deny is still remembered
        await authz.authorize(loner, EXECUTE, "team-a", "example")
    clock.now += 1
    await authz.authorize(loner, EXECUTE, "team-a", "example")  # and now it is not
    api.grants.clear()  # the binding goes: the allow is kept for its time
    clock.now += 299
    await authz.authorize(loner, EXECUTE, "team-a", "example")
    clock.now += 1
    with pytest.raises(BridgePoolError):
        await authz.authorize(loner, EXECUTE, "team-a", "example")
    assert len(api.access_reviews) == 3  # deny, allow, deny: the rest came from the cache


async def test_a_failed_review_is_not_remembered() -> None:
    api = api_server()
    authz = SubjectAccessReviewAuthorizer(api)
    api.down = True
    with pytest.raises(BridgePoolError) as caught:
        await authz.authorize(Caller(APP_A), EXECUTE, "team-a", "example")
    assert caught.value.status == 503
    api.down = False
    await authz.authorize(Caller(APP_A), EXECUTE, "team-a", "example")


async def test_a_list_in_a_namespace_that_is_no_name_is_a_400(stack: Stack) -> None:
    resp = await stack.router.get("/v1/namespaces/Team_A/pools", headers=bearer("tok-app-a"))
    assert resp.status == 400
    error = await error_of(resp)
    assert error.type == "invalid_name" and "RFC 1123" in error.message
