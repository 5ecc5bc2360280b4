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

After start-up (``FreezePolicy``, ``GcKeeper``, run by the worker): a freeze once each join
settled, so what people bring into a meeting is not rescanned by the middle and full
collections; leavers freed by reference counting (the close paths break their cycles, see
``Subscriber._dismantle`` and ``aiortc_hooks.release_connection``); what still leaks into the
permanent generation reclaimed when the worker is empty or after many leavers.
``DIEMCAU_GC_FREEZE_JOINS=0`` keeps the start-up freeze only (for comparing, ``bench/gc_churn.py``).

A collection stops the whole process, media included: a one-core ramp at 60 measured young
collections of 5-78 ms and middle ones of 79-119 ms while people joined, and 363-409 ms full
ones (a room's ~240,000 objects freed as it ended). ``PauseWatch`` times every collection and
logs one over ``LONG_PAUSE_S`` (at most once a minute per generation), so an operator can tell
such a stall from the network's.
"""

from __future__ import annotations

import enum
import gc
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("sfu.gc")

YOUNG_THRESHOLD = 20_000
"""Net container allocations before a young collection (CPython's default: 700). Kept with
joins frozen: 8,000 was measured too (``bench/gc_churn.py``, 30 people, 20 replaced): the
longest young collection did not shrink (10-31 ms of CPU against 10-38), they came four times
as often (621 against 330 ms in all during the churn) and middle ones came back (23-44 ms)."""
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


# -- after start-up: freeze what joins leave alive, reclaim what leavers leave behind ----------

FREEZE_JOINS_ENVIRONMENT = "DIEMCAU_GC_FREEZE_JOINS"
"""``0``: freeze once at start-up only (the behaviour before joins were frozen, for A/B runs)."""
SETTLE_S = 2.0
"""From a participant's first subscribe answer to the freeze: the answer is applied and its
connection starts in that time, and joins close together share one freeze."""
SETTLE_AT_MOST_S = 10.0
"""A wave of joins that never pauses for ``SETTLE_S`` is frozen this long after its first."""
RECLAIM_MIN_LEAVERS = 1000
RECLAIM_LEAVERS_PER_LIVE = 10
"""Mid-meeting, a reclaim (a full collection of the whole process) only once this many left
since the last one: at least ``RECLAIM_MIN_LEAVERS`` and ten times the participants still
here. What their broken cycles did not free (~20 objects, a few KB, per leaver) stays in the
permanent generation until then: ~3 MB at most. Such a reclaim scans everything (~40 ms for an
empty server, ~1 us per object more: some 0.3-0.5 s in a room of 60, as the full collections
at a ramp's end took), a stop every participant of the worker hears, so it is rare and logged;
an emptied worker reclaims for free."""


class GcAction(enum.Enum):
    FREEZE = "freeze"
    RECLAIM_EMPTY = "no participant left"
    RECLAIM_LEAVERS = "leavers since the last reclaim"


@dataclass
class FreezePolicy:
    """When a worker freezes and when it reclaims (pure: times and counts passed in).

    A join's long-lived objects (its connections, producers, consumers, the m-lines it adds to
    every other subscriber) exist once its subscribing connection took its first answer: a
    freeze ``settle_s`` later moves them, and whatever else lives then, out of every later
    collection. A leaver's objects are freed by reference counting once our close paths break
    their cycles; what is left in cycles among frozen objects is only freed by a reclaim
    (unfreeze, a full collection, freeze again): when nobody is left in the worker (it costs
    nobody a pause), or after many leavers."""

    settle_s: float = SETTLE_S
    at_most_s: float = SETTLE_AT_MOST_S
    min_leavers: int = RECLAIM_MIN_LEAVERS
    leavers_per_live: int = RECLAIM_LEAVERS_PER_LIVE
    freeze_at: float | None = None
    leavers: int = 0  # since the last reclaim
    _latest: float | None = None  # the wave's first settled join + ``at_most_s``

    def settled(self, now: float) -> None:
        """A participant's subscribing connection took its first answer."""
        if self._latest is None:
            self._latest = now + self.at_most_s
        # a later join moves it (one freeze for a wave), up to ``at_most_s`` after the first
        self.freeze_at = min(now + self.settle_s, self._latest)

    def left(self) -> None:
        self.leavers += 1

    def due(self, now: float, live: int) -> GcAction | None:
        """What to do now, with ``live`` participants in the worker."""
        if self.leavers and live == 0:
            return GcAction.RECLAIM_EMPTY
        if self.leavers >= max(self.min_leavers, self.leavers_per_live * live):
            return GcAction.RECLAIM_LEAVERS
        if self.freeze_at is not None and now >= self.freeze_at:
            return GcAction.FREEZE
        return None

    def done(self, action: GcAction) -> None:
        if action is not GcAction.FREEZE:
            self.leavers = 0
        self.freeze_at = self._latest = None  # a reclaim freezes too


@dataclass
class GcCalls:
    """The ``gc`` functions the keeper calls (a test passes fakes)."""

    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    collect: Callable[[], int] = gc.collect
    freeze_count: Callable[[], int] = gc.get_freeze_count


@dataclass
class GcKeeper:
    """The worker's shell around ``FreezePolicy``: told of first answers and leaves, ticked
    on the worker's maintenance beat (never on the packet path). Counts what it did."""

    policy: FreezePolicy = field(default_factory=FreezePolicy)
    calls: GcCalls = field(default_factory=GcCalls)
    clock: Callable[[], float] = time.perf_counter
    log: Callable[..., None] = logger.info
    freezes: int = 0
    reclaims: int = 0
    reclaim_s: float = 0.0  # the longest reclaim
    reclaimed: int = 0  # objects the reclaims found unreachable, in all

    def tick(self, now: float, live: int) -> GcAction | None:
        action = self.policy.due(now, live)
        if action is GcAction.FREEZE:
            self.calls.freeze()
            self.freezes += 1
        elif action is not None:
            frozen = self.calls.freeze_count()
            started = self.clock()
            self.calls.unfreeze()
            found = self.calls.collect()
            self.calls.freeze()
            took = self.clock() - started
            self.reclaims += 1
            self.reclaimed += found
            self.reclaim_s = max(self.reclaim_s, took)
            self.log("garbage collector: reclaimed the permanent generation (%s: %d leavers, "
                     "%d participants): %d objects freed of %d frozen, %.0f ms",
                     action.value, self.policy.leavers, live, found, frozen, took * 1000)
        if action is not None:
            self.policy.done(action)
        return action


def freeze_joins_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Freeze after joins unless CPython's defaults or start-up-only freezing were asked for."""
    env = os.environ if environ is None else environ
    return env.get("DIEMCAU_GC_DEFAULT") != "1" and env.get(FREEZE_JOINS_ENVIRONMENT) != "0"


def worker_keeper(environ: Mapping[str, str] | None = None) -> GcKeeper | None:
    """A keeper for a worker of a process ``tune_for_forwarding`` tuned (None elsewhere: a test
    process, or when the environment turned it off)."""
    tuned = any(isinstance(callback, PauseWatch) for callback in gc.callbacks)
    return GcKeeper() if tuned and freeze_joins_enabled(environ) else None
