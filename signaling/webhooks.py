"""Webhooks: what happens on the server, POSTed as signed JSON to the operator's URLs.

Events: ``room_started``, ``room_finished``, ``participant_joined``, ``participant_left``,
``participant_refused``, ``recording_started``, ``recording_finished``, ``recording_failed``,
``meeting_reminder``. Body: ``{"id", "event", "created_at", "data": {...}}``.

Signed as LiveKit signs its webhooks, with a shared secret and HMAC-SHA256, but in one header
(Stripe's form, which also carries the time so a receiver can refuse a replay):
``X-Diemcau-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
``verify`` is the receiver's side.

Durable and out of the way: ``emit`` only appends to a list (no I/O, no await: safe from any
signaling code, never called on the media path); one task moves the list into the store's
``webhook_queue`` in one transaction, then POSTs what is due. A failed delivery (refused,
timeout, non-2xx) is retried with exponential backoff (1 s, 2 s, 4 s, ... at most 10 min),
from the store, so a restart resumes where it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from signaling.config import HookSettings
from signaling.store.sqlite_ops import SqliteOps, WebhookRow

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Diemcau-Signature"
EVENT_HEADER = "X-Diemcau-Event"
DELIVERY_HEADER = "X-Diemcau-Delivery"
EVENTS = ("room_started", "room_finished", "participant_joined", "participant_left",
          "participant_refused", "recording_started", "recording_finished", "recording_failed",
          "meeting_reminder")
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 600.0
DELIVERY_TIMEOUT_S = 10.0
BATCH = 50
CLAIM_S = 6 * DELIVERY_TIMEOUT_S
"""A batch is claimed this long (nodes sharing the queue skip it), well past its deliveries."""
CONCURRENT_DELIVERIES = 4
KEEP_DELIVERED_S = 7 * 86400
GIVE_UP_AFTER_S = 3 * 86400
"""An event no receiver took within this long is dropped (logged): a receiver gone for good
must not grow the queue for ever."""
RESPONSE_READ_BYTES = 64 * 1024
IDLE_WAKE_S = 30.0
"""The task looks at the queue at least this often (rows another process queued)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_s: float = 300) -> bool:
    """The receiver's check: the signature matches and is no older than ``tolerance_s``."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S) -> float:
    """Delay before retry number ``attempts`` (1 = the first retry)."""
    return min(base_s * 2 ** max(attempts - 1, 0), max_s)


@dataclass(eq=False)
class WebhookService:
    store: SqliteOps
    settings: HookSettings
    clock: Callable[[], float] = time.time
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_max_s: float = BACKOFF_MAX_S
    delivered: int = 0
    failed: int = 0
    _pending: list[tuple[str, str, str, float]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue ``event`` for every configured URL. Synchronous and I/O-free."""
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        if not self.settings.webhook_urls:
            return
        now = self.clock()
        body = msgspec.json.encode({"id": uuid.uuid4().hex, "event": event, "created_at": now,
                                    "data": data}).decode()
        for url in self.settings.webhook_urls:
            self._pending.append((url, event, body, now))
        self._wake.set()

    async def flush(self) -> None:
        """Move what ``emit`` collected into the store (one transaction)."""
        if self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.enqueue_webhooks(batch)
            except Exception:
                self._pending[:0] = batch  # the next round tries again
                raise

    async def run(self) -> None:
        """Until cancelled: flush, deliver what is due, sleep until the next is due."""
        timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            last_prune = 0.0
            while True:
                try:
                    await self.flush()
                    while due := await self.store.claim_webhooks(self.clock(), CLAIM_S,
                                                                 BATCH):
                        await self._deliver_all(http, due)
                        await self.flush()
                    if self.clock() - last_prune > 3600:
                        last_prune = self.clock()
                        _, given_up = await self.store.prune_webhooks(
                            last_prune - KEEP_DELIVERED_S, last_prune - GIVE_UP_AFTER_S)
                        if given_up:
                            logger.error("webhooks: gave up on %d events undelivered for %d "
                                         "days", given_up, GIVE_UP_AFTER_S // 86400)
                    next_at = await self.store.next_webhook_at()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("webhook queue failed; retrying")
                    next_at = self.clock() + 5.0
                wait = IDLE_WAKE_S if next_at is None else next_at - self.clock()
                self._wake.clear()
                if self._pending:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), min(max(wait, 0.0), IDLE_WAKE_S))
                except TimeoutError:
                    pass

    async def close(self) -> None:
        """At shutdown: what was emitted but not stored yet is stored (the store closes
        after us), so it is delivered after the restart."""
        try:
            await self.flush()
        except Exception:
            logger.exception("%d webhook events could not be stored at shutdown",
                             len(self._pending))

    async def _deliver_all(self, http: aiohttp.ClientSession, rows: list[WebhookRow]) -> None:
        limit = asyncio.Semaphore(CONCURRENT_DELIVERIES)

        async def one(row: WebhookRow) -> None:
            async with limit:
                await self._deliver(http, row)

        await asyncio.gather(*(one(row) for row in rows))

    async def _deliver(self, http: aiohttp.ClientSession, row: WebhookRow) -> None:
        body = row.body.encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: row.event,
                   DELIVERY_HEADER: str(row.id),
                   SIGNATURE_HEADER: sign(self.settings.webhook_secret, body, int(self.clock()))}
        error: str | None = None
        try:
            async with http.post(row.url, data=body, headers=headers,
                                 allow_redirects=False) as response:
                await response.content.read(RESPONSE_READ_BYTES)  # the rest is not ours to hold
                if not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.delivered += 1
            await self.store.webhook_delivered(row.id, self.clock())
            return
        self.failed += 1
        delay = backoff_s(row.attempts + 1, self.backoff_base_s, self.backoff_max_s)
        logger.warning("webhook %s #%d to %s failed (%s); retry %d in %.0f s", row.event,
                       row.id, row.url, error, row.attempts + 1, delay)
        await self.store.webhook_failed(row.id, error, self.clock() + delay)


class RoomEvents:
    """Turns what sessions and the recorder report into webhook events: a room starts with
    its first participant and finishes with its last."""

    def __init__(self, webhooks: WebhookService) -> None:
        self.webhooks = webhooks
        self.occupancy: dict[str, int] = {}

    def joined(self, room: str, participant_id: str, name: str, identity: str,
               role: str) -> None:
        count = self.occupancy.get(room, 0)
        if count == 0:
            self.webhooks.emit("room_started", {"room": room})
        self.occupancy[room] = count + 1
        self.webhooks.emit("participant_joined", {"room": room, "participant_id": participant_id,
                                                  "name": name, "identity": identity,
                                                  "role": role})

    def left(self, room: str, participant_id: str) -> None:
        self.webhooks.emit("participant_left", {"room": room, "participant_id": participant_id})
        count = self.occupancy.get(room, 0) - 1
        if count <= 0:
            self.occupancy.pop(room, None)
            self.webhooks.emit("room_finished", {"room": room})
        else:
            self.occupancy[room] = count

    def refused(self, room: str, name: str, code: str, address: str) -> None:
        self.webhooks.emit("participant_refused", {"room": room, "name": name, "code": code,
                                                   "address": address})

    def recording(self, event: str, room: str, recording_id: str,
                  error: str | None = None) -> None:
        data: dict[str, Any] = {"room": room, "recording_id": recording_id}
        if error:
            data["error"] = error
        self.webhooks.emit(event, data)
