"""What a valid name is, defined once: session ids, namespaces, pool names, and
the pool reference ``namespace/name`` that says which pool a call is for.

The router, the worker and the client check names with these functions, so a
bad name gets the same error (:func:`invalid_session_id`, :func:`invalid_name`)
wherever it is caught, with a message that names the rule.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, NamedTuple

from bridgepool.errors import BridgePoolError, ErrorCategory

# -- session ids ----------------------------------------------------------------------

SESSION_ID_MAX_LENGTH = 256
# Letters, digits and ``-._~:@+=``: characters that stand in a URL path, a
# header and a log line as they are. No ``/``, space, control character or
# non-ASCII letter, so an id never needs escaping and cannot split a header.
SESSION_ID_PUNCTUATION = "-._~:@+="
_SESSION_ID = re.compile(r"[A-Za-z0-9\-._~:@+=]+")


SESSION_ID_RULE = (
    f"a session id is 1 to {SESSION_ID_MAX_LENGTH} characters of A-Z, a-z, 0-9 "
    f"and {SESSION_ID_PUNCTUATION}"
)


# A session of a caller the router authenticated is kept on the workers under a
# key that carries its owner: a tag of the owner's identity, a dot, the id.
# Another identity using the same id makes a key of its own, so it can neither
# reach nor detect the first one's session, and the key travels with the
# session wherever it goes (moves, router restarts, other routers).
OWNER_TAG_LENGTH = 32  # hex digits: 128 bits of SHA-256
_OWNER_TAG = re.compile(rf"[0-9a-f]{{{OWNER_TAG_LENGTH}}}\.")


def session_id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a session id, or None if nothing is."""
    if (
        isinstance(value, str)
        and len(value) <= SESSION_ID_MAX_LENGTH
        and _SESSION_ID.fullmatch(value)
    ):
        return None
    if not isinstance(value, str):
        return f"{SESSION_ID_RULE}; got a {type(value).__name__}"
    if not value:
        return f"{SESSION_ID_RULE}; got an empty id"
    if len(value) > SESSION_ID_MAX_LENGTH:
        return f"{SESSION_ID_RULE}; got {len(value)} characters"
    bad = next(c for c in value if _SESSION_ID.fullmatch(c) is None)
    return f"{SESSION_ID_RULE}; got the character {bad!r}"


def session_key_problem(value: object) -> str | None:
    """What is wrong with ``value`` as the key a worker keeps a session under: a
    session id, or one behind its owner's tag (:func:`owned_session_key`)."""
    if isinstance(value, str) and _OWNER_TAG.match(value):
        value = value[OWNER_TAG_LENGTH + 1 :]
    return session_id_problem(value)


def invalid_session_id(problem: str, value: object) -> BridgePoolError:
    shown = value[:64] + "..." if isinstance(value, str) and len(value) > 64 else value
    return BridgePoolError.make(
        ErrorCategory.SESSION, "invalid_session_id", problem, status=400, session_id=shown
    )


def check_call_id(value: str) -> str:
    """A session call's id (``X-BridgePool-Call-Id``): the characters and
    length of a session id; else the 400 ``invalid_call_id``."""
    problem = session_id_problem(value)
    if problem is None:
        return value
    raise BridgePoolError.make(
        ErrorCategory.SESSION,
        "invalid_call_id",
        "X-BridgePool-Call-Id: " + problem.replace("a session id", "a call id"),
        status=400,
    )


def check_session_id(value: object) -> str:
    """``value`` if it is a valid session id, else the 400 ``invalid_session_id``."""
    problem = session_id_problem(value)
    if problem is not None:
        raise invalid_session_id(problem, value)
    assert isinstance(value, str)
    return value


@functools.lru_cache(maxsize=4096)  # a few callers make most calls
def owner_tag(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:OWNER_TAG_LENGTH]


def owned_session_key(owner: str | None, session_id: str) -> str:
    """The key a session is kept under on the workers: the id itself when callers
    are not authenticated, else the id behind its owner's tag."""
    return session_id if owner is None else f"{owner_tag(owner)}.{session_id}"


# -- Kubernetes names -----------------------------------------------------------------

# A namespace is an RFC 1123 label; a pool's name is also a label value on its
# worker pods, so it keeps to 63 characters as well.
NAME_MAX_LENGTH = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_POOL_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
NAMESPACE_RULE = (
    f"a namespace is 1 to {NAME_MAX_LENGTH} characters of a-z, 0-9 and '-', "
    "starting and ending with a letter or digit (RFC 1123 label)"
)
POOL_NAME_RULE = (
    f"a pool name is 1 to {NAME_MAX_LENGTH} characters of a-z, 0-9, '-' and '.', "
    "starting and ending with a letter or digit"
)
DEFAULT_NAMESPACE = "default"


def _name_problem(value: str, pattern: re.Pattern[str], rule: str) -> str | None:
    if len(value) > NAME_MAX_LENGTH:
        return f"{rule}; got {len(value)} characters"
    if pattern.fullmatch(value) is None:
        return f"{rule}; got {value!r}"
    return None


def namespace_problem(value: str) -> str | None:
    return _name_problem(value, _DNS_LABEL, NAMESPACE_RULE)


def pool_name_problem(value: str) -> str | None:
    return _name_problem(value, _POOL_NAME, POOL_NAME_RULE)


def invalid_name(problem: str, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, "invalid_name", problem, status=400, **context
    )


class PoolRef(NamedTuple):
    """Which pool: a namespace and a name, as everywhere in Kubernetes. A tuple:
    it is looked up on every call, and a tuple hashes and compares fastest."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def checked(cls, namespace: str, name: str) -> PoolRef:
        """The reference, or the 400 ``invalid_name`` naming the rule broken."""
        problem = namespace_problem(namespace)
        if problem is not None:
            raise invalid_name(problem, namespace=namespace[:64])
        problem = pool_name_problem(name)
        if problem is not None:
            raise invalid_name(problem, pool=name[:64])
        return cls(namespace, name)

    @classmethod
    def parse(cls, text: str, default_namespace: str = DEFAULT_NAMESPACE) -> PoolRef:
        """``NAMESPACE/POOL``, or a bare ``POOL`` in ``default_namespace``."""
        namespace, sep, name = text.rpartition("/")
        return cls.checked(namespace if sep else default_namespace, name)
