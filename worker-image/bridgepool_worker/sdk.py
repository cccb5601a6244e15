"""The command SDK: what a handler module uses.

.. code-block:: python

    from bridgepool_worker import CommandContext, command

    @command
    def greet(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        count = ctx.state["greeted"] = ctx.state.get("greeted", 0) + 1  # per session
        return {"hello": args.get("name", "world"), "times": count}

    @command("fetch")
    async def fetch_thing(ctx: CommandContext, args: dict[str, Any]) -> str: ...

Sync handlers run in a thread, so they may block; async ones run on the
event loop. Raise :class:`bridgepool.errors.BridgePoolError` for a failure
with its own category and status; any other exception becomes a 422
``python`` error naming the exception type and message.

A session can move to another worker (see :mod:`bridgepool_worker.moves`).
Each key of its state moves as its JSON value, when JSON gives that value
back unchanged. For any other value, declare hooks for its key:

.. code-block:: python

    @state_exporter("model")
    def save_model(value: Model) -> Any:  # -> a JSON value; or refuse the move
        if value.training:
            raise MoveRefused("the model is training")
        return value.to_dict()

    @state_importer("model")
    def load_model(data: Any) -> Model:  # on the new worker, before the session is live
        return Model.from_dict(data)

Hooks are sync and run in a thread while the session is frozen (no call of
it runs). An exporter without an importer moves its JSON as it is; an
importer without an exporter reads the key's plain JSON value.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

# The attribute @command sets on a handler; the loader finds handlers by it,
# so importing a module twice (or in two apps) registers nothing globally.
COMMAND_ATTR = "__bridgepool_command__"
# The attribute @state_exporter/@state_importer set: ("export" | "import", key).
STATE_HOOK_ATTR = "__bridgepool_state_hook__"


@dataclass(frozen=True)
class CommandContext:
    """What a handler knows about its call."""

    session_id: str | None
    # The session's own mutable state; None for an anonymous call.
    state: dict[str, Any] | None
    args: dict[str, Any]
    worker: str
    logger: logging.Logger
    # This call's time budget in seconds (the worker's call timeout, or less if
    # the caller asked for less): pass it on to whatever the handler waits for.
    timeout_seconds: float


Handler = Callable[[CommandContext, dict[str, Any]], Any | Awaitable[Any]]
H = TypeVar("H", bound=Callable[..., Any])


@overload
def command(name_or_handler: H) -> H: ...


@overload
def command(name_or_handler: str | None = None) -> Callable[[H], H]: ...


def command(name_or_handler: str | H | None = None) -> H | Callable[[H], H]:
    """Mark a function as a worker command, named after it or as given."""

    def mark(handler: H, name: str) -> H:
        setattr(handler, COMMAND_ATTR, name)
        return handler

    if callable(name_or_handler):
        return mark(name_or_handler, name_or_handler.__name__)
    explicit = name_or_handler

    def decorator(handler: H) -> H:
        return mark(handler, explicit or handler.__name__)

    return decorator


class MoveRefused(Exception):
    """Raised by a state exporter: this session cannot move now. The export
    fails with a 422 ``move_refused`` error carrying the message as its reason,
    and the session stays where it is, unchanged."""


StateHook = Callable[[Any], Any]
S = TypeVar("S", bound=StateHook)


def _state_hook(direction: str, key: str) -> Callable[[S], S]:
    if not isinstance(key, str) or not key:
        raise TypeError(f"@state_{direction}er needs the state key it handles, a string")

    def mark(hook: S) -> S:
        setattr(hook, STATE_HOOK_ATTR, (direction, key))
        return hook

    return mark


def state_exporter(key: str) -> Callable[[S], S]:
    """Mark ``hook(value) -> JSON value`` as how ``state[key]`` leaves on a move."""
    return _state_hook("export", key)


def state_importer(key: str) -> Callable[[S], S]:
    """Mark ``hook(JSON value) -> value`` as how ``state[key]`` is rebuilt on the
    worker a session moved to."""
    return _state_hook("import", key)
