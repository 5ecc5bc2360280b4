"""Garbage-collector settings for a forwarding process (diemcau serve, a media worker).

CPython's default (a young-generation collection every 700 net container allocations, and a full
one every ~100 of those) was sized for short scripts. A forwarding server allocates a few
short-lived containers per packet, almost none of them in cycles, and holds hundreds of
thousands of long-lived objects from its imports (aiortc, aiohttp, numpy) and its rooms: under
load the collector then rescans them again and again (the load generator's profile of a room
of ~48 put 16 % of the server's CPU in the collector). Two standard levers, nothing clever:

- ``gc.freeze()`` once the process is set up: everything alive then (imports, the app) moves to
  the permanent generation and is never scanned again;
- a larger young generation (``YOUNG_THRESHOLD``), so the young collections come less often
  and each finds the per-packet garbage already freed by reference counting.

Cycles are still collected, only later; memory stays bounded (see the README's memory figures).
``DIEMCAU_GC_DEFAULT=1`` keeps CPython's defaults (for comparing, see README "performance").

A collection stops the whole process, media included: a one-core ramp at 60 measured young
collections of 5-78 ms and middle ones of 79-119 ms while people joined, and 363-409 ms full
ones (a room's ~240,000 objects freed as it ended). ``PauseWatch`` times every collection and
logs one over ``LONG_PAUSE_S`` (at most once a minute per generation), so an operator can tell
such a stall from the network's.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("sfu.gc")

YOUNG_THRESHOLD = 20_000
"""Net container allocations before a young collection (CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle one, middle ones per full one (default 10, 10)."""
LONG_PAUSE_S = 0.1
"""A collection this long is logged: a media stall a subscriber may hear or see."""
LOG_INTERVAL_S = 60.0


class PauseWatch:
    """A ``gc.callbacks`` entry: how long each collection took, per generation; the clock is
    passed in. ``longest[g]`` and ``total[g]`` (seconds) and ``count[g]`` since start."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 log: Callable[..., None] = logger.warning) -> None:
        self._clock = clock
        self._log = log
        self._started: float | None = None
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._logged = [float("-inf")] * 3
        self._quiet = [0, 0, 0]  # long pauses not logged since the last line, per generation

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = self._clock()
        if phase == "start":
            self._started = now
            return
        started, self._started = self._started, None
        generation = info.get("generation")
        if started is None or generation not in (0, 1, 2):
            return  # a stop without its start (installed mid-collection): nothing to time
        took = now - started
        self.count[generation] += 1
        self.total[generation] += took
        self.longest[generation] = max(self.longest[generation], took)
        if took < LONG_PAUSE_S:
            return
        if now - self._logged[generation] < LOG_INTERVAL_S:
            self._quiet[generation] += 1
            return
        self._log("garbage collection (generation %d) stopped the process for %.0f ms "
                  "(%d objects freed; %d more such pauses not logged)", generation,
                  took * 1000, info.get("collected", 0), self._quiet[generation])
        self._logged[generation] = now
        self._quiet[generation] = 0


def tune_for_forwarding() -> bool:
    """Freeze what is alive now and widen the young generation (and time every collection:
    ``PauseWatch``); False when the environment asked for CPython's defaults."""
    if not any(isinstance(callback, PauseWatch) for callback in gc.callbacks):
        gc.callbacks.append(PauseWatch())  # with CPython's defaults too: pauses happen there
    if os.environ.get("DIEMCAU_GC_DEFAULT") == "1":
        return False
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return True
