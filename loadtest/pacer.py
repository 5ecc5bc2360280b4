"""One timer for every synthetic publisher of a load-generator process.

A publisher sends a video frame every 33 ms and an audio frame every 20 ms; with a task (or
timer) per stream, 50 participants wake the event loop 4,000 times a second, each wake-up
costing a task step and a coroutine resume: a large share of the generator's CPU that a browser
never spends on the server's behalf. The ``Pacer`` wakes every ``PERIOD_S`` and calls each
registered participant with the loop time; the participant sends what is due (its own phase,
random, so that publishers do not all send in the same tick, as browsers do not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

PERIOD_S = 0.005


class Pacer:
    """Calls every registered ``callback(now)`` every ``period`` seconds (loop time)."""

    def __init__(self, period: float = PERIOD_S) -> None:
        self.period = period
        self._callbacks: dict[int, Callable[[float], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.errors = 0

    def add(self, key: Any, callback: Callable[[float], None]) -> None:
        self._callbacks[id(key)] = callback
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def remove(self, key: Any) -> None:
        self._callbacks.pop(id(key), None)
        if not self._callbacks and self._task is not None:
            self._task.cancel()
            self._task = None

    def __len__(self) -> int:
        return len(self._callbacks)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._callbacks:
            now = loop.time()
            for callback in list(self._callbacks.values()):
                try:
                    callback(now)
                except Exception:  # one participant's failure must not stop the others
                    self.errors += 1
                    if self.errors <= 3:
                        logger.exception("paced sender failed")
            self.ticks += 1
            due += self.period
            if due < loop.time():
                due = loop.time()  # a starved loop: carry on from now, no burst
            await asyncio.sleep(due - loop.time())

    async def close(self) -> None:
        self._callbacks.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
