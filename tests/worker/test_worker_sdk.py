"""User handler modules through the SDK, loaded by a real worker process."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from bridgepool.protocol import HEADER_TIMEOUT

from .conftest import Workers

HANDLERS = textwrap.dedent(
    """
    import asyncio
    import threading
    import time
    from typing import Any

    from bridgepool.errors import BridgePoolError, ErrorCategory
    from bridgepool_worker import CommandContext, command


    @command
    def count(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        assert ctx.state is not None
        ctx.state["n"] = ctx.state.get("n", 0) + args.get("by", 1)
        return {"n": ctx.state["n"], "session": ctx.session_id,
                "thread": threading.current_thread().name}


    @command("whoami")
    async def who(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        ctx.logger.info("whoami called")
        return {"worker": ctx.worker, "anonymous": ctx.state is None, "args": ctx.args}


    @command
    def divide(ctx: CommandContext, args: dict[str, Any]) -> float:
        return args["a"] / args["b"]


    @command
    async def refuse(ctx: CommandContext, args: dict[str, Any]) -> None:
        raise BridgePoolError.make(
            ErrorCategory.RESOURCE, "quota", "out of quota", status=503, retryable=True
        )


    @command
    def nap(ctx: CommandContext, args: dict[str, Any]) -> str:
        time.sleep(args["seconds"])
        return "rested"


    @command
    def unencodable(ctx: CommandContext, args: dict[str, Any]) -> object:
        return object()
    """
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_handlers_sync_and_async_with_session_state(workers: Workers, tmp_path: Path) -> None:
    module = write(tmp_path, "my_handlers.py", HANDLERS)
    worker = workers.start(
        env={"BRIDGEPOOL_WORKER_NAME": "sdk-worker"}, args=["--handlers", str(module)]
    )

    first = worker.result("count", session_id="s1")
    second = worker.result("count", {"by": 5}, session_id="s1")
    other = worker.result("count", session_id="s2")
    assert (first["n"], second["n"], other["n"]) == (1, 6, 1)
    assert first["thread"].startswith("handler")  # sync handlers run off the loop

    who = worker.result("whoami", {"x": 1})
    assert who == {"worker": "sdk-worker", "anonymous": True, "args": {"x": 1}}
    assert "whoami called" in worker.logs()

    worker.result("reset_state", session_id="s1")
    assert worker.result("count", session_id="s1")["n"] == 1


def test_handler_failures_map_to_structured_errors(workers: Workers, tmp_path: Path) -> None:
    module = write(tmp_path, "my_handlers.py", HANDLERS)
    worker = workers.start(env={"BRIDGEPOOL_WORKER_HANDLERS": str(module)})

    failed = worker.call("divide", {"a": 1, "b": 0})
    assert failed.status_code == 422
    error = failed.json()["error"]
    assert (error["category"], error["type"]) == ("python", "ZeroDivisionError")
    assert error["message"] == "division by zero"
    assert "Traceback" not in failed.text

    refused = worker.call("refuse")
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "quota"

    unencodable = worker.call("unencodable")
    assert unencodable.status_code == 422
    assert unencodable.json()["error"]["type"] == "unserializable_result"

    assert worker.result("divide", {"a": 6, "b": 3}) == 2  # the worker lives on
    stats = worker.get("/v1/stats").json()
    assert stats["errors_by_category"] == {"python": 2, "resource": 1}
    assert stats["state"] == "ready"


def test_a_sync_handler_past_its_timeout_holds_its_slot_until_it_ends(
    workers: Workers, tmp_path: Path
) -> None:
    module = write(tmp_path, "my_handlers.py", HANDLERS)
    worker = workers.start(args=["--handlers", str(module)])

    late = worker.call("nap", {"seconds": 0.8}, headers={HEADER_TIMEOUT: "0.2"})
    assert late.status_code == 504
    # The thread still runs: the worker is honest that its one slot is taken.
    assert worker.get("/v1/stats").json()["in_flight"] == 1
    assert worker.call("ping").json()["error"]["type"] == "capacity_exceeded"
    deadline = time.monotonic() + 5
    while worker.get("/v1/stats").json()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.result("nap", {"seconds": 0}) == "rested"


def test_handlers_by_module_path(workers: Workers, tmp_path: Path) -> None:
    package = tmp_path / "pkg_handlers"
    package.mkdir()
    write(package, "__init__.py", "")
    write(package, "commands.py", HANDLERS)
    worker = workers.start(
        env={"PYTHONPATH": str(tmp_path)}, args=["--handlers", "pkg_handlers.commands"]
    )
    assert worker.result("divide", {"a": 1, "b": 4}) == 0.25


BROKEN = {
    "raises on import": ("raise RuntimeError('no database')\n", "RuntimeError: no database"),
    "syntax error": ("def (:\n", "SyntaxError"),
    "shadows a built-in": (
        "from bridgepool_worker import command\n@command('ping')\ndef p(ctx, args): ...\n",
        "'ping' is already a built-in command",
    ),
    "no handlers": ("X = 1\n", "no @command handlers"),
}


def test_a_bad_handler_module_stops_the_worker_before_it_listens(
    workers: Workers, tmp_path: Path
) -> None:
    for case, (text, message) in BROKEN.items():
        module = write(tmp_path, f"broken_{len(message)}.py", text)
        run = workers.run_to_exit(args=["--handlers", str(module)])
        assert run.returncode == 3, case
        assert message in run.stderr, (case, run.stderr)

    missing = workers.run_to_exit(args=["--handlers", "no_such_module_anywhere"])
    assert missing.returncode == 3
    assert "ModuleNotFoundError" in missing.stderr


def test_two_modules_may_not_define_the_same_command(workers: Workers, tmp_path: Path) -> None:
    a = write(tmp_path, "a_handlers.py", HANDLERS)
    b = write(tmp_path, "b_handlers.py", HANDLERS)
    run = workers.run_to_exit(args=["--handlers", str(a), str(b)])
    assert run.returncode == 3
    assert "already a command of" in run.stderr


def test_bad_settings_exit_2_naming_the_variable(workers: Workers) -> None:
    run = workers.run_to_exit(env={"BRIDGEPOOL_WORKER_CAPACITY": "many"})
    assert run.returncode == 2
    assert "BRIDGEPOOL_WORKER_CAPACITY='many'" in run.stderr
    run = workers.run_to_exit(args=["--port", "-1"])
    assert run.returncode == 2


def test_example_handlers_load(workers: Workers) -> None:
    examples = Path(__file__).parents[2] / "examples" / "worker_handlers.py"
    worker = workers.start(args=["--handlers", str(examples)])
    assert worker.result("echo", {"x": [1, 2]}) == {"x": [1, 2]}
    assert worker.result("incr", session_id="e")["count"] == 1
    assert worker.result("incr", {"by": 2}, session_id="e")["count"] == 3
    assert worker.call("incr").status_code == 422
    assert worker.call("fail", {"message": "no"}).json()["error"]["message"] == "no"
