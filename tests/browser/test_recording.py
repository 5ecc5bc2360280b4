"""Two Chromium pages meet on a server started with ``--record-all``; after they leave, every
file of the recording demuxes with PyAV and decodes (VP8 frames, Opus packets).

Run inside a private network namespace (see docs/architecture.md#network-namespaces).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest
from pagewait import wait_js

from recorder.archive import verify
from recorder.manifest import MANIFEST_NAME, RECORDINGS_DIR, read_manifest
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

TIMEOUT_S = 25.0
RECORDING_SHOWN = "window.diemcau && window.diemcau.state === 'joined'"
FRAMES_DECODED_JS = """async () => {
  const pc = window.diemcau && window.diemcau.pcs.subscriber;
  if (!pc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
  });
  return frames;
}"""


async def _open(browser, url: str):
    context = await browser.new_context(permissions=["camera", "microphone"],
                                        viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(url, timeout=10_000)
    return page


async def test_two_chromium_pages_are_recorded_into_playable_files(browser, tmp_path: Path):
    data = tmp_path / "data"
    with running_server(tmp_path, extra_args=["--record-all"]) as server:
        pages = [await _open(browser, f"{server.base_url}/?room=ghi&name={name}")
                 for name in ("An", "Binh")]
        try:
            for page in pages:
                await wait_js(page, RECORDING_SHOWN, timeout=TIMEOUT_S * 1000)
            deadline = time.monotonic() + TIMEOUT_S
            while min([await p.evaluate(FRAMES_DECODED_JS) for p in pages]) < 60:
                assert time.monotonic() < deadline, "the pages did not decode each other"
                await asyncio.sleep(0.25)
            for page in pages:
                await page.click("#leave-btn", timeout=5_000)
        finally:
            for page in pages:
                await page.context.close()
        [folder] = [f for f in (data / RECORDINGS_DIR).iterdir() if f.is_dir()]
        deadline = time.monotonic() + TIMEOUT_S
        while (manifest := read_manifest(folder / MANIFEST_NAME)).state == "recording":
            assert time.monotonic() < deadline, "the recording did not end when the room emptied"
            await asyncio.sleep(0.2)
    assert manifest.state == "complete"
    assert verify(data, folder.name) == (True, None)
    kinds = sorted((t.participant, t.kind, t.codec) for t in manifest.tracks.values())
    assert kinds == [("An", "audio", "opus"), ("An", "video", "vp8"),
                     ("Binh", "audio", "opus"), ("Binh", "video", "vp8")], kinds
    summary = []
    for track in manifest.tracks.values():
        with av.open(str(data / track.path)) as container:
            stream = container.streams[0]
            packets = decoded = 0
            size = None
            times: list[float] = []
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                packets += 1
                times.append(float(packet.pts * packet.time_base))
                if decoded < 10:
                    for frame in packet.decode():
                        decoded += 1
                        if track.kind == "video":
                            size = (frame.width, frame.height)
        gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
        summary.append(f"{track.participant} {track.kind}: {packets} packets, "
                       f"{track.duration_s} s, longest gap {gap:.2f} s, decoded {decoded}"
                       + (f" {size}" if size else ""))
        assert packets >= 20 and decoded >= 10, summary[-1]
    print("\n" + "\n".join(summary))
