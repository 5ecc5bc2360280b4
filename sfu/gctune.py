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
"""

from __future__ import annotations

import gc
import os

YOUNG_THRESHOLD = 20_000
"""Net container allocations before a young collection (CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle one, middle ones per full one (default 10, 10)."""


def tune_for_forwarding() -> bool:
    """Freeze what is alive now and widen the young generation; False when the environment
    asked for CPython's defaults."""
    if os.environ.get("DIEMCAU_GC_DEFAULT") == "1":
        return False
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return True
