"""Runs ``diemcau serve`` with a collector probe inside: ``python bench/gc_probe.py serve ...``.

Started by ``bench.gc_churn`` as a script file, as ``bench/memory_probe.py`` is. Each SIGUSR1
writes a JSON report to ``$DIEMCAU_GC_REPORT`` (written aside, then renamed): per generation
the collections ``sfu/gctune.py``'s ``PauseWatch`` timed since start (count, total seconds)
and the longest since the previous report (then reset), the permanent generation's size, the
RSS, and what the workers' ``GcKeeper``s did (freezes, reclaims). A signal handler runs
between two callbacks of the event loop: no collection is in progress while it reads.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
import time
from types import FrameType
from typing import Any

KEEPERS: list[Any] = []
LONG_S = 0.01
"""A collection at least this long is listed with its CPU time (preempted, or working?)."""


class Detail:
    """Every collection's wall and CPU time; the long ones listed (bounded)."""

    def __init__(self) -> None:
        self.started = (0.0, 0.0)
        self.counts: tuple[int, int, int] = (0, 0, 0)
        self.long: list[dict[str, Any]] = []
        self.cpu_s = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.counts = gc.get_count()
            self.started = (time.perf_counter(), time.thread_time())
            return
        wall = time.perf_counter() - self.started[0]
        cpu = time.thread_time() - self.started[1]
        generation = info.get("generation", 0)
        self.cpu_s[generation] += cpu
        if wall >= LONG_S and len(self.long) < 200:
            self.long.append({"generation": generation, "wall_ms": round(wall * 1000, 1),
                              "cpu_ms": round(cpu * 1000, 1), "collected": info.get("collected"),
                              "counts_before": self.counts})


DETAIL = Detail()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(path: str) -> None:
    watches = [c for c in gc.callbacks if type(c).__name__ == "PauseWatch"]
    out: dict[str, Any] = {"frozen": gc.get_freeze_count(), "rss_bytes": rss_bytes(),
                           "threshold": gc.get_threshold()}
    if watches:
        watch: Any = watches[0]
        out["count"], out["total_s"] = list(watch.count), list(watch.total)
        out["longest_s"] = list(watch.longest)
        watch.longest = [0.0, 0.0, 0.0]  # the next report's longest: since this one
    out["cpu_s"] = list(DETAIL.cpu_s)
    out["long"], DETAIL.long = DETAIL.long, []
    out["keepers"] = [{"freezes": k.freezes, "reclaims": k.reclaims, "reclaim_s": k.reclaim_s,
                       "reclaimed": k.reclaimed} for k in KEEPERS if k is not None]
    with open(path + ".tmp", "w") as file:
        json.dump(out, file)
    os.replace(path + ".tmp", path)


def main() -> None:
    path = os.environ["DIEMCAU_GC_REPORT"]

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        report(path)

    signal.signal(signal.SIGUSR1, on_signal)
    gc.callbacks.append(DETAIL)
    sys.argv = ["diemcau", *sys.argv[1:]]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # bench/ is no root
    # The workers' keepers, as Worker.start makes them (this file is not part of the import
    # graph: the module is looked up by name, as the server imports it).
    gctune: Any = __import__("sfu.gctune", fromlist=["worker_keeper"])
    made = gctune.worker_keeper

    def worker_keeper(*args: Any, **kwargs: Any) -> Any:
        keeper = made(*args, **kwargs)
        KEEPERS.append(keeper)
        return keeper

    gctune.worker_keeper = worker_keeper
    runpy.run_module("diemcau", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
