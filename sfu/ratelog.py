"""Rate-limited error logging for per-packet code paths."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("sfu")


class RateLimitedLog:
    """One traceback per distinct failure per minute, then a count: a packet-rate bug must not
    flood the log (and cost more CPU than the media)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def exception(self, what: str, exc: BaseException) -> None:
        key = f"{what}:{type(exc).__name__}:{exc}"[:200]
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.interval_s:
            self.suppressed += 1
            return
        if len(self._last) > 1000:  # keys carry messages: keep the memory bounded
            self._last.clear()
        self._last[key] = now
        logger.error("SFU %s handler failed; packet dropped (%d similar suppressed)",
                     what, self.suppressed, exc_info=exc)
        self.suppressed = 0


handler_errors = RateLimitedLog()
