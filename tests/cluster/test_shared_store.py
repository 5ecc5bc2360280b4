"""Two real `diemcau serve` nodes with SEPARATE data directories sharing one PostgreSQL
(``--store``) and one Redis (issue 14): what is made through one node's REST API is known at the
other, an account is one seat identity across them, the exact room limit holds, and the audit
trail both nodes append to stays one verifiable chain."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.redisproc import RedisServer, running_redis
from tests.integration.test_recording import operator_token
from tests.pgproc import PostgresServer
from tests.serverproc import Server, running_server

PASSWORD = "mat-khau-du-dai-1"
JOIN_TIMEOUT_S = 20.0
MAX_HOPS = 3


@pytest.fixture
def nodes(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[RedisServer, list[Server]]]:
    url = postgres.fresh_url()
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        servers = []
        for i in range(2):  # one after the other: the first bootstraps the shared store
            home = tmp_path / f"node{i}"
            home.mkdir()
            servers.append(stack.enter_context(running_server(
                home, open_rooms=False, extra_args=[
                    "--redis", redis_server.url, "--node-id", f"node{i}", "--store", url,
                    "--max-unjoined-per-address", "50"])))
        yield redis_server, servers


def call(base_url: str, method: str, path: str, token: str | None = None,
         body: object = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def login(base_url: str, username: str, password: str) -> str:
    status, body = call(base_url, "POST", "/api/login",
                        body={"username": username, "password": password})
    assert status == 200, (status, body)
    return str(body["token"])


def joined(base_url: str, room: str, username: str) -> AsyncContextManager[dict[str, Any]]:
    """Join ``room`` with an account (see ``joining``)."""
    return joining(base_url, {"type": "join", "room": room, "name": username,
                              "username": username, "password": PASSWORD})


def joined_with_token(base_url: str, room: str,
                      token: str) -> AsyncContextManager[dict[str, Any]]:
    return joining(base_url, {"type": "join", "room": room, "name": "Khach", "token": token})


@asynccontextmanager
async def joining(base_url: str, join: dict[str, object]) -> AsyncIterator[dict[str, Any]]:
    """Send ``join`` over /ws, following `wrong-node` to the room's node, and hold the seat
    while inside. Yields the `joined` message, or the refusal (type `error`)."""
    async with aiohttp.ClientSession() as http:
        for _hop in range(MAX_HOPS):
            ws = await http.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
            await ws.send_json(join)
            reply = await _first_reply(ws)
            if reply.get("code") != "wrong-node":
                break
            await ws.close()
            base_url = str(reply["address"]).rstrip("/")
        try:
            yield reply
        finally:
            await ws.close()


async def _first_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(JOIN_TIMEOUT_S):
        while True:
            message = await ws.receive_json()
            if message.get("type") in ("joined", "error"):
                return dict(message)


async def test_what_one_node_makes_the_other_knows_and_admits_exactly(
        nodes: tuple[RedisServer, list[Server]]) -> None:
    _redis, (a, b) = nodes
    assert "first start" not in b.log_text()  # B found A's operator in the shared store
    admin_a = operator_token(a.base_url, a.log_text())
    status, org = call(a.base_url, "POST", "/api/organisations", admin_a, {"name": "Ca Mau"})
    assert status == 201, org
    people = {}
    for username in ("lan", "minh", "hoa"):
        status, account = call(a.base_url, "POST", "/api/accounts", admin_a, {
            "username": username, "password": PASSWORD, "org_id": org["id"]})
        assert status == 201, account
        people[username] = account["id"]
    for room in ("giao-ban", "khac"):
        status, made = call(a.base_url, "POST", "/api/rooms", admin_a,
                            {"name": room, "org_id": org["id"], "capacity": 2})
        assert status == 201, made
        for account_id in people.values():
            status, _ = call(a.base_url, "POST", f"/api/rooms/{room}/members", admin_a,
                             {"account_id": account_id})
            assert status in (200, 201)

    # B knows them: the account logs in there and sees its rooms; the operator's password too
    lan_b = login(b.base_url, "lan", PASSWORD)
    status, rooms = call(b.base_url, "GET", "/api/rooms", lan_b)
    assert status == 200 and sorted(r["name"] for r in rooms) == ["giao-ban", "khac"]
    admin_b = operator_token(b.base_url, a.log_text())
    status, _ = call(b.base_url, "PATCH", "/api/rooms/khac", admin_b, {"locked": False})
    assert status == 200  # an operator's act audited by B

    tokens: list[str] = []
    async with joined(b.base_url, "giao-ban", "lan") as lan:
        assert lan["type"] == "joined", lan
        # one room per account across the nodes: lan, seated through B, is refused at A
        async with joined(a.base_url, "khac", "lan") as again:
            assert again.get("code") == "already-in-room", again
        async with joined(a.base_url, "giao-ban", "minh") as minh:
            assert minh["type"] == "joined", minh
            # the exact limit (2) holds across the nodes
            async with joined(b.base_url, "giao-ban", "hoa") as hoa:
                assert hoa.get("code") == "room-full", hoa
            async with joined(a.base_url, "giao-ban", "hoa") as hoa:
                assert hoa.get("code") == "room-full", hoa

    # join tokens signed by either node admit at the room's node (one secret in the store)
    for node, token, name in ((a, admin_a, "Khach A"), (b, admin_b, "Khach B")):
        status, made = call(node.base_url, "POST", "/api/rooms/khac/tokens", token,
                            {"name": name, "identity": f"token:{name[-1]}"})
        assert status == 201, made
        tokens.append(made["token"])
    async with joined_with_token(a.base_url, "khac", tokens[0]) as first, \
            joined_with_token(a.base_url, "khac", tokens[1]) as second:
        assert first["type"] == second["type"] == "joined", (first, second)

    # one audit trail, appended by both nodes, verifies
    await asyncio.sleep(0)  # the journals flush on read (api_reports._flushed)
    for node, token in ((a, admin_a), (b, admin_b)):
        status, verified = call(node.base_url, "GET", "/api/audit/verify", token)
        assert status == 200 and verified["ok"], verified
    status, rows = call(a.base_url, "GET", "/api/audit?limit=1000", admin_a)
    assert status == 200
    actions = {(row["actor"], row["action"]) for row in rows}
    assert len(rows) == verified["rows"]
    assert ("account:1", "api.create_account") in actions  # through A
    assert ("account:1", "api.update_room") in actions  # through B
    assert ("login:lan", "api.login") in actions  # at B
    assert (f"account:{people['lan']}", "room.join") in actions  # one identity on both
