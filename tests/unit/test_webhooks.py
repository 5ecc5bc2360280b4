"""Webhooks (issue 13): a receiver on loopback gets signed deliveries, retried from the store's
queue while it is down (connection refused, then an error status) and delivered once it is up;
the queue survives a restart."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from signaling.config import HookSettings
from signaling.store.sqlite import SqliteStore
from signaling.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    RoomEvents,
    WebhookService,
    backoff_s,
    sign,
    verify,
)
from tests.pgproc import open_store_for

SECRET = "a-shared-secret-of-32-characters"
DEADLINE_S = 20.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """A webhook receiver: checks each signature, answers 503 to the first ``fail_first``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, object]] = []
        self.bad_signatures = 0
        self.fail_first = fail_first
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, ""), time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        parsed = json.loads(body)
        assert request.headers[EVENT_HEADER] == parsed["event"]
        self.bodies.append(parsed)
        return web.Response(status=204)

    async def start(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


def test_signature_and_backoff() -> None:
    body = b'{"event":"room_started"}'
    header = sign(SECRET, body, 1_000_000)
    assert verify(SECRET, body, header, 1_000_010)
    assert not verify(SECRET, body + b" ", header, 1_000_010)  # body changed
    assert not verify("another-secret-another-secret!!", body, header, 1_000_010)
    assert not verify(SECRET, body, header, 1_000_000 + 3600)  # a replay, too late
    assert not verify(SECRET, body, "v1=deadbeef", 1_000_000)
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(40) == 600.0


async def test_signed_deliveries_retried_while_receiver_down_then_up(
        tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    port = unused_port()
    hooks = HookSettings(webhook_urls=(f"http://127.0.0.1:{port}/hook",), webhook_secret=SECRET)
    service = WebhookService(store, hooks, backoff_base_s=0.05, backoff_max_s=0.3)
    events = RoomEvents(service)
    events.joined("hanoi", "p1", "Ann", "account:1", "member")
    events.left("hanoi", "p1")
    events.refused("hanoi", "Bob", "room-full", "127.0.0.9")
    events.recording("recording_failed", "hanoi", "rec1", "disk-full: no space")
    task = asyncio.ensure_future(service.run())
    receiver = Receiver(fail_first=2)
    runner: web.AppRunner | None = None
    try:
        async def all_failed_twice() -> bool:
            rows = await store.list_webhooks()
            return len(rows) == 6 and all(row.attempts >= 2 for row in rows)

        await eventually(all_failed_twice, "failed attempts while the receiver is down")
        rows = await store.list_webhooks()
        assert all(row.delivered_at is None and row.last_error for row in rows)
        assert any("Connect" in (row.last_error or "") for row in rows)
        assert service.delivered == 0
        runner = await receiver.start(port)  # the receiver comes up (and fails twice more)

        async def all_delivered() -> bool:
            return all(row.delivered_at is not None for row in await store.list_webhooks())

        await eventually(all_delivered, "deliveries once the receiver is up")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        await store.close()
    assert receiver.bad_signatures == 0
    assert receiver.requests == 6 + 2  # each once, plus the two answered 503
    assert sorted(body["event"] for body in receiver.bodies) == sorted([
        "room_started", "participant_joined", "participant_left", "room_finished",
        "participant_refused", "recording_failed"])
    failed = next(body for body in receiver.bodies if body["event"] == "recording_failed")
    assert failed["data"] == {"room": "hanoi", "recording_id": "rec1",
                              "error": "disk-full: no space"}


async def test_queue_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    port = unused_port()
    hooks = HookSettings(webhook_urls=(f"http://127.0.0.1:{port}/hook",), webhook_secret=SECRET)
    store = await SqliteStore.open(path)
    first = WebhookService(store, hooks)
    first.emit("meeting_reminder", {"room": "hue", "title": "Giao ban"})
    await first.close()  # shutdown before any delivery: the event is stored, not lost
    await store.close()
    receiver = Receiver()
    runner = await receiver.start(port)
    store = await SqliteStore.open(path)
    second = WebhookService(store, hooks)
    task = asyncio.ensure_future(second.run())
    try:
        async def delivered() -> bool:
            return len(receiver.bodies) == 1

        await eventually(delivered, "the stored event after the restart")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        await store.close()
    body = receiver.bodies[0]
    assert body["event"] == "meeting_reminder"
    assert body["data"] == {"room": "hue", "title": "Giao ban"}


def test_emit_without_urls_queues_nothing(tmp_path: Path) -> None:
    service = WebhookService(store=None, settings=HookSettings())  # type: ignore[arg-type]
    service.emit("room_started", {"room": "x"})  # no store touched: nothing configured
    assert service._pending == []


async def test_prune_forgets_delivered_and_gives_up_on_the_undeliverable(
        tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    try:
        await store.enqueue_webhooks([("http://127.0.0.1:9/a", "room_started", "{}", 100.0),
                                      ("http://127.0.0.1:9/a", "room_finished", "{}", 200.0),
                                      ("http://127.0.0.1:9/a", "room_started", "{}", 300.0)])
        first, second, third = sorted(await store.list_webhooks(), key=lambda r: r.id)
        await store.webhook_delivered(first.id, 150.0)
        await store.webhook_failed(second.id, "HTTP 500", 260.0)
        assert await store.prune_webhooks(delivered_before=160.0,
                                          undelivered_before=250.0) == (1, 1)
        assert [row.id for row in await store.list_webhooks()] == [third.id]
        assert [row.id for row in await store.due_webhooks(now=300.0)] == [third.id]
        assert await store.due_webhooks(now=299.0) == []
    finally:
        await store.close()
