"""The journal: the event record (what the daily report counts) and the audit trail (who did
what), written from the event loop without ever waiting for the disk.

``Journal.event`` and ``Journal.audit`` only append to a list; one background task writes what
has gathered every ``flush_s`` (or at once when ``batch_max`` are waiting), one transaction per
batch. ``close`` writes the rest, so a restart loses nothing; a crash loses at most the last
``flush_s``. A failed write keeps its batch for the next try (bounded by ``max_pending``: beyond
that the oldest are dropped and counted, so a dead disk cannot eat the memory).

Subscribers (``EventSink``, e.g. a webhook dispatcher) get every event synchronously as it is
recorded; one that raises is logged and cannot stop the others or the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from signaling.store import Store
from signaling.store.journal_models import AuditEntry, AuditRow, ChainWalk, MeetingEvent

logger = logging.getLogger(__name__)

FLUSH_S = 1.0
BATCH_MAX = 500
MAX_PENDING = 100_000
EVENT_RETENTION_S = 400 * 86400.0
"""Events are kept over a year (a yearly report needs them), then pruned."""
AUDIT_RETENTION_S = 365 * 86400.0
AUDIT_KEEP_MAX = 2_000_000
PRUNE_EVERY_S = 3600.0
MERGE_S = 60.0
MAX_RUNS = 10_000


VERIFY_PAGE = 5000


async def verify_audit(store: Store, page: int = VERIFY_PAGE) -> ChainWalk:
    """Walk the whole audit chain a page at a time (bounded memory; the store thread is free
    between pages, and hashing runs on a worker thread, so the server keeps serving)."""
    anchor, rows = await store.audit_page(0, page)
    walk = ChainWalk(anchor)

    def feed(batch: list[AuditRow]) -> None:
        for row in batch:
            walk.feed(row)

    while rows:
        await asyncio.to_thread(feed, rows)
        _, rows = await store.audit_page(walk.seq, page)
    return walk


class EventSink(Protocol):
    """Told of every meeting event as it is recorded (from the event loop; must not block:
    queue the work, as a webhook dispatcher would)."""

    def on_event(self, event: MeetingEvent) -> None: ...


class Journal:
    def __init__(self, store: Store, *, flush_s: float = FLUSH_S, batch_max: int = BATCH_MAX,
                 max_pending: int = MAX_PENDING, event_retention_s: float = EVENT_RETENTION_S,
                 audit_retention_s: float = AUDIT_RETENTION_S,
                 audit_keep_max: int = AUDIT_KEEP_MAX,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.flush_s = flush_s
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.event_retention_s = event_retention_s
        self.audit_retention_s = audit_retention_s
        self.audit_keep_max = audit_keep_max
        self.clock = clock
        self.dropped = 0
        """Entries dropped because the store could not keep up (logged; should stay 0)."""
        self._events: list[MeetingEvent] = []
        self._audit: list[AuditEntry] = []
        self._sinks: list[EventSink] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: float | None = None
        self._closing = False
        self._runs: dict[tuple[str, ...], list[float]] = {}  # key -> [first at, repeats]
        self._sink_errors: dict[int, tuple[float, int]] = {}  # sink id -> (logged at, since)

    # -- from the event loop ---------------------------------------------------------------------

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def event(self, event: MeetingEvent) -> None:
        self._events.append(event)
        for sink in list(self._sinks):
            try:
                sink.on_event(event)
            except Exception:
                self._sink_failed(sink, event)
        self._pending_changed()

    def _sink_failed(self, sink: EventSink, event: MeetingEvent) -> None:
        """One traceback per sink a minute, then a count: a broken subscriber must not flood
        the log with one line per event."""
        now = time.monotonic()
        key = id(sink)
        last, suppressed = self._sink_errors.get(key, (float("-inf"), 0))
        if now - last < 60.0:
            self._sink_errors[key] = (last, suppressed + 1)
            return
        self._sink_errors[key] = (now, 0)
        logger.exception("event sink %r failed on %s (%d failures since the last report)",
                         sink, event.kind, suppressed)

    def audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        self._pending_changed()

    def first_of_run(self, key: tuple[str, ...], now: float,
                     merge_s: float = MERGE_S) -> tuple[bool, int]:
        """Repeats of one failure (same who, what, where and outcome) within ``merge_s`` of
        the first are one audit row, as the join audit merges them: a flood of failed logins
        costs a row a minute. Returns (write this one?, repeats merged since the last written
        one of this key: say so in its detail). Bounded: the oldest runs are forgotten."""
        run = self._runs.get(key)
        if run is not None and now - run[0] < merge_s:
            run[1] += 1
            return False, 0
        merged = 0 if run is None else int(run[1])
        self._runs.pop(key, None)
        self._runs[key] = [now, 0.0]
        while len(self._runs) > MAX_RUNS:
            del self._runs[next(iter(self._runs))]
        return True, merged

    @property
    def pending(self) -> int:
        return len(self._events) + len(self._audit)

    def _pending_changed(self) -> None:
        for queue in (self._events, self._audit):
            if len(queue) > self.max_pending:
                excess = len(queue) - self.max_pending
                del queue[:excess]
                self.dropped += excess
                logger.error("journal: store behind; dropped %d oldest entries", excess)
        if self.pending >= self.batch_max:
            self._wake.set()

    # -- the writer ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        # Never cancelled mid-write (``close`` asks it to stop): a batch taken off the lists is
        # always written or put back.
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            if not self._closing:
                await self._maybe_prune()

    async def flush(self) -> None:
        """Write what is pending (one transaction for the events, one for the audit)."""
        async with self._lock:
            events, self._events = self._events, []
            entries, self._audit = self._audit, []
            if events:
                try:
                    await self.store.append_events(events)
                except Exception:
                    logger.exception("journal: could not write %d events; will retry",
                                     len(events))
                    self._events[:0] = events
            if entries:
                try:
                    await self.store.append_audit(entries)
                except Exception:
                    logger.exception("journal: could not write %d audit entries; will retry",
                                     len(entries))
                    self._audit[:0] = entries
            self._pending_changed()

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            await self.store.prune_events(now - self.event_retention_s)
            dropped = await self.store.prune_audit(now - self.audit_retention_s,
                                                   self.audit_keep_max)
        except Exception:
            logger.exception("journal: pruning failed")
            return
        if dropped:
            # The pruning itself is on the record: who can tell a cut from a retention run.
            self.audit(AuditEntry(at=now, actor="server", action="audit.pruned",
                                  detail={"rows": dropped}))
            logger.info("audit trail: %d rows past their retention pruned", dropped)

    async def close(self) -> None:
        """Stop the writer and write everything still pending."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
