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
from sfu.gctune import tune_for_forwarding
tuned = tune_for_forwarding()
print(json.dumps({"tuned": tuned, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(**env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **env})
    return dict(json.loads(out.stdout))


def test_a_forwarding_process_freezes_its_setup_and_widens_the_young_generation() -> None:
    from sfu.gctune import OLDER_THRESHOLDS, YOUNG_THRESHOLD

    result = _probe(DIEMCAU_GC_DEFAULT="0")
    assert result["tuned"] is True
    assert result["threshold"] == [YOUNG_THRESHOLD, *OLDER_THRESHOLDS]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1000  # the imports


def test_the_environment_keeps_cpythons_defaults() -> None:
    result = _probe(DIEMCAU_GC_DEFAULT="1")
    assert result == {"tuned": False, "threshold": [700, 10, 10], "frozen": 0}


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
