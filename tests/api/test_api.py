"""The REST API through aiohttp's test client, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from signaling.api import ROUTES
from signaling.api_models import ParticipantInfo
from signaling.auth import JoinRefused, Passwords, verify_join_token
from signaling.control import bootstrap
from signaling.store import SqliteStore
from tests.api.conftest import Api

Headers = dict[str, str]


async def _org_with_host(api: Api, name: str = "Sở Y tế") -> tuple[int, Headers, Headers]:
    """An organisation, its host and one of its members; returns (org id, host, member)."""
    operator = await api.login("admin", api.bootstrap.password)
    org = await api.call("POST", "/api/organisations", operator, {"name": name}, 201)
    await api.call("POST", "/api/accounts", operator, {
        "username": f"host-{org['id']}", "password": "host-password", "role": "host",
        "org_id": org["id"]}, 201)
    host = await api.login(f"host-{org['id']}", "host-password")
    await api.call("POST", "/api/accounts", host, {
        "username": f"member-{org['id']}", "password": "member-password"}, 201)
    member = await api.login(f"member-{org['id']}", "member-password")
    return org["id"], host, member


async def test_bootstrap_operator_and_demo_room(api: Api, tmp_path: Path) -> None:
    result = api.bootstrap
    assert result.username == "admin" and len(result.password) >= 16
    query = parse_qs(urlparse(result.join_path).query)
    assert query["room"] == ["demo"] and query["invite"][0]
    operator = await api.login("admin", result.password)
    me = await api.call("GET", "/api/me", operator)
    assert me["role"] == "operator"
    account = await api.control.store.find_account("admin")
    assert account is not None and result.password not in account.password_hash
    rooms = await api.call("GET", "/api/rooms", operator)
    assert [r["name"] for r in rooms] == ["demo"]
    # A second start on the same data leaves everything alone.
    store = await SqliteStore.open(tmp_path / "again.sqlite3")
    assert await bootstrap(store, tmp_path, Passwords.fast()) is not None
    assert await bootstrap(store, tmp_path, Passwords.fast()) is None
    await store.close()


async def test_login_and_401(api: Api) -> None:
    await api.call("POST", "/api/login", json={"username": "admin", "password": "wrong"},
                   expect=401)
    await api.call("POST", "/api/login", json={"username": "nobody", "password": "x"},
                   expect=401)
    await api.call("GET", "/api/me", expect=401)
    await api.call("GET", "/api/me", {"Authorization": "Bearer made-up"}, expect=401)
    await api.call("GET", "/api/me", {"Authorization": "Basic YWRtaW46eA=="}, expect=401)
    operator = await api.login("admin", api.bootstrap.password)
    await api.call("POST", "/api/logout", operator, expect=204)
    await api.call("GET", "/api/me", operator, expect=401)


async def test_login_brute_force_is_rate_limited(api: Api) -> None:
    for _ in range(5):
        await api.call("POST", "/api/login", json={"username": "admin", "password": "guess"},
                       expect=401)
    response = await api.client.post("/api/login", json={"username": "admin",
                                                         "password": api.bootstrap.password})
    assert response.status == 429  # even the right password, until the bucket refills
    assert int(response.headers["Retry-After"]) > 0
    assert (await response.json())["error"] == "rate-limited"


async def test_validation_names_the_field(api: Api) -> None:
    operator = await api.login("admin", api.bootstrap.password)
    cases = [
        ("/api/rooms", {"name": "r", "org_id": 1, "capacity": 0}, "capacity"),
        ("/api/rooms", {"name": "r", "org_id": 1, "capacity": "many"}, "capacity"),
        ("/api/rooms", {"org_id": 1}, "name"),
        ("/api/rooms", {"name": "a/b", "org_id": 1}, "name"),
        ("/api/rooms", {"name": "r", "org_id": 1, "capacty": 5}, "capacty"),
        ("/api/rooms", {"name": "r"}, "org_id"),  # operators must say which organisation
        ("/api/accounts", {"username": "x", "password": "short", "org_id": 1}, "password"),
        ("/api/accounts", {"username": "x y", "password": "long enough"}, "username"),
        ("/api/rooms/demo/meetings", {"title": "t", "first_date": "2025-01-06",
                                      "start": "10:00", "end": "09:00"}, "end"),
        ("/api/rooms/demo/meetings", {"title": "t", "first_date": "2025-01-06",
                                      "start": "25:00", "end": "26:00"}, "start"),
        ("/api/rooms/demo/meetings", {"title": "t", "first_date": "2025-01-06", "start": "08:00",
                                      "end": "09:00", "endpoint_ids": [99]}, "endpoint_ids"),
        ("/api/rooms/demo/invitations", {"max_uses": 0}, "max_uses"),
    ]
    for path, body, field in cases:
        error = await api.call("POST", path, operator, body, expect=400)
        assert error["error"] == "bad-request" and error["field"] == field, (body, error)
        assert error["message"]
    response = await api.client.post("/api/rooms", data=b"{not json", headers=operator)
    assert response.status == 400 and (await response.json())["field"] == "body"


async def test_roles_and_organisations(api: Api) -> None:
    org_id, host, member = await _org_with_host(api)
    _other_org, other_host, _ = await _org_with_host(api, "Sở Giáo dục")
    await api.call("POST", "/api/organisations", host, {"name": "x"}, expect=403)
    await api.call("POST", "/api/rooms", member, {"name": "r"}, expect=403)
    await api.call("POST", "/api/accounts", host, {"username": "h2", "password": "12345678",
                                                   "role": "host"}, expect=403)
    await api.call("POST", "/api/accounts", host, {"username": "m2", "password": "12345678",
                                                   "org_id": 1}, expect=403)
    room = await api.call("POST", "/api/rooms", host, {"name": "Giao ban"}, expect=201)
    assert room["org_id"] == org_id and room["capacity"] == 26
    await api.call("GET", "/api/rooms/Giao ban", other_host, expect=403)
    await api.call("PATCH", "/api/rooms/Giao ban", other_host, {"locked": True}, expect=403)
    await api.call("GET", "/api/rooms/Giao ban", member, expect=403)  # not a member yet
    accounts = await api.call("GET", "/api/accounts", host)
    assert {a["org_id"] for a in accounts} == {org_id}
    assert [o["id"] for o in await api.call("GET", "/api/organisations", host)] == [org_id]


async def test_room_crud_is_case_sensitive(api: Api) -> None:
    _, host, _ = await _org_with_host(api)
    await api.call("POST", "/api/rooms", host, {"name": "Hop", "password": "MatKhau"}, 201)
    await api.call("POST", "/api/rooms", host, {"name": "hop"}, 201)
    conflict = await api.call("POST", "/api/rooms", host, {"name": "Hop"}, expect=409)
    assert conflict["error"] == "conflict"
    room = await api.call("GET", "/api/rooms/Hop", host)
    assert room["has_password"] and room["capacity"] == 26
    await api.call("GET", "/api/rooms/HOP", host, expect=404)
    room = await api.call("PATCH", "/api/rooms/Hop", host, {"capacity": 12, "lobby": True,
                                                            "password": None})
    assert (room["capacity"], room["lobby"], room["has_password"]) == (12, True, False)
    assert ("locked", "Hop", True) not in api.moderator.calls
    await api.call("PATCH", "/api/rooms/Hop", host, {"locked": True})
    assert ("locked", "Hop", True) in api.moderator.calls
    await api.call("DELETE", "/api/rooms/hop", host, expect=204)
    assert [r["name"] for r in await api.call("GET", "/api/rooms", host)] == ["Hop"]


async def test_members_invitations_meetings_endpoints(api: Api) -> None:
    _, host, member = await _org_with_host(api)
    me = await api.call("GET", "/api/me", member)
    await api.call("POST", "/api/rooms", host, {"name": "r"}, 201)
    await api.call("POST", "/api/rooms/r/members", member, {"account_id": me["id"]}, expect=403)
    await api.call("POST", "/api/rooms/r/members", host, {"account_id": me["id"]}, 201)
    await api.call("POST", "/api/rooms/r/members", host, {"account_id": me["id"]}, expect=409)
    await api.call("POST", "/api/rooms/r/members", host, {"account_id": 999}, expect=404)
    assert [a["id"] for a in await api.call("GET", "/api/rooms/r/members", host)] == [me["id"]]
    assert [r["name"] for r in await api.call("GET", "/api/rooms", member)] == ["r"]
    await api.call("GET", "/api/rooms/r", member)

    invitation = await api.call("POST", "/api/rooms/r/invitations", host,
                                {"max_uses": 3, "ttl_s": 3600, "label": "Khách Bộ"}, 201)
    query = parse_qs(urlparse(invitation["link"]).query)
    assert query["room"] == ["r"] and len(query["invite"][0]) >= 43
    listed = await api.call("GET", "/api/rooms/r/invitations", host)
    assert listed[0]["link"] is None and listed[0]["uses_left"] == 3
    await api.call("DELETE", f"/api/rooms/r/invitations/{invitation['id']}", host, expect=204)
    assert (await api.call("GET", "/api/rooms/r/invitations", host))[0]["revoked"]

    device = await api.call("POST", "/api/endpoints", host, {"name": "Phòng họp UBND"}, 201)
    assert device["secret"] and device["id"]
    assert (await api.call("GET", "/api/endpoints", host))[0]["secret"] is None
    meeting = await api.call("POST", "/api/rooms/r/meetings", host, {
        "title": "Giao ban tuần", "first_date": "2025-01-06", "start": "08:00", "end": "10:00",
        "endpoint_ids": [device["id"]], "account_ids": [me["id"]]}, 201)
    assert meeting["weekly"] and meeting["next_start"] is not None
    assert meeting["endpoint_ids"] == [device["id"]]
    await api.call("DELETE", f"/api/rooms/r/meetings/{meeting['id']}", host, expect=204)
    assert await api.call("GET", "/api/rooms/r/meetings", host) == []

    _, other_host, _ = await _org_with_host(api, "Other")
    await api.call("DELETE", f"/api/endpoints/{device['id']}", other_host, expect=403)
    await api.call("DELETE", f"/api/endpoints/{device['id']}", host, expect=204)
    await api.call("DELETE", f"/api/rooms/r/members/{me['id']}", host, expect=204)
    await api.call("GET", "/api/rooms/r", member, expect=403)


async def test_accounts_passwords(api: Api) -> None:
    _, host, member = await _org_with_host(api)
    me = await api.call("GET", "/api/me", member)
    await api.call("PUT", f"/api/accounts/{me['id']}/password", member,
                   {"password": "a new password", "current_password": "member-password"},
                   expect=204)
    await api.call("GET", "/api/me", member, expect=401)  # old sessions end
    member = await api.login(me["username"], "a new password")
    operator = await api.login("admin", api.bootstrap.password)
    op = await api.call("GET", "/api/me", operator)
    await api.call("GET", f"/api/accounts/{op['id']}", member, expect=403)
    await api.call("DELETE", f"/api/accounts/{op['id']}", operator, expect=403)  # not yourself
    await api.call("DELETE", f"/api/accounts/{me['id']}", host, expect=204)
    await api.call("GET", f"/api/accounts/{me['id']}", host, expect=404)


async def test_join_tokens(api: Api) -> None:
    _, host, member = await _org_with_host(api)
    me = await api.call("GET", "/api/me", member)
    await api.call("POST", "/api/rooms", host, {"name": "r"}, 201)
    made = await api.call("POST", "/api/rooms/r/tokens", host,
                          {"name": "Chủ tọa", "role": "host", "ttl_s": 600}, 201)
    grants = verify_join_token(api.control.secret, made["token"], api.control.clock(), "r")
    assert grants.role == "host" and grants.name == "Chủ tọa"
    assert parse_qs(urlparse(made["link"]).query)["token"] == [made["token"]]
    await api.call("POST", "/api/rooms/r/tokens", member, {"name": "me"}, expect=403)
    await api.call("POST", "/api/rooms/r/members", host, {"account_id": me["id"]}, 201)
    mine = await api.call("POST", "/api/rooms/r/tokens", member, {"name": "me"}, 201)
    assert mine["identity"] == f"account:{me['id']}"
    await api.call("POST", "/api/rooms/r/tokens", member, {"name": "me", "role": "host"},
                   expect=403)
    error = await api.call("POST", "/api/rooms/r/tokens", host, {"name": "x", "role": "king"},
                           expect=400)
    assert error["field"] == "role"


async def test_moderation(api: Api) -> None:
    _, host, member = await _org_with_host(api)
    await api.call("POST", "/api/rooms", host, {"name": "r"}, 201)
    api.moderator.rooms["r"] = {"p1": ParticipantInfo(id="p1", name="Lan", role="member")}
    api.moderator.lobbies["r"] = {"g1": ParticipantInfo(id="g1", name="Khách", role="guest")}
    assert [p["id"] for p in await api.call("GET", "/api/rooms/r/participants", host)] == ["p1"]
    await api.call("POST", "/api/rooms/r/participants/p1/mute", host, {"kind": "audio"}, 204)
    error = await api.call("POST", "/api/rooms/r/participants/p1/mute", host, {"kind": "x"},
                           expect=400)
    assert error["field"] == "kind"
    await api.call("POST", "/api/rooms/r/participants/nobody/mute", host, {"kind": "video"},
                   expect=404)
    await api.call("POST", "/api/rooms/r/pin", host, {"participant_id": "p1"}, expect=204)
    await api.call("POST", "/api/rooms/r/pin", host, {"participant_id": None}, expect=204)
    assert [g["id"] for g in await api.call("GET", "/api/rooms/r/lobby", host)] == ["g1"]
    await api.call("POST", "/api/rooms/r/lobby/g1/admit", host, expect=204)
    await api.call("DELETE", "/api/rooms/r/lobby/g1", host, expect=404)
    room = await api.call("POST", "/api/rooms/r/lock", host, {"locked": True})
    assert room["locked"] and (await api.control.store.get_room("r")).locked
    await api.call("DELETE", "/api/rooms/r/participants/p1", host, expect=204)
    await api.call("POST", "/api/rooms/r/end", member, expect=403)
    await api.call("POST", "/api/rooms/r/end", host, expect=204)
    assert [c[0] for c in api.moderator.calls] == ["mute", "pin", "pin", "admit", "locked",
                                                   "remove", "end"]
    api.control.moderator = None
    await api.call("POST", "/api/rooms/r/end", host, expect=503)


async def test_openapi_documents_every_route(api: Api) -> None:
    doc = await api.call("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.1")
    served = {(r.method, r.resource.canonical) for r in api.client.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/")
              and r.method != "HEAD"}
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented and len(served) == len(ROUTES)
    schemas = doc["components"]["schemas"]
    assert schemas["RoomIn"]["properties"]["capacity"]["maximum"] == 1000
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for response in op["responses"].values():
                ref = response.get("content", {}).get("application/json", {}).get(
                    "schema", {}).get("$ref")
                assert ref is None or ref.split("/")[-1] in schemas, (path, ref)


async def test_lobby_admit_into_a_full_room_is_409(api: Api) -> None:
    _, host, _ = await _org_with_host(api)
    await api.call("POST", "/api/rooms", host, {"name": "r"}, 201)

    async def full(room: str, participant_id: str) -> None:
        raise JoinRefused("room-full", f"room {room!r} is full: it holds at most 26 "
                                       "participants", limit=26)

    api.moderator.admit = full  # type: ignore[method-assign]
    error = await api.call("POST", "/api/rooms/r/lobby/g1/admit", host, expect=409)
    assert error["error"] == "room-full" and "26" in error["message"]
