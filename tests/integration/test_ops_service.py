"""The server as an operator runs it (issue 13), on the real process: settings from a TOML file
and the environment, JSON logs naming room and participant, /readyz, signed webhooks to a
receiver on loopback (recordings too), support diagnostics of a live room, ``diemcau backup``
during a live meeting that restores, and SIGHUP reloading what it can."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from loadtest.client import SyntheticParticipant
from signaling.backup import describe_copy
from signaling.store.migrations import MIGRATIONS
from signaling.store.sqlite import SqliteStore
from signaling.webhooks import SIGNATURE_HEADER, verify
from tests.serverproc import REPO_ROOT, free_port, running_server

pytestmark = pytest.mark.media

SECRET = "webhook-secret-for-the-test-0123"
ROOM = "hop-tinh"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_service_life(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict[str, Any]] = []
    bad = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, ""), time.time()):
            bad.append(body)
            return web.Response(status=401)
        received.append(json.loads(body))
        return web.Response(status=200)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = web.AppRunner(hook_app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    config_file = tmp_path / "diemcau.toml"
    config_file.write_text(f'log_level = "info"\nwebhook_urls = ["http://127.0.0.1:{hook_port}'
                           f'/hook"]\njoin_timeout = 10\n', encoding="utf-8")
    monkeypatch.setenv("DIEMCAU_WEBHOOK_SECRET", SECRET)  # secrets from the environment
    people: list[SyntheticParticipant] = []
    try:
        with running_server(tmp_path, extra_args=["--config", str(config_file),
                                                  "--log-format", "json"]) as server:
            url = server.base_url
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/readyz") as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["status"] == "ready"
                operator = await operator_headers(http, url, server.log_text())
                async with http.get(url + "/api/organisations", headers=operator) as response:
                    org = (await response.json())[0]["id"]
                async with http.post(url + "/api/rooms", headers=operator,
                                     json={"name": ROOM, "org_id": org}) as response:
                    assert response.status == 201, await response.text()  # stored: recordable
                people = [SyntheticParticipant(url, ROOM, name) for name in ("An", "Binh")]
                for person in people:
                    await person.join()
                ids = {p.participant_id for p in people}

                def media_flows() -> bool:
                    return all(p.received.get(other, {}).get("audio", 0) > 5
                               for p in people for other in ids - {p.participant_id})

                await until(media_flows, "media between the two participants")
                support = await support_token(http, url, operator)
                diagnostics = await live_diagnostics(http, url, support, ids)
                for entry in diagnostics:
                    assert entry["publish_state"] == "connected", entry
                    assert entry["subscribe_state"] == "connected", entry
                    assert 0.0 <= entry["loss"] <= 1.0 and entry["audio_only"] is False
                async with http.get(url + "/api/support/rooms") as response:
                    assert response.status == 401  # not without logging in
                # An asks for audio only: support sees it, and why.
                await people[0].send({"type": "audio_only", "enabled": True})
                first = people[0].participant_id
                entry = await diagnostics_until(
                    http, url, support, lambda d: d["id"] == first and d["audio_only"])
                assert entry["audio_only_reason"] == "user"
                await people[0].send({"type": "audio_only", "enabled": False})

                # A recording started and stopped by the operator: two webhooks.
                recording = f"{url}/api/rooms/{ROOM}/recording"
                async with http.post(recording, headers=operator) as response:
                    assert response.status == 201, await response.text()
                await until(lambda: any(b["event"] == "recording_started" for b in received),
                            "the recording_started webhook")
                async with http.delete(recording, headers=operator) as response:
                    assert response.status == 200, await response.text()
                    recording_id = (await response.json())["id"]
                await until(lambda: any(b["event"] == "recording_finished" for b in received),
                            "the recording_finished webhook")
                finished = next(b for b in received if b["event"] == "recording_finished")
                assert finished["data"] == {"room": ROOM, "recording_id": recording_id}

                # A backup while the meeting runs (and writes: joins are audited).
                dest = tmp_path / "backups"
                dest.mkdir()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "diemcau", "backup", str(dest), "--data-dir",
                    str(tmp_path / "data"), cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT)
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 0, out.decode()
                copies = list(dest.glob("diemcau-*.sqlite3"))
                assert len(copies) == 1, out.decode()
                assert copies[0].stat().st_mode & 0o077 == 0
                await check_restores(copies[0], tmp_path)

                # SIGHUP: the file changed; what can change applies, the rest is named.
                config_file.write_text(
                    f'log_level = "warning"\nwebhook_urls = ["http://127.0.0.1:{hook_port}/hook"]'
                    f'\njoin_timeout = 7\nice_servers = ["stun:stun.invalid:3478"]\n'
                    f'record_all = true\nhost = "127.0.0.2"\n', encoding="utf-8")
                server.proc.send_signal(signal.SIGHUP)
                await until(lambda: "SIGHUP: reloaded" in server.log_text(), "the reload log")
                await until(lambda: "needs a restart: record_all" in server.log_text(),
                            "the restart warning")
                late = SyntheticParticipant(url, ROOM, "Chi")
                joined = await late.join()
                people.append(late)
                assert joined["ice_servers"] == [{"urls": "stun:stun.invalid:3478"}]
                for person in people:
                    await person.leave()
                people = []
                await until(lambda: sum(1 for b in received if b["event"] == "room_finished")
                            == 1, "the room_finished webhook")
            log = server.log_text()
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
        await runner.cleanup()
    assert not bad
    events = [body["event"] for body in received]
    assert events.count("room_started") == 1 and events.count("participant_joined") == 3
    assert events.count("participant_left") == 3
    joined_hooks = [b["data"] for b in received if b["event"] == "participant_joined"]
    assert {d["participant_id"] for d in joined_hooks} >= ids
    reloaded = next(line for line in log.splitlines() if "SIGHUP: reloaded" in line)
    assert "log_level ('info' -> 'warning')" in reloaded
    assert "join_timeout (10.0 -> 7.0)" in reloaded and "ice_servers" in reloaded
    restart = next(line for line in log.splitlines() if "needs a restart" in line)
    assert "host" not in restart  # given as a flag: the flag still wins
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert records, "no JSON log lines"
    tagged = [r for r in records if r.get("room") == ROOM and r.get("participant") in ids]
    assert tagged, "no log line names the room and participant"


async def operator_headers(http: aiohttp.ClientSession, url: str, log: str
                           ) -> dict[str, str]:
    """Log in as the bootstrap operator (its password is in the first-start line)."""
    match = re.search(r"Operator account 'admin', password (\S+)", log)
    assert match, log[-2000:]
    return await login(http, url, "admin", match.group(1))


async def support_token(http: aiohttp.ClientSession, url: str,
                        operator: dict[str, str]) -> str:
    """Make a support account, and log in as it."""
    async with http.post(url + "/api/accounts", headers=operator, json={
            "username": "hotro", "password": "support-pw-123", "role": "support"}) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["role"] == "support"
    support = await login(http, url, "hotro", "support-pw-123")
    async with http.post(url + "/api/organisations", headers=support,
                         json={"name": "nope"}) as response:
        assert response.status == 403  # support staff look; they do not administer
    return support["Authorization"]


async def login(http: aiohttp.ClientSession, url: str, user: str, password: str
                ) -> dict[str, str]:
    async with http.post(url + "/api/login",
                         json={"username": user, "password": password}) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": "Bearer " + (await response.json())["token"]}


async def live_diagnostics(http: aiohttp.ClientSession, url: str, token: str,
                           ids: set[str | None]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        async with http.get(url + "/api/support/rooms",
                            headers={"Authorization": token}) as response:
            assert response.status == 200, await response.text()
            rooms = await response.json()
        room = next((r for r in rooms if r["room"] == ROOM), None)
        entries = room["participants"] if room else []
        if {e["id"] for e in entries} == ids and all(
                e["subscribe_state"] == "connected" and e["publish_state"] == "connected"
                for e in entries):
            return list(entries)
        assert time.monotonic() < deadline, f"diagnostics never settled: {rooms}"
        await asyncio.sleep(0.2)


async def diagnostics_until(http: aiohttp.ClientSession, url: str, token: str,
                            match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        async with http.get(url + "/api/support/rooms",
                            headers={"Authorization": token}) as response:
            rooms = await response.json()
        for room in rooms:
            for entry in room["participants"]:
                if match(entry):
                    return dict(entry)
        assert time.monotonic() < deadline, f"no participant matched: {rooms}"
        await asyncio.sleep(0.2)


async def check_restores(copy: Path, tmp_path: Path) -> None:
    """The copy is a working store: it opens (no migration left to run), and holds the rows."""
    version, rows = describe_copy(copy)
    assert version == len(MIGRATIONS)
    restored = tmp_path / "restored" / "diemcau.sqlite3"
    restored.parent.mkdir()
    restored.write_bytes(copy.read_bytes())
    store = await SqliteStore.open(restored)
    try:
        accounts = {a.username: a.role for a in await store.list_accounts()}
        assert accounts == {"admin": "operator", "hotro": "support"}
        joins = await store.list_joins(ROOM)
        assert len({j.identity for j in joins}) >= 2 and rows > 0
    finally:
        await store.close()
