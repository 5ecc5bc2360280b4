"""The control plane through the real server: WebSocket joins against a real SQLite store.

No media moves here (nobody publishes), so these run anywhere; they check the join rules end to
end: capacity under concurrent joins, accounts and room passwords, take-over, the lobby, and
moderation over the REST API reaching the live sessions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.auth import create_join_token, new_secret_token
from signaling.control import CONTROL, ControlPlane
from tests.conftest import base_url, make_config

TIMEOUT = 10.0


@pytest.fixture
async def closed_server(tmp_path: Path) -> AsyncIterator[TestServer]:
    app = create_app(make_config(tmp_path, open_rooms=False))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


class Client:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, *types: str) -> dict[str, Any]:
        """The next message of one of ``types`` (others are kept in ``messages``)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    return {"type": "closed"}
                message = json.loads(frame.data)
                self.messages.append(message)
                if message["type"] in types:
                    return message

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def join(url: str, **fields: Any) -> tuple[Client, dict[str, Any]]:
    http = aiohttp.ClientSession()
    client = Client(http, await http.ws_connect(url.replace("http", "ws", 1) + "/ws"))
    await client.send({"type": "join", **fields})
    return client, await client.next("joined", "lobby", "error")


async def setup_room(control: ControlPlane, name: str, **options: Any) -> int:
    org = await control.store.create_organisation(f"org-{name}")
    room = await control.store.create_room(name, org.id, **options)
    return room.id


async def test_concurrent_joins_never_exceed_capacity(closed_server: TestServer) -> None:
    control = closed_server.app[CONTROL]
    await setup_room(control, "Phong-26", capacity=5)
    instance = (await control.store.get_room("Phong-26")).instance  # tokens name the instance
    tokens = [create_join_token(control.secret, "Phong-26", f"user:{i}", f"U{i}", "member",
                                room_instance=instance) for i in range(12)]
    url = base_url(closed_server)
    results = await asyncio.gather(*(join(url, room="Phong-26", name=f"U{i}", token=token)
                                     for i, token in enumerate(tokens)))
    try:
        replies = [reply for _client, reply in results]
        joined = [r for r in replies if r["type"] == "joined"]
        full = [r for r in replies if r.get("code") == "room-full"]
        assert len(joined) == 5 and len(full) == 7, replies
        assert all("5" in r["message"] for r in full)
        # The room name is case-sensitive: another case is another (unknown) room.
        other, reply = await join(url, room="phong-26", name="x", token=tokens[0])
        assert reply["type"] == "error" and reply["code"] in ("no-such-room", "bad-token"), reply
        await other.close()
    finally:
        await asyncio.gather(*(client.close() for client, _ in results))


async def test_account_room_password_and_take_over(closed_server: TestServer) -> None:
    control = closed_server.app[CONTROL]
    room_hash = await control.passwords.hash("Mat-Khau")
    room_id = await setup_room(control, "UBND", password_hash=room_hash)
    account = await control.store.create_account(
        "chi.nguyen", "Chi Nguyen", "member", None, await control.passwords.hash("pw-Chi-1"))
    await control.store.add_member(room_id, account.id)
    url = base_url(closed_server)
    creds = {"room": "UBND", "name": "Chi", "username": "chi.nguyen", "password": "pw-Chi-1"}
    wrong, reply = await join(url, **creds, room_password="mat-khau")  # case-sensitive
    assert reply.get("code") == "bad-password", reply
    first, reply = await join(url, **creds, room_password="Mat-Khau")
    assert reply["type"] == "joined" and reply["role"] == "member", reply
    second, reply = await join(url, **creds, room_password="Mat-Khau")
    assert reply.get("code") == "already-in-room", reply
    third, reply = await join(url, **creds, room_password="Mat-Khau", take_over=True)
    assert reply["type"] == "joined", reply
    left = await first.next("left")
    assert left["reason"] == "taken-over", left
    for client in (wrong, first, second, third):
        await client.close()


async def test_lobby_and_moderation_over_rest(closed_server: TestServer) -> None:
    control = closed_server.app[CONTROL]
    room_id = await setup_room(control, "Hop-Tinh", lobby=True)
    org = await control.store.create_organisation("Van phong")
    await control.store.create_account("host1", "Host", "host", org.id,
                                       await control.passwords.hash("host-pw-1"))
    await control.store.update_room("Hop-Tinh", lobby=True)
    secret, secret_hash = new_secret_token()
    await control.store.create_invitation(room_id, secret_hash, max_uses=2,
                                          expires_at=control.clock() + 3600, label="guests")
    url = base_url(closed_server)
    guest, reply = await join(url, room="Hop-Tinh", name="Khach", invite=secret)
    assert reply["type"] == "lobby", reply
    pid = reply["participant_id"]
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/login",
                             json={"username": "admin", "password": "nope"}) as response:
            assert response.status == 401
        # The host of another organisation may not moderate this room; the operator may.
        token = await operator_token(control, http, url)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(url + "/api/rooms/Hop-Tinh/lobby", headers=headers) as response:
            assert response.status == 200
            assert [w["id"] for w in await response.json()] == [pid]
        async with http.post(url + f"/api/rooms/Hop-Tinh/lobby/{pid}/admit",
                             headers=headers) as response:
            assert response.status == 204
        joined = await guest.next("joined")
        assert joined["participant_id"] == pid and joined["role"] == "guest"
        async with http.post(url + f"/api/rooms/Hop-Tinh/participants/{pid}/mute",
                             headers=headers, json={"kind": "audio"}) as response:
            assert response.status == 204, await response.text()
        assert (await guest.next("muted_by_host"))["kind"] == "audio"
        async with http.get(url + "/api/rooms/Hop-Tinh/participants",
                            headers=headers) as response:
            assert [(p["id"], p["audio_muted"]) for p in await response.json()] == [(pid, True)]
        async with http.delete(url + f"/api/rooms/Hop-Tinh/participants/{pid}",
                               headers=headers) as response:
            assert response.status == 204
        assert (await guest.next("left"))["reason"] == "removed"
    await guest.close()


async def operator_token(control: ControlPlane, http: aiohttp.ClientSession, url: str) -> str:
    await control.store.create_account("op2", "Operator", "operator", None,
                                       await control.passwords.hash("op-pw-123"))
    async with http.post(url + "/api/login",
                         json={"username": "op2", "password": "op-pw-123"}) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["token"]


async def test_open_rooms_have_the_configured_capacity(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path, open_rooms=True, open_room_capacity=2))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        results = [await join(base_url(server), room="Mo", name=f"N{i}") for i in range(3)]
        assert [r["type"] for _c, r in results] == ["joined", "joined", "error"]
        assert results[2][1]["code"] == "room-full" and "2" in results[2][1]["message"]
        for client, _reply in results:
            await client.close()
    finally:
        await server.close()


async def test_refused_guests_do_not_spend_invitation_uses(closed_server: TestServer) -> None:
    control = closed_server.app[CONTROL]
    room_id = await setup_room(control, "Nho", capacity=1)
    secret, secret_hash = new_secret_token()
    await control.store.create_invitation(room_id, secret_hash, max_uses=2,
                                          expires_at=control.clock() + 3600, label="khach")
    url = base_url(closed_server)
    first, reply = await join(url, room="Nho", name="A", invite=secret)
    assert reply["type"] == "joined", reply
    for _ in range(3):  # a full room refuses; the link's second use must survive
        other, reply = await join(url, room="Nho", name="B", invite=secret)
        assert reply.get("code") == "room-full", reply
        await other.close()
    await first.close()
    await asyncio.sleep(0.2)  # the server notices the closed socket and frees the seat
    second, reply = await join(url, room="Nho", name="B", invite=secret)
    assert reply["type"] == "joined", reply
    await second.close()
