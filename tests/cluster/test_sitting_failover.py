"""A room's sitting survives its node's death (issue 14): two real `diemcau serve --redis`
processes sharing one data directory (one store, as with a networked store), a real
redis-server, WebSocket clients. On node A a host, a member and a guest admitted from the
lobby, a member removed by the host; chat lines, a raised hand, the room locked, the host
pinned. `kill -9` of A; everyone rejoins through B as the web client's failover does
(credentials with take-over, the guest on its rejoin token): the same sitting goes on (its
chat history, the hand still raised, the room still locked, the pin), the admitted guest is not
sent to the lobby again, and the member the host removed on A stays out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from signaling.cluster.sitting import KEY, decode_state
from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import RedisServer, running_redis
from tests.cluster.test_moderated_where_it_meets import call
from tests.cluster.test_rejoin import receive
from tests.integration.test_recording import operator_token
from tests.serverproc import Server

ROOM = "hop-tinh"
WAIT_S = 20.0


@pytest.fixture
def shared_nodes(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Server]]]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        data = tmp_path / "data"
        data.mkdir()
        servers = start_nodes(stack, tmp_path, redis_server.url, 2, open_rooms=False,
                              data_dir=data)
        yield redis_server, servers


async def enter(http: aiohttp.ClientSession, base_url: str, join: dict[str, Any],
                expect: str = "joined", dead: str | None = None,
                ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Join through ``base_url``, following `wrong-node` (but retrying ``base_url`` while the
    room is still placed on the ``dead`` node) until ``expect`` (`joined` or `lobby`)."""
    deadline = time.monotonic() + WAIT_S
    url = base_url
    while True:
        ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws")
        await ws.send_json({"type": "join", "room": ROOM, **join})
        reply = await receive(ws, "lobby" if expect == "lobby" else "joined")
        if reply["type"] != "error":
            assert reply["type"] == expect, reply
            return ws, reply
        await ws.close()
        assert reply.get("code") == "wrong-node", reply
        assert time.monotonic() < deadline, f"not {expect} within {WAIT_S} s: {reply}"
        url = base_url if reply["address"] == dead else reply["address"]
        await asyncio.sleep(0.2)


def placed_on(redis_server: RedisServer, servers: list[Server]) -> Server:
    client = redis.Redis.from_url(redis_server.url)
    try:
        node = client.get(f"dc:place:{ROOM}")
    finally:
        client.close()
    assert node is not None
    return servers[int(node.decode()[-1])]


def sitting_in_redis(redis_server: RedisServer) -> Any:
    client = redis.Redis.from_url(redis_server.url)
    try:
        return decode_state(client.hgetall(KEY + ROOM))  # type: ignore[arg-type]
    finally:
        client.close()


async def test_the_sitting_goes_on_after_its_node_is_killed(
        shared_nodes: tuple[RedisServer, list[Server]]) -> None:
    redis_server, servers = shared_nodes
    admin = operator_token(servers[0].base_url, servers[0].log_text())
    api = servers[0].base_url + "/api"
    status, orgs = call("GET", api + "/organisations", admin)
    assert status == 200, orgs
    status, room = call("POST", api + "/rooms", admin,
                        {"name": ROOM, "org_id": orgs[0]["id"], "lobby": True})
    assert status == 201, room
    tokens = {}
    for who, role in (("host", "host"), ("member", "member"), ("late", "member"),
                      ("unruly", "member")):
        status, minted = call("POST", api + f"/rooms/{ROOM}/tokens", admin,
                              {"name": who, "identity": who, "role": role})
        assert status == 201, minted
        tokens[who] = minted["token"]
    status, invitation = call("POST", api + f"/rooms/{ROOM}/invitations", admin, {})
    assert status == 201, invitation
    invite = re.search(r"invite=([^&#]+)", invitation["link"])
    assert invite, invitation
    async with aiohttp.ClientSession() as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            host, joined = await enter(http, servers[0].base_url,
                                       {"name": "Chu toa", "token": tokens["host"]})
            sockets.append(host)
            sitting = joined["meeting"]["id"]
            node_a = placed_on(redis_server, servers)
            node_b = next(s for s in servers if s is not node_a)
            member, joined_m = await enter(http, node_a.base_url,
                                           {"name": "Dai bieu", "token": tokens["member"]})
            sockets.append(member)
            unruly, joined_u = await enter(http, node_a.base_url,
                                           {"name": "On ao", "token": tokens["unruly"]})
            status, _ = call("DELETE", node_a.base_url + f"/api/rooms/{ROOM}/participants/"
                             f"{joined_u['participant_id']}", admin)
            assert status == 204
            assert (await receive(unruly, "left"))["reason"] == "removed"
            await unruly.close()
            guest, lobby = await enter(http, node_a.base_url,
                                       {"name": "Khach", "invite": invite.group(1)},
                                       expect="lobby")
            sockets.append(guest)
            room_api = node_a.base_url + f"/api/rooms/{ROOM}"
            status, _ = call("POST", room_api + f"/lobby/{lobby['participant_id']}/admit", admin)
            assert status == 204
            assert (await receive(guest, "joined"))["type"] == "joined"
            for text in ("Xin chao", "Bat dau hop"):
                await member.send_json({"type": "chat", "text": text})
            await member.send_json({"type": "hand", "raised": True})
            status, _ = call("POST", room_api + "/lock", admin, {"locked": True})
            assert status == 200
            status, _ = call("POST", room_api + "/pin", admin,
                             {"participant_id": joined["participant_id"]})
            assert status == 204
            for kind in ("chat", "chat", "hand"):  # in this order (others skipped)
                assert (await receive(host, kind))["type"] == kind
            # what the node wrote of the sitting (one writer, right after each change)
            deadline = time.monotonic() + WAIT_S
            kept = sitting_in_redis(redis_server)
            while not (kept and kept.locked and kept.hands and kept.pinned and kept.admitted
                       and kept.removed and kept.lines == 2):
                assert time.monotonic() < deadline, f"sitting not written: {kept}"
                await asyncio.sleep(0.1)
                kept = sitting_in_redis(redis_server)
            assert kept.id == sitting
            assert set(kept.hands) == {f"token:{orgs[0]['id']}:member"}

            killed_at = time.monotonic()
            os.kill(node_a.proc.pid, signal.SIGKILL)
            node_a.proc.wait(5)
            dead = node_a.base_url
            for ws in sockets:
                await ws.close()
            sockets.clear()
            # the automatic rejoin through B: credentials with take-over, the guest on its
            # rejoin token
            host, again = await enter(http, node_b.base_url, {
                "name": "Chu toa", "token": tokens["host"], "take_over": True}, dead=dead)
            sockets.append(host)
            rejoined_s = time.monotonic() - killed_at
            assert again["meeting"]["id"] == sitting
            assert [line["text"] for line in again["meeting"]["chat"]] == \
                ["Xin chao", "Bat dau hop"]
            assert again["locked"] is True
            member, again_m = await enter(http, node_b.base_url, {
                "name": "Dai bieu", "token": tokens["member"], "take_over": True}, dead=dead)
            sockets.append(member)
            assert again_m["meeting"]["hands"] == [again_m["participant_id"]]
            assert again_m["pinned"] == again["participant_id"]
            told = await receive(host, "hand")
            assert told == {"type": "hand", "participant_id": again_m["participant_id"],
                            "raised": True}
            guest, again_g = await enter(http, node_b.base_url, {
                "name": "Khach", "token": lobby["rejoin_token"], "take_over": True}, dead=dead)
            sockets.append(guest)  # `joined`, not `lobby` (enter asserts it)
            assert again_g["meeting"]["id"] == sitting
            # still locked for somebody new
            late = await http.ws_connect(node_b.base_url.replace("http", "ws", 1) + "/ws")
            sockets.append(late)
            await late.send_json({"type": "join", "room": ROOM, "name": "Muon",
                                  "token": tokens["late"]})
            refused = await receive(late, "joined")
            assert refused["type"] == "error" and refused["code"] == "room-locked", refused
            # the person the host removed on A stays out on B
            again_u = await http.ws_connect(node_b.base_url.replace("http", "ws", 1) + "/ws")
            sockets.append(again_u)
            await again_u.send_json({"type": "join", "room": ROOM, "name": "On ao",
                                     "token": tokens["unruly"], "take_over": True})
            refused = await receive(again_u, "joined")
            assert refused["type"] == "error" and refused["code"] == "not-invited", refused
            print(f"\nsitting {sitting} continued on {node_b.base_url}: host rejoined "
                  f"{rejoined_s:.1f} s after kill -9; {json.dumps(kept.hands)}")
        finally:
            for ws in sockets:
                await ws.close()
