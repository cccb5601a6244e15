"""The router's front door: who is calling (TokenReview) and whether they may
(SubjectAccessReview), as kube-rbac-proxy does it.

Each step sits behind a small interface with its own cache, so the call path
knows nothing of either: :class:`Authenticator` turns an Authorization header
into a :class:`~bridgepool_router.core.access.Caller` (or None when callers
are not authenticated), :class:`Authorizer` answers whether a caller may have
an :class:`~bridgepool_router.core.access.Access` on a pool.

Both fail closed: when the API server cannot answer, the call gets a
retryable 503, never an "allow". Concurrent calls with the same uncached
question share one review.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from bridgepool.errors import BridgePoolError
from bridgepool.labels import GROUP, PLURAL
from bridgepool_router import router_errors
from bridgepool_router.core import Clock
from bridgepool_router.core.access import (
    MAX_TOKEN_LENGTH,
    Access,
    BearerError,
    Caller,
    Decision,
    TtlCache,
    bearer_token,
    token_expiry,
    token_key,
)
from bridgepool_router.shared_answers import SharedAnswers

log = logging.getLogger(__name__)


# The longest Authorization header whose digest is looked up: a bearer token of
# the longest length taken, its scheme and the spaces around.
MAX_HEADER_LENGTH = MAX_TOKEN_LENGTH + 64
# How long an API server may take to answer a review before the call gets a 503.
REVIEW_TIMEOUT_SECONDS = 5.0
# A token the API server refused is remembered briefly, so a client that keeps
# sending it costs one review per this long, not one per call.
REFUSED_TOKEN_CACHE_SECONDS = 10.0


class Reviews(Protocol):
    """Where TokenReviews and SubjectAccessReviews are created: the API server."""

    async def token_review(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def subject_access_review(self, body: dict[str, Any]) -> dict[str, Any]: ...


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller, or None when callers are not authenticated; raises the 401."""


class Authorizer(Protocol):
    async def authorize(
        self, caller: Caller | None, access: Access, namespace: str, name: str | None
    ) -> None:
        """Returns if allowed; raises the 403 (denied) or 503 (no answer)."""


@dataclass(frozen=True)
class _Reviewed:
    caller: Caller | None  # None: the API server refused the token
    reason: str = ""


class TokenReviewAuthenticator:
    """Bearer tokens checked with the API server's TokenReview and cached for
    ``cache_seconds``, never past the token's own ``exp``."""

    def __init__(
        self,
        reviews: Reviews,
        *,
        audiences: Sequence[str] = (),
        cache_seconds: float = 120.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.reviews = reviews
        self.audiences = list(audiences)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self.cache: TtlCache[_Reviewed] = TtlCache()
        self._shared: SharedAnswers[_Reviewed] = SharedAnswers()

    async def authenticate(self, authorization: str | None) -> Caller | None:
        # A header seen before is found by its digest alone: the hot path
        # neither parses nor checks it again.
        key = None
        if authorization is not None and len(authorization) <= MAX_HEADER_LENGTH:
            key = token_key(authorization)
            reviewed = self.cache.get(key, self.clock())
            if reviewed is not None:
                if reviewed.caller is None:
                    raise router_errors.unauthenticated(reviewed.reason)
                return reviewed.caller
        try:
            token = bearer_token(authorization)
        except BearerError as exc:
            raise router_errors.unauthenticated(str(exc)) from None
        assert key is not None  # a header bearer_token takes is short enough
        reviewed, _ = await self._shared.once(key, lambda: self._review(token, key))
        if reviewed.caller is None:
            raise router_errors.unauthenticated(reviewed.reason)
        return reviewed.caller

    async def _review(self, token: str, key: str) -> _Reviewed:
        """Review ``token`` and keep the answer under ``key``, its header's digest."""
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = self.audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = await _asked("TokenReview", self.reviews.token_review(body))
        status = answer.get("status") or {}
        now = self.clock()
        if not status.get("authenticated"):
            reason = status.get("error") or "the token is not valid"
            reviewed = _Reviewed(None, f"the API server refused the bearer token: {reason}")
            self.cache.put(key, reviewed, now + REFUSED_TOKEN_CACHE_SECONDS, now)
            return reviewed
        if self.audiences and not set(status.get("audiences") or ()) & set(self.audiences):
            reviewed = _Reviewed(None, f"the token is not for an audience of {self.audiences}")
            self.cache.put(key, reviewed, now + REFUSED_TOKEN_CACHE_SECONDS, now)
            return reviewed
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        caller = Caller(
            username=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(x) for x in v)) for k, v in extra.items())),
        )
        if not caller.username:
            return _Reviewed(None, "the API server authenticated the token but named no user")
        expires = now + self.cache_seconds
        exp = token_expiry(token)
        if exp is not None:
            expires = min(expires, now + (exp - self.wall_clock()))
        reviewed = _Reviewed(caller)
        self.cache.put(key, reviewed, expires, now)
        return reviewed


class SubjectAccessReviewAuthorizer:
    """RBAC decisions from the API server's SubjectAccessReview, on the
    ``bridgepools`` resource of group ``bridgepool.io``. Allows are cached
    longer than denies, so a new RoleBinding takes effect soon."""

    def __init__(
        self,
        reviews: Reviews,
        *,
        allow_cache_seconds: float = 300.0,
        deny_cache_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.reviews = reviews
        self.allow_cache_seconds = allow_cache_seconds
        self.deny_cache_seconds = deny_cache_seconds
        self.clock = clock
        self.cache: TtlCache[Decision] = TtlCache()
        self._shared: SharedAnswers[Decision] = SharedAnswers()

    async def authorize(
        self, caller: Caller | None, access: Access, namespace: str, name: str | None
    ) -> None:
        if caller is None:  # an authenticator that names nobody; never the case with RBAC on
            raise router_errors.unauthenticated("the call carries no identity")
        key = (caller, access, namespace, name)
        decision = self.cache.get(key, self.clock())
        if decision is None:
            decision, _ = await self._shared.once(
                key, lambda: self._review(caller, access, namespace, name, key)
            )
        if not decision.allowed:
            raise router_errors.forbidden(caller.username, access.describe(namespace, name))

    async def _review(
        self, caller: Caller, access: Access, namespace: str, name: str | None, key: Hashable
    ) -> Decision:
        attributes: dict[str, Any] = {
            "group": GROUP,
            "resource": PLURAL,
            "verb": access.verb,
            "namespace": namespace,
        }
        if access.subresource:
            attributes["subresource"] = access.subresource
        if name:
            attributes["name"] = name
        spec: dict[str, Any] = {
            "user": caller.username,
            "groups": list(caller.groups),
            "resourceAttributes": attributes,
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        answer = await _asked("SubjectAccessReview", self.reviews.subject_access_review(body))
        status = answer.get("status") or {}
        decision = Decision(bool(status.get("allowed")), str(status.get("reason") or ""))
        ttl = self.allow_cache_seconds if decision.allowed else self.deny_cache_seconds
        now = self.clock()
        self.cache.put(key, decision, now + ttl, now)
        return decision


async def _asked(review: str, answer: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A review's answer; the retryable 503 when there is none (fail closed)."""
    try:
        async with asyncio.timeout(REVIEW_TIMEOUT_SECONDS):
            return await answer
    except BridgePoolError:
        raise
    except Exception as exc:  # the API server's error or no answer: never an allow
        log.warning("review failed", extra={"review": review, "error": repr(exc)})
        raise router_errors.auth_unavailable(review, repr(exc)) from None


class KubernetesReviews:
    """Reviews created on the API server the router runs against (in-cluster
    configuration, else the kubeconfig), through kubernetes_asyncio."""

    def __init__(self) -> None:
        self._api: Any = None

    async def open(self) -> None:
        from kubernetes_asyncio import client, config
        from kubernetes_asyncio.config import ConfigException

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            await config.load_kube_config(client_configuration=configuration)
        self._api = client.ApiClient(configuration)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()

    async def _create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._api is not None, "KubernetesReviews.open() first"
        response = await self._api.call_api(
            path,
            "POST",
            body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        async with response:
            if not 200 <= response.status < 300:
                text = (await response.text())[:500]
                raise RuntimeError(f"{path}: HTTP {response.status}: {text}")
            answer = await response.json()
        return answer if isinstance(answer, dict) else {}

    async def token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("/apis/authentication.k8s.io/v1/tokenreviews", body)

    async def subject_access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._create("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)


@dataclass(frozen=True)
class AuthSettings:
    """How the router tells who is calling (``--auth`` and its companions)."""

    mode: str = "none"  # "none" or "kubernetes"
    audiences: tuple[str, ...] = ()
    token_cache_seconds: float = 120.0
    allow_cache_seconds: float = 300.0
    deny_cache_seconds: float = 30.0
    # Where reviews are created; None: the API server (KubernetesReviews).
    reviews: Reviews | None = None


@asynccontextmanager
async def front_door(
    settings: AuthSettings, clock: Clock
) -> AsyncIterator[tuple[Authenticator | None, Authorizer | None]]:
    """The authenticator and authorizer for ``settings`` (none of either with
    ``--auth=none``), with the API client they need open for as long as the
    router runs."""
    if settings.mode == "none":
        log.warning(
            "authentication is off (--auth=none): the router takes calls from anyone "
            "who can reach it, and every caller shares one session namespace"
        )
        yield None, None
        return
    opened = None
    reviews = settings.reviews
    if reviews is None:
        reviews = opened = KubernetesReviews()
        await opened.open()
    try:
        authenticator = TokenReviewAuthenticator(
            reviews,
            audiences=settings.audiences,
            cache_seconds=settings.token_cache_seconds,
            clock=clock,
        )
        authorizer = SubjectAccessReviewAuthorizer(
            reviews,
            allow_cache_seconds=settings.allow_cache_seconds,
            deny_cache_seconds=settings.deny_cache_seconds,
            clock=clock,
        )
        log.info(
            "callers are authenticated (TokenReview) and authorized (SubjectAccessReview)",
            extra={"audiences": list(settings.audiences)},
        )
        yield authenticator, authorizer
    finally:
        if opened is not None:
            await opened.close()
