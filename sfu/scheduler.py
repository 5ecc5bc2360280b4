"""One scheduler per worker for the media plane's periodic timers.

Publishers (transport-cc feedback), subscribers (bandwidth tick, sender reports) and the worker
(room maintenance) each used to run a task of their own that slept in a loop, was started in a
constructor and cancelled without being awaited. Here a timer is a callback on the event loop's
own timer heap (``loop.call_at``): no task per timer, and cancelling is synchronous and final,
so nothing is left to await. A callback that raises is logged and its timer keeps running.

Timers of one interval share a ``Beat``: one loop timer at whole multiples of the interval on
the loop's clock (``beat * T``) that calls them all, so every subscriber's 125 ms tick (and
every 1 s sender report) runs in one callback of one loop iteration. Each separate wake-up of an
idle process costs far more CPU than the callback itself (measured here, uvloop on a 2-core VM:
64 timers at 8 Hz cost 21.7 us per fire at random phases, 2.0 us aligned), and one loop timer
per beat instead of one per timer saves the heap work too.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["Scheduler", "Timer"]


class Timer:
    """One periodic callback; ``cancel()`` stops it for good."""

    __slots__ = ("name", "interval_s", "_callback", "_scheduler", "first_beat", "last_beat",
                 "fired")

    def __init__(self, scheduler: Scheduler, name: str, interval_s: float,
                 callback: Callable[[], object]) -> None:
        if interval_s <= 0:
            raise ValueError(f"timer {name!r}: interval must be positive, got {interval_s}")
        self.name = name
        self.interval_s = interval_s
        self.fired = 0
        self._callback = callback
        self._scheduler = scheduler
        self.first_beat = 0  # fires on beats from this one on (at least one interval after start)
        self.last_beat = -1

    @property
    def active(self) -> bool:
        return self._scheduler._timers.get(id(self)) is self

    def cancel(self) -> None:
        self._scheduler._remove(self)


class _Beat:
    """The loop timer shared by every timer of one interval."""

    __slots__ = ("interval_s", "timers", "beat", "handle")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.timers: dict[int, Timer] = {}
        self.beat = 0
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, beat: int) -> None:
        self.beat = beat
        self.handle = loop.call_at(beat * self.interval_s, self.fire, loop)

    def fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handle = None
        beat = self.beat
        for key, timer in list(self.timers.items()):
            if beat < timer.first_beat or self.timers.get(key) is not timer:
                continue  # not due yet, or cancelled by an earlier callback of this beat
            timer.fired += 1
            timer.last_beat = beat
            try:
                timer._callback()
            except Exception:
                logger.exception("timer %s failed", timer.name)
        if not self.timers:
            return
        if self.handle is not None:  # Scheduler.every armed it from a callback: use the grid
            self.handle.cancel()
        # Fixed rate while the loop keeps up; a late loop skips the missed beats rather than
        # firing them back to back (a burst of ticks would only repeat the same decision).
        beat += 1
        now = loop.time()
        if beat * self.interval_s <= now:
            beat = math.floor(now / self.interval_s) + 1
        self.arm(loop, beat)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Scheduler:
    """Owns every periodic timer of one worker (or of one standalone shell in tests)."""

    def __init__(self) -> None:
        self._timers: dict[int, Timer] = {}
        self._beats: dict[float, _Beat] = {}
        self.closed = False

    def every(self, interval_s: float, callback: Callable[[], object], name: str = "") -> Timer:
        """Call ``callback`` every ``interval_s`` seconds, the first time between one and two
        intervals from now (on the interval's grid); needs a running loop."""
        if self.closed:
            raise RuntimeError("scheduler is closed")
        loop = asyncio.get_running_loop()
        timer = Timer(self, name or getattr(callback, "__qualname__", "timer"), interval_s,
                      callback)
        timer.first_beat = math.floor(loop.time() / interval_s) + 2
        self._timers[id(timer)] = timer
        beat = self._beats.get(interval_s)
        if beat is None:
            beat = self._beats[interval_s] = _Beat(interval_s)
        beat.timers[id(timer)] = timer
        if beat.handle is None:
            beat.arm(loop, timer.first_beat)
        return timer

    def _remove(self, timer: Timer) -> None:
        if self._timers.get(id(timer)) is not timer:
            return
        del self._timers[id(timer)]
        beat = self._beats.get(timer.interval_s)
        if beat is not None:
            beat.timers.pop(id(timer), None)
            if not beat.timers:
                beat.cancel()
                del self._beats[timer.interval_s]

    def __len__(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        """Cancel every timer still registered (the worker's shutdown)."""
        self.closed = True
        for timer in list(self._timers.values()):
            timer.cancel()
