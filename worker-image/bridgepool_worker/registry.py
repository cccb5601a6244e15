"""Commands by name: the built-ins plus the user's handler modules, and the
modules' session state hooks by state key.

Loading happens before the worker listens; any failure (a module that does
not import, a name that shadows a built-in or another handler, a state key
two modules hook) raises :class:`HandlerLoadError`, so the worker never
starts half-configured.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from bridgepool_worker.sdk import COMMAND_ATTR, STATE_HOOK_ATTR, Handler, StateHook


class HandlerLoadError(Exception):
    """A handler module could not be loaded; the message says which and why."""


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    is_async: bool
    builtin: bool
    origin: str  # module the command came from, for error messages
    logger: logging.Logger  # handed to the handler in its context


@dataclass(frozen=True)
class StateHooks:
    """How state keys leave and arrive on a move, by key (see :mod:`bridgepool_worker.sdk`)."""

    exporters: dict[str, StateHook]
    importers: dict[str, StateHook]
    origins: dict[tuple[str, str], str]  # (direction, key) -> module, for messages


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self.state_hooks = StateHooks({}, {}, {})

    def add_state_hook(self, direction: str, key: str, hook: StateHook, *, origin: str) -> None:
        table = self.state_hooks.exporters if direction == "export" else self.state_hooks.importers
        existing = self.state_hooks.origins.get((direction, key))
        if existing is not None:
            raise HandlerLoadError(
                f"{origin}: state key {key!r} already has an {direction}er, in {existing}"
            )
        table[key] = hook
        self.state_hooks.origins[(direction, key)] = origin

    def add(self, name: str, handler: Handler, *, builtin: bool, origin: str) -> None:
        existing = self._commands.get(name)
        if existing is not None:
            what = "a built-in command" if existing.builtin else f"a command of {existing.origin}"
            raise HandlerLoadError(f"{origin}: command {name!r} is already {what}")
        is_async = inspect.iscoroutinefunction(handler)
        logger = logging.getLogger(f"bridgepool_worker.commands.{name}")
        self._commands[name] = Command(name, handler, is_async, builtin, origin, logger)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def load_modules(self, specs: Iterable[str]) -> None:
        for spec in specs:
            module = import_handler_module(spec)
            found = 0
            for value in vars(module).values():
                # Only handlers and hooks defined here, not ones the module imported.
                if getattr(value, "__module__", None) != module.__name__:
                    continue
                name = getattr(value, COMMAND_ATTR, None)
                if isinstance(name, str):
                    self.add(name, value, builtin=False, origin=spec)
                    found += 1
                hook = getattr(value, STATE_HOOK_ATTR, None)
                if isinstance(hook, tuple):
                    self.add_state_hook(hook[0], hook[1], value, origin=spec)
                    found += 1
            if found == 0:
                raise HandlerLoadError(
                    f"{spec}: no @command handlers or state hooks found in the module"
                )


def import_handler_module(spec: str) -> ModuleType:
    """Import a handler module by dotted path or by ``.py`` file path."""
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise HandlerLoadError(f"{spec}: no such handler file")
            name = f"bridgepool_handlers_{path.stem}"
            file_spec = importlib.util.spec_from_file_location(name, path)
            if file_spec is None or file_spec.loader is None:
                raise HandlerLoadError(f"{spec}: cannot be loaded as a Python module")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            file_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except HandlerLoadError:
        raise
    except Exception as exc:
        raise HandlerLoadError(f"{spec}: import failed: {type(exc).__name__}: {exc}") from exc
