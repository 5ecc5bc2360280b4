"""Support staff in the console (issue 13): the operator adds a support account on the support
page; that account sees the live room with each participant's diagnostics, and the notice of a
meeting starting within the lead time.

Run inside a private network namespace (see docs/architecture.md#network-namespaces):
    unshare -n sh -c 'ip link set lo up; exec pytest tests/browser/test_support_console.py'
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from pathlib import Path

import pytest
from pagewait import wait_js

from loadtest.client import SyntheticParticipant
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "Ho-tro-Da-Nang"
PASSWORD_LINE = re.compile(r"Operator account 'admin', password (\S+)")
UI_TIMEOUT_MS = 15_000
NOTICE_TIMEOUT_MS = 45_000  # the notifier looks every 30 s


def api(base: str, method: str, path: str, body: object = None, token: str | None = None
        ) -> object:
    request = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def soon(now: dt.datetime) -> tuple[int, str, str, str]:
    """(utc offset, date, start, end) of a meeting starting in ~30 min, not across midnight."""
    for offset in (420, 0, -300, 600):
        local = now.astimezone(dt.timezone(dt.timedelta(minutes=offset)))
        start = (local + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
        end = start + dt.timedelta(minutes=30)
        if end.date() == start.date():
            return offset, start.date().isoformat(), start.strftime("%H:%M"), end.strftime(
                "%H:%M")
    raise AssertionError("no offset without midnight")


async def test_support_sees_diagnostics_and_notices(tmp_path: Path, browser) -> None:
    with running_server(tmp_path) as server:
        base = server.base_url
        match = PASSWORD_LINE.search(server.log_text())
        assert match, server.log_text()
        operator = api(base, "POST", "/api/login", {"username": "admin",
                                                     "password": match.group(1)})["token"]
        org = api(base, "GET", "/api/organisations", token=operator)[0]["id"]
        api(base, "POST", "/api/rooms", {"name": ROOM, "org_id": org}, operator)
        offset, day, start, end = soon(dt.datetime.now(dt.UTC))
        api(base, "POST", f"/api/rooms/{ROOM}/meetings", {
            "title": "Giao ban", "first_date": day, "start": start, "end": end,
            "weekly": False, "utc_offset_min": offset}, operator)
        person = SyntheticParticipant(base, "phong-mo", "An")  # an open room (--open-rooms)
        await person.join()
        context = await browser.new_context(locale="en-GB", viewport={"width": 1280,
                                                                       "height": 800})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        try:
            await page.goto(base + "/console", timeout=UI_TIMEOUT_MS)
            # The operator adds a support account on the support page.
            await page.fill("#login-form [name=username]", "admin")
            await page.fill("#login-form [name=password]", match.group(1))
            await page.click("#login-form [type=submit]")
            await page.click("#nav-support", timeout=UI_TIMEOUT_MS)
            await page.fill("#support-form [name=username]", "hotro")
            await page.fill("#support-form [name=password]", "support-pw-1")
            await page.click("#support-form [type=submit]")
            await wait_js(page, "document.querySelector('#support-staff-list')"
                                ".textContent.includes('hotro')", UI_TIMEOUT_MS)
            await page.click("#logout-btn")
            await page.fill("#login-form [name=username]", "hotro")
            await page.fill("#login-form [name=password]", "support-pw-1")
            await page.click("#login-form [type=submit]")
            row = "#support-rooms [data-room='phong-mo'] tbody tr"
            await wait_js(page, f"document.querySelectorAll(\"{row}\").length === 1 && "
                                f"document.querySelector(\"{row}\").textContent"
                                ".includes('connected /')", UI_TIMEOUT_MS)
            cells = await page.locator(f"{row} td").all_text_contents()
            # Alone in the room: publishing is connected; nothing to receive yet.
            assert cells[0] == "An" and cells[1].startswith("connected / "), cells
            assert await page.locator("#rooms-side").is_hidden()  # not a host's pages
            assert await page.locator("#support-staff").is_hidden()  # operators only
            await wait_js(page, "document.querySelector('#support-notices').textContent"
                                ".includes('Giao ban')", NOTICE_TIMEOUT_MS)
            notices = await page.locator("#support-notices tbody tr td").all_text_contents()
            assert notices[1:] == [ROOM, "Giao ban"], notices
            assert "60 min" in await page.locator("#support-lead").text_content()
            assert not errors, errors
        finally:
            await context.close()
            await person.leave()
