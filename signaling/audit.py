"""The join audit: one record per join attempt, written in the background, with repeats merged
and a retention policy, so a flood of attempts cannot grow the database without bound.

Repeats of the same attempt (same room, identity, role, address and outcome) within ``merge_s``
become one record with a ``count`` and ``last_at`` instead of a row each; refusals for being
rate-limited merge per address alone, whatever room or name they try. So one address costs at
most a few writes a minute however fast it sends. Records older than ``retention_s``, and all
but the newest ``keep_max``, are pruned (at most once every ``PRUNE_EVERY_S``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from signaling.store import JoinRecord, Store

logger = logging.getLogger(__name__)

MERGE_S = 60.0
RETENTION_S = 90 * 86400.0
KEEP_MAX = 200_000
PRUNE_EVERY_S = 3600.0
MAX_OPEN = 10_000
"""Merge windows kept in memory; beyond this the oldest are closed early (bounded memory)."""

_Key = tuple[str, str, str, str, str]


@dataclass
class _Open:
    """A record written once, collecting repeats until its window closes."""

    first_at: float
    inserted: asyncio.Task[int | None]
    repeats: int = 0
    last_at: float = 0.0


class JoinAudit:
    def __init__(self, store: Store, *, merge_s: float = MERGE_S,
                 retention_s: float = RETENTION_S, keep_max: int = KEEP_MAX,
                 max_open: int = MAX_OPEN) -> None:
        self.store = store
        self.merge_s = merge_s
        self.retention_s = retention_s
        self.keep_max = keep_max
        self.max_open = max_open
        self._open: dict[_Key, _Open] = {}  # insertion order = oldest window first
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pruned_at: float | None = None

    def record(self, record: JoinRecord) -> bool:
        """Audit one attempt (from the event loop; the writes happen in the background: the
        seat is already decided and a slow disk must not delay the join). True when it starts
        a new record, False when merged into an open one (the hash-chained audit trail and the
        event record take only the first of a run, so a flood stays a few rows)."""
        now = record.at
        self._close_expired(now)
        key = _key(record)
        entry = self._open.get(key)
        if entry is not None:
            entry.repeats += 1
            entry.last_at = now
            return False
        self._open[key] = _Open(now, self._spawn(self._insert(record)))
        while len(self._open) > self.max_open:
            self._close(next(iter(self._open)))
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self._spawn(self._prune(now))
        return True

    async def close(self) -> None:
        """Write the repeats still being merged and wait for every write."""
        for key in list(self._open):
            self._close(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _close_expired(self, now: float) -> None:
        while self._open:
            key, entry = next(iter(self._open.items()))
            if now - entry.first_at < self.merge_s:
                return
            self._close(key)

    def _close(self, key: _Key) -> None:
        entry = self._open.pop(key)
        if entry.repeats:
            self._spawn(self._merge(entry))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _insert(self, record: JoinRecord) -> int | None:
        try:
            return await self.store.record_join(record)
        except Exception:
            logger.exception("could not record a join in the audit")
            return None

    async def _merge(self, entry: _Open) -> None:
        record_id = await entry.inserted
        if record_id is None:
            return
        try:
            await self.store.merge_join(record_id, entry.repeats, entry.last_at)
        except Exception:
            logger.exception("could not merge repeated joins in the audit")

    async def _prune(self, now: float) -> None:
        try:
            await self.store.prune_joins(now - self.retention_s, self.keep_max)
        except Exception:
            logger.exception("could not prune the join audit")


def _key(record: JoinRecord) -> _Key:
    if record.outcome == "rate-limited":
        return ("", "", "", record.address, record.outcome)
    return (record.room, record.identity, record.role, record.address, record.outcome)
