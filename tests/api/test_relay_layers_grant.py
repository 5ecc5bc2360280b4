"""``join.relay_layers`` (every simulcast layer as its own stream, sfu/layer_streams.py) is
granted to the ``relay`` role only on a closed server, to anyone on open rooms, and ignored for
everyone else: a participant cannot make the server send it every layer by asking. The real
app on a loopback port with its in-process media plane and a real SQLite file; nobody
publishes, so no media moves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from signaling.app import MEDIA_PLANE, create_app
from signaling.auth import create_join_token
from signaling.control import CONTROL
from tests.conftest import base_url, make_config

TIMEOUT = 10.0


async def joined(session: aiohttp.ClientSession, url: str, **fields: Any
                 ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await session.ws_connect(url.replace("http", "ws", 1) + "/ws")
    await ws.send_str(json.dumps({"type": "join", "name": "N", "relay_layers": True, **fields}))
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] in ("joined", "error"):
                return ws, message


def takes_every_layer(app: Any, room: str, participant_id: str) -> bool:
    worker = app[MEDIA_PLANE]
    subscriber = worker.rooms[room].participants[participant_id].subscriber
    return subscriber.layered is not None


async def test_only_a_relay_gets_every_layer_on_a_closed_server(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path, open_rooms=False, workers=0))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        control = app[CONTROL]
        org = await control.store.create_organisation("UBND")
        room = await control.store.create_room("tinh", org.id)
        url = base_url(server)
        tokens = {role: create_join_token(control.secret, "tinh", f"t:{role}", role.title(),
                                          role, room_instance=room.instance)
                  for role in ("member", "guest", "relay")}
        async with aiohttp.ClientSession() as session:
            got = {}
            for role, token in tokens.items():
                _ws, message = await joined(session, url, room="tinh", token=token)
                assert message["type"] == "joined", message
                got[role] = takes_every_layer(app, "tinh", message["participant_id"])
            assert got == {"member": False, "guest": False, "relay": True}
    finally:
        await server.close()


async def test_on_open_rooms_whoever_asks_gets_every_layer(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path, open_rooms=True, workers=0))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = base_url(server)
        async with aiohttp.ClientSession() as session:
            _ws, asked = await joined(session, url, room="open")
            _ws2, plain = await joined(session, url, room="open", relay_layers=False)
            assert takes_every_layer(app, "open", asked["participant_id"])
            assert not takes_every_layer(app, "open", plain["participant_id"])
    finally:
        await server.close()
