"""The error model: every failure a worker or the router returns is data.

An error has a category (one of nine), a type (a short machine-readable name,
e.g. ``capacity_exceeded`` or the Python exception class), a human message,
a context dict, and whether retrying the same call can help.

HTTP status codes tell a router *whose* problem a failure is:

=======  ==========================================================  ===========
status   meaning                                                     worker health
=======  ==========================================================  ===========
200      success, ``{"success": true, "result": ...}``               healthy
400      the request is malformed (bad JSON, wrong types)            not counted
404      unknown command, unknown session, unknown pool              not counted
405      wrong HTTP method                                           not counted
413      request body larger than the limit                          not counted
422      the command's handler raised: a failure in user code        not counted
500      the worker itself failed unexpectedly                       counted
502      the router could not get a usable answer from a worker      counted
503      worker not ready, at capacity, draining or terminating      counted as
         (``retryable``: another worker, or later, can help)         overload
504      the call exceeded its timeout                               counted
=======  ==========================================================  ===========

2xx and 4xx never count against a worker's health; 5xx may.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ErrorCategory(StrEnum):
    """The nine categories of failure."""

    INITIALIZATION = "initialization"
    CONNECTION = "connection"
    COMMUNICATION = "communication"
    TIMEOUT = "timeout"
    RESOURCE = "resource"
    HEALTH_CHECK = "health_check"
    SESSION = "session"
    PYTHON = "python"
    SYSTEM = "system"


class ErrorInfo(BaseModel):
    """The structured body of one failure, as it travels on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: ErrorCategory
    type: str = Field(min_length=1)
    message: str
    context: dict[str, Any] = Field(default_factory=dict)
    retryable: bool = False


class BridgePoolError(Exception):
    """An exception that carries an :class:`ErrorInfo` and the HTTP status it maps to.

    Raise it from worker or router code; the HTTP layer turns it into the
    structured error body. The Python client raises its subclasses.
    """

    def __init__(self, info: ErrorInfo, status: int = 500) -> None:
        super().__init__(f"{info.category.value}/{info.type}: {info.message}")
        self.info = info
        self.status = status

    @classmethod
    def make(
        cls,
        category: ErrorCategory,
        type_: str,
        message: str,
        *,
        status: int,
        retryable: bool = False,
        **context: Any,
    ) -> BridgePoolError:
        info = ErrorInfo(
            category=category, type=type_, message=message, context=context, retryable=retryable
        )
        return cls(info, status)

    @property
    def category(self) -> ErrorCategory:
        return self.info.category

    @property
    def retryable(self) -> bool:
        return self.info.retryable


def unauthenticated(message: str) -> BridgePoolError:
    """401: the caller is not known (no credential, or one not taken here),
    the router's callers and a worker's alike."""
    return BridgePoolError.make(ErrorCategory.COMMUNICATION, "unauthenticated", message, status=401)


def forbidden(message: str, **context: Any) -> BridgePoolError:
    """403: the caller is known, and may not do what it asked."""
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, "forbidden", message, status=403, **context
    )


def counts_against_worker(status: int) -> bool:
    """Whether an HTTP status from a worker says the *worker* is in trouble.

    Handler failures (422) and caller mistakes (4xx) never do.
    """
    return status >= 500


def error_body(err: BridgePoolError, request_id: Any = None) -> dict[str, Any]:
    """The answer to a failed call, as the worker and the router both send it."""
    return {
        "id": request_id,
        "success": False,
        "result": None,
        "error": err.info.model_dump(mode="json"),
    }


def problem_message(msg: str) -> str:
    """pydantic's message of one problem, without the ``Value error, `` it puts
    before a validator's own words."""
    return msg.removeprefix("Value error, ")


def validation_problems(exc: ValidationError, *, root: str = "", where_none: str = "body") -> str:
    """What is wrong, for a human: ``where: what`` per problem, ``; ``-joined.

    ``where`` is the field's path under ``root`` (``spec`` gives
    ``spec.minReplicas``), or ``where_none`` for the object itself. A
    validator's message that names its field already (starts with ``root.``)
    stands alone."""
    parts = []
    for err in exc.errors():
        path = ".".join(str(x) for x in err["loc"])
        where = ".".join(p for p in (root, path) if p) or where_none
        msg = problem_message(err["msg"])
        parts.append(msg if root and msg.startswith(root + ".") else f"{where}: {msg}")
    return "; ".join(parts)
