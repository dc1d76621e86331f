"""Helpers of tests/frameworks: texts, and a check that an async embedding leaves its event loop free."""
from __future__ import annotations

import asyncio

# Distinct texts of different lengths, so batching and ordering matter.
TEXTS = [f"passage {number}: " + "the quick brown fox jumps over the lazy dog " * (number % 7 + 1)
         for number in range(40)]


async def loop_turns_while(awaitable) -> tuple[object, int]:
    """Await ``awaitable`` and count how often the event loop ran another task meanwhile.

    An embedding that runs in the loop's own thread finishes within its first
    step, so the other task gets at most one turn; one that runs in a worker
    thread leaves the loop turning the whole time.
    """
    done = False
    turns = 0

    async def ticker():
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    async def work():
        nonlocal done
        try:
            return await awaitable
        finally:
            done = True

    result, _ = await asyncio.gather(work(), ticker())
    return result, turns
