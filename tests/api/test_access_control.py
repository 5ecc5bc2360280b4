"""Security issue 8, access control: each hole the reporter reproduced on a live server,
reproduced here the same way (the real app on a loopback port, a real SQLite file, the REST API
and WebSocket joins), and what the attack gets now. Nobody publishes, so no media moves.

Client addresses: the attacker and the owner connect from different loopback addresses
(127.0.0.2, 127.0.0.3), so per-address rules are tested as they work on a real network.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import argon2
import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.auth import Passwords
from signaling.control import CONTROL, ControlPlane
from tests.conftest import base_url, make_config

TIMEOUT = 10.0
PW = "password-1"  # every account's password here


class CountingHasher(argon2.PasswordHasher):
    """The real argon2id hasher (cheap parameters), remembering each hash it verified against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=256, parallelism=1, type=argon2.Type.ID)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def join(self, **fields: Any) -> dict[str, Any]:
        await self.ws.send_str(json.dumps({"type": "join", "name": "N", **fields}))
        return await self.next("joined", "lobby", "error")

    async def next(self, *types: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    return {"type": "closed"}
                message = json.loads(frame.data)
                if message["type"] in types:
                    return message


@dataclass
class Live:
    server: TestServer
    control: ControlPlane
    hasher: CountingHasher
    url: str
    org_a: int = 0
    org_b: int = 0
    _http: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    _sockets: list[Socket] = field(default_factory=list)

    def http(self, source: str) -> aiohttp.ClientSession:
        if source not in self._http:
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            self._http[source] = aiohttp.ClientSession(connector=connector)
        return self._http[source]

    async def call(self, method: str, path: str, token: str | None = None, body: object = None,
                   expect: int = 200, source: str = "127.0.0.1") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with self.http(source).request(method, self.url + path, headers=headers,
                                             json=body) as response:
            answer = await response.json() if response.content_type == "application/json" \
                else None
            assert response.status == expect, (method, path, response.status, answer)
            return answer

    async def login(self, username: str, password: str = PW, source: str = "127.0.0.1") -> str:
        answer = await self.call("POST", "/api/login", body={"username": username,
                                                              "password": password},
                                 source=source)
        return str(answer["token"])

    async def socket(self, source: str = "127.0.0.1") -> Socket:
        ws = await self.http(source).ws_connect(self.url.replace("http", "ws", 1) + "/ws")
        self._sockets.append(Socket(ws))
        return self._sockets[-1]

    async def join(self, source: str = "127.0.0.1", **fields: Any) -> tuple[Socket, dict]:
        socket = await self.socket(source)
        return socket, await socket.join(**fields)

    async def account(self, username: str, role: str, org_id: int | None) -> int:
        account = await self.control.store.create_account(
            username, username, role, org_id,  # type: ignore[arg-type]
            await self.control.passwords.hash(PW))
        return account.id

    async def until_empty(self, room: str) -> None:
        """The server noticed the closed sockets and freed their seats."""
        async with asyncio.timeout(TIMEOUT):
            while self.control.admission.count(room) or self.control.admission.occupants(room):
                await asyncio.sleep(0.02)


@pytest.fixture
async def live(tmp_path: Path, store_url: str | None) -> AsyncIterator[Live]:
    app = create_app(make_config(tmp_path, open_rooms=False, store_url=store_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    control = app[CONTROL]
    hasher = CountingHasher()
    # The real argon2id, at the test suite's cheap cost (as tests/api/conftest.py does).
    control.passwords = control.admission.passwords = Passwords(hasher)
    world = Live(server, control, hasher, base_url(server))
    world.org_a = (await control.store.create_organisation("UBND")).id
    world.org_b = (await control.store.create_organisation("Khac")).id
    await world.account("root", "operator", None)
    await world.account("host-a", "host", world.org_a)
    await world.account("host-b", "host", world.org_b)
    try:
        yield world
    finally:
        for socket in world._sockets:
            await socket.ws.close()
        for http in world._http.values():
            await http.close()
        await server.close()


# -- 1. tokens name the room instance, not the room name ------------------------------------------


async def test_token_of_a_deleted_room_does_not_open_its_namesake(live: Live) -> None:
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "future"}, 201)
    old_id = (await live.control.store.get_room("future")).id
    kept = await live.call("POST", "/api/rooms/future/tokens", host_a,
                           {"name": "Chair", "role": "host", "ttl_s": 30 * 86400}, 201)
    await live.call("DELETE", "/api/rooms/future", host_a, expect=204)
    host_b = await live.login("host-b")
    await live.call("POST", "/api/rooms", host_b, {"name": "future", "locked": True,
                                                   "lobby": True, "password": "B-secret"}, 201)
    # SQLite reused the row id: binding to the id alone would not have been enough.
    # (PostgreSQL's identity never reuses one; what follows must hold either way.)
    if not getattr(live.control.store, "networked", False):
        assert (await live.control.store.get_room("future")).id == old_id
    _, reply = await live.join(room="future", token=kept["token"])
    assert reply["type"] == "error" and reply["code"] == "bad-token", reply
    assert "earlier room" in reply["message"]
    assert live.control.admission.occupants("future") == {}
    mine = await live.call("POST", "/api/rooms/future/tokens", host_b,
                           {"name": "Chair B", "role": "host"}, 201)
    _, reply = await live.join(room="future", token=mine["token"])
    assert reply["type"] == "joined" and reply["role"] == "host", reply


# -- 2. host-minted identities cannot take anybody's seat -----------------------------------------


async def test_host_minted_identity_cannot_evict_another_organisations_participant(
        live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    host_a, host_b = await live.login("host-a"), await live.login("host-b")
    await live.call("POST", "/api/rooms", host_a, {"name": "a"}, 201)
    await live.call("POST", "/api/rooms/a/members", host_a, {"account_id": lan}, 201)
    victim, reply = await live.join(room="a", username="lan", password=PW)
    assert reply["type"] == "joined", reply
    await live.call("POST", "/api/rooms", host_b, {"name": "b"}, 201)
    for stolen in (f"account:{lan}", "endpoint:1", f"guest:1:{'0' * 12}"):
        error = await live.call("POST", "/api/rooms/b/tokens", host_b,
                                {"name": "x", "role": "host", "identity": stolen}, 400)
        assert error["field"] == "identity", error
    made = await live.call("POST", "/api/rooms/b/tokens", host_b,
                           {"name": "x", "role": "host", "identity": "lan"}, 201)
    assert made["identity"] == f"token:{live.org_b}:lan"
    _, reply = await live.join(room="b", token=made["token"], take_over=True)
    assert reply["type"] == "joined", reply
    assert list(live.control.admission.occupants("a")) == [f"account:{lan}"]
    assert [p["identity"] for p in await live.call("GET", "/api/rooms/a/participants",
                                                   host_a)] == [f"account:{lan}"]
    await victim.ws.send_str(json.dumps({"type": "ping", "id": 1}))
    assert (await victim.next("pong", "left"))["type"] == "pong"  # never kicked


# -- 3. member tokens: the room password, membership, the account, void-before -----------------


async def test_member_token_needs_the_room_password_and_ends_with_the_membership(
        live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "p", "password": "Mat-Khau"}, 201)
    await live.call("POST", "/api/rooms/p/members", host_a, {"account_id": lan}, 201)
    me = await live.login("lan")
    error = await live.call("POST", "/api/rooms/p/tokens", me, {"name": "Lan"}, 403)
    assert (error["error"], error["field"]) == ("bad-password", "room_password")
    await live.call("POST", "/api/rooms/p/tokens", me, {"name": "Lan",
                                                        "room_password": "mat-khau"}, 403)
    token = (await live.call("POST", "/api/rooms/p/tokens", me,
                             {"name": "Lan", "room_password": "Mat-Khau", "ttl_s": 86400},
                             201))["token"]
    socket, reply = await live.join(room="p", token=token)
    assert reply["type"] == "joined", reply
    await socket.ws.close()
    await live.until_empty("p")

    # A new room password ends the tokens minted under the old one.
    await live.call("PATCH", "/api/rooms/p", host_a, {"password": "Moi-Mat-Khau"})
    _, reply = await live.join(room="p", token=token)
    assert reply.get("code") == "bad-token" and "password" in reply["message"], reply
    token = (await live.call("POST", "/api/rooms/p/tokens", me,
                             {"name": "Lan", "room_password": "Moi-Mat-Khau"}, 201))["token"]

    await live.call("DELETE", f"/api/rooms/p/members/{lan}", host_a, expect=204)
    _, reply = await live.join(room="p", token=token)
    assert reply.get("code") == "not-invited" and "no longer a member" in reply["message"]

    await live.call("POST", "/api/rooms/p/members", host_a, {"account_id": lan}, 201)
    operator = await live.login("root")
    await live.call("DELETE", f"/api/accounts/{lan}", operator, expect=204)
    _, reply = await live.join(room="p", token=token)
    assert reply.get("code") == "bad-token" and "no longer exists" in reply["message"], reply


async def test_void_the_tokens_of_a_room_and_of_an_account(live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    host_a, host_b = await live.login("host-a"), await live.login("host-b")
    await live.call("POST", "/api/rooms", host_a, {"name": "v"}, 201)
    await live.call("POST", "/api/rooms/v/members", host_a, {"account_id": lan}, 201)
    me = await live.login("lan")
    chair = (await live.call("POST", "/api/rooms/v/tokens", host_a,
                             {"name": "Chair", "role": "host"}, 201))["token"]
    mine = (await live.call("POST", "/api/rooms/v/tokens", me, {"name": "Lan"}, 201))["token"]
    await live.call("POST", "/api/rooms/v/void-tokens", me, {}, 403)  # members may not
    await live.call("POST", "/api/rooms/v/void-tokens", host_b, {}, 403)  # nor other orgs
    await live.call("POST", "/api/rooms/v/void-tokens", host_a,
                    {"before": live.control.clock() + 3600}, 400)  # no voiding the future
    voided = await live.call("POST", "/api/rooms/v/void-tokens", host_a, {})
    assert voided["tokens_void_before"] <= live.control.clock()
    for token in (chair, mine):
        _, reply = await live.join(room="v", token=token)
        assert reply.get("code") == "bad-token" and "withdrawn" in reply["message"], reply
    fresh = (await live.call("POST", "/api/rooms/v/tokens", me, {"name": "Lan"}, 201))["token"]
    socket, reply = await live.join(room="v", token=fresh)
    assert reply["type"] == "joined", reply
    await socket.ws.close()
    await live.until_empty("v")

    # The account's own "log me out of every token": the room's other tokens stand.
    other = (await live.call("POST", "/api/rooms/v/tokens", host_a,
                             {"name": "Chair", "role": "host"}, 201))["token"]
    await live.call("POST", f"/api/accounts/{lan}/void-tokens", host_b, {}, 403)
    await live.call("POST", f"/api/accounts/{lan}/void-tokens", me, {})
    _, reply = await live.join(room="v", token=fresh)
    assert reply.get("code") == "bad-token" and "this account" in reply["message"], reply
    _, reply = await live.join(room="v", token=other)
    assert reply["type"] == "joined", reply


# -- 4. removal lasts ------------------------------------------------------------------------------


async def test_a_removed_guest_stays_out(live: Live) -> None:
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "g"}, 201)
    made = await live.call("POST", "/api/rooms/g/invitations", host_a, {"max_uses": 5}, 201)
    invite = parse_qs(urlparse(made["link"]).query)["invite"][0]
    guest, joined = await live.join(room="g", invite=invite, name="Khach 1")
    assert joined["type"] == "joined" and joined["rejoin_token"], joined
    await live.call("DELETE", f"/api/rooms/g/participants/{joined['participant_id']}", host_a,
                    expect=204)
    assert (await guest.next("left"))["reason"] == "removed"
    _, reply = await live.join(room="g", token=joined["rejoin_token"])
    assert reply.get("code") == "not-invited" and "removed" in reply["message"], reply
    await live.call("POST", "/api/rooms/g/end", host_a, expect=204)
    _, reply = await live.join(room="g", token=joined["rejoin_token"])
    assert reply.get("code") == "not-invited" and "removed" in reply["message"], reply

    # A rejoin token lasts only as long as its invitation.
    second, joined = await live.join(room="g", invite=invite, name="Khach 2")
    assert joined["type"] == "joined", joined
    await second.ws.close()
    await live.until_empty("g")
    await live.call("DELETE", f"/api/rooms/g/invitations/{made['id']}", host_a, expect=204)
    _, reply = await live.join(room="g", token=joined["rejoin_token"])
    assert reply.get("code") == "not-invited" and "withdrawn" in reply["message"], reply


async def test_a_removed_member_stays_out_until_the_meeting_ends(live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "m"}, 201)
    await live.call("POST", "/api/rooms/m/members", host_a, {"account_id": lan}, 201)
    member, joined = await live.join(room="m", username="lan", password=PW)
    assert joined["type"] == "joined", joined
    await live.call("DELETE", f"/api/rooms/m/participants/{joined['participant_id']}", host_a,
                    expect=204)
    assert (await member.next("left"))["reason"] == "removed"
    _, reply = await live.join(room="m", username="lan", password=PW)
    assert reply.get("code") == "not-invited" and "removed" in reply["message"], reply
    await live.call("POST", "/api/rooms/m/end", host_a, expect=204)
    _, reply = await live.join(room="m", username="lan", password=PW)
    assert reply["type"] == "joined", reply


# -- 5. login timing -------------------------------------------------------------------------------


async def test_an_unknown_user_name_costs_a_real_verify(live: Live) -> None:
    real = await live.control.store.find_account("host-a")
    assert real is not None
    await live.call("POST", "/api/login", body={"username": "nobody", "password": "x"},
                    expect=401)
    assert len(live.hasher.verified) == 1
    dummy = live.hasher.verified[0]
    # A real argon2id verify, at exactly the cost of a real account's hash.
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(real.password_hash)
    await live.call("POST", "/api/login", body={"username": "host-a", "password": "x"},
                    expect=401)
    assert live.hasher.verified[1] == real.password_hash
    _, reply = await live.join(room="demo", username="nobody", password="x")
    assert reply.get("code") == "bad-password"
    assert live.hasher.verified[2:] == [dummy]


# -- 6. no locking other people out --------------------------------------------------------------


async def test_failed_logins_do_not_lock_the_owner_out_from_another_address(live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    for _ in range(5):
        await live.call("POST", "/api/login", body={"username": "lan", "password": "guess"},
                        expect=401, source="127.0.0.2")
    await live.call("POST", "/api/login", body={"username": "lan", "password": "guess"},
                    expect=429, source="127.0.0.2")
    await live.call("POST", "/api/login", body={"username": "lan", "password": PW},
                    expect=429, source="127.0.0.2")  # the guesser's address stays throttled
    await live.login("lan", source="127.0.0.3")  # the owner gets in

    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "w"}, 201)
    await live.call("POST", "/api/rooms/w/members", host_a, {"account_id": lan}, 201)
    for _ in range(5):
        _, reply = await live.join("127.0.0.2", room="w", username="lan", password="guess")
        assert reply.get("code") == "bad-password", reply
    _, reply = await live.join("127.0.0.2", room="w", username="lan", password=PW)
    assert reply.get("code") == "rate-limited", reply
    _, reply = await live.join("127.0.0.3", room="w", username="lan", password=PW)
    assert reply["type"] == "joined", reply


# -- 7. no disclosure across organisations -------------------------------------------------------


async def test_adding_a_member_does_not_disclose_other_organisations(live: Live) -> None:
    bob = await live.account("bob-of-b", "member", live.org_b)
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "r"}, 201)
    theirs = await live.call("POST", "/api/rooms/r/members", host_a, {"account_id": bob}, 404)
    unknown = await live.call("POST", "/api/rooms/r/members", host_a, {"account_id": 9999},
                              404)
    assert "bob" not in json.dumps(theirs)
    assert theirs["error"] == unknown["error"] == "not-found"
    assert theirs["message"].replace(str(bob), "N") == unknown["message"].replace("9999", "N")
    assert await live.control.store.list_members(
        (await live.control.store.get_room("r")).id) == []
    error = await live.call("POST", "/api/rooms/r/meetings", host_a, {
        "title": "T", "first_date": "2026-01-05", "start": "09:00", "end": "10:00",
        "account_ids": [bob]}, 400)
    assert error["field"] == "account_ids" and "bob" not in json.dumps(error)
    operator = await live.login("root")  # operators work across organisations
    added = await live.call("POST", "/api/rooms/r/members", operator, {"account_id": bob}, 201)
    assert added["username"] == "bob-of-b"


# -- 8. changing your password needs the current one ----------------------------------------------


async def test_changing_your_own_password_needs_the_current_one(live: Live) -> None:
    lan = await live.account("lan", "member", live.org_a)
    me = await live.login("lan")
    path = f"/api/accounts/{lan}/password"
    error = await live.call("PUT", path, me, {"password": "taken-over-1"}, 400)
    assert error["field"] == "current_password"
    error = await live.call("PUT", path, me, {"password": "taken-over-1",
                                              "current_password": "guess"}, 403)
    assert (error["error"], error["field"]) == ("bad-password", "current_password")
    await live.login("lan")  # unchanged
    await live.call("PUT", path, me, {"password": "new-password-1", "current_password": PW}, 204)
    await live.login("lan", "new-password-1")
    host_a = await live.login("host-a")  # a host resets a member's password without it
    await live.call("PUT", path, host_a, {"password": "reset-password-1"}, 204)
    await live.login("lan", "reset-password-1")


# -- resource abuse: unauthenticated join floods -------------------------------------------------


async def test_a_join_flood_is_rate_limited_and_the_audit_stays_small(live: Live) -> None:
    socket = await live.socket("127.0.0.2")
    codes = [(await socket.join(room="demo"))["code"] for _ in range(12)]
    assert codes[:5] == ["not-invited"] * 5 and set(codes[5:]) == {"rate-limited"}, codes
    other = await live.socket("127.0.0.2")  # a new socket: the address still has attempts
    assert (await other.join(room="demo"))["code"] == "not-invited"

    # At most 8 sockets at once: more unjoined sockets from one address are refused at the
    # handshake (test_abuse.py), and this test is about the join attempts themselves.
    at_once = asyncio.Semaphore(8)

    async def attempts(n: int) -> list[str]:
        async with at_once:
            socket = await live.socket("127.0.0.2")
            codes = [(await socket.join(room=f"r{i}", username=f"u{i}", password="x"))["code"]
                     for i in range(n)]
            await socket.ws.close()
            return codes

    flood = [code for codes_ in await asyncio.gather(*(attempts(5) for _ in range(40)))
             for code in codes_]
    assert flood.count("rate-limited") >= 150, flood
    total = len(codes) + 1 + len(flood)
    # Meanwhile an honest joiner elsewhere is unaffected.
    host_a = await live.login("host-a")
    await live.call("POST", "/api/rooms", host_a, {"name": "ok"}, 201)
    made = await live.call("POST", "/api/rooms/ok/tokens", host_a, {"name": "A"}, 201)
    _, reply = await live.join("127.0.0.3", room="ok", token=made["token"])
    assert reply["type"] == "joined", reply

    await live.control.admission.close()  # write the merged repeats
    records = await live.control.store.list_joins(limit=100_000)
    flooder = [r for r in records if r.address == "127.0.0.2"]
    assert sum(r.count for r in flooder) == total  # nothing lost: repeats are counted
    assert len(flooder) <= 45, len(flooder)  # but the table grew by a few rows, not 213
