"""A hostile or broken far server: the relay refuses to start, or counts and goes on.

The far server here is a small aiohttp WebSocket endpoint on 127.0.0.1 speaking the signaling
protocol badly; the near side is a real in-process ``Worker``. No media moves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import WSMsgType, web

import signaling.relay as relay_module
from loadtest.client import wait_until
from sfu.worker import MediaConfig, Worker
from signaling.relay import Relay, RelayError, RelaySpec

Script = Callable[[web.WebSocketResponse], Awaitable[None]]


@asynccontextmanager
async def far_server(script: Script) -> AsyncIterator[str]:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        message = await socket.receive()
        assert message.type == WSMsgType.TEXT and json.loads(message.data)["type"] == "join"
        await script(socket)
        return socket

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def relay_to(url: str, worker: Worker) -> Relay:
    return Relay("t1", worker, "huyen", RelaySpec(url, "tinh"), ["127.0.0.1"])


@pytest.mark.parametrize("reply", [
    {"type": "error", "code": "room-full", "message": "full"},
    {"type": "joined"},  # no participant id
    {"type": "lobby"},  # a relay does not wait in a lobby
])
async def test_a_refusal_or_a_bad_joined_stops_the_start(reply: dict[str, object]) -> None:
    async def script(socket: web.WebSocketResponse) -> None:
        await socket.send_str(json.dumps(reply))
        await socket.receive()

    worker = Worker(MediaConfig())
    async with far_server(script) as url:
        relay = relay_to(url, worker)
        with pytest.raises(RelayError):
            await relay.start()
    assert relay.state == "failed" and relay.error
    assert "huyen" not in worker.rooms  # never appeared in the near room


async def test_silence_after_join_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "JOIN_TIMEOUT_S", 0.5)

    async def script(socket: web.WebSocketResponse) -> None:
        await socket.send_str("not json {")
        await socket.send_str("[1, 2]")
        await socket.receive()

    async with far_server(script) as url:
        relay = relay_to(url, Worker(MediaConfig()))
        with pytest.raises(RelayError):
            await relay.start()
    assert relay.state == "failed"


async def test_garbage_is_counted_a_close_reconnects_and_a_removal_ends_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "RECONNECT_MIN_S", 0.05)
    release, remove = asyncio.Event(), asyncio.Event()
    connections: list[web.WebSocketResponse] = []
    joined = json.dumps({"type": "joined", "participant_id": "r1", "can_publish": False,
                         "pinned": None})

    async def script(socket: web.WebSocketResponse) -> None:
        connections.append(socket)
        await socket.send_str(joined)
        if len(connections) == 1:
            for junk in ("not json", "[]", "7", json.dumps({"type": "subscribe_offer"}),
                         json.dumps({"type": "subscribe_offer", "sdp": "v=0\r\nm=bogus\r\n"}),
                         json.dumps({"type": "subscribe_offer", "sdp": 5, "tracks": []})):
                await socket.send_str(junk)
            await release.wait()
            await socket.close()  # the far server goes: the relay reconnects
        else:
            await remove.wait()
            await socket.send_str(json.dumps({"type": "removed", "reason": "kicked"}))
            await socket.receive()

    worker = Worker(MediaConfig())
    async with far_server(script) as url:
        relay = relay_to(url, worker)
        await relay.start()
        try:
            assert relay.state == "running"
            assert relay.participant_id in worker.rooms["huyen"].local  # B's voices
            assert await wait_until(lambda: relay.offer_errors == 3, 5), relay.offer_errors
            release.set()
            assert await wait_until(lambda: relay.reconnects == 1 and relay.state == "running",
                                    5), (relay.state, relay.error)
            assert len(connections) == 2
            # meanwhile the relay stayed in the near room
            assert relay.participant_id in worker.rooms["huyen"].local
            remove.set()  # the second connection now removes the relay: no reconnecting
            assert await wait_until(lambda: relay.state == "failed", 5), relay.state
            assert "kicked" in (relay.error or "")
            assert await wait_until(lambda: "huyen" not in worker.rooms, 5)
            assert len(connections) == 2
        finally:
            release.set()
            remove.set()
            await relay.close()
