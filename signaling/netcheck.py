"""The pre-join network check: round trip, download and upload measured against this server.

Three plain HTTP endpoints (no account needed: the check runs before joining, perhaps from an
invitation link) under ``/api/netcheck``:

- ``GET  /api/netcheck``             the limits and the 2 Mbps threshold (JSON); also the ping
- ``GET  /api/netcheck/down?bytes=N`` N incompressible bytes (at most ``MAX_TRANSFER_BYTES``)
- ``POST /api/netcheck/up``           a body of at most ``MAX_TRANSFER_BYTES``; answers its size
  and the seconds the server spent receiving it

Anyone can call them, so they are bounded: ``NetcheckBudget`` (pure, time passed in) gives each
client address (an IPv6 /64 as one) a byte budget that refills slowly, and caps transfers in
flight per address and for the whole server; a refused call gets 429 with Retry-After. The
client measures the times itself (fetch timings); the server's own upload time is a cross-check.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from aiohttp import web

from signaling.ratelimit import address_key

MAX_TRANSFER_BYTES = 4 << 20
"""One download or upload: 4 MiB is ~1.3 s at 25 Mbit/s, enough to tell 2 Mbit/s apart."""
BUDGET_BYTES = 24 << 20
"""Bytes one address may move at once (two full checks of 4 MiB each way and retries)."""
REFILL_BYTES_PER_S = (24 << 20) / 300
"""... refilled over five minutes: a script cannot turn the server into a traffic source."""
TRANSFER_TIMEOUT_S = 30.0
"""A transfer still running after this is cut: a client trickling bytes must not hold one of
the few transfer slots for long."""
MAX_IN_FLIGHT_PER_ADDRESS = 2
MAX_IN_FLIGHT_TOTAL = 16
CHUNK_BYTES = 64 << 10
_BLOCK = os.urandom(CHUNK_BYTES)  # random, so no proxy or link compression flatters the link


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class NetcheckBudget:
    """Byte budgets per address and transfers in flight. Pure: ``now`` is passed in."""

    budget_bytes: float = BUDGET_BYTES
    refill_per_s: float = REFILL_BYTES_PER_S
    max_in_flight_per_address: int = MAX_IN_FLIGHT_PER_ADDRESS
    max_in_flight_total: int = MAX_IN_FLIGHT_TOTAL
    max_addresses: int = 10_000
    transfer_timeout_s: float = TRANSFER_TIMEOUT_S
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self.prune(now)
            bucket = self._buckets[key] = _Bucket(self.budget_bytes, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.budget_bytes, bucket.tokens + elapsed * self.refill_per_s)
        bucket.updated = now
        return bucket

    def start(self, address: str, size: int, now: float) -> float:
        """Take ``size`` bytes for a transfer: 0.0 if allowed (call ``finish`` after), else
        the seconds to wait before trying again."""
        key = address_key(address)
        if self._in_flight.get(key, 0) >= self.max_in_flight_per_address or \
                sum(self._in_flight.values()) >= self.max_in_flight_total:
            return 1.0
        bucket = self._bucket(key, now)
        if bucket.tokens < size:
            return max(1.0, (size - bucket.tokens) / self.refill_per_s)
        bucket.tokens -= size
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return 0.0

    def finish(self, address: str, unused: int = 0, now: float = 0.0) -> None:
        """A transfer ended; ``unused`` bytes it had reserved go back (a short upload)."""
        key = address_key(address)
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)
        if unused > 0 and key in self._buckets:
            bucket = self._bucket(key, now)
            bucket.tokens = min(self.budget_bytes, bucket.tokens + unused)

    def prune(self, now: float) -> None:
        """Forget full buckets (they hold nothing a new one would not)."""
        for key in [k for k, b in self._buckets.items()
                    if b.tokens + (now - b.updated) * self.refill_per_s >= self.budget_bytes
                    and k not in self._in_flight]:
            del self._buckets[key]


NETCHECK = web.AppKey("netcheck", NetcheckBudget)
THRESHOLD = web.AppKey("netcheck_threshold", int)


def _too_many(wait: float) -> web.HTTPTooManyRequests:
    seconds = max(1, round(wait + 0.5))
    return web.HTTPTooManyRequests(
        text=f"network check limit reached; retry in {seconds} s",
        headers={"Retry-After": str(seconds), "Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    return web.json_response(
        {"max_bytes": MAX_TRANSFER_BYTES, "audio_only_below_bps": request.app[THRESHOLD],
         "server_time": time.time()},
        headers={"Cache-Control": "no-store"})


def _size(request: web.Request) -> int:
    text = request.query.get("bytes", str(1 << 20))
    if not text.isdigit() or len(text) > 9:
        raise web.HTTPBadRequest(text=f"bytes must be a whole number from 1 to "
                                      f"{MAX_TRANSFER_BYTES}")
    size = int(text)
    if not 1 <= size <= MAX_TRANSFER_BYTES:
        raise web.HTTPBadRequest(text=f"bytes must be from 1 to {MAX_TRANSFER_BYTES}, "
                                      f"not {size}")
    return size


async def download(request: web.Request) -> web.StreamResponse:
    size = _size(request)
    budget, address = request.app[NETCHECK], request.remote or "?"
    wait = budget.start(address, size, time.monotonic())
    if wait:
        raise _too_many(wait)
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream", "Cache-Control": "no-store",
            "Content-Length": str(size)})
        await response.prepare(request)
        left = size
        async with asyncio.timeout(budget.transfer_timeout_s):  # a reader that stalls is cut
            while left > 0:
                piece = _BLOCK[:min(left, CHUNK_BYTES)]
                await response.write(piece)
                left -= len(piece)
        await response.write_eof()
        return response
    finally:
        budget.finish(address)


async def upload(request: web.Request) -> web.Response:
    declared = request.content_length
    if declared is not None and declared > MAX_TRANSFER_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_TRANSFER_BYTES, actual_size=declared)
    budget, address = request.app[NETCHECK], request.remote or "?"
    reserved = declared if declared is not None else MAX_TRANSFER_BYTES
    wait = budget.start(address, reserved, time.monotonic())
    if wait:
        raise _too_many(wait)
    received = 0
    first = last = 0.0
    try:
        # Streamed and counted, never kept: the app's client_max_size applies to read() only.
        async with asyncio.timeout(budget.transfer_timeout_s):
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                if not received:
                    first = time.monotonic()
                received += len(chunk)
                last = time.monotonic()
                if received > MAX_TRANSFER_BYTES:
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_TRANSFER_BYTES,
                                                        actual_size=received)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"upload took longer than "
                                          f"{budget.transfer_timeout_s:g} s") from None
    finally:
        budget.finish(address, max(0, reserved - received), time.monotonic())
    return web.json_response({"bytes": received, "seconds": round(last - first, 6)},
                             headers={"Cache-Control": "no-store"})


def add_netcheck_routes(app: web.Application, audio_only_below_bps: int) -> None:
    app[NETCHECK] = NetcheckBudget()
    app[THRESHOLD] = audio_only_below_bps
    app.router.add_routes([
        web.get("/api/netcheck", info),
        web.get("/api/netcheck/down", download),
        web.post("/api/netcheck/up", upload),
    ])
