"""The operator console drives a real meeting: a room of capacity 2 with a password, an n-use
invitation link, two guests join by it, a third is refused ("room full"), the host mutes one and
removes the other.

The server runs WITHOUT --open-rooms; the operator's password is read from its first-start line.
Run inside a private network namespace (see docs/architecture.md#network-namespaces):
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/pytest tests/browser/test_console.py -q'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pagewait import wait_js

from tests.serverproc import running_server

JOINED = "window.diemcau && window.diemcau.state === 'joined'"

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "Huyen-Dong-Anh"
ROOM_PASSWORD = "Mk-2024"
UI_TIMEOUT_MS = 10_000
JOIN_TIMEOUT_MS = 20_000
PASSWORD_LINE = re.compile(r"Operator account 'admin', password (\S+)")
CONSOLE_LINES: dict[int, list[str]] = {}


@dataclass
class Server:
    url: str
    operator_password: str
    data_dir: Path


@pytest.fixture
def closed_server(tmp_path: Path) -> Iterator[Server]:
    """`diemcau serve` without --open-rooms, on a fresh data directory."""
    with running_server(tmp_path, open_rooms=False) as server:
        match = PASSWORD_LINE.search(server.log_text())
        assert match, "no operator password line:\n" + server.log_text()
        yield Server(server.base_url, match.group(1), tmp_path / "data")


async def _open(browser, url: str, locale: str, media: bool = True):
    context = await browser.new_context(
        locale=locale, permissions=["camera", "microphone"] if media else [],
        viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    lines = CONSOLE_LINES.setdefault(id(page), [])
    page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: lines.append(f"pageerror: {err}"))
    await page.goto(url, timeout=UI_TIMEOUT_MS)
    return page


def _tracks_recorded(data_dir: Path) -> int:
    """Track files the recorder has opened (``track`` entries in the manifests)."""
    return sum(line.count('"type":"track"') + line.count('"type": "track"')
               for manifest in data_dir.glob("recordings/*/manifest.jsonl")
               for line in manifest.read_text().splitlines())


async def _until(condition, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def _report(page) -> str:
    return "\n".join(CONSOLE_LINES.get(id(page), [])[-40:])


async def test_console_runs_a_meeting(closed_server: Server, browser, artifacts_dir: Path):
    base = closed_server.url
    pages: dict[str, object] = {}
    try:
        # The operator logs in to the console (Vietnamese UI).
        host = pages["host"] = await _open(browser, f"{base}/console", "vi-VN", media=False)
        login = host.locator("#login-form")
        await login.locator("[name=username]").fill("admin")
        await login.locator("[name=password]").fill("wrong-password")
        await login.locator("button[type=submit]").click()
        await login.locator(".form-error").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await login.locator("[name=password]").fill(closed_server.operator_password)
        await login.locator("button[type=submit]").click()
        await host.locator("#room-list [data-room=demo]").wait_for(timeout=UI_TIMEOUT_MS)

        # A room of capacity 2 with a password; a capacity of 0 is refused next to its field.
        await host.click("#new-room-btn")
        form = host.locator("#room-form")
        await form.locator("[name=name]").fill(ROOM)
        await form.locator("[name=password]").fill(ROOM_PASSWORD)
        await form.locator("[name=capacity]").fill("0")
        await form.locator("[name=capacity]").evaluate("(el) => el.removeAttribute('min')")
        await form.locator("button[type=submit]").click()
        capacity_error = form.locator('.field-error[data-for="capacity"]')
        await capacity_error.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await host.screenshot(path=str(artifacts_dir / "console-field-error.png"))
        await form.locator("[name=capacity]").fill("2")
        await form.locator("button[type=submit]").click()
        await host.locator(f'#room-list [data-room="{ROOM}"]').wait_for(timeout=UI_TIMEOUT_MS)

        # An n-use invitation (the console switches to the invitations tab); copy its link.
        await host.locator("#tab-invitations").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await host.locator("#invite-form [name=max_uses]").fill("5")
        await host.locator("#invite-form button[type=submit]").click()
        await host.locator("#invite-result").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        link = await host.locator("#invite-link").input_value()
        assert link.startswith(f"{base}/?room=") and "invite=" in link, link
        await host.screenshot(path=str(artifacts_dir / "console-invitation.png"))

        # Two guests join by the link; a third gets "room full" (limit 2) on screen.
        pages["a"] = await _open(browser, f"{link}&name=Xa%20Kim%20Chung", "vi-VN")
        pages["b"] = await _open(browser, f"{link}&name=Xa%20Uy%20No", "en-US")
        for key in ("a", "b"):
            await wait_js(pages[key], JOINED,
                                               timeout=JOIN_TIMEOUT_MS)
        pages["c"] = await _open(browser, f"{link}&name=Xa%20Thuy%20Lam", "en-US")
        refusal = pages["c"].locator("#join-error[data-code=room-full]")
        await refusal.wait_for(state="visible", timeout=JOIN_TIMEOUT_MS)
        text = await refusal.inner_text()
        assert "2" in text and "full" in text, text
        await pages["c"].screenshot(path=str(artifacts_dir / "console-guest-room-full.png"))

        # The live tab lists both, with their ids; the sidebar counts them.
        await host.click('#tabs [data-tab="live"]')
        rows = host.locator("#participants tr[data-participant-id]")
        await wait_js(host,
            "document.querySelectorAll('#participants tr[data-participant-id]').length === 2",
            timeout=UI_TIMEOUT_MS)
        await host.locator(f'#room-list [data-room="{ROOM}"] .badge[data-count="2"]').wait_for(
            timeout=UI_TIMEOUT_MS)
        assert await rows.count() == 2
        id_a = await pages["a"].evaluate("window.diemcau.selfId")
        id_b = await pages["b"].evaluate("window.diemcau.selfId")
        row_a = host.locator(f'#participants tr[data-participant-id="{id_a}"]')
        row_b = host.locator(f'#participants tr[data-participant-id="{id_b}"]')

        # Mute A's microphone: A's page shows its mic off and the host's notice.
        await row_a.locator('[data-action="mute-audio"]').click()
        a = pages["a"]
        await a.locator('#mic-btn[aria-pressed="true"]').wait_for(timeout=UI_TIMEOUT_MS)
        notice = a.locator("#host-notice")
        await notice.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        assert "Chủ trì đã tắt micro" in await notice.inner_text()
        muted_row = f'#participants tr[data-participant-id="{id_a}"][data-audio-muted="true"]'
        await host.locator(muted_row).wait_for(timeout=UI_TIMEOUT_MS)
        await host.screenshot(path=str(artifacts_dir / "console-live.png"))
        await a.screenshot(path=str(artifacts_dir / "console-guest-muted.png"))

        # Pin A (first and large for everybody) and lock the room (a lock shows on the pages).
        await row_a.locator('[data-action="pin"]').click()
        await a.locator(f'.tile.self.pinned[data-participant-id="{id_a}"] .pin-icon').wait_for(
            timeout=UI_TIMEOUT_MS)
        await pages["b"].locator(f'.tile.pinned[data-participant-id="{id_a}"]').wait_for(
            timeout=UI_TIMEOUT_MS)
        await host.click("#lock-btn")
        await host.locator('#lock-btn[data-locked="true"]').wait_for(timeout=UI_TIMEOUT_MS)
        await a.locator("#lock-indicator").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await pages["b"].screenshot(path=str(artifacts_dir / "console-guest-pinned.png"))

        # Record: every page shows the badge; stopped, the recording is listed with its files.
        await host.click("#record-btn")
        await host.locator('#record-btn[data-recording="true"]').wait_for(timeout=UI_TIMEOUT_MS)
        for key in ("a", "b"):
            badge = pages[key].locator("#rec-indicator")
            await badge.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        assert "Đang ghi hình" in await a.locator("#rec-indicator").inner_text()
        assert "recorded" in await pages["b"].locator("#notice-text").inner_text()
        await a.screenshot(path=str(artifacts_dir / "console-guest-recording.png"))
        # Until the recorder has a file for each of the 3 live tracks (A's microphone is muted
        # by the host, so it sends nothing to record; video needs a keyframe each).
        assert await _until(lambda: _tracks_recorded(closed_server.data_dir) >= 3, 20), (
            _tracks_recorded(closed_server.data_dir))
        await host.click("#record-btn")
        await host.locator('#record-btn[data-recording="false"]').wait_for(timeout=UI_TIMEOUT_MS)
        await a.locator("#rec-indicator").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)
        listed = host.locator("#recordings-list tr[data-recording-id] button")
        await listed.first.wait_for(timeout=UI_TIMEOUT_MS)
        assert await listed.count() == 3  # A's video, B's audio and video
        await host.screenshot(path=str(artifacts_dir / "console-recordings.png"))

        # Remove B: B's page says so; the console lists A alone.
        await row_b.locator('[data-action="remove"]').click()
        b = pages["b"]
        await b.locator('#left-view[data-reason="removed"]').wait_for(
            state="visible", timeout=UI_TIMEOUT_MS)
        assert "removed you" in await b.locator("#left-text").inner_text()
        assert await b.locator("#rejoin-btn").is_hidden()
        await row_b.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
        await b.screenshot(path=str(artifacts_dir / "console-guest-removed.png"))
    except Exception:
        for key, page in pages.items():
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(artifacts_dir / f"console-{key}-failure.png"))
            print(f"---- console of page {key} ----\n{_report(page)}")
        raise
    finally:
        for page in pages.values():
            with contextlib.suppress(Exception):
                await page.context.close()


def _api(base: str, method: str, path: str, body: object = None, token: str | None = None):
    """One REST call (blocking; run it in a thread)."""
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


async def test_join_form_lobby_and_take_over(closed_server: Server, browser, artifacts_dir: Path):
    base, password = closed_server.url, closed_server.operator_password

    async def api(method: str, path: str, body: object = None):
        return await asyncio.to_thread(_api, base, method, path, body, token)

    token = (await asyncio.to_thread(_api, base, "POST", "/api/login",
                                     {"username": "admin", "password": password}))["token"]
    await api("POST", "/api/rooms", {"name": "Cho", "org_id": 1, "lobby": True})
    link = base + (await api("POST", "/api/rooms/Cho/invitations", {"max_uses": 5}))["link"]
    pages: dict[str, object] = {}
    try:
        # No credentials on a closed server: the refusal and the account fields.
        g = pages["g"] = await _open(browser, f"{base}/?room=Cho&name=Chu%20tri", "vi-VN")
        await g.locator("#join-error[data-code=not-invited]").wait_for(timeout=UI_TIMEOUT_MS)
        await g.locator("#cred-fields").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await g.fill("#user-input", "admin")
        await g.fill("#password-input", "not-the-password")
        await g.click("#join-btn")
        await g.locator("#join-error[data-code=bad-password]").wait_for(timeout=UI_TIMEOUT_MS)
        await g.screenshot(path=str(artifacts_dir / "console-join-form-bad-password.png"))
        await g.fill("#password-input", password)
        await g.click("#join-btn")
        await wait_js(g, JOINED, timeout=JOIN_TIMEOUT_MS)
        assert await g.evaluate("window.diemcau.role") == "host"

        # Guests by invitation wait in the lobby; one is admitted, one denied.
        h = pages["h"] = await _open(browser, f"{link}&name=Khach%20Mot", "en-US")
        i = pages["i"] = await _open(browser, f"{link}&name=Khach%20Hai", "en-US")
        for page in (h, i):
            await page.locator("#lobby-view").wait_for(state="visible", timeout=JOIN_TIMEOUT_MS)
        await h.screenshot(path=str(artifacts_dir / "console-guest-lobby.png"))
        waiting = {w["name"]: w["id"] for w in await api("GET", "/api/rooms/Cho/lobby")}
        await api("POST", f"/api/rooms/Cho/lobby/{waiting['Khach Mot']}/admit")
        await api("DELETE", f"/api/rooms/Cho/lobby/{waiting['Khach Hai']}")
        await wait_js(h, JOINED, timeout=JOIN_TIMEOUT_MS)
        assert await h.evaluate("sessionStorage.getItem('diemcau.rejoin:Cho')")
        await i.locator('#left-view[data-reason="denied"]').wait_for(
            state="visible", timeout=UI_TIMEOUT_MS)

        # The same account again elsewhere: "already in room", then take over.
        j = pages["j"] = await _open(browser, f"{base}/?room=Cho&name=Chu%20tri%202", "en-US")
        await j.locator("#cred-fields").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await j.fill("#user-input", "admin")
        await j.fill("#password-input", password)
        await j.click("#join-btn")
        await j.locator("#join-error[data-code=already-in-room]").wait_for(timeout=UI_TIMEOUT_MS)
        await j.check("#takeover-input")
        await j.click("#join-btn")
        await wait_js(j, JOINED, timeout=JOIN_TIMEOUT_MS)
        await g.locator('#left-view[data-reason="taken-over"]').wait_for(
            state="visible", timeout=UI_TIMEOUT_MS)

        # The host ends the meeting: everybody sees why.
        await api("POST", "/api/rooms/Cho/end")
        await h.locator('#left-view[data-reason="ended"]').wait_for(
            state="visible", timeout=UI_TIMEOUT_MS)
        await h.screenshot(path=str(artifacts_dir / "console-guest-ended.png"))
    except Exception:
        for key, page in pages.items():
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(artifacts_dir / f"console-{key}-failure.png"))
            print(f"---- console of page {key} ----\n{_report(page)}")
        raise
    finally:
        for page in pages.values():
            with contextlib.suppress(Exception):
                await page.context.close()
