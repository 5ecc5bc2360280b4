"""Issue 12, the meeting extras on the real app (loopback port, real SQLite file, REST API and
WebSocket joins; nobody publishes, so no media moves): the AIC eMeeting guest join with the
room's password, chat, raised hands, quality reports and the room's documents, each with the
bad input it must refuse."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from signaling import chat
from signaling.app import create_app
from signaling.auth import Passwords
from signaling.control import CONTROL
from signaling.documents import MAX_DOCUMENT_BYTES
from signaling.messages import MAX_CHAT_CHARS
from tests.api.test_access_control import PW, CountingHasher, Live, Socket
from tests.conftest import base_url, make_config

ROOM_PW = "HopBan-2026"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def docx(with_document: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if with_document:
            archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


class World(Live):
    host_token: str = ""
    data_dir: Path = Path()

    async def send(self, socket: Socket, **message: Any) -> None:
        await socket.ws.send_str(json.dumps(message))

    async def upload(self, room: str, filename: str, data: bytes, token: str | None = None,
                     expect: int = 201) -> Any:
        headers = {"Authorization": f"Bearer {token or self.host_token}",
                   "Content-Type": "application/pdf"}
        async with self.http("127.0.0.1").post(
                f"{self.url}/api/rooms/{room}/documents", params={"filename": filename},
                data=data, headers=headers) as response:
            answer = await response.json() if response.content_type == "application/json" \
                else None
            assert response.status == expect, (response.status, answer)
            return answer


@pytest.fixture
async def world(tmp_path: Path, store_url: str | None) -> AsyncIterator[World]:
    app = create_app(make_config(tmp_path, open_rooms=False, store_url=store_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    control = app[CONTROL]
    hasher = CountingHasher()
    control.passwords = control.admission.passwords = Passwords(hasher)
    world = World(server, control, hasher, base_url(server))
    world.data_dir = tmp_path
    world.org_a = (await control.store.create_organisation("UBND")).id
    await world.account("host-a", "host", world.org_a)
    world.host_token = await world.login("host-a")
    await world.call("POST", "/api/rooms", world.host_token, {
        "name": "GiaoBan", "password": ROOM_PW, "guest_password_join": True}, expect=201)
    await world.call("POST", "/api/rooms", world.host_token, {
        "name": "Kin", "password": ROOM_PW}, expect=201)
    try:
        yield world
    finally:
        for socket in world._sockets:
            await socket.ws.close()
        for http in world._http.values():
            await http.close()
        await server.close()


async def host_in(world: World, room: str = "GiaoBan") -> Socket:
    host, joined = await world.join(room=room, username="host-a", password=PW, name="Chủ trì")
    assert joined["type"] == "joined" and joined["role"] == "host", joined
    assert joined["meeting"]["can_moderate"] is True
    return host


async def guest_in(world: World, name: str = "Chị Lan", source: str = "127.0.0.1",
                   room: str = "GiaoBan") -> Socket:
    guest, joined = await world.join(source, room=room, name=name, room_password=ROOM_PW)
    assert joined["type"] == "joined" and joined["role"] == "guest", joined
    guest.joined = joined  # type: ignore[attr-defined]
    return guest


# -- the AIC eMeeting guest join ---------------------------------------------------------------


async def test_guest_joins_with_room_name_password_and_name(world: World) -> None:
    room = await world.call("GET", "/api/rooms/GiaoBan", world.host_token)
    assert room["guest_password_join"] is True and room["has_password"] is True
    guest = await guest_in(world, "Anh Tuấn (xã Hòa An)")
    state = guest.joined["meeting"]  # type: ignore[attr-defined]
    assert state["can_moderate"] is False and state["chat"] == [] and state["hands"] == []
    live = world.control.admission.occupants("GiaoBan")
    assert len(live) == 1 and next(iter(live)).startswith("guest:room:")


async def test_wrong_case_password_is_refused_clearly(world: World) -> None:
    _, refused = await world.join(room="GiaoBan", name="Lan", room_password=ROOM_PW.lower())
    assert refused["type"] == "error" and refused["code"] == "bad-password", refused
    assert "case-sensitive" in refused["message"]
    assert not world.control.admission.occupants("GiaoBan")


async def test_guest_password_join_is_off_unless_the_host_allows_it(world: World) -> None:
    _, refused = await world.join(room="Kin", name="Lan", room_password=ROOM_PW)
    assert refused["code"] == "not-invited" and "password" in refused["message"], refused
    await world.call("PATCH", "/api/rooms/Kin", world.host_token, {"guest_password_join": True})
    await guest_in(world, room="Kin")


async def test_password_guests_wait_in_the_lobby_and_are_audited(world: World) -> None:
    await world.call("PATCH", "/api/rooms/GiaoBan", world.host_token, {"lobby": True})
    _, waiting = await world.join(room="GiaoBan", name="Chờ", room_password=ROOM_PW)
    assert waiting["type"] == "lobby", waiting
    _, refused = await world.join("127.0.0.12", room="GiaoBan", name="x", room_password="sai")
    assert refused["code"] == "bad-password"
    await world.control.admission.join_audit.close()  # the audit writes in flight
    outcomes = {(j.identity.split(":")[0] + ":" + j.identity.split(":")[1], j.outcome)
                for j in await world.control.store.list_joins("GiaoBan")}
    assert ("guest:room", "lobby") in outcomes and \
        ("guest:room-password", "bad-password") in outcomes, outcomes


async def test_guessing_the_room_password_is_rate_limited(world: World) -> None:
    codes = []
    world.hasher.verified.clear()  # the host's login
    for attempt in range(7):  # one socket per attempt: the per-socket bucket is not the limit
        _, refused = await world.join("127.0.0.5", room="GiaoBan", name="x",
                                      room_password=f"guess-{attempt}")
        codes.append(refused["code"])
    assert codes[:5] == ["bad-password"] * 5 and codes[5:] == ["rate-limited"] * 2, codes
    assert len(world.hasher.verified) == 5  # refused before hashing
    # The right password from another address still works (keyed by room AND address).
    await guest_in(world, source="127.0.0.6")


# -- chat --------------------------------------------------------------------------------------


async def test_chat_reaches_the_room_and_late_joiners_get_the_history(world: World) -> None:
    host = await host_in(world)
    guest = await guest_in(world)
    await world.send(guest, type="chat", text="  Xin chào, xã Hòa An đã vào họp  ")
    seen = [await s.next("chat") for s in (host, guest)]
    assert seen[0] == seen[1]
    line = seen[0]["message"]
    assert line["text"] == "Xin chào, xã Hòa An đã vào họp" and line["name"] == "Chị Lan"
    await world.send(host, type="chat", text="Bắt đầu lúc 9 giờ")
    second = (await guest.next("chat"))["message"]
    late = await guest_in(world, "Đến muộn", source="127.0.0.7")
    state = late.joined["meeting"]  # type: ignore[attr-defined]
    assert [m["text"] for m in state["chat"]] == [line["text"], second["text"]]
    meeting = state["id"]
    stored = await world.control.store.list_chat("GiaoBan", meeting, 10)
    assert [m.identity.split(":")[0] for m in stored] == ["guest", "account"]


async def test_bad_chat_gets_a_clear_error_and_nothing_else(world: World) -> None:
    host = await host_in(world)
    guest = await guest_in(world)
    for bad in ({"text": "x" * (MAX_CHAT_CHARS + 1)}, {"text": 42}, {}, {"text": "   "},
                {"text": "rtl\u202eoverride"}):
        await world.send(guest, type="chat", **bad)
        error = await guest.next("error")
        assert error["code"] == "bad-message" and error["ref"] == "chat", (bad, error)
    await world.send(guest, type="chat", text="vẫn nói được")  # the session goes on
    assert (await host.next("chat"))["message"]["text"] == "vẫn nói được"


async def test_chat_rate_is_bounded(world: World) -> None:
    await host_in(world)
    guest = await guest_in(world)
    for n in range(10):
        await world.send(guest, type="chat", text=f"dòng {n}")
    await world.send(guest, type="chat", text="one too many")
    error = await guest.next("error")
    assert error["code"] == "rate-limited" and error["ref"] == "chat", error


async def test_a_meetings_chat_is_bounded(world: World,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "MAX_MEETING_LINES", 3)
    host = await host_in(world)
    guest = await guest_in(world)
    for n in range(3):
        await world.send(host if n % 2 else guest, type="chat", text=f"dòng {n}")
        await host.next("chat")
    await world.send(guest, type="chat", text="thêm nữa")
    error = await guest.next("error")
    assert error["code"] == "limit-exceeded" and error["ref"] == "chat", error


async def test_only_moderators_delete_chat(world: World) -> None:
    host = await host_in(world)
    guest = await guest_in(world)
    await world.send(guest, type="chat", text="quảng cáo")
    line = (await host.next("chat"))["message"]
    await world.send(guest, type="chat_delete", id=line["id"])
    error = await guest.next("error")
    assert error["code"] == "not-allowed", error
    await world.send(host, type="chat_delete", id=line["id"] + 1000)
    assert (await host.next("error"))["code"] == "not-found"
    await world.send(host, type="chat_delete", id=line["id"])
    assert (await guest.next("chat_deleted"))["id"] == line["id"]
    late = await guest_in(world, "Sau", source="127.0.0.8")
    assert late.joined["meeting"]["chat"] == []  # type: ignore[attr-defined]


async def test_a_new_sitting_starts_with_an_empty_chat(world: World) -> None:
    guest = await guest_in(world)
    first = guest.joined["meeting"]["id"]  # type: ignore[attr-defined]
    await world.send(guest, type="chat", text="hôm qua")
    await guest.next("chat")
    await guest.ws.close()
    await world.until_empty("GiaoBan")
    again = await guest_in(world, source="127.0.0.9")
    state = again.joined["meeting"]  # type: ignore[attr-defined]
    assert state["id"] != first and state["chat"] == []


# -- hands and quality -------------------------------------------------------------------------


async def test_raised_hands_are_seen_and_lowered_by_the_host(world: World) -> None:
    host = await host_in(world)
    guest = await guest_in(world)
    guest_id = world.control.admission.occupants("GiaoBan")
    guest_pid = next(s for i, s in guest_id.items() if i.startswith("guest:"))
    other = await guest_in(world, "Khác", source="127.0.0.10")
    await world.send(guest, type="hand", raised=True)
    assert (await guest.next("hand"))["raised"] is True  # everyone sees it, the raiser too
    assert await host.next("hand") == {"type": "hand", "participant_id": guest_pid,
                                       "raised": True}
    await world.send(other, type="hand", raised=False, participant_id=guest_pid)
    assert (await other.next("error"))["code"] == "not-allowed"
    late = await guest_in(world, "Muộn", source="127.0.0.11")
    assert late.joined["meeting"]["hands"] == [guest_pid]  # type: ignore[attr-defined]
    await world.send(host, type="hand", raised=False, participant_id=guest_pid)
    lowered = await guest.next("hand")
    assert lowered["raised"] is False and lowered["participant_id"] == guest_pid
    assert "by" in lowered


async def test_quality_reports_reach_the_participant_list(world: World) -> None:
    host = await host_in(world)
    guest = await guest_in(world)
    await world.send(guest, type="quality", loss=0.12, rtt_ms=80, layer=0)
    report = await host.next("quality")
    assert report["level"] == "poor" and report["layer"] == 0 and report["loss"] == 0.12
    await world.send(guest, type="quality", loss=1.5)
    assert (await guest.next("error"))["code"] == "bad-message"
    for _ in range(3):
        await world.send(guest, type="quality", loss=0.0, rtt_ms=20, layer=2)
    assert (await guest.next("error"))["code"] == "rate-limited"


# -- documents ---------------------------------------------------------------------------------


async def test_host_attaches_documents_and_participants_download_them(world: World) -> None:
    doc = await world.upload("GiaoBan", "Kế hoạch số 12.pdf", PDF)
    assert doc["name"] == "Kế hoạch số 12.pdf" and doc["kind"] == "pdf"
    word = await world.upload("GiaoBan", "Báo cáo.docx", docx())
    assert word["kind"] == "docx"
    files = sorted((world.data_dir / "documents").iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE((world.data_dir / "documents").stat().st_mode) == 0o700

    guest = await guest_in(world)
    await world.send(guest, type="documents")
    listing = await guest.next("documents")
    assert [d["name"] for d in listing["documents"]] == ["Kế hoạch số 12.pdf", "Báo cáo.docx"]
    http = world.http("127.0.0.1")
    url = world.url + listing["documents"][0]["url"]
    async with http.get(url, params={"key": listing["key"]}) as response:
        assert response.status == 200
        assert await response.read() == PDF
        assert response.headers["Content-Type"] == "application/pdf"
        assert "attachment" in response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(url) as response:
        assert response.status == 401
    tampered = listing["key"][:-1] + ("1" if listing["key"].endswith("0") else "0")
    async with http.get(url, params={"key": tampered}) as response:
        assert response.status == 403
    # The key is for this room only.
    other = f"{world.url}/api/rooms/Kin/documents"
    async with http.get(other, params={"key": listing["key"]}) as response:
        assert response.status == 403


async def test_path_traversal_in_the_name_stays_a_name(world: World) -> None:
    doc = await world.upload("GiaoBan", "../../../../etc/cron.d/evil.pdf", PDF)
    assert doc["name"] == "evil.pdf"
    assert [p.name for p in world.data_dir.rglob("evil*")] == []
    assert len(list((world.data_dir / "documents").iterdir())) == 1
    win = await world.upload("GiaoBan", "..\\..\\boot.ini.pdf", PDF)
    assert win["name"] == "boot.ini.pdf"
    # The id in the URL is only ever looked up in the store.
    async with world.http("127.0.0.1").get(
            f"{world.url}/api/rooms/GiaoBan/documents/..%2F..%2Fdiemcau.sqlite3/file",
            headers={"Authorization": f"Bearer {world.host_token}"}) as response:
        assert response.status == 404


async def test_wrong_types_and_sizes_are_refused(world: World) -> None:
    exe = b"MZ\x90\x00" + b"\x00" * 2000
    error = await world.upload("GiaoBan", "hop.pdf", exe, expect=415)
    assert error["error"] == "bad-type"
    await world.upload("GiaoBan", "hop.docx", docx(with_document=False), expect=415)
    await world.upload("GiaoBan", "empty.pdf", b"", expect=415)
    too_big = PDF + b"0" * MAX_DOCUMENT_BYTES
    error = await world.upload("GiaoBan", "big.pdf", too_big, expect=413)
    assert error["error"] == "too-large"
    await world.upload("GiaoBan", "", PDF, expect=400)
    assert not (world.data_dir / "documents").exists() or \
        list((world.data_dir / "documents").iterdir()) == []


async def test_document_access_is_the_rooms(world: World) -> None:
    doc = await world.upload("GiaoBan", "a.pdf", PDF)
    await world.account("member-a", "member", world.org_a)
    await world.account("outsider", "member", world.org_a)
    member = await world.login("member-a")
    outsider = await world.login("outsider")
    accounts = await world.call("GET", "/api/accounts", world.host_token)
    member_id = next(a["id"] for a in accounts if a["username"] == "member-a")
    await world.call("POST", "/api/rooms/GiaoBan/members", world.host_token,
                     {"account_id": member_id}, expect=201)
    listed = await world.call("GET", "/api/rooms/GiaoBan/documents", member)
    assert [d["id"] for d in listed] == [doc["id"]]
    await world.call("GET", "/api/rooms/GiaoBan/documents", outsider, expect=403)
    await world.upload("GiaoBan", "b.pdf", PDF, token=member, expect=403)
    await world.call("DELETE", f"/api/rooms/GiaoBan/documents/{doc['id']}", member, expect=403)
    await world.call("DELETE", f"/api/rooms/GiaoBan/documents/{doc['id']}", world.host_token,
                     expect=204)
    assert list((world.data_dir / "documents").iterdir()) == []


async def test_a_large_allowed_document_and_a_deleted_room(world: World) -> None:
    # Bigger than the app's 1 MiB body limit for JSON: uploads stream past it.
    big = PDF + b"%" * (3 << 20)
    doc = await world.upload("Kin", "lớn.pdf", big)
    assert doc["bytes"] == len(big)
    await world.call("DELETE", "/api/rooms/Kin", world.host_token, expect=204)
    assert list((world.data_dir / "documents").iterdir()) == []  # the files went with it
