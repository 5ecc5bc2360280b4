"""sfu/gctune.py: a forwarding process freezes what its set-up left alive and widens the young
generation; DIEMCAU_GC_DEFAULT=1 keeps CPython's defaults. Each case in its own interpreter
(freezing this test process would change every later test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import gc, json
from sfu.gctune import tune_for_forwarding, worker_keeper
tuned = tune_for_forwarding()
print(json.dumps({"tuned": tuned, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "keeper": worker_keeper() is not None}))
"""


def _probe(**env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **env})
    return dict(json.loads(out.stdout))


def test_a_forwarding_process_freezes_its_setup_and_widens_the_young_generation() -> None:
    from sfu.gctune import OLDER_THRESHOLDS, YOUNG_THRESHOLD

    result = _probe(DIEMCAU_GC_DEFAULT="0", DIEMCAU_GC_FREEZE_JOINS="1")
    assert result["tuned"] is True
    assert result["threshold"] == [YOUNG_THRESHOLD, *OLDER_THRESHOLDS]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1000  # the imports
    assert result["keeper"] is True  # its workers freeze after joins
    result = _probe(DIEMCAU_GC_DEFAULT="0", DIEMCAU_GC_FREEZE_JOINS="0")
    assert result["tuned"] is True and result["keeper"] is False  # the start-up freeze only


def test_the_environment_keeps_cpythons_defaults() -> None:
    result = _probe(DIEMCAU_GC_DEFAULT="1")
    assert result == {"tuned": False, "threshold": [700, 10, 10], "frozen": 0, "keeper": False}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pause_watch_times_collections_and_logs_a_long_one_once_a_minute() -> None:
    from sfu.gctune import LOG_INTERVAL_S, PauseWatch

    clock, lines = FakeClock(), []
    watch = PauseWatch(clock, lambda *args: lines.append(args[0] % args[1:]))

    def collection(generation: int, took: float, collected: int = 0) -> None:
        watch("start", {"generation": generation})
        clock.now += took
        watch("stop", {"generation": generation, "collected": collected})
        clock.now += 1.0

    collection(0, 0.004)
    collection(2, 0.41, collected=242_186)
    collection(2, 0.2)  # within the minute: counted, not logged
    collection(1, 0.12)  # another generation has its own minute
    assert watch.count == [1, 1, 2]
    assert watch.longest == pytest.approx([0.004, 0.12, 0.41])
    assert watch.total[2] == pytest.approx(0.61)
    assert lines == [
        "garbage collection (generation 2) stopped the process for 410 ms "
        "(242186 objects freed; 0 more such pauses not logged)",
        "garbage collection (generation 1) stopped the process for 120 ms "
        "(0 objects freed; 0 more such pauses not logged)"]
    clock.now += LOG_INTERVAL_S
    collection(2, 0.3)
    assert lines[-1].endswith("(0 objects freed; 1 more such pauses not logged)")


def test_pause_watch_ignores_a_stop_without_its_start() -> None:
    from sfu.gctune import PauseWatch

    watch = PauseWatch(FakeClock(), lambda *args: None)
    watch("stop", {"generation": 2, "collected": 5})
    watch("start", {"generation": 7})
    watch("stop", {"generation": 7})
    assert watch.count == [0, 0, 0]


def test_a_forwarding_process_times_real_collections() -> None:
    probe = ("import gc, json\nfrom sfu.gctune import PauseWatch, tune_for_forwarding\n"
             "tune_for_forwarding(); tune_for_forwarding()\n"
             "watches = [c for c in gc.callbacks if isinstance(c, PauseWatch)]\n"
             "gc.collect()\nprint(json.dumps([len(watches), watches[0].count[2]]))\n")
    for default in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, timeout=60,
                             env={**os.environ, "DIEMCAU_GC_DEFAULT": default})
        watches, full = json.loads(out.stdout)
        assert watches == 1 and full >= 1  # installed once; the explicit collection timed


# -- freezing after joins, reclaiming after leaves (FreezePolicy, GcKeeper) -----------------------


def test_a_freeze_comes_once_a_join_wave_settled() -> None:
    from sfu.gctune import FreezePolicy, GcAction

    policy = FreezePolicy(settle_s=2.0)
    assert policy.due(0.0, live=5) is None  # nobody joined: nothing to freeze
    policy.settled(10.0)
    policy.settled(11.0)  # a second join of the wave moves the freeze
    assert policy.due(12.5, live=5) is None
    assert policy.due(13.0, live=5) is GcAction.FREEZE
    policy.done(GcAction.FREEZE)
    assert policy.due(100.0, live=5) is None  # once per wave


def test_a_wave_that_never_pauses_is_frozen_after_at_most_ten_seconds() -> None:
    from sfu.gctune import FreezePolicy, GcAction

    policy = FreezePolicy(settle_s=2.0, at_most_s=10.0)
    froze = []
    for step in range(30):  # a join every 1.5 s for 45 s
        now = 100.0 + 1.5 * step
        policy.settled(now)
        action = policy.due(now + 1.0, live=step)
        if action is GcAction.FREEZE:
            froze.append(now + 1.0)
            policy.done(action)
    assert froze == [110.0, 120.5, 131.0, 141.5]  # 10 s after the first join not yet frozen


def test_a_reclaim_when_the_worker_is_empty_or_after_many_leavers() -> None:
    from sfu.gctune import FreezePolicy, GcAction

    policy = FreezePolicy(min_leavers=10, leavers_per_live=2)
    assert policy.due(0.0, live=0) is None  # empty, but nobody left since: nothing to reclaim
    policy.left()
    assert policy.due(0.0, live=3) is None
    assert policy.due(0.0, live=0) is GcAction.RECLAIM_EMPTY
    policy.done(GcAction.RECLAIM_EMPTY)
    assert policy.due(0.0, live=0) is None and policy.leavers == 0
    for _ in range(9):
        policy.left()
    assert policy.due(0.0, live=4) is None  # 9 < max(10, 2 * 4)
    policy.left()
    assert policy.due(0.0, live=4) is GcAction.RECLAIM_LEAVERS
    assert policy.due(0.0, live=6) is None  # 10 < 2 * 6: a big room waits for more leavers
    policy.settled(0.0)
    policy.done(GcAction.RECLAIM_LEAVERS)
    assert policy.due(5.0, live=4) is None  # the reclaim froze too


class FakeGc:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frozen = 1000

    def calls_for(self) -> object:
        from sfu.gctune import GcCalls

        def collect() -> int:
            self.calls.append("collect")
            return 42

        return GcCalls(freeze=lambda: self.calls.append("freeze"),
                       unfreeze=lambda: self.calls.append("unfreeze"), collect=collect,
                       freeze_count=lambda: self.frozen)


def test_the_keeper_freezes_and_reclaims_in_order_and_logs_why() -> None:
    from sfu.gctune import FreezePolicy, GcAction, GcCalls, GcKeeper

    fake, clock, lines = FakeGc(), FakeClock(), []
    calls = fake.calls_for()
    assert isinstance(calls, GcCalls)

    def collect_slowly() -> int:
        clock.now += 0.25
        fake.calls.append("collect")
        return 42

    calls.collect = collect_slowly
    keeper = GcKeeper(FreezePolicy(settle_s=1.0), calls, clock,
                      lambda *args: lines.append(args[0] % args[1:]))
    assert keeper.tick(0.0, live=2) is None and fake.calls == []
    keeper.policy.settled(0.0)
    assert keeper.tick(1.0, live=2) is GcAction.FREEZE
    assert fake.calls == ["freeze"] and keeper.freezes == 1 and lines == []
    keeper.policy.left()
    keeper.policy.left()
    assert keeper.tick(2.0, live=0) is GcAction.RECLAIM_EMPTY
    assert fake.calls == ["freeze", "unfreeze", "collect", "freeze"]
    assert keeper.reclaims == 1 and keeper.reclaimed == 42
    assert keeper.reclaim_s == pytest.approx(0.25)
    assert lines == ["garbage collector: reclaimed the permanent generation (no participant left: "
                     "2 leavers, 0 participants): 42 objects freed of 1000 frozen, 250 ms"]
    assert keeper.tick(3.0, live=0) is None  # nobody left since


def test_the_switches() -> None:
    from sfu.gctune import freeze_joins_enabled, worker_keeper

    assert freeze_joins_enabled({})
    assert not freeze_joins_enabled({"DIEMCAU_GC_FREEZE_JOINS": "0"})  # start-up freeze only
    assert not freeze_joins_enabled({"DIEMCAU_GC_DEFAULT": "1"})  # no freezing at all
    # This test process was not tuned for forwarding: its workers keep no freezes.
    assert worker_keeper({}) is None
