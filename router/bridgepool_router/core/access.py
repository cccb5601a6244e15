"""Who is calling and what they ask to do, in Kubernetes' own terms; the pure
half of the router's front door (the reviews themselves are in
:mod:`bridgepool_router.auth`).

A caller is the identity a TokenReview returned. What a call asks for is an
:class:`Access` on a BridgePool, the attributes a SubjectAccessReview checks,
so ``kubectl auth can-i`` answers for the router. Results are kept in a
:class:`TtlCache` for a bounded time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bridgepool.labels import GROUP, PLURAL

V = TypeVar("V")

SERVICEACCOUNT_PREFIX = "system:serviceaccount:"
# Longest bearer token read. A ServiceAccount token is one to two KB; anything
# this long is refused before it costs an API call.
MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated identity, as the API server's TokenReview gave it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Hashed once: a caller is a key of the access cache on every call.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.username, self.uid, self.groups, self.extra)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def serviceaccount_namespace(self) -> str | None:
        """The namespace of a ServiceAccount caller (``system:serviceaccount:NS:NAME``)."""
        if not self.username.startswith(SERVICEACCOUNT_PREFIX):
            return None
        namespace, sep, name = self.username.removeprefix(SERVICEACCOUNT_PREFIX).partition(":")
        return namespace if sep and namespace and name else None


@dataclass(frozen=True, slots=True)
class Access:
    """What a call asks to do to a pool: a verb, on the pool or a subresource of it."""

    verb: str
    subresource: str = ""

    def describe(self, namespace: str, name: str | None) -> str:
        """``create bridgepools/execute "example" in namespace "team-a"``, as kubectl says it."""
        resource = PLURAL + (f"/{self.subresource}" if self.subresource else "")
        what = f"{self.verb} {GROUP} {resource}"
        if name:
            what += f" {name!r}"
        return what + (f" in namespace {namespace!r}" if namespace else " at cluster scope")


EXECUTE = Access("create", "execute")
END_SESSION = Access("delete", "sessions")
GET_POOL = Access("get")
LIST_POOLS = Access("list")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


class BearerError(ValueError):
    """The Authorization header carries no usable bearer token; the message says why."""


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raises
    :class:`BearerError` naming what is wrong with anything else."""
    if header is None or not header.strip():
        raise BearerError("no Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise BearerError(f"the Authorization scheme must be Bearer, not {scheme[:20]!r}")
    token = token.strip()
    if not token:
        raise BearerError("the Authorization header says Bearer but carries no token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise BearerError(f"the bearer token is longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise BearerError("the bearer token has characters a token cannot have")
    return token


def token_key(token: str) -> str:
    """What a cache keeps instead of the token itself, where it must outlive the
    call: a digest, of no use to anyone who reads the router's memory."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (unix seconds) of a JWT, read without checking its
    signature: only to keep a cached review from outliving the token. The API
    server checked the token itself. None for a token that is not a JWT or has
    no ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


@dataclass
class TtlCache(Generic[V]):
    """A bounded map whose entries expire at a time each is given. The oldest
    entry goes first when it is full. The clock is the caller's (``now``)."""

    max_entries: int = 10_000
    _entries: OrderedDict[object, tuple[float, V]] = field(default_factory=OrderedDict)

    def get(self, key: object, now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: object, value: V, expires: float, now: float) -> None:
        if expires <= now:
            return
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
