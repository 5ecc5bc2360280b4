"""A last-N video slot switched in Chromium: with `--last-n 1` and two cameras the page has one
video m-line; when the second camera's owner speaks, the server switches that m-line to it
without a new offer, sends `slot`, and the web client moves the track to the speaker's tile
(the tile of the participant it now carries plays that participant's picture size).

The others are aiortc participants sending pre-encoded VP8 of distinct sizes.
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
from tests.integration.test_last_n import VoiceTrack
from tests.integration.test_video_slots import sized_track
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "o-so"
TIMEOUT_MS = 25_000


class Camera(SyntheticParticipant):
    """Video of one size, and a voice that speaks on demand (so last-N follows it)."""

    def __init__(self, url: str, name: str, width: int, height: int) -> None:
        self.voice = VoiceTrack()
        super().__init__(url, ROOM, name, audio=False,
                         video_track_factory=lambda: sized_track(width, height))

    async def publish(self, timeout: float = 10.0) -> None:
        self.publisher.addTransceiver(self.voice, direction="sendonly")
        await super().publish(timeout)


@pytest.fixture
def last_n_url(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, extra_args=["--last-n", "1"]) as server:
        yield server.base_url


def video(participant_id: str) -> str:
    return (f"document.querySelector('.tile[data-participant-id=\"{participant_id}\"] "
            f"video')")


async def test_a_switched_slot_moves_to_the_speakers_tile(last_n_url: str, browser) -> None:
    cams = [Camera(last_n_url, "Cam1", 160, 120), Camera(last_n_url, "Cam2", 224, 168)]
    context = await browser.new_context(permissions=["camera", "microphone"],
                                        viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f)[:300])))
    try:
        for cam in cams:
            await cam.join()
            await cam.send({"type": "audio_only", "enabled": True})
        cam1, cam2 = (c.participant_id for c in cams)
        await page.goto(f"{last_n_url}/?room={ROOM}&name=Xem", timeout=10_000)
        await wait_js(page, "window.diemcau && window.diemcau.state === 'joined'", TIMEOUT_MS)
        # Nobody speaks: Cam1 (join order) has the only video m-line, at its size.
        await wait_js(page, f"window.diemcau.gallery.forwarded && "
                            f"window.diemcau.gallery.forwarded.has('{cam1}')", TIMEOUT_MS)
        await wait_js(page, f"{video(cam1)} && {video(cam1)}.videoWidth === 160", TIMEOUT_MS)
        receivers = ("window.diemcau.pcs.subscriber.getTransceivers()"
                     ".filter((t) => t.receiver.track.kind === 'video')")
        assert await page.evaluate(f"{receivers}.length") == 1
        answers = "window.diemcau.sendLog.filter((t) => t === 'subscribe_answer').length"
        answered = await page.evaluate(answers)

        cams[1].voice.speaking = True  # Cam2 speaks: last-N switches the slot to Cam2
        await wait_js(page, f"window.diemcau.gallery.forwarded.has('{cam2}')", TIMEOUT_MS)
        await wait_js(page, f"{video(cam2)}.srcObject && {video(cam2)}.videoWidth === 224",
                      TIMEOUT_MS)
        # The same (only) video m-line's track, now in Cam2's tile.
        assert await page.evaluate(f"{receivers}.length") == 1
        assert await page.evaluate(f"{video(cam2)}.srcObject.getVideoTracks()[0] === "
                                   f"{receivers}[0].receiver.track")
        # Cam1's tile lost the track (its placeholder shows); no new offer was answered.
        await wait_js(page, f"!{video(cam1)}.srcObject || "
                            f"{video(cam1)}.srcObject.getVideoTracks().length === 0", TIMEOUT_MS)
        assert await page.evaluate(answers) == answered
        assert await page.locator("#banner").is_hidden()
    except Exception:
        print("\n".join(console[-60:]))
        print("\n".join(f for f in frames if "subscribe_offer" not in f)[-3000:])
        print(await page.evaluate("window.diemcau.pcs.subscriber.getTransceivers().map("
                                  "(t) => [t.mid, t.receiver.track.kind, t.currentDirection])"))
        print(await page.evaluate("[...document.querySelectorAll('.tile video')].map("
                                  "(v) => [v.videoWidth, !!v.srcObject])"))
        raise
    finally:
        with contextlib.suppress(Exception):
            await context.close()
        await asyncio.gather(*(c.leave() for c in cams), return_exceptions=True)
