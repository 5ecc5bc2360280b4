"""The archive's REST routes on the real app: real recordings (an aiortc participant publishes,
the in-server recorder writes the files), real accounts and organisations, raw request paths.

Who sees what: operators, and hosts of the recording's organisation; a host of another
organisation gets 404 (the recording is not confirmed to exist), a member 403 (no API access).
No request path reaches the disk: traversal attempts, the manifest and another recording's files
are 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from loadtest.client import SyntheticParticipant
from signaling.app import create_app
from signaling.auth import Passwords
from signaling.control import CONTROL, ControlPlane
from signaling.recording import RECORDINGS, RecordingService
from signaling.store import DB_FILE
from tests.conftest import base_url, make_config

pytestmark = pytest.mark.media

PW = "password-1"
TIMEOUT = 20.0


class TokenParticipant(SyntheticParticipant):
    """Joins a stored room with a join token (as an invited browser does)."""

    def __init__(self, url: str, room: str, name: str, token: str) -> None:
        super().__init__(url, room, name, remb=False)
        self.token = token

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        await self.connect()
        joined = await self.request({"type": "join", "room": self.room, "name": self.name,
                                     "token": self.token}, "joined", timeout)
        self.participant_id = joined["participant_id"]
        await self.publish(timeout)
        return joined


@dataclass
class World:
    url: str
    control: ControlPlane
    service: RecordingService
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None

    async def call(self, method: str, path: str, who: str | None = None, *, expect: int,
                   headers: dict[str, str] | None = None) -> tuple[Any, bytes, Any]:
        """(json or None, body, response headers); ``path`` is sent exactly as written."""
        assert self.http is not None
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.tokens[who]}"
        async with self.http.request(method, URL(self.url + path, encoded=True),
                                     headers=sent) as response:
            body = await response.read()
            answer = await response.json() if response.content_type == "application/json" \
                else None
            assert response.status == expect, (method, path, who, response.status, answer)
            return answer, body, response.headers

    async def recorded_files(self, room: str, count: int) -> None:
        """Until the room's recorder has ``count`` files open (media flowed into them)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            active = self.service.active.get(room)
            tracks = active.recording.tracks.values() if active else []
            if sum(track.writer.opened for track in tracks) >= count:
                return
            assert time.monotonic() < deadline, f"no {count} recorded files in {room}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    app = create_app(make_config(tmp_path, open_rooms=False))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    control = app[CONTROL]
    control.passwords = control.admission.passwords = Passwords.fast()
    store = control.store
    org_a = (await store.create_organisation("UBND")).id
    org_b = (await store.create_organisation("Khac")).id
    for username, role, org in (("root", "operator", None), ("host-a", "host", org_a),
                                ("host-b", "host", org_b), ("member-a", "member", org_a)):
        await store.create_account(username, username, role, org,  # type: ignore[arg-type]
                                   await control.passwords.hash(PW))
    world = World(base_url(server), control, app[RECORDINGS], tmp_path)
    world.http = aiohttp.ClientSession()
    try:
        for username in ("root", "host-a", "host-b", "member-a"):
            async with world.http.post(world.url + "/api/login",
                                       json={"username": username, "password": PW}) as response:
                assert response.status == 200
                world.tokens[username] = (await response.json())["token"]
        yield world
    finally:
        await world.http.close()
        await server.close()


async def record_once(world: World, room: str, name: str) -> tuple[dict[str, Any],
                                                                   TokenParticipant]:
    """A participant publishes in ``room``; host-a records it and stops; returns the recording."""
    assert world.http is not None
    async with world.http.post(world.url + f"/api/rooms/{room}/tokens",
                               json={"name": name, "role": "member"},
                               headers={"Authorization": f"Bearer {world.tokens['host-a']}"}) \
            as response:
        assert response.status == 201, await response.text()
        token = (await response.json())["token"]
    person = TokenParticipant(world.url, room, name, token)
    joined = await person.join()
    assert joined["recording"] is False
    started, _, _ = await world.call("POST", f"/api/rooms/{room}/recording", "host-a",
                                     expect=201)
    assert started["state"] == "recording"
    # everyone in the room is told
    assert await person.wait_for(lambda: any(
        e.get("type") == "recording" and e.get("active") is True
        and e.get("recording_id") == started["id"] for e in person.events), TIMEOUT)
    await world.call("POST", f"/api/rooms/{room}/recording", "root", expect=409)  # twice
    await world.recorded_files(room, 2)
    await asyncio.sleep(1.0)  # a second of media
    stopped, _, _ = await world.call("DELETE", f"/api/rooms/{room}/recording", "host-a",
                                     expect=200)
    assert stopped["id"] == started["id"] and stopped["state"] == "complete"
    assert {f["kind"] for f in stopped["files"]} == {"audio", "video"}
    assert await person.wait_for(lambda: any(
        e.get("type") == "recording" and e.get("active") is False
        and "error" not in e for e in person.events), TIMEOUT)
    await world.call("DELETE", f"/api/rooms/{room}/recording", "host-a", expect=409)
    return stopped, person


async def test_recording_access_download_range_traversal_and_delete(world: World) -> None:
    async with world.http.post(world.url + "/api/rooms", json={"name": "hop-a"},  # type: ignore
                               headers={"Authorization": f"Bearer {world.tokens['host-a']}"}) \
            as response:
        assert response.status == 201, await response.text()
    first, an = await record_once(world, "hop-a", "An")
    await an.leave()
    second, binh = await record_once(world, "hop-a", "Binh")
    await binh.leave()
    assert first["id"] != second["id"]
    files = {f["url"].rsplit("/", 1)[1]: f for f in first["files"]}
    others = {f["url"].rsplit("/", 1)[1] for f in second["files"]}
    assert not set(files) & others  # another participant, other file names

    # Who sees it.
    for who in ("root", "host-a"):
        listed, _, _ = await world.call("GET", "/api/recordings?room=hop-a", who, expect=200)
        assert {r["id"] for r in listed} == {first["id"], second["id"]}
        one, _, _ = await world.call("GET", f"/api/recordings/{first['id']}", who, expect=200)
        assert one["files"] == first["files"]
    listed, _, _ = await world.call("GET", "/api/recordings", "host-b", expect=200)
    assert listed == []
    await world.call("GET", f"/api/recordings/{first['id']}", "host-b", expect=404)
    await world.call("POST", "/api/rooms/hop-a/recording", "host-b", expect=403)
    await world.call("DELETE", "/api/rooms/hop-a/recording", "host-b", expect=403)
    await world.call("GET", "/api/recordings", "member-a", expect=403)
    await world.call("GET", f"/api/recordings/{first['id']}", "member-a", expect=403)
    await world.call("GET", "/api/recordings", None, expect=401)

    # Download, whole and by range.
    name, entry = next((n, f) for n, f in files.items() if f["kind"] == "video")
    on_disk = (world.data_dir / entry["path"]).read_bytes()
    assert len(on_disk) == entry["bytes"] > 200
    for who in ("root", "host-a"):
        _, body, headers = await world.call("GET", entry["url"], who, expect=200)
        assert body == on_disk
        assert "attachment" in headers["Content-Disposition"]
    _, body, headers = await world.call("GET", entry["url"], "host-a", expect=206,
                                        headers={"Range": "bytes=100-199"})
    assert body == on_disk[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(on_disk)}"
    _, body, _ = await world.call("GET", entry["url"], "root", expect=206,
                                  headers={"Range": "bytes=-50"})
    assert body == on_disk[-50:]
    for who, status in (("host-b", 404), ("member-a", 403), (None, 401)):
        _, body, _ = await world.call("GET", entry["url"], who, expect=status)
        assert on_disk[:64] not in body

    # Traversal and foreign files: 404, nothing from the disk.
    base = f"/api/recordings/{first['id']}/files/"
    other_name = next(iter(others))
    store_bytes = (world.data_dir / DB_FILE).read_bytes()[:16]
    assert store_bytes.startswith(b"SQLite format 3")
    attempts = [
        base + "manifest.jsonl",
        base + other_name,  # a file of the other recording
        base + "..%2f..%2f" + DB_FILE,
        base + "%2e%2e%2f%2e%2e%2f" + DB_FILE,
        base + "%2e%2e%2f" + second["id"] + "%2f" + other_name,
        base + "%2Fetc%2Fpasswd",
        base + "%2F" + "%2F".join(world.data_dir.parts[1:]) + "%2Frecordings%2F"
        + first["id"] + "%2F" + name,  # the right file, by an absolute path
        base + "..",
        base + "." + name,
        f"/api/recordings/..%2f{second['id']}/files/{other_name}",
        f"/api/recordings/%2e%2e/files/{name}",
        f"/api/recordings/{first['id']}%2f..%2f{second['id']}/files/{other_name}",
    ]
    for path in attempts:
        _, body, _ = await world.call("GET", path, "root", expect=404)
        assert store_bytes not in body and b"root:" not in body and on_disk[:64] not in body

    # Deleting: hosts may not, operators may; the files go, the recording leaves every list.
    await world.call("DELETE", f"/api/recordings/{first['id']}", "host-a", expect=403)
    await world.call("DELETE", f"/api/recordings/{first['id']}", "host-b", expect=403)
    assert (world.data_dir / entry["path"]).is_file()
    await world.call("DELETE", f"/api/recordings/{first['id']}", "root", expect=204)
    assert not (world.data_dir / "recordings" / first["id"]).exists()
    assert (world.data_dir / second["files"][0]["path"]).is_file()  # the other one stays
    for who in ("root", "host-a"):
        listed, _, _ = await world.call("GET", "/api/recordings", who, expect=200)
        assert [r["id"] for r in listed] == [second["id"]]
        await world.call("GET", f"/api/recordings/{first['id']}", who, expect=404)
        await world.call("GET", entry["url"], who, expect=404)
    await world.call("DELETE", f"/api/recordings/{first['id']}", "root", expect=404)
