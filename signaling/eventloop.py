"""The event loop every diemcau process runs on: the server (``diemcau serve``) and the load
generator and benchmarks with their worker processes. A module of its own so that the CLI, loadtest
and bench all import it from here, and none of them imports another for it."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed (a dependency on Linux), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
