"""One beat for every synthetic participant of a load-generator process.

A publisher sends a video frame every 33 ms and an audio frame every 20 ms, and a subscriber
answers like a browser (NACK retries, receiver reports, REMB) every 100-500 ms; with a task or
timer per stream and per participant, 50 participants wake the event loop thousands of times
a second, each wake-up costing a task step and a coroutine resume: CPU a browser never spends
on the server's behalf. The ``Pacer`` wakes every ``PERIOD_S`` and on each beat:

1. reads every subscriber socket of the process (its ``ReceiveHub``, ``loadtest/hub.py``):
   what arrived since the last beat, in a few ``recvmmsg`` calls;
2. calls each registered participant with the loop time; the participant sends what is due
   (its own phase, random, so that publishers do not all send in the same beat, as browsers
   do not) and runs its receiver's timers when due;
3. sends the beat's packets: with the compiled fan-out (``sfu.native``) every publisher's
   packets of this beat are SRTP-protected and sent in one C call (``queue_rtp`` adds them to
   ``batch``); without it each was sent when queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from loadtest.hub import PolledTransport, ReceiveHub
from sfu import native

logger = logging.getLogger(__name__)

PERIOD_S = 0.005


class Pacer:
    """Calls every registered ``callback(now)`` every ``period`` seconds (loop time), after
    reading the hub's sockets and before sending the batch the callbacks queued."""

    def __init__(self, period: float = PERIOD_S, hub: ReceiveHub | None = None) -> None:
        self.period = period
        self.hub = hub if hub is not None else ReceiveHub()
        self.batch: list[native.BatchItem] = []  # this beat's packets (native fan-out only)
        self._callbacks: dict[int, Callable[[float], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.errors = 0
        self.batch_failures = 0

    def add(self, key: Any, callback: Callable[[float], None]) -> None:
        self._callbacks[id(key)] = callback
        self._wake()

    def remove(self, key: Any) -> None:
        self._callbacks.pop(id(key), None)
        if not self._callbacks and not len(self.hub) and self._task is not None:
            self._task.cancel()
            self._task = None

    def open_polled(self, host: str, protocol: Any) -> PolledTransport:
        """A socket for ``protocol`` that this pacer's hub reads on every beat."""
        transport = self.hub.open(host, protocol)
        self._wake()
        return transport

    def __len__(self) -> int:
        return len(self._callbacks)

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def beat(self, now: float) -> None:
        """One beat's work (the loop below calls it; tests may too)."""
        try:
            self.hub.drain()
        except Exception:  # noqa: BLE001 - the hub counts its handlers' errors itself
            self._error("receive hub failed")
        for callback in list(self._callbacks.values()):
            try:
                callback(now)
            except Exception:  # one participant's failure must not stop the others
                self._error("paced participant failed")
        if self.batch:
            self.flush()
        self.ticks += 1

    def flush(self) -> None:
        """Protect and send the queued packets in one call; undo the count of those that failed."""
        batch, self.batch = self.batch, []
        failed = native.send_batch(batch)
        for index, reason in failed or ():
            _target, head, payload, writer = batch[index]
            writer.batch_failed(reason, len(head) + len(payload))
            self.batch_failures += 1

    def _error(self, what: str) -> None:
        self.errors += 1
        if self.errors <= 3:
            logger.exception(what)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._callbacks or len(self.hub):
            self.beat(loop.time())
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
        self.batch.clear()
        self.hub.close()


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = \
    weakref.WeakKeyDictionary()


def shared_pacer() -> Pacer:
    """The pacer of the running event loop, for publishers not given one (tests, benchmarks):
    still one beat for all of them."""
    loop = asyncio.get_running_loop()
    pacer = _SHARED.get(loop)
    if pacer is None or pacer.hub.closed:
        pacer = _SHARED[loop] = Pacer()
    return pacer
