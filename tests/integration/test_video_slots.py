"""Last-N video slots through the real server with aiortc peers: a subscriber in a room of more
camera publishers than N has N video m-lines; a publisher joining renegotiates no video for it;
a page change switches a slot, the ``slot`` message names the new owner and the subscriber's
decoder gets the new producer's pictures (each publisher sends its own picture size)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc import MediaStreamTrack

from loadtest.client import SyntheticParticipant
from loadtest.media import PreEncodedVideoTrack, _encode_frames, _vp8_encoder
from tests.conftest import base_url
from tests.integration.test_last_n import N, last_n_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.media

SIZES = [(128, 96), (160, 120), (192, 144), (224, 168)]  # one per publisher: tells them apart
KEYFRAME_EVERY = 10  # a pre-encoded clip ignores PLIs: its own keyframes come every 1/3 s


def sized_track(width: int, height: int) -> MediaStreamTrack:
    codec = _vp8_encoder(width, height, 150_000, KEYFRAME_EVERY)
    frames, _keys = _encode_frames(codec, 60, KEYFRAME_EVERY, 16, 16)
    clip: Any = SimpleNamespace(video=tuple(frames))
    return PreEncodedVideoTrack(clip)


class Watcher(SyntheticParticipant):
    """Decodes every video it gets and notes each picture's size per mid."""

    def __init__(self, url: str, room: str) -> None:
        super().__init__(url, room, "Xem", audio=False, video=False, remb=False)
        self.sizes: dict[str, list[tuple[int, int]]] = defaultdict(list)

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                width, height = getattr(frame, "width", 0), getattr(frame, "height", 0)
                if track.kind == "video":
                    self.sizes[mid].append((width, height))
                info = self.tracks.get(mid)
                if info is not None:
                    self.received[info["participant_id"]][info["kind"]] += 1


def offers(person: SyntheticParticipant) -> list[dict[str, Any]]:
    return [e for e in person.events if e["type"] == "subscribe_offer"]


def video_mlines(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("m=video"))


def forwarded(person: SyntheticParticipant) -> set[str]:
    sets = [e["participant_ids"] for e in person.events if e["type"] == "forwarded"]
    return set(sets[-1]) if sets else set()


@pytest.fixture
async def slots_server(last_n_server: TestServer) -> TestServer:  # noqa: F811 - the fixture
    """A server with last-N of ``N`` (the same as tests/integration/test_last_n.py's)."""
    return last_n_server


async def test_slots_switch_between_publishers_without_renegotiation(
        slots_server: TestServer) -> None:
    url = base_url(slots_server)
    publishers = [
        SyntheticParticipant(url, "o-so", f"P{i}", audio=False,
                             video_track_factory=lambda w=w, h=h: sized_track(w, h))
        for i, (w, h) in enumerate(SIZES)]
    watcher = Watcher(url, "o-so")
    people: list[SyntheticParticipant] = [*publishers, watcher]
    try:
        for publisher in publishers[:3]:
            await publisher.join()
            await publisher.send({"type": "audio_only", "enabled": True})
        await watcher.join()
        ids = [p.participant_id or "" for p in publishers]
        size_of = {ids[i]: SIZES[i] for i in range(3)}

        def showing(pid: str, frames: int = 5) -> bool:
            """A mid the client maps to ``pid`` decodes ``pid``'s pictures (the last few)."""
            return any(info["participant_id"] == pid and mid in watcher.sizes
                       and watcher.sizes[mid][-frames:] == [size_of[pid]] * frames
                       for mid, info in watcher.tracks.items())

        assert await watcher.wait_for(lambda: forwarded(watcher) == set(ids[:2]), 15), (
            watcher.events)
        assert await watcher.wait_for(lambda: showing(ids[0]) and showing(ids[1]), 30), (
            dict(watcher.sizes), watcher.tracks)
        sent = offers(watcher)
        assert video_mlines(sent[-1]["sdp"]) == N  # three cameras, two video m-lines

        await publishers[3].join()  # a fourth camera: no slot for it, nothing to negotiate
        await publishers[3].send({"type": "audio_only", "enabled": True})
        ids[3] = publishers[3].participant_id or ""
        size_of[ids[3]] = SIZES[3]
        assert await watcher.wait_for(lambda: ids[3] in watcher.others, 10)
        # The page shows the newcomer: last-N takes it, a slot switches to it.
        await watcher.send({"type": "shown", "participant_ids": [ids[3], ids[0]]})
        assert await watcher.wait_for(lambda: forwarded(watcher) == {ids[3], ids[0]}, 15), (
            watcher.events[-5:])
        assert await watcher.wait_for(lambda: showing(ids[3]) and showing(ids[0]), 30), (
            dict(watcher.sizes), watcher.tracks)
        slots = [e for e in watcher.events if e["type"] == "slot"]
        assert slots and slots[-1]["participant_id"] == ids[3], slots
        assert slots[-1]["source"] == "camera"
        assert offers(watcher) == sent  # neither the join nor the switch renegotiated
        # Swap the second slot too (P2's picture on the m-line that carried P1's).
        before = len(slots)
        await watcher.send({"type": "shown", "participant_ids": [ids[3], ids[2]]})
        assert await watcher.wait_for(lambda: showing(ids[3]) and showing(ids[2]), 30), (
            dict(watcher.sizes), watcher.tracks)
        slots = [e for e in watcher.events if e["type"] == "slot"]
        assert len(slots) > before and slots[-1]["participant_id"] == ids[2]
        assert offers(watcher) == sent
        assert len({mid for mid, info in watcher.tracks.items() if info["kind"] == "video"}) == N
        assert not watcher.errors
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
