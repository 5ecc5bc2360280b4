"""Issue 12 in Chromium against the real server (no --open-rooms): the first-start demo link
asks for the name; a guest joins the AIC eMeeting way (room name + the room's password + a
name), a wrong-case password refused first; chat with an unread badge and a host deleting a
line; a raised hand the host sees and lowers; the participant list with mute state and
connection quality; the active speaker highlighted and the speaker layout; the meeting's
documents downloaded; and the same meeting on a 390x844 phone screen. Screenshots of each
flow go to artifacts/meeting-*.png.

Run inside a private network namespace (see docs/architecture.md#network-namespaces):
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/pytest \
        tests/browser/test_meeting_extras.py -q'
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import wave
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from pagewait import wait_js

from tests.browser.conftest import CHROMIUM_FLAGS
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "GiaoBan-Xa"
ROOM_PASSWORD = "HopBan-2026"
UI_MS = 10_000
JOIN_MS = 20_000
MEDIA_MS = 30_000
JOINED = "window.diemcau && window.diemcau.state === 'joined'"
PASSWORD_LINE = re.compile(r"Operator account 'admin', password (\S+)")
DEMO_LINE = re.compile(r"demo room ready: (\S+)")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
LINES: dict[int, list[str]] = {}


def docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@dataclass
class Server:
    url: str
    operator_password: str
    demo_link: str


@pytest.fixture
def closed_server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, open_rooms=False) as server:
        log = server.log_text()
        password, demo = PASSWORD_LINE.search(log), DEMO_LINE.search(log)
        assert password and demo, log
        yield Server(server.base_url, password.group(1), demo.group(1))


def tone_wav(path: Path, seconds: float = 2.0, rate: int = 48_000) -> Path:
    """A steady 440 Hz tone at -12 dBFS: Chromium's own fake microphone beeps for a few
    milliseconds a second, too little for the server's speaker detection (mean level over
    0.5 s above -50 dBov)."""
    samples = (int(0.25 * 32767 * math.sin(2 * math.pi * 440 * n / rate))
               for n in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@pytest.fixture
async def speaking_browser(tmp_path: Path) -> AsyncIterator[Any]:
    """Headless Chromium whose fake microphone plays a continuous tone."""
    playwright_api = pytest.importorskip("playwright.async_api")
    wav = tone_wav(tmp_path / "tone.wav")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, timeout=30_000,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
            env={**os.environ, "LANG": "en_US.UTF-8"})
        try:
            yield browser
        finally:
            await browser.close()


async def _open(browser: Any, url: str, *, phone: bool = False) -> Any:
    options: dict[str, Any] = {"locale": "vi-VN", "permissions": ["camera", "microphone"]}
    if phone:
        options.update(viewport={"width": 390, "height": 844}, device_scale_factor=3,
                       is_mobile=True, has_touch=True)
    else:
        options.update(viewport={"width": 1280, "height": 800})
    context = await browser.new_context(**options)
    page = await context.new_page()
    lines = LINES.setdefault(id(page), [])
    page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: lines.append(f"pageerror: {err}"))
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda data: lines.append(f"ws <- {str(data)[:120]}")
        if '"type": "subscribe_offer"' not in str(data) else None))
    await page.goto(url, timeout=UI_MS)
    return page


def _report(page: Any) -> str:
    return "\n".join(LINES.get(id(page), [])[-40:])


async def _setup(server: Server) -> str:
    """The operator's REST calls: the room (guests may join with its password), two documents,
    and a host join link."""
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/api/login", json={"username": "admin",
                                                 "password": server.operator_password}) as r:
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get("/api/organisations", headers=auth) as r:
            org_id = (await r.json())[0]["id"]
        async with http.post("/api/rooms", headers=auth, json={
                "name": ROOM, "org_id": org_id, "password": ROOM_PASSWORD,
                "guest_password_join": True}) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"/api/rooms/{ROOM}/documents",
                             params={"filename": "Kế hoạch hội nghị.pdf"}, data=PDF,
                             headers=auth) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"/api/rooms/{ROOM}/tokens", headers=auth,
                             json={"name": "Chủ trì", "role": "host"}) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["link"])


async def _console_attaches_a_document(browser: Any, server: Server, art: Path) -> None:
    """The operator console: the room's setting shows, a wrong file type is refused next to
    the field, a DOCX is attached."""
    console = await _open(browser, f"{server.url}/console")
    try:
        login = console.locator("#login-form")
        await login.locator("[name=username]").fill("admin")
        await login.locator("[name=password]").fill(server.operator_password)
        await login.locator("button[type=submit]").click()
        await console.locator(f'#room-list [data-room="{ROOM}"]').click(timeout=UI_MS)
        await console.locator('#tabs [data-tab="settings"]').click()
        assert await console.locator("#room-form [name=guest_password_join]").is_checked()
        await console.locator('#tabs [data-tab="documents"]').click()
        await console.locator("#documents tr[data-document-id]").first.wait_for(timeout=UI_MS)
        form = console.locator("#document-form")
        await form.locator("[name=file]").set_input_files(
            {"name": "virus.pdf", "mimeType": "application/pdf", "buffer": b"MZ" + b"\0" * 64})
        await form.locator("button[type=submit]").click()
        await form.locator('.field-error[data-for="file"]').wait_for(state="visible",
                                                                     timeout=UI_MS)
        await form.locator("[name=file]").set_input_files({
            "name": "Báo cáo tuần.docx", "buffer": docx(),
            "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml."
                        "document"})
        await form.locator("button[type=submit]").click()
        rows = console.locator("#documents tr[data-document-id]")
        await rows.nth(1).wait_for(timeout=UI_MS)
        await console.screenshot(path=str(art / "meeting-console-documents.png"))
    except BaseException:
        print(f"--- console ---\n{_report(console)}")
        raise
    finally:
        await console.context.close()


async def _guest_join(page: Any, name: str, password: str) -> None:
    await page.locator("#name-input").fill(name)
    await page.locator("#guest-password-input").fill(password)
    await page.locator("#join-btn").click()


async def test_meeting_extras_flow(closed_server: Server, speaking_browser: Any,
                                   artifacts_dir: Path) -> None:
    browser = speaking_browser
    art = artifacts_dir
    host_link = await _setup(closed_server)
    pages: dict[str, Any] = {}
    try:
        # The first-start demo link has no name: the page asks for it instead of joining.
        demo = pages["demo"] = await _open(browser, closed_server.demo_link)
        await demo.locator("#name-needed").wait_for(state="visible", timeout=UI_MS)
        assert await demo.evaluate("window.diemcau.state") == "idle"
        assert "YourName" not in closed_server.demo_link
        await demo.screenshot(path=str(art / "meeting-demo-asks-name.png"))
        await demo.context.close()
        del pages["demo"]

        await _console_attaches_a_document(browser, closed_server, art)

        host = pages["host"] = await _open(
            browser, closed_server.url + host_link + "&" + urlencode({"name": "Chủ trì"}))
        await wait_js(host, JOINED, JOIN_MS)

        # The AIC eMeeting guest join: room name + password + name; wrong case refused first.
        guest = pages["guest"] = await _open(browser, f"{closed_server.url}/?room={ROOM}")
        await guest.locator("#guest-password-row").wait_for(state="visible", timeout=UI_MS)
        await guest.screenshot(path=str(art / "meeting-guest-join-form.png"))
        await _guest_join(guest, "Chị Lan (xã Hòa An)", ROOM_PASSWORD.lower())
        error = guest.locator("#join-error")
        await error.wait_for(state="visible", timeout=JOIN_MS)
        assert await error.get_attribute("data-code") == "bad-password"
        assert "case-sensitive" in await guest.locator("#join-error-detail").inner_text()
        await guest.screenshot(path=str(art / "meeting-guest-wrong-case.png"))
        await guest.locator("#guest-password-input").fill(ROOM_PASSWORD)
        await guest.locator("#join-btn").click()
        await wait_js(guest, JOINED, JOIN_MS)
        assert await guest.evaluate("window.diemcau.role") == "guest"

        # Chat: the host's badge counts the unread line; the host deletes it for everybody.
        await guest.locator("#chat-btn").click()
        await guest.locator("#chat-input").fill("Xin chào, xã Hòa An đã vào họp")
        await guest.locator("#chat-input").press("Enter")
        badge = host.locator("#chat-badge")
        await badge.wait_for(state="visible", timeout=UI_MS)
        assert (await badge.inner_text()).strip() == "1"
        await host.screenshot(path=str(art / "meeting-chat-unread-badge.png"))
        await host.locator("#chat-btn").click()
        line = host.locator(".chat-line", has_text="xã Hòa An đã vào họp")
        await line.wait_for(state="visible", timeout=UI_MS)
        assert await badge.is_hidden()
        await host.screenshot(path=str(art / "meeting-chat.png"))
        await line.locator(".chat-del").click()
        await guest.locator(".chat-line").wait_for(state="detached", timeout=UI_MS)

        # Raise hand: the host sees it (tile and list) and lowers it.
        await guest.locator("#hand-btn").click()
        await host.locator(".tile.hand-up").wait_for(state="visible", timeout=UI_MS)
        await host.locator("#people-btn").click()
        lower = host.locator(".person.hand-up .lower-hand")
        await lower.wait_for(state="visible", timeout=UI_MS)
        await host.screenshot(path=str(art / "meeting-hand-raised.png"))
        await lower.click()
        await guest.locator("#hand-btn[aria-pressed=false]").wait_for(timeout=UI_MS)

        # Participant list: mute state and a quality indicator from the guest's own figures.
        await guest.locator("#mic-btn").click()  # mute
        guest_row = host.locator(".person", has_text="Chị Lan")
        await guest_row.locator(".mic-muted").wait_for(state="visible", timeout=UI_MS)
        await guest_row.locator(".q-dot:not(.q-unknown)").wait_for(state="attached",
                                                                     timeout=MEDIA_MS)
        detail = await guest_row.locator(".person-quality").inner_text()
        assert "ms" in detail and "%" in detail, detail
        await host.screenshot(path=str(art / "meeting-participants-quality.png"))
        await guest.locator("#mic-btn").click()  # unmute: the fake microphone beeps

        # Active speaker: the speaking tile is highlighted; the speaker layout features it.
        await host.locator("#layout-btn").click()
        await host.locator(".grid.speaker-layout .tile.featured").wait_for(timeout=UI_MS)
        await wait_js(host, "!!document.querySelector('.tile.speaking')", MEDIA_MS)
        await host.locator("#people-btn").click()  # close the panel: the whole stage
        await host.screenshot(path=str(art / "meeting-speaker-layout.png"))

        # Documents: listed on the meeting page and downloaded with the meeting's key.
        await guest.locator("#docs-btn").click()
        docs = guest.locator("#doc-list .doc")
        await docs.nth(1).wait_for(state="visible", timeout=UI_MS)
        names = await guest.locator("#doc-list .doc-name").all_inner_texts()
        assert names == ["Kế hoạch hội nghị.pdf", "Báo cáo tuần.docx"]
        href = await docs.first.locator("a.doc-download").get_attribute("href")
        fetched = await guest.evaluate(
            "async (u) => { const r = await fetch(u); const b = await r.arrayBuffer();"
            " return [r.status, b.byteLength, r.headers.get('content-type')]; }", href)
        assert fetched == [200, len(PDF), "application/pdf"], fetched
        await guest.screenshot(path=str(art / "meeting-documents.png"))

        # A phone (390x844): joins the same way; nothing wider than the screen; the panel
        # covers the stage.
        phone = pages["phone"] = await _open(browser, f"{closed_server.url}/?room={ROOM}",
                                             phone=True)
        await _guest_join(phone, "Anh Tuấn", ROOM_PASSWORD)
        await wait_js(phone, JOINED, JOIN_MS)
        await phone.locator(".tile:not(.self)").nth(1).wait_for(state="visible", timeout=JOIN_MS)
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page is {width} px wide on a 390 px screen"
        for control in ("#mic-btn", "#cam-btn", "#hand-btn", "#chat-btn", "#people-btn",
                        "#docs-btn", "#layout-btn", "#leave-btn"):
            box = await phone.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 \
                and box["y"] + box["height"] <= 844, (control, box)
        await phone.screenshot(path=str(art / "meeting-phone-390x844.png"))
        await phone.locator("#chat-btn").click()
        panel = await phone.locator("#side-panel").bounding_box()
        assert panel is not None and panel["width"] >= 380, panel
        await phone.screenshot(path=str(art / "meeting-phone-chat.png"))
    except BaseException:
        for name, page in pages.items():
            print(f"--- {name} ---\n{_report(page)}")
        raise
    finally:
        for page in pages.values():
            await page.context.close()
