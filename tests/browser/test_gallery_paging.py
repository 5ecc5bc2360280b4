"""The paged gallery and last-N in Chromium: 10 others, 3x3 pages, `shown` follows the page and
the tiles whose video the server does not forward show their placeholder.

The others are aiortc participants (two send pre-encoded video); the server runs `--last-n 1`.
Run inside a private network namespace (see docs/architecture.md#network-namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pagewait import wait_js

from loadtest.client import SyntheticParticipant
from loadtest.media import PreEncodedVideoTrack, load_clip
from tests.integration.test_last_n import Speaker
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "gallery"
TIMEOUT_MS = 20_000


@pytest.fixture
def last_n_url(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, extra_args=["--last-n", "1"]) as server:
        yield server.base_url


def tile(participant_id: str) -> str:
    return f"document.querySelector('.tile[data-participant-id=\"{participant_id}\"]')"


async def test_gallery_pages_and_placeholders(last_n_url: str, browser) -> None:
    clip = load_clip()
    others = [SyntheticParticipant(last_n_url, ROOM, f"Cam{i}", audio=False,
                                   video_track_factory=lambda: PreEncodedVideoTrack(clip))
              for i in (1, 2)]
    others += [SyntheticParticipant(last_n_url, ROOM, f"Nghe{i}", audio=False, video=False)
               for i in range(7)]
    speaker = Speaker(last_n_url, ROOM, "Noi", 8000)  # the tenth: page 2, until it speaks
    others.append(speaker)
    context = await browser.new_context(permissions=["camera", "microphone"],
                                        viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        for other in others:
            await other.join()
            await other.send({"type": "audio_only", "enabled": True})  # they need no video
        cam1, cam2 = others[0].participant_id, others[1].participant_id
        last = others[-1].participant_id
        await page.goto(f"{last_n_url}/?room={ROOM}&name=Xem", timeout=10_000)
        await wait_js(page, "window.diemcau && window.diemcau.state === 'joined'", TIMEOUT_MS)
        await wait_js(page, "document.querySelectorAll('.tile:not(.self)').length === 10",
                      TIMEOUT_MS)
        await wait_js(page, "document.querySelector('.gallery-page').textContent === '1 / 2'",
                      TIMEOUT_MS)
        # Page 1 shows the first nine in join order; the server forwards one video (N = 1).
        shown = await page.evaluate("window.diemcau.gallery.shownIds()")
        assert shown == [o.participant_id for o in others[:9]]
        await wait_js(page, "window.diemcau.sendLog.includes('shown')", TIMEOUT_MS)
        await wait_js(page, f"window.diemcau.gallery.forwarded && "
                            f"window.diemcau.gallery.forwarded.has('{cam1}') && "
                            f"window.diemcau.gallery.forwarded.size === 1", TIMEOUT_MS)
        # Cam1's video plays; Cam2's tile shows the placeholder (not forwarded).
        await wait_js(page, f"!{tile(cam1)}.classList.contains('no-video')", TIMEOUT_MS)
        assert await page.evaluate(f"{tile(cam2)}.classList.contains('no-video')")
        assert await page.evaluate(f"{tile(last)}.style.display === 'none'")

        # Next page: only the tenth tile; what the server forwards follows (nobody there sends
        # video, so nothing).
        await page.click(".gallery-pager button:last-child", timeout=5_000)
        await wait_js(page, "document.querySelector('.gallery-page').textContent === '2 / 2'",
                      5_000)
        assert await page.evaluate("window.diemcau.gallery.shownIds()") == [last]
        assert await page.evaluate(f"{tile(cam1)}.style.display === 'none'")
        assert await page.evaluate(f"{tile(last)}.style.display !== 'none'")
        await wait_js(page, "window.diemcau.gallery.forwarded.size === 0", TIMEOUT_MS)

        # And back: Cam1 is forwarded again.
        await page.click(".gallery-pager button:first-child", timeout=5_000)
        await wait_js(page, f"window.diemcau.gallery.forwarded.has('{cam1}')", TIMEOUT_MS)
        await wait_js(page, f"!{tile(cam1)}.classList.contains('no-video')", TIMEOUT_MS)

        # The tenth speaks: the gallery moves it to the front of page 1.
        speaker.voice.speaking = True
        await wait_js(page, f"window.diemcau.gallery.shownIds()[0] === '{last}'", TIMEOUT_MS)
        assert await page.evaluate(f"{tile(last)}.style.display !== 'none'")
        assert await page.evaluate(f"{tile(others[8].participant_id)}.style.display === 'none'")
        assert await page.locator("#banner").is_hidden()
    except Exception:
        print("\n".join(console[-60:]))
        raise
    finally:
        with contextlib.suppress(Exception):
            await context.close()
        await asyncio.gather(*(o.leave() for o in others), return_exceptions=True)
