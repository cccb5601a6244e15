"""Session calls through the router run once: the router gives each one a
call id (or passes the caller's on), so a call whose answer was lost on the
way back is retried on its worker and answered there from what the first
attempt did. Real router and worker processes; between them a proxy that
can lose one answer, as a connection the worker closes under the router's
feet would."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator

import httpx
import pytest

from bridgepool.protocol import HEADER_CALL_ID
from tests.router.conftest import FAST_ROUTING, Processes, free_port
from tests.router.test_router_processes import incr


class LosingProxy:
    """Relays HTTP/1.1 requests to a worker, one at a time per connection;
    when armed, it lets the next ``/v1/execute`` reach the worker and then
    closes the caller's connection instead of handing the answer back."""

    def __init__(self, worker_port: int) -> None:
        self.worker_port = worker_port
        self.port = free_port()
        self.armed = threading.Event()
        self.lost = 0
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        self.started.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        self.loop.call_soon(self.loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port)
        )
        self.started.set()
        self.loop.run_forever()

    @staticmethod
    async def _message(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        return head + await reader.readexactly(int(length.group(1)) if length else 0)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        worker_r, worker_w = await asyncio.open_connection("127.0.0.1", self.worker_port)
        try:
            while True:
                request = await self._message(client_r)
                worker_w.write(request)
                answer = await self._message(worker_r)
                if request.startswith(b"POST /v1/execute") and self.armed.is_set():
                    self.armed.clear()
                    self.lost += 1
                    client_w.transport.abort()  # the answer never comes back
                    return
                client_w.write(answer)
                await client_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            worker_w.close()
            with contextlib.suppress(ConnectionError):
                client_w.close()


@pytest.fixture
def router_via_proxy(procs: Processes) -> Iterator[tuple[str, LosingProxy]]:
    worker = procs.worker()
    with LosingProxy(worker.port) as proxy:
        entry = {"workers": [{"name": "w", "url": proxy.url}], "routing": FAST_ROUTING}
        router = procs.router(procs.write_pools({"demo": entry}))
        yield router.url, proxy


def count(answer: httpx.Response) -> int:
    assert answer.status_code == 200, answer.text
    return int(answer.json()["result"]["count"])


def test_a_session_call_whose_answer_was_lost_is_retried_and_runs_once(
    router_via_proxy: tuple[str, LosingProxy],
) -> None:
    router, proxy = router_via_proxy
    assert count(incr(router, "s")) == 1
    proxy.armed.set()
    # The worker counted to 2, the answer was lost: the router asks again with
    # the same call id and gets the kept answer, not a 502.
    assert count(incr(router, "s")) == 2
    assert proxy.lost == 1
    assert count(incr(router, "s")) == 3  # it ran once


def test_a_callers_call_id_makes_its_own_retry_safe(
    router_via_proxy: tuple[str, LosingProxy],
) -> None:
    router, _ = router_via_proxy
    url = f"{router}/v1/namespaces/default/pools/demo/sessions/s/execute"
    call = {"command": "incr"}
    first = httpx.post(url, json=call, headers={HEADER_CALL_ID: "order-17"})
    again = httpx.post(url, json=call, headers={HEADER_CALL_ID: "order-17"})
    assert count(first) == count(again) == 1
    assert again.headers.get("X-BridgePool-Replayed") == "true"
    refused = httpx.post(url, json=call, headers={HEADER_CALL_ID: "not/valid"})
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_call_id"
