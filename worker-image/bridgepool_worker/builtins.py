"""The built-in commands every worker has.

``ping``, ``get_stats``, ``cleanup_session``, ``reset_state`` and the
program commands (``create_program``, ``execute_program``,
``list_programs``, ``get_program_info``, ``delete_program``), which keep
programs per session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, validation_problems
from bridgepool_worker import programs
from bridgepool_worker.programs import Program, ProgramDefinition, invalid_args
from bridgepool_worker.registry import CommandRegistry
from bridgepool_worker.sdk import CommandContext
from bridgepool_worker.sessions import session_not_found

if TYPE_CHECKING:
    from bridgepool_worker.runtime import WorkerRuntime

M = TypeVar("M", bound=BaseModel)


def parse_args(model: type[M], command: str, args: dict[str, Any]) -> M:
    """Validate a built-in's args; a 400 naming each bad field."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise invalid_args(f"{command}: {validation_problems(exc)}", command=command) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingArgs(_Strict):
    # Holding a call slot on purpose is a test aid: only with faults enabled.
    sleep: float | None = Field(default=None, ge=0)


class ProgramRef(_Strict):
    program_id: str = Field(min_length=1)


class ExecuteProgramArgs(_Strict):
    program_id: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)


class CleanupArgs(_Strict):
    session_id: str | None = Field(default=None, min_length=1)


class NoArgs(_Strict):
    pass


def _session_programs(ctx: CommandContext, runtime: WorkerRuntime, command: str) -> dict[str, Any]:
    if ctx.session_id is None:
        raise BridgePoolError.make(
            ErrorCategory.SESSION,
            "session_required",
            f"{command} needs a session: send a session_id",
            status=400,
            command=command,
        )
    session = runtime.sessions.get(ctx.session_id, runtime.wall())
    if session is None:  # expired or deleted while this call ran
        raise session_not_found(ctx.session_id)
    return session.programs


def _program(table: dict[str, Any], program_id: str) -> Program:
    program = table.get(program_id)
    if not isinstance(program, Program):
        raise BridgePoolError.make(
            ErrorCategory.SESSION,
            "program_not_found",
            f"no program {program_id!r} in this session",
            status=404,
            program_id=program_id,
        )
    return program


SyncHandler = Callable[[CommandContext, dict[str, Any]], dict[str, Any]]


def on_loop(handler: SyncHandler) -> Callable[[CommandContext, dict[str, Any]], Awaitable[Any]]:
    """Run a quick sync handler on the event loop instead of a thread."""

    async def run(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        return handler(ctx, args)

    return run


def register_builtins(registry: CommandRegistry, runtime: WorkerRuntime) -> None:
    """Add the built-in commands, bound to this worker's runtime."""

    async def ping(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        # The common case, no args, skips validation: ping is the hot path.
        parsed = parse_args(PingArgs, "ping", args) if args else PingArgs()
        if parsed.sleep:
            if not runtime.config.faults_enabled:
                raise invalid_args("ping: 'sleep' needs BRIDGEPOOL_FAULTS_ENABLED=1")
            await asyncio.sleep(parsed.sleep)
        return {"pong": True, "worker": runtime.name, "time": time.time()}

    def get_stats(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        parse_args(NoArgs, "get_stats", args)
        return runtime.stats().model_dump(mode="json")

    def cleanup_session(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        target = parse_args(CleanupArgs, "cleanup_session", args).session_id or ctx.session_id
        if target is None:
            raise invalid_args("cleanup_session: give args.session_id or call in a session")
        runtime.delete_session(target)
        return {"session_id": target, "cleaned": True}

    def reset_state(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        parse_args(NoArgs, "reset_state", args)
        table = _session_programs(ctx, runtime, "reset_state")
        dropped = len(table)
        session = runtime.sessions.get(ctx.session_id or "", runtime.wall())
        assert session is not None
        session.reset()
        return {"session_id": ctx.session_id, "reset": True, "programs_dropped": dropped}

    def create_program(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        table = _session_programs(ctx, runtime, "create_program")
        definition = parse_args(ProgramDefinition, "create_program", args)
        program_id = definition.program_id or uuid.uuid4().hex[:12]
        if program_id in table:
            raise BridgePoolError.make(
                ErrorCategory.SESSION,
                "program_exists",
                f"program {program_id!r} already exists in this session",
                status=400,
                program_id=program_id,
            )
        program = programs.build_program(
            definition, program_id, runtime.config.program_backend, time.time()
        )
        table[program_id] = program
        return program.info()

    def execute_program(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        table = _session_programs(ctx, runtime, "execute_program")
        parsed = parse_args(ExecuteProgramArgs, "execute_program", args)
        program = _program(table, parsed.program_id)
        programs.check_inputs(program, parsed.inputs)
        if program.backend == "dspy":
            outputs = programs.run_dspy(program, parsed.inputs)
        else:
            outputs = programs.run_offline(program, parsed.inputs)
        program.executions += 1
        return {"program_id": program.program_id, "backend": program.backend, "outputs": outputs}

    def list_programs(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        table = _session_programs(ctx, runtime, "list_programs")
        parse_args(NoArgs, "list_programs", args)
        return {"programs": [p.info() for p in table.values()]}

    def get_program_info(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        table = _session_programs(ctx, runtime, "get_program_info")
        return _program(table, parse_args(ProgramRef, "get_program_info", args).program_id).info()

    def delete_program(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        table = _session_programs(ctx, runtime, "delete_program")
        program_id = parse_args(ProgramRef, "delete_program", args).program_id
        _program(table, program_id)
        del table[program_id]
        return {"program_id": program_id, "deleted": True}

    # Only execute_program may block (a model call), so it runs in a thread;
    # the other built-ins are quick and run on the event loop.
    handlers: dict[str, Any] = {
        "ping": ping,
        "get_stats": on_loop(get_stats),
        "cleanup_session": on_loop(cleanup_session),
        "reset_state": on_loop(reset_state),
        "create_program": on_loop(create_program),
        "execute_program": execute_program,
        "list_programs": on_loop(list_programs),
        "get_program_info": on_loop(get_program_info),
        "delete_program": on_loop(delete_program),
    }
    for name, handler in handlers.items():
        registry.add(name, handler, builtin=True, origin="bridgepool_worker.builtins")
