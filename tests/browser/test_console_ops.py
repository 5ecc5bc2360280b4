"""The operator console's Reports and Audit trail pages (issue 13) against the real server: a
participant joins and leaves over the WebSocket and a join is refused; the operator opens the
day's report (tables and plots) and the audit trail (the refusal, the logins), verifies the
chain, and goes back to the rooms.

Run inside a private network namespace (see docs/architecture.md#network-namespaces).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import pytest

from tests.serverproc import Server, running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

UI_TIMEOUT_MS = 15_000
PASSWORD_LINE = re.compile(r"Operator account 'admin', password (\S+)")
DEMO_LINE = re.compile(r"demo room ready: \S+\?(\S+)")


@pytest.fixture
def closed_server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, open_rooms=False) as server:
        yield server


async def _a_meeting(server: Server) -> None:
    demo = DEMO_LINE.search(server.log_text())
    assert demo, server.log_text()
    invite = parse_qs(demo.group(1))["invite"][0]
    url = server.base_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        await ws.send_json({"type": "join", "room": "demo", "name": "Anh Tư", "invite": invite})
        intruder = await http.ws_connect(url)
        await intruder.send_json({"type": "join", "room": "demo", "name": "x",
                                  "username": "admin", "password": "wrong"})
        for socket, kind in ((ws, "joined"), (intruder, "error")):
            for _ in range(20):  # bounded: the wanted message comes among the first few
                if (await socket.receive_json(timeout=10))["type"] == kind:
                    break
        await ws.send_json({"type": "leave"})
        await ws.close()
        await intruder.close()


async def test_reports_and_audit_trail_pages(closed_server: Server, browser,
                                             artifacts_dir: Path) -> None:
    await _a_meeting(closed_server)
    password = PASSWORD_LINE.search(closed_server.log_text())
    assert password
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        await page.goto(f"{closed_server.base_url}/console", timeout=UI_TIMEOUT_MS)
        await page.evaluate("localStorage.setItem('diemcau.lang', 'en')")
        await page.reload()
        login = page.locator("#login-form")
        await login.locator("[name=username]").fill("admin")
        await login.locator("[name=password]").fill(password.group(1))
        await login.locator("button[type=submit]").click()
        await page.locator("#nav-reports").wait_for(state="visible", timeout=UI_TIMEOUT_MS)

        await page.click("#nav-reports")
        summary = page.locator(".report-view table").first
        await summary.wait_for(timeout=UI_TIMEOUT_MS)
        text = await summary.inner_text()
        assert "Meetings held\t1 (0 scheduled, 1 ad hoc)" in text, text
        assert "Join refusals\t1 (bad-password 1)" in text, text
        assert await page.locator(".report-view img[src^='data:image/png']").count() >= 2
        assert await page.locator("#room-panel").is_hidden()
        await page.screenshot(path=str(artifacts_dir / "console-daily-report.png"),
                              full_page=True)

        await page.click("#nav-audit")
        rows = page.locator("#audit-list tbody tr")
        await rows.first.wait_for(timeout=UI_TIMEOUT_MS)
        listing = await page.locator("#audit-list").inner_text()
        assert "room.join" in listing and "bad-password" in listing and "api.login" in listing
        await page.get_by_role("button", name="Verify chain").click()
        verdict = page.locator("#audit-verdict")
        await verdict.get_by_text("Audit chain intact").wait_for(timeout=UI_TIMEOUT_MS)
        await page.screenshot(path=str(artifacts_dir / "console-audit-trail.png"))

        await page.click("#nav-rooms")
        assert await page.locator("#ops-panel").is_hidden()
        await page.locator("#room-list [data-room=demo]").wait_for(timeout=UI_TIMEOUT_MS)
        assert not errors, errors
    finally:
        await context.close()
