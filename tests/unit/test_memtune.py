"""sfu/memtune.py: glibc's options applied once at start-up (before any thread), and
malloc_trim only after joins/leaves, at most once per interval, from the worker's timer and
never from the packet path; DIEMCAU_MEMTUNE=0 leaves glibc alone."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from sfu import memtune
from sfu.memtune import Trimmer, parts_enabled
from sfu.worker import MediaConfig, Worker

# Eight threads alive at once, each making its first malloc (a bytes object > 512 bytes goes to
# glibc): without a cap glibc gives each its own arena (up to 8 per core).
ARENAS_PROBE = """
import ctypes, json, os, re, sys, threading
from sfu.memtune import tune_allocator
tuning = tune_allocator()
barrier = threading.Barrier(9)
keep = []
def work():
    keep.append(bytes(100_000))
    barrier.wait(30)
    barrier.wait(30)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
barrier.wait(30)
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = sys.argv[1]
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
barrier.wait(30)
for t in threads:
    t.join(30)
heaps = len(re.findall(r'<heap nr="', open(path).read()))
print(json.dumps({"heaps": heaps, "arena_max": tuning and tuning.arena_max}))
"""

pytestmark = pytest.mark.skipif(memtune.malloc_trim() is None, reason="not glibc")


def _arenas(tmp_path: Path, **env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", ARENAS_PROBE, str(tmp_path / "info.xml")],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, **env})
    return dict(json.loads(out.stdout))


def test_the_arena_cap_holds_for_threads_started_after_it(tmp_path: Path) -> None:
    tuned = _arenas(tmp_path, DIEMCAU_MEMTUNE="arenas")
    assert tuned == {"heaps": memtune.ARENA_MAX, "arena_max": memtune.ARENA_MAX}
    default = _arenas(tmp_path, DIEMCAU_MEMTUNE="0")  # the same threads get arenas of their own
    assert default["arena_max"] is None and int(str(default["heaps"])) > memtune.ARENA_MAX


def test_the_switch_selects_parts() -> None:
    assert parts_enabled({}) == parts_enabled({"DIEMCAU_MEMTUNE": "1"}) == {"trim"}
    assert parts_enabled({"DIEMCAU_MEMTUNE": "0"}) == frozenset()
    assert parts_enabled({"DIEMCAU_MEMTUNE": "trim+arenas"}) == {"trim", "arenas"}
    assert parts_enabled({"DIEMCAU_MEMTUNE": "mmap,bogus"}) == {"mmap"}
    assert memtune.tune_allocator({"DIEMCAU_MEMTUNE": "0"}) is None
    assert memtune.tune_allocator({}) == memtune.AllocatorTuning(None, None, True)
    assert memtune.worker_trimmer({"DIEMCAU_MEMTUNE": "arenas"}) is None
    assert memtune.worker_trimmer({"DIEMCAU_MEMTUNE": "trim"}) is not None


def test_serve_tunes_the_allocator_once_before_the_app_and_its_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diemcau import cli
    from signaling import app

    calls: list[str] = []

    class Built(Exception):
        pass

    def create_app(*_args: object, **_kwargs: object) -> None:
        calls.append("create_app")
        raise Built

    monkeypatch.setattr(memtune, "tune_allocator", lambda: calls.append("tune"))
    monkeypatch.setattr(app, "create_app", create_app)
    args = cli.build_parser().parse_args(["serve", "--data-dir", str(tmp_path / "data")])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(Built):
        cli.serve(args)
    assert calls == ["tune", "create_app"]


def test_no_trim_without_a_join_or_leave() -> None:
    trims: list[float] = []
    trimmer = Trimmer(lambda: trims.append(1.0))
    assert not any(trimmer.tick(float(t)) for t in range(0, 600))
    assert trims == [] and trimmer.count == 0


def test_trims_after_a_change_at_most_once_per_interval_and_stop_when_quiet() -> None:
    clock = iter(float(n) / 1000 for n in range(1000))  # each trim "takes" 1 ms
    trimmer = Trimmer(lambda: None, min_interval_s=5.0, active_s=30.0,
                      clock=lambda: next(clock))
    trimmer.changed(100.0)
    done = [t for t in range(100, 200) if trimmer.tick(float(t))]
    # at once, then every 5 s while the wave may still renegotiate, then never
    assert done == [100, 105, 110, 115, 120, 125, 130]
    assert trimmer.count == 7 and trimmer.max_s == pytest.approx(0.001)
    assert trimmer.total_s == pytest.approx(0.007)
    trimmer.changed(180.5)  # a late join: one more trim even if its window ends quiet
    assert [t for t in range(200, 300) if trimmer.tick(float(t))] == [200, 205, 210]


def test_rss_growth_without_a_join_makes_a_trim_due() -> None:
    """A long renegotiation wave outlasts the window after the last join: growth counts."""
    rss = [100 << 20]
    trimmer = Trimmer(lambda: rss.__setitem__(0, rss[0] - (3 << 20)), min_interval_s=5.0,
                      active_s=30.0, growth_bytes=8 << 20)
    trimmer.changed(0.0)
    assert trimmer.tick(0.0, lambda: rss[0])  # the mark: 97 MiB after the trim
    ticks = [t for t in range(40, 200) if trimmer.tick(float(t), lambda: rss[0])]
    assert ticks == []  # quiet and not growing: never
    rss[0] += 7 << 20
    assert not trimmer.tick(200.0, lambda: rss[0])  # +7 MiB: below the mark
    rss[0] += 1 << 20
    assert trimmer.tick(201.0, lambda: rss[0]) and trimmer.count == 2
    assert not trimmer.tick(202.0, lambda: 1 << 40)  # then not before the interval


def test_a_change_during_the_interval_waits_for_it() -> None:
    trimmer = Trimmer(lambda: None, min_interval_s=5.0, active_s=0.0)
    trimmer.changed(0.0)
    assert trimmer.tick(0.0)
    trimmer.changed(1.0)
    assert [t for t in range(1, 20) if trimmer.tick(float(t))] == [5]


@pytest.mark.media
async def test_the_worker_trims_from_its_timer_never_from_the_packet_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIEMCAU_MEMTUNE", "trim")
    worker = Worker(MediaConfig())
    assert worker.trimmer is not None
    stacks: list[list[str]] = []
    trimmer = worker.trimmer
    trimmer._trim = lambda: stacks.append([f.filename for f in traceback.extract_stack()])
    worker.start()
    try:
        worker.join("room", "p1", "An", lambda event: None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not stacks and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert len(stacks) == 1
        files = stacks[0]
        assert any(f.endswith("sfu/scheduler.py") for f in files)  # a timer callback
        assert not any(f.endswith(("sfu/publisher.py", "sfu/producer.py", "sfu/consumer.py",
                                   "sfu/aiortc_hooks.py")) for f in files)
        # the next one not before the interval, however often the timer fires
        deadline = loop.time() + 2.5
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert len(stacks) == 1 and trimmer.count == 1
    finally:
        await worker.close()
