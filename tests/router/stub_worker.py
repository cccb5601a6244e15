"""A small worker speaking the worker protocol, for router tests before (and
beside) the real worker: run as ``python stub_worker.py --port P``.

Commands: ``ping``; ``echo`` (returns args); ``sleep`` (args.seconds);
``incr`` (a per-session counter: shows where a session's state lives);
``headers`` (the call budget received); ``fail`` (a handler error, 422);
``crash500`` (a worker error, 500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from aiohttp import web

from bridgepool.protocol import (
    Readiness,
    SessionInfo,
    SessionsResponse,
    WorkerState,
)

NAME = web.AppKey("name", str)
CAPACITY = web.AppKey("capacity", int)
STATE = web.AppKey("state", dict[str, Any])


def _error(
    status: int, category: str, type_: str, message: str, retryable: bool = False
) -> web.Response:
    body = {
        "id": None,
        "success": False,
        "result": None,
        "error": {
            "category": category,
            "type": type_,
            "message": message,
            "context": {},
            "retryable": retryable,
        },
    }
    return web.json_response(body, status=status)


async def execute(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = json.loads(await request.read())
    if state["in_flight"] >= request.app[CAPACITY]:
        return _error(503, "resource", "capacity_exceeded", "busy", retryable=True)
    state["in_flight"] += 1
    state["requests"] += 1
    try:
        command, args, sid = body["command"], body.get("args") or {}, body.get("session_id")
        if sid is not None:
            now = time.time()
            session = state["sessions"].setdefault(sid, {"created": now, "count": 0})
            session["last"] = now
        if command == "ping":
            result: Any = {"pong": True, "worker": request.app[NAME]}
        elif command == "echo":
            result = args
        elif command == "sleep":
            await asyncio.sleep(float(args.get("seconds", 0)))
            result = {"slept": args.get("seconds", 0)}
        elif command == "incr":
            session = state["sessions"][sid]
            session["count"] += 1
            result = {"count": session["count"]}
        elif command == "headers":
            result = {"timeout": request.headers.get("X-BridgePool-Timeout")}
        elif command == "fail":
            return _error(422, "python", "ValueError", "handler failed")
        elif command == "crash500":
            return _error(500, "system", "internal", "worker broke")
        else:
            return _error(404, "python", "unknown_command", f"unknown command {command}")
        resp = {"id": body.get("id"), "success": True, "result": result, "error": None}
        return web.json_response(resp, headers={"X-BridgePool-Worker": request.app[NAME]})
    finally:
        state["in_flight"] -= 1


async def readyz(request: web.Request) -> web.Response:
    ready = Readiness(
        worker=request.app[NAME],
        ready=True,
        state=WorkerState.READY,
        capacity=request.app[CAPACITY],
        in_flight=request.app[STATE]["in_flight"],
        accepting_sessions=True,
    )
    return web.json_response(ready.model_dump(mode="json"))


async def sessions(request: web.Request) -> web.Response:
    now = time.time()
    infos = [
        SessionInfo(
            session_id=sid,
            created_at=s["created"],
            last_activity=s["last"],
            idle_seconds=now - s["last"],
            expires_in_seconds=300,
        )
        for sid, s in request.app[STATE]["sessions"].items()
    ]
    listing = SessionsResponse(worker=request.app[NAME], sessions=infos)
    return web.json_response(listing.model_dump(mode="json"))


async def delete_session(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    if request.app[STATE]["sessions"].pop(sid, None) is None:
        return _error(404, "session", "session_not_found", sid)
    return web.json_response({"deleted": sid})


def create_app(name: str, capacity: int) -> web.Application:
    app = web.Application()
    app[NAME] = name
    app[CAPACITY] = capacity
    app[STATE] = {"in_flight": 0, "requests": 0, "sessions": {}}
    app.router.add_post("/v1/execute", execute)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/sessions", sessions)
    app.router.add_delete("/v1/sessions/{sid}", delete_session)
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--capacity", type=int, default=int(os.environ.get("STUB_CAPACITY", "8")))
    a = p.parse_args()
    web.run_app(create_app(f"stub-{a.port}", a.capacity), host=a.host, port=a.port, print=None)
