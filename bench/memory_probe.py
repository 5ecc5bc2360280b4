"""Runs ``diemcau serve`` with a memory probe inside: ``python bench/memory_probe.py serve ...``.

Started by ``bench.memory`` as a script file (not ``-m``), so that the tree under test is only
chosen by ``PYTHONPATH``: the same probe measures this checkout and another one (``before``).
It imports nothing from the project; the server itself is run with ``runpy`` as
``python -m diemcau`` would run it.

Each SIGUSR1 writes a JSON report to ``$DIEMCAU_MEMORY_REPORT`` (written aside, then renamed):
the first one is the baseline (nobody in yet): it starts ``tracemalloc`` (when
``$DIEMCAU_MEMORY_TRACE`` gives a frame count > 0), so that only what the participants cause is
traced, and counts live objects per type; the later ones add the tracemalloc statistics (by
line and by file) and the live objects per type against that baseline. Signal handlers run
between two bytecodes of the main thread, i.e. between two callbacks of the event loop: the
server's state is consistent while it is counted.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import runpy
import signal
import sys
import time
import tracemalloc
from collections import Counter
from types import FrameType
from typing import Any

TOP = int(os.environ.get("DIEMCAU_MEMORY_TOP", "25"))


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _type_name(obj: object) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def census() -> tuple[Counter[str], Counter[str]]:
    """Live objects and their shallow sizes per type: every object the collector tracks, plus
    the untracked ones they hold directly (bytes, str, int, atomic-only dicts and tuples)."""
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    tracked = gc.get_objects()
    seen: set[int] = set()
    for obj in tracked:
        name = _type_name(obj)
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    for obj in tracked:
        for ref in gc.get_referents(obj):
            if gc.is_tracked(ref) or id(ref) in seen:
                continue
            seen.add(id(ref))
            name = _type_name(ref)
            counts[name] += 1
            sizes[name] += sys.getsizeof(ref)
    return counts, sizes


class Probe:
    def __init__(self, path: str, frames: int) -> None:
        self.path = path
        self.frames = frames
        self.base: tuple[Counter[str], Counter[str]] | None = None

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        started = time.monotonic()
        rss = rss_bytes()  # first: counting allocates (lists of every object, a set of ids)
        # What glibc held freed but not returned to the system (free lists, fragments):
        # measured by giving it back, before counting allocates anything.
        trimmed = rss_bytes() if self.base is not None and _malloc_trim() else None
        report: dict[str, Any]
        if self.base is None:
            report = self._baseline()
        else:
            report = self._report()
        report["rss_bytes"] = rss
        report["rss_trimmed_bytes"] = trimmed
        report["probe_s"] = round(time.monotonic() - started, 2)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as out:
            json.dump(report, out)
        os.replace(tmp, self.path)

    def _baseline(self) -> dict[str, Any]:
        self.base = census()
        _malloc_trim()  # what counting allocated goes back, not into the participants' share
        rss = rss_bytes()  # before tracemalloc's own tables exist
        if self.frames > 0:
            tracemalloc.start(self.frames)
        return {"kind": "baseline", "rss_before_trace_bytes": rss}

    def _report(self) -> dict[str, Any]:
        assert self.base is not None
        counts, sizes = census()
        base_counts, base_sizes = self.base
        names = set(counts) | set(base_counts)
        types = sorted(((name, counts[name] - base_counts[name], sizes[name] - base_sizes[name])
                        for name in names), key=lambda row: -row[2])
        report: dict[str, Any] = {
            "kind": "report",
            "types": [{"type": n, "count": c, "bytes": b} for n, c, b in types[:TOP * 2]],
            "live": {n: counts[n] for n in names if counts[n]},
        }
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__),
                 tracemalloc.Filter(False, __file__)])
            traced, peak = tracemalloc.get_traced_memory()
            report.update(
                traced_bytes=traced, traced_peak_bytes=peak,
                tracemalloc_overhead_bytes=tracemalloc.get_tracemalloc_memory(),
                by_line=_stats(snapshot, "lineno"), by_file=_stats(snapshot, "filename"))
        return report


def _malloc_trim() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.malloc_trim(0)
    return True


def _stats(snapshot: tracemalloc.Snapshot, key: str) -> list[dict[str, Any]]:
    rows = []
    for stat in snapshot.statistics(key)[:TOP]:
        frame = stat.traceback[0]
        site = frame.filename if key == "filename" else f"{frame.filename}:{frame.lineno}"
        rows.append({"site": _short(site), "bytes": stat.size, "blocks": stat.count})
    return rows


def _short(path: str) -> str:
    """site-packages/aiortc/sdp.py:123 and sfu/consumer.py:99 rather than absolute paths."""
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            return path.split(marker, 1)[1]
    for root in sys.path:
        if root and path.startswith(root.rstrip("/") + "/"):
            return path[len(root.rstrip("/")) + 1:]
    return path


def main() -> None:
    path = os.environ["DIEMCAU_MEMORY_REPORT"]
    frames = int(os.environ.get("DIEMCAU_MEMORY_TRACE", "1"))
    signal.signal(signal.SIGUSR1, Probe(path, frames))
    # As ``python -m diemcau serve ...`` (this file is not part of the import graph: no
    # ``import diemcau`` here, so the layering test sees no bench -> diemcau edge).
    sys.argv = ["diemcau", *sys.argv[1:]]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # bench/ is no root
    runpy.run_module("diemcau", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
