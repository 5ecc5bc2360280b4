"""Two Chromium pages meet in one room through the real server: tiles, decoded video, leave.

Run inside a private network namespace (see docs/architecture.md#network-namespaces):
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/pytest tests/browser -x -q'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from pagewait import wait_js

LEFT = "window.diemcau && window.diemcau.state === 'left'"

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "browser-test"
JOIN_TIMEOUT_MS = 20_000
CONSOLE: dict[int, list[str]] = {}  # id(page) -> console lines, for failure reports
LEAVE_TIMEOUT_MS = 5_000

# Sum of framesDecoded over the subscriber connection's inbound video streams.
FRAMES_DECODED_JS = """async () => {
  const pc = window.diemcau && window.diemcau.pcs.subscriber;
  if (!pc) return 0;
  const stats = await pc.getStats();
  let frames = 0;
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
  });
  return frames;
}"""


async def _open(browser, url: str, locale: str):
    context = await browser.new_context(
        locale=locale,
        permissions=["camera", "microphone"],
        viewport={"width": 1280, "height": 800},
    )
    page = await context.new_page()
    messages = CONSOLE.setdefault(id(page), [])
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: messages.append(f"pageerror: {err}"))

    def on_websocket(ws) -> None:
        def frame(direction: str, payload) -> None:
            text = payload if isinstance(payload, str) else f"<{len(payload)} bytes>"
            messages.append(f"ws {direction} {text[:160]}")

        ws.on("framesent", lambda payload: frame("->", payload))
        ws.on("framereceived", lambda payload: frame("<-", payload))

    page.on("websocket", on_websocket)
    await page.goto(url, timeout=10_000)
    return page


async def _remote_tile(page, name: str):
    """The tile of the other participant called `name`; fails after JOIN_TIMEOUT_MS."""
    tile = page.locator(".tile[data-participant-id]:not(.self)").filter(
        has=page.locator(".name", has_text=name)
    )
    await tile.first.wait_for(state="visible", timeout=JOIN_TIMEOUT_MS)
    return tile.first


async def _wait_frames(page, deadline: float) -> int:
    """Poll framesDecoded until it is positive or `deadline` (monotonic) passes."""
    frames = 0
    while time.monotonic() < deadline:
        frames = await page.evaluate(FRAMES_DECODED_JS)
        if frames > 0:
            break
        await asyncio.sleep(0.25)
    return frames


def _report(page) -> str:
    return "\n".join(CONSOLE.get(id(page), [])[-60:])


async def test_two_participants_meet_and_leave(server_url, browser, artifacts_dir: Path):
    page_a = await _open(browser, f"{server_url}/?room={ROOM}&name=An", "vi-VN")
    page_b = await _open(browser, f"{server_url}/?room={ROOM}&name=Binh", "en-US")
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT_MS / 1000

        # Each sees the other's tile, with the right name.
        tile_b_on_a = await _remote_tile(page_a, "Binh")
        tile_a_on_b = await _remote_tile(page_b, "An")
        assert (await tile_b_on_a.locator(".name").inner_text()).strip() == "Binh"
        assert (await tile_a_on_b.locator(".name").inner_text()).strip() == "An"
        for page in (page_a, page_b):
            state = await page.evaluate("window.diemcau.state")
            assert state == "joined", _report(page)

        # Video from the other side is decoded, and keeps being decoded.
        for page in (page_a, page_b):
            first_seen = await _wait_frames(page, deadline)
            assert first_seen > 0, "no video frame decoded within 20 s\n" + _report(page)
        # Keeps rising: waited for (a layer switch right after joining pauses the stream until
        # its keyframe, which on a busy machine can take over a second), bounded at 10 s.
        for page in (page_a, page_b):
            f1 = await page.evaluate(FRAMES_DECODED_JS)
            f2 = f1
            rise_deadline = time.monotonic() + 10.0
            while f2 <= f1 and time.monotonic() < rise_deadline:
                await asyncio.sleep(0.1)
                f2 = await page.evaluate(FRAMES_DECODED_JS)
            assert f2 > f1 > 0, f"framesDecoded did not rise in 10 s: {f1} -> {f2}\n" + _report(
                page)

        # The decoded video reaches the remote tile's <video> element.
        for tile in (tile_b_on_a, tile_a_on_b):
            await tile.locator("video.remote-video").evaluate(
                """(v) => new Promise((resolve, reject) => {
                  const t0 = Date.now();
                  (function check() {
                    if (v.videoWidth > 0 && v.srcObject && v.srcObject.getVideoTracks().length) {
                      return resolve(true);
                    }
                    if (Date.now() - t0 > 10000) return reject(new Error('no video in tile'));
                    setTimeout(check, 100);
                  })();
                })"""
            )

        # No error banner on either side.
        for page in (page_a, page_b):
            banner = page.locator("#banner")
            assert await banner.is_hidden(), await banner.inner_text()

        await page_a.screenshot(path=str(artifacts_dir / "meeting-a-joined.png"))
        await page_b.screenshot(path=str(artifacts_dir / "meeting-b-joined.png"))

        # B leaves: its tile disappears from A's page.
        b_id = await page_b.evaluate("window.diemcau.selfId")
        assert b_id, "page B has no participant id"
        await page_b.click("#leave-btn", timeout=5_000)
        await page_a.locator(f'.tile[data-participant-id="{b_id}"]').wait_for(
            state="detached", timeout=LEAVE_TIMEOUT_MS
        )
        await wait_js(page_b, LEFT, timeout=LEAVE_TIMEOUT_MS)
        await page_b.locator("#rejoin-btn").wait_for(state="visible", timeout=LEAVE_TIMEOUT_MS)

        await page_a.screenshot(path=str(artifacts_dir / "meeting-a-after-leave.png"))
        await page_b.screenshot(path=str(artifacts_dir / "meeting-b-left.png"))
        # the whole meeting ran under the server's CSP without tripping it
        for page in (page_a, page_b):
            blocked = [line for line in CONSOLE.get(id(page), [])
                       if "Content Security Policy" in line or "Content-Security-Policy" in line]
            assert not blocked, blocked
    except Exception:
        for page, tag in ((page_a, "a"), (page_b, "b")):
            with contextlib.suppress(Exception):  # best effort on the way out
                await page.screenshot(path=str(artifacts_dir / f"meeting-{tag}-failure.png"))
            print(f"---- console of page {tag} ----\n{_report(page)}")
        raise
    finally:
        await page_a.context.close()
        await page_b.context.close()
