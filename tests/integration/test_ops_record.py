"""The event record and the audit trail in the real server process (issue 13): a participant
joins by the demo invitation and leaves, another is refused; the server stops (SIGTERM) and
``diemcau report daily`` and ``diemcau audit verify`` read the data directory; the server starts
again on the same data and its REST report still has the meeting: a restart loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp

from tests.serverproc import REPO_ROOT, running_server

REPLY_TIMEOUT_S = 10.0
PASSWORD_LINE = re.compile(r"Operator account 'admin', password (\S+)")
DEMO_LINE = re.compile(r"demo room ready: \S+\?(\S+)")


async def _until_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    for _ in range(50):  # bounded: a few messages at most come first
        message = json.loads((await ws.receive(timeout=REPLY_TIMEOUT_S)).data)
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind!r} message")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diemcau", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


async def test_events_and_audit_survive_a_restart_of_the_server(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date().isoformat()
    with running_server(tmp_path, open_rooms=False) as server:
        log = server.log_text()
        password = PASSWORD_LINE.search(log)
        demo = DEMO_LINE.search(log)
        assert password and demo, log
        invite = parse_qs(demo.group(1))["invite"][0]
        url = server.base_url.replace("http", "ws", 1) + "/ws"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            await ws.send_json({"type": "join", "room": "demo", "name": "Chị Lan",
                                "invite": invite})
            assert (await _until_type(ws, "joined"))["room"] == "demo"
            intruder = await http.ws_connect(url)
            await intruder.send_json({"type": "join", "room": "demo", "name": "x",
                                      "username": "admin", "password": "wrong"})
            assert (await _until_type(intruder, "error"))["code"] == "bad-password"
            await intruder.close()
            await ws.send_json({"type": "leave"})
            await _until_type(ws, "left")
            await ws.close()
    # Stopped. The command line reads what the server wrote.
    data = str(tmp_path / "data")
    out = _cli("report", "daily", "--data-dir", data, "--date", today, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["totals"]["meetings"] == 1 and report["totals"]["ad_hoc"] == 1
    assert report["totals"]["participants"] == 1
    assert report["totals"]["refusals"] == {"bad-password": 1}
    assert [a["name"] for a in report["rooms"][0]["participants"]] == ["Chị Lan"]
    verify = _cli("audit", "--data-dir", data, "verify")
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
    listing = _cli("audit", "--data-dir", data, "--room", "demo", "--json")
    acts = [(r["action"], r["outcome"]) for r in map(json.loads, listing.stdout.splitlines())]
    assert ("room.join", "bad-password") in acts and ("room.join", "ok") in acts
    assert ("room.leave", "ok") in acts
    # Started again on the same data: the operator's report still has the meeting.
    (tmp_path / "again").mkdir()
    with running_server(tmp_path / "again", open_rooms=False,
                        data_dir=tmp_path / "data") as server:
        async with aiohttp.ClientSession() as http:
            login = await http.post(server.base_url + "/api/login", json={
                "username": "admin", "password": password.group(1)})
            token = (await login.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{server.base_url}/api/reports/daily?date={today}",
                                headers=headers) as response:
                again = await response.json()
            async with http.get(f"{server.base_url}/api/audit/verify",
                                headers=headers) as response:
                assert (await response.json())["ok"]
    assert again["totals"] == report["totals"]
