"""The steps every pool route takes before its handler, in the order
kube-rbac-proxy takes them: who is calling (the :class:`Authenticator`), which
pool the path names (``/v1/namespaces/{namespace}/pools/{pool}``, or the short
``/v1/pools/{pool}`` resolved as kubectl resolves its default namespace), and
whether the caller may have the route's :class:`Access` on it (the
:class:`Authorizer`). What comes out is an :class:`Admitted`: the handlers know
the caller and the pool, and nothing of how either was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridgepool.names import (
    DEFAULT_NAMESPACE,
    PoolRef,
    check_session_id,
    invalid_name,
    namespace_problem,
    owned_session_key,
    pool_name_problem,
)
from bridgepool_router import router_errors
from bridgepool_router.auth import Authenticator, Authorizer
from bridgepool_router.core.access import Access, Caller
from bridgepool_router.registry import PoolRegistry


@dataclass(frozen=True, slots=True)
class Admitted:
    """What the front door found out, for the handler behind it."""

    caller: Caller | None  # None: callers are not authenticated (--auth=none)
    pool: PoolRef | None  # None on the list routes
    namespace: str | None  # the namespace the call is in; None: a list of every namespace

    def session_key(self, session_id: str) -> str:
        """``session_id``, checked, as the key its session has on the workers:
        its owner's, so another caller's same id is another session."""
        check_session_id(session_id)
        return owned_session_key(self.caller.username if self.caller else None, session_id)


@dataclass
class FrontDoor:
    registry: PoolRegistry
    # None: callers are not authenticated (--auth=none), and every call is allowed.
    authenticator: Authenticator | None = None
    authorizer: Authorizer | None = None

    @property
    def open(self) -> bool:
        """Whether anyone may call (``--auth=none``): :meth:`resolve` is all there is."""
        return self.authenticator is None and self.authorizer is None

    async def admit(
        self, authorization: str | None, path: Mapping[str, str], access: Access
    ) -> Admitted:
        """Admit a call with this Authorization header to the route whose path
        had these parameters, or raise the 400, 401, 403, 409 or 503 saying why not."""
        caller = None
        if self.authenticator is not None:
            caller = await self.authenticator.authenticate(authorization)
        admitted = self.resolve(caller, path)
        if self.authorizer is not None:
            name = admitted.pool.name if admitted.pool else None
            await self.authorizer.authorize(caller, access, admitted.namespace or "", name)
        return admitted

    def resolve(self, caller: Caller | None, path: Mapping[str, str]) -> Admitted:
        """Which pool (or, on a list route, which namespace) the path names."""
        name = path.get("pool")
        namespace = path.get("namespace")
        ref: PoolRef | None = None
        if name is not None:
            if namespace is None:
                namespace = self._short_form_namespace(caller, name)
            ref = self._pool_ref(namespace, name)
        elif namespace is not None:  # a list in one namespace
            problem = namespace_problem(namespace)
            if problem is not None:
                raise invalid_name(problem, namespace=namespace[:64])
        elif caller is not None:  # a list in the short form: the caller's own namespace
            namespace = caller.serviceaccount_namespace
        return Admitted(caller, ref, namespace)

    def _short_form_namespace(self, caller: Caller | None, name: str) -> str:
        """The namespace of ``/v1/pools/{pool}``, as kubectl picks a default one: a
        ServiceAccount's own namespace, ``default`` for another known caller; with
        no authentication, the one namespace that has such a pool (409 if several)."""
        if caller is not None:
            return caller.serviceaccount_namespace or DEFAULT_NAMESPACE
        problem = pool_name_problem(name)
        if problem is not None:
            raise invalid_name(problem, pool=name[:64])
        namespaces = self.registry.namespaces_with(name)
        if len(namespaces) > 1:
            raise router_errors.ambiguous_pool(name, namespaces)
        return namespaces[0] if namespaces else DEFAULT_NAMESPACE

    def _pool_ref(self, namespace: str, name: str) -> PoolRef:
        """The pool's reference; names no pool has must be valid Kubernetes names
        (the ones discovery delivered were checked when they came)."""
        ref = PoolRef(namespace, name)
        if ref in self.registry.pools:
            return ref
        return PoolRef.checked(namespace, name)
