"""The line of calls waiting for a call slot (slots.py), on a real event loop."""

from __future__ import annotations

import asyncio

from bridgepool_worker.slots import SlotLine


def test_slots_go_to_the_calls_in_the_order_they_came() -> None:
    async def scenario() -> list[str]:
        line = SlotLine(3, give_back=lambda: None)
        served: list[str] = []

        async def call(name: str) -> None:
            if await line.wait(10):
                served.append(name)

        tasks = []
        for name in ("first", "second", "third"):
            tasks.append(asyncio.create_task(call(name)))
            await asyncio.sleep(0)  # it is in line before the next one comes
        assert len(line) == 3 and line.full
        for _ in tasks:
            assert line.hand_over()
            await asyncio.sleep(0)  # the call served takes its slot
        assert not line.hand_over()
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(scenario()) == ["first", "second", "third"]


def test_a_call_whose_time_ran_out_leaves_the_line_and_is_passed_over() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        line = SlotLine(2, give_back=lambda: None)
        impatient = asyncio.create_task(line.wait(0.01))
        patient = asyncio.create_task(line.wait(10))
        timed_out = await impatient
        handed = line.hand_over()
        return timed_out, handed and await patient, len(line)

    assert asyncio.run(scenario()) == (False, True, 0)


def test_a_call_cancelled_just_after_a_slot_was_handed_to_it_gives_the_slot_back() -> None:
    given_back: list[int] = []

    async def scenario() -> bool:
        line = SlotLine(1, give_back=lambda: given_back.append(1))
        waiter = asyncio.create_task(line.wait(10))
        await asyncio.sleep(0)
        assert line.hand_over()
        waiter.cancel()  # the client went away before the call could use its slot
        try:
            await waiter
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario()) is True
    assert given_back == [1]


def test_nobody_waiting_means_nothing_is_handed_over() -> None:
    line = SlotLine(1, give_back=lambda: None)
    assert not line.hand_over() and len(line) == 0 and not line.full
