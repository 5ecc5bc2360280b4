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

import contextlib
import ctypes
import gc
import json
import os
import re
import runpy
import signal
import sys
import threading
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
    the untracked ones they hold directly (bytes, str, int, atomic-only dicts and tuples).
    A worker freezes what each join leaves alive (sfu/gctune.py), and gc.get_objects() skips
    the permanent generation: thawed for the count and frozen again, as ``_trimmers`` does."""
    frozen = gc.get_freeze_count()
    if frozen:
        gc.unfreeze()
    try:
        gc.collect()
        tracked = gc.get_objects()
    finally:
        if frozen:
            gc.freeze()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
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
        self.base_allocator: dict[str, Any] = {}
        self.peak: PeakWatcher | None = None

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        started = time.monotonic()
        rss = rss_bytes()  # first: counting allocates (lists of every object, a set of ids)
        allocator = allocator_state()
        # What glibc held freed but not returned to the system (free lists, fragments):
        # measured by giving it back, before counting allocates anything.
        trimmed = rss_bytes() if self.base is not None and _malloc_trim() else None
        report: dict[str, Any]
        if self.base is None:
            report = self._baseline()
        else:
            report = self._report()
        report["rss_bytes"] = rss
        if report["kind"] == "report":
            allocator["trimmers"] = _trimmers()  # last: it freezes what is alive (below)
        report["allocator"] = self.base_allocator if report["kind"] == "baseline" else allocator
        report["rss_trimmed_bytes"] = trimmed
        report["probe_s"] = round(time.monotonic() - started, 2)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as out:
            json.dump(report, out)
        os.replace(tmp, self.path)

    def _baseline(self) -> dict[str, Any]:
        rss_untrimmed = rss_bytes()
        self.base = census()
        _malloc_trim()  # what counting allocated goes back, not into the participants' share
        rss = rss_bytes()  # before tracemalloc's own tables exist
        self.base_allocator = allocator_state()  # at the same point as the RSS baseline
        if self.frames > 0:
            tracemalloc.start(self.frames)
            self.peak = PeakWatcher()
            self.peak.start()
        return {"kind": "baseline", "rss_before_trace_bytes": rss,
                "rss_untrimmed_bytes": rss_untrimmed}

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
            if self.peak is not None:
                report["transient"] = self.peak.transient(snapshot)
            report.update(
                traced_bytes=traced, traced_peak_bytes=peak,
                tracemalloc_overhead_bytes=tracemalloc.get_tracemalloc_memory(),
                by_line=_stats(snapshot, "lineno"), by_file=_stats(snapshot, "filename"))
        return report


class PeakWatcher(threading.Thread):
    """Keeps a tracemalloc snapshot of the highest traced memory seen (checked every second,
    a new snapshot only 25 % above the last one), so the report can say which sites the join
    waves allocated and freed again: the transient allocations, whose freed memory is what
    stays mapped beyond the live objects."""

    INTERVAL_S = 1.0
    MARGIN = 1.25

    def __init__(self) -> None:
        super().__init__(name="memory-peak", daemon=True)
        self.snapshot: tracemalloc.Snapshot | None = None
        self.snapshot_bytes = 0
        self.snapshots = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.INTERVAL_S):
            if not tracemalloc.is_tracing():
                return
            current, _ = tracemalloc.get_traced_memory()
            if current > max(self.snapshot_bytes * self.MARGIN, 16 << 20):
                self.snapshot = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__),
                     tracemalloc.Filter(False, __file__)])
                self.snapshot_bytes = current
                self.snapshots += 1

    def transient(self, final: tracemalloc.Snapshot) -> dict[str, Any]:
        """Sites by how much more they held at the highest snapshot than at the end."""
        self._done.set()
        if self.snapshot is None:
            return {"peak_bytes": 0, "snapshots": 0, "by_line": []}
        rows = []
        for stat in sorted(final.compare_to(self.snapshot, "lineno"),
                           key=lambda stat: stat.size_diff)[:TOP]:
            if stat.size_diff >= 0:
                break
            frame = stat.traceback[0]
            rows.append({"site": _short(f"{frame.filename}:{frame.lineno}"),
                         "bytes": -stat.size_diff, "blocks": -stat.count_diff})
        return {"peak_bytes": self.snapshot_bytes, "snapshots": self.snapshots, "by_line": rows}


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


# -- where the RSS is: glibc arenas, pymalloc arenas, mappings (issue 11, allocator level) -------

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def allocator_state() -> dict[str, Any]:
    """What holds the process's memory, read without allocating much: the kernel's view
    (smaps: RSS, PSS, USS, by kind of mapping), glibc's (mallinfo2, per arena from malloc_info)
    and pymalloc's (sys._debugmallocstats), plus the threads alive."""
    state: dict[str, Any] = {"smaps": _smaps(), "threads": _threads()}
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        state["mallinfo"] = {field[0]: getattr(info, field[0]) for field in _MallInfo2._fields_}
        state["arenas"] = _malloc_info(libc)
    state["pymalloc"] = _pymalloc()
    return state


def _trimmers() -> list[dict[str, float]]:
    """The trims sfu/memtune.py's Trimmer made and their own time. gc.get_objects() skips the
    permanent generation, where sfu/gctune.py put the worker: thawed for the search and frozen
    again, which freezes everything alive, so it runs after the census of the last report."""
    frozen = gc.get_freeze_count()
    if frozen:
        gc.unfreeze()
    try:
        return [{"count": t.count, "total_s": t.total_s, "max_s": t.max_s}
                for t in gc.get_objects() if type(t).__name__ == "Trimmer"]
    finally:
        if frozen:
            gc.freeze()


def _smaps() -> dict[str, int]:
    """RSS by kind of mapping: [heap] (glibc's main arena), 1 MiB anonymous mappings (pymalloc's
    arenas), other anonymous ones (glibc's thread arenas, big mmapped blocks, stacks), files;
    and the totals RSS, PSS, USS (private pages)."""
    kinds: dict[str, int] = {}
    kind = "other"
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                fields = line.split()
                start, end = (int(x, 16) for x in head.split("-"))
                name = fields[5] if len(fields) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("["):
                    kind = "special"
                elif name:
                    kind = "file"
                elif end - start == 1 << 20:
                    kind = "anon_1mib"
                else:
                    kind = "anon_other"
            elif head in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"):
                kb = int(line.split()[1]) * 1024
                key = {"Rss:": "rss", "Pss:": "pss"}.get(head, "uss")
                kinds[key] = kinds.get(key, 0) + kb
                if head == "Rss:":
                    kinds["rss_" + kind] = kinds.get("rss_" + kind, 0) + kb
    return kinds


def _threads() -> dict[str, int]:
    names: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/comm") as comm:
                names[comm.read().strip()] += 1
    return dict(names)


def _malloc_info(libc: ctypes.CDLL) -> list[dict[str, int]]:
    """glibc's arenas (heap nr 0 is the main one): bytes obtained from the system, free."""
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = f"/tmp/diemcau-malloc-info-{os.getpid()}.xml"
    stream = libc.fopen(path.encode(), b"w")
    if not stream:
        return []
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    with open(path) as xml:
        text = xml.read()
    os.unlink(path)
    heaps = []
    for nr, body in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', text, re.S):
        current = re.search(r'<system type="current" size="(\d+)"/>', body)
        free = sum(int(size) for size in re.findall(
            r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"/>', body))
        heaps.append({"nr": int(nr), "system": int(current.group(1)) if current else 0,
                      "free": free})
    return heaps


_PYMALLOC_KEYS = {
    "# arenas allocated current": "arenas", "# bytes in allocated blocks": "allocated",
    "# bytes in available blocks": "available", "# bytes lost to pool headers": "pool_headers",
    "# bytes lost to quantization": "quantization", "# bytes lost to arena alignment":
    "alignment", "Total": "total"}


def _pymalloc() -> dict[str, int]:
    """sys._debugmallocstats (it writes to C's stderr): pymalloc's arenas and their use; the
    free pools of used arenas are in ``available`` with the free blocks."""
    saved = os.dup(2)
    path = f"/tmp/diemcau-pymalloc-{os.getpid()}.txt"
    try:
        with open(path, "w") as out:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
        with open(path) as stats:
            text = stats.read()
    finally:
        os.close(saved)
        with contextlib.suppress(OSError):
            os.unlink(path)
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        name = _PYMALLOC_KEYS.get(key.strip())
        if name and name not in found:
            with contextlib.suppress(ValueError):
                found[name] = int(value.strip().replace(",", ""))
    unused = re.search(r"(\d+) unused pools \* \d+ bytes\s*=\s*([\d,]+)", text)
    if unused:
        found["unused_pools"] = int(unused.group(2).replace(",", ""))
    return found


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
