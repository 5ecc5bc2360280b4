"""glibc allocator settings and trims for a forwarding process (issue 11: memory per participant).

Where the RSS beyond live Python objects is (``bench/memory.py``'s allocator tables, one room
of 50, RSS growth per participant ~3.1-3.5 MiB, live objects ~1.9 MiB): pymalloc's arenas
~1.7-1.9 MiB of which ~0.9-1.1 free (~0.65 free blocks in partly used pools, ~0.3 whole free
pools), glibc's main arena (``[heap]``) ~1.5 MiB of which ~0.2-0.4 free chunks between live
ones. Both come from the join waves: each join makes aiortc build and parse a full offer and
answer for every subscriber, and what they freed stays mapped (pymalloc keeps an arena while
one object in it lives; glibc gives memory back on its own only from the top of its heap).
Threads allocate next to nothing here (8 glibc arenas, 0.01 MiB per participant in all but
the main one); nothing is mmapped by glibc (no block over its mmap threshold).

Levers, measured alone in alternating runs (README, "Memory per participant"):

- ``Trimmer`` (on by default): ``malloc_trim(0)`` (which since glibc 2.8 also returns free
  pages in the middle of the heap, not only at its top) after joins and leaves: checked on the
  worker's 1 s beat (a timer callback, never on the packet path), at most once per
  ``min_interval_s``, while a join or leave happened in the last ``active_s`` seconds (the
  renegotiations a join sets off take seconds after it) or once the RSS grew by
  ``growth_bytes`` since the last trim. A meeting that does not change does not grow and never
  trims. Each trim's own duration is kept (``count``, ``total_s``, ``max_s``): 12-18 trims
  per 50-person join wave, 8-41 ms in all, the longest 1.7-21 ms. It reaches glibc's free
  chunks only; pymalloc's free pools are not glibc's.
- ``tune_allocator()`` once at start-up, before any thread starts: ``mallopt`` caps the arenas
  (``M_ARENA_MAX``) and fixes the mmap threshold (``M_MMAP_THRESHOLD``, which also stops glibc
  from raising it after a big block is freed). Opt-in (``arenas``, ``mmap``): neither changed
  the RSS per participant (the threads' arenas and mmapped blocks were already ~0); the cap is
  there for deployments whose threads do allocate (recordings, password hashing).

``DIEMCAU_MEMTUNE=0`` keeps glibc's defaults and never trims (for comparing, as
``DIEMCAU_GC_DEFAULT=1`` does for the collector); ``DIEMCAU_MEMTUNE=trim+arenas+mmap`` (parts
separated by ``+`` or ``,``) chooses the parts. Not glibc (musl, macOS): nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

ENVIRONMENT = "DIEMCAU_MEMTUNE"
PARTS = ("arenas", "mmap", "trim")
DEFAULT_PARTS = frozenset({"trim"})
"""What paid in ``bench/memory.py`` at 50; ``arenas`` and ``mmap`` did not (module doc)."""

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENA_MAX = 2
"""Arenas in all: the main one (the event loop's thread) and one shared by the other threads."""
MMAP_THRESHOLD = 128 * 1024
"""glibc's initial value, kept fixed (blocks this big are mmapped and unmapped when freed)."""


def parts_enabled(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The parts ``DIEMCAU_MEMTUNE`` asks for: ``DEFAULT_PARTS`` unless set, none for ``0``."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "").strip()
    if value in ("", "1"):
        return DEFAULT_PARTS
    if value == "0":
        return frozenset()
    return frozenset(part.strip() for part in value.replace("+", ",").split(",")) & frozenset(
        PARTS)


def _libc() -> ctypes.CDLL | None:
    """glibc, or None elsewhere (no ``mallopt``/``malloc_trim``)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


@dataclass(frozen=True)
class AllocatorTuning:
    """What ``tune_allocator`` applied (``mallopt`` returned 1 for each listed option)."""

    arena_max: int | None
    mmap_threshold: int | None
    trim: bool


def tune_allocator(environ: dict[str, str] | None = None) -> AllocatorTuning | None:
    """Apply the start-up options once per process (call before starting threads); None when
    disabled or not on glibc."""
    parts = parts_enabled(environ)
    libc = _libc() if parts else None
    if libc is None:
        return None
    arena_max = ARENA_MAX if "arenas" in parts and libc.mallopt(M_ARENA_MAX, ARENA_MAX) else None
    mmap = (MMAP_THRESHOLD if "mmap" in parts
            and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) else None)
    return AllocatorTuning(arena_max, mmap, "trim" in parts)


def malloc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)`` as a callable, or None when not on glibc."""
    libc = _libc()
    if libc is None:
        return None
    trim = libc.malloc_trim
    return lambda: trim(0)


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """The process's resident set (one read of /proc/self/statm, a few microseconds)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Trimmer:
    """Gives glibc's free memory back after joins/leaves and the renegotiations they set off
    (see the module doc). Pure decision (time and RSS passed in); ``trim`` is injected
    (``malloc_trim()`` in the server).

    Due when ``min_interval_s`` passed since the last trim and either a participant joined or
    left less than ``active_s`` ago (or since that trim), or the RSS grew by ``growth_bytes``
    since that trim (a wave of renegotiations on a busy machine outlasts ``active_s``). A
    meeting that does not change does not grow, and never trims."""

    MIN_INTERVAL_S = 5.0
    """At most one trim this often."""
    ACTIVE_S = 30.0
    """Trims continue this long after the last join or leave (its renegotiations)."""
    GROWTH_BYTES = 8 * 2**20
    """RSS growth since the last trim that makes one due without a join or leave."""

    def __init__(self, trim: Callable[[], object], min_interval_s: float = MIN_INTERVAL_S,
                 active_s: float = ACTIVE_S, growth_bytes: int = GROWTH_BYTES,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._trim = trim
        self.min_interval_s = min_interval_s
        self.active_s = active_s
        self.growth_bytes = growth_bytes
        self._clock = clock  # measures each trim's own duration
        self._changed_at: float | None = None
        self._last_trim: float | None = None
        self._rss_after_trim: int | None = None
        self._changed_since_trim = False
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def changed(self, now: float) -> None:
        """A participant joined or left (their renegotiations follow)."""
        self._changed_at = now
        self._changed_since_trim = True

    def due(self, now: float, rss: int | None = None) -> bool:
        if self._last_trim is not None and now - self._last_trim < self.min_interval_s:
            return False
        if self._changed_since_trim:
            return True
        if self._changed_at is not None and now - self._changed_at <= self.active_s:
            return True
        return (rss is not None and self._rss_after_trim is not None
                and rss - self._rss_after_trim >= self.growth_bytes)

    def tick(self, now: float, rss: Callable[[], int | None] = lambda: None) -> bool:
        """Trim if due (from a periodic timer); True when it trimmed. ``rss`` reads the
        resident set (before deciding, and after a trim as the mark growth counts from)."""
        if self._last_trim is not None and now - self._last_trim < self.min_interval_s:
            return False  # the common case: no read at all
        if not self.due(now, rss()):
            return False
        started = self._clock()
        self._trim()
        took = self._clock() - started
        self._last_trim = now
        self._rss_after_trim = rss()
        self._changed_since_trim = False
        self.count += 1
        self.total_s += took
        self.max_s = max(self.max_s, took)
        return True


def worker_trimmer(environ: dict[str, str] | None = None) -> Trimmer | None:
    """The trimmer of a media worker, or None when disabled or not on glibc."""
    if "trim" not in parts_enabled(environ):
        return None
    trim = malloc_trim()
    return Trimmer(trim) if trim is not None else None
