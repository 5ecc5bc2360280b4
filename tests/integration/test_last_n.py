"""Last-N through the real server with aiortc peers: a subscriber in a room of more publishers
than N receives exactly N videos, and the set follows the active speaker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

from loadtest.client import SyntheticParticipant
from loadtest.media import PreEncodedVideoTrack, load_clip
from sfu.worker import MediaConfig
from signaling.app import create_app
from signaling.config import Config
from signaling.limits import MAX_SHOWN_PER_10S
from tests.conftest import base_url

pytestmark = pytest.mark.media

N = 2
FRAMES = 20  # decoded frames that show a video flows (the clip runs at 30 fps)


class VoiceTrack(AudioStreamTrack):
    """aiortc's silent track, or a loud square wave while ``speaking`` (aiortc computes the
    RFC 6464 level it sends from the samples: -12 dBov here, 127 for silence)."""

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self.speaking = False
        self.amplitude = amplitude

    async def recv(self) -> AudioFrame:  # type: ignore[override]
        frame = await super().recv()
        if self.speaking:
            samples = frame.samples
            high = self.amplitude.to_bytes(2, "little", signed=True)
            low = (-self.amplitude).to_bytes(2, "little", signed=True)
            wave = b"".join(high if (i // 10) % 2 else low for i in range(samples))
            frame.planes[0].update(wave)
        return frame


class Speaker(SyntheticParticipant):
    """Audio only, from a VoiceTrack."""

    def __init__(self, url: str, room: str, name: str, amplitude: int) -> None:
        self.voice = VoiceTrack(amplitude)
        super().__init__(url, room, name, audio=False, video=False)

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        joined = await super().join(timeout)  # (publishes nothing: audio and video are False)
        await self.publish(timeout)
        return joined

    async def publish(self, timeout: float = 10.0) -> None:
        self.publisher.addTransceiver(self.voice, direction="sendonly")
        await super().publish(timeout)


class Publisher(SyntheticParticipant):
    def __init__(self, url: str, room: str, name: str) -> None:
        self.voice = VoiceTrack()
        clip = load_clip()
        super().__init__(url, room, name, audio=False,
                         video_track_factory=lambda: PreEncodedVideoTrack(clip))

    async def publish(self, timeout: float = 10.0) -> None:
        self.publisher.addTransceiver(self.voice, direction="sendonly")
        await super().publish(timeout)


@pytest.fixture
async def last_n_server(tmp_path: Path) -> AsyncIterator[TestServer]:
    media = MediaConfig(ice_addresses=("127.0.0.1",), last_n=N)
    app = create_app(Config(data_dir=tmp_path, media=media, open_rooms=True))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def forwarded(person: SyntheticParticipant) -> list[str] | None:
    sets = [e["participant_ids"] for e in person.events if e["type"] == "forwarded"]
    return sets[-1] if sets else None


def videos(person: SyntheticParticipant) -> dict[str, int]:
    return {pid: got["video"] for pid, got in person.received.items()}


async def flowing(person: SyntheticParticipant, ids: set[str], others: set[str],
                  timeout: float = 30.0) -> dict[str, int]:
    """Wait until each of ``ids`` sent FRAMES new frames; return how many each of ``others``
    sent meanwhile (the videos outside last-N: none)."""
    before = videos(person)

    def advanced(pid: str) -> int:
        return person.received[pid]["video"] - before.get(pid, 0)

    ok = await person.wait_for(lambda: all(advanced(pid) >= FRAMES for pid in ids), timeout)
    assert ok, f"not every chosen video flowed: {videos(person)} (before: {before})"
    return {pid: advanced(pid) for pid in others}


async def test_subscriber_receives_n_videos_that_follow_the_speaker(
        last_n_server: TestServer) -> None:
    url = base_url(last_n_server)
    publishers = [Publisher(url, "hoi-nghi", name) for name in ("An", "Binh", "Chi")]
    listener = SyntheticParticipant(url, "hoi-nghi", "Nghe", audio=False, video=False,
                                    remb=False)
    late = SyntheticParticipant(url, "hoi-nghi", "Muon", audio=False, video=False, remb=False)
    try:
        for publisher in publishers:
            await publisher.join()
            # Publishers need no video back (keeps the test's CPU small): audio-only downlink.
            await publisher.send({"type": "audio_only", "enabled": True})
        await listener.join()
        a, b, c = (p.participant_id for p in publishers)
        assert a and b and c
        # (Chosen as each publisher's video becomes ready: that may be after we joined.)
        assert await listener.wait_for(lambda: len(forwarded(listener) or ()) == N, 15), (
            listener.events)
        assert forwarded(listener) == [a, b], listener.events  # join order while nobody speaks
        await flowing(listener, {a, b}, set())
        leaked = await flowing(listener, {a, b}, {c})
        assert leaked == {c: 0}

        publishers[2].voice.speaking = True  # Chi speaks: her video comes in, Binh's goes
        assert await listener.wait_for(lambda: set(forwarded(listener) or ()) == {c, a}, 15), (
            listener.events[-5:])
        await flowing(listener, {c}, set())  # her first keyframe is there
        leaked = await flowing(listener, {c, a}, {b})
        assert leaked == {b: 0}
        speakers = [e for e in listener.events if e["type"] == "speakers"]
        assert speakers and c in speakers[-1]["participant_ids"]
        # Somebody joining while Chi keeps speaking hears of her at once, after `joined`
        # (`speakers` went out only on a change: its gallery would have paged past her).
        await late.join()
        assert await late.wait_for(lambda: any(
            e["type"] == "speakers" and e["participant_ids"] == [c] for e in late.events), 10), (
            late.events)
        kinds = [e["type"] for e in late.events]
        assert kinds.index("joined") < kinds.index("speakers"), kinds
        assert not listener.errors
        assert all(len(e["participant_ids"]) <= N for e in listener.events
                   if e["type"] == "forwarded")

        # The client pages to Binh: after the speaker, what it shows (Chi stays: she spoke).
        await listener.send({"type": "shown", "participant_ids": [b]})
        assert await listener.wait_for(lambda: set(forwarded(listener) or ()) == {c, b}, 10)
        await flowing(listener, {b}, set())  # (frames of An's already in flight land meanwhile)
        leaked = await flowing(listener, {b, c}, {a})
        assert leaked == {a: 0}
    finally:
        await asyncio.gather(*(p.leave() for p in [*publishers, listener, late]),
                             return_exceptions=True)


async def test_shown_is_validated_and_rate_limited(last_n_server: TestServer) -> None:
    url = base_url(last_n_server)
    person = SyntheticParticipant(url, "trang", "Xem", audio=False, video=False)
    try:
        await person.join()

        async def reply(message: dict[str, Any] | str) -> dict[str, Any]:
            raw = message if isinstance(message, str) else json.dumps(message)
            waiter = person.expect("error")
            await person.send_raw(raw)
            return await asyncio.wait_for(waiter, 10)

        error = await reply({"type": "shown", "participant_ids": ["x"] * 65})
        assert error["code"] == "bad-message" and error["ref"] == "shown"
        error = await reply({"type": "shown", "participant_ids": "nobody"})
        assert error["code"] == "bad-message" and "participant_ids" in error["message"]
        # Unknown ids are harmless; past the rate, one rate-limited error per message.
        for _ in range(MAX_SHOWN_PER_10S):
            await person.send({"type": "shown", "participant_ids": ["ghost"]})
        error = await reply({"type": "shown", "participant_ids": ["ghost"]})
        assert error["code"] == "rate-limited" and error["ref"] == "shown"
        pong = await person.request({"type": "ping", "id": 1}, "pong")
        assert pong["id"] == 1  # the session carries on
    finally:
        await person.leave()


def heard(person: SyntheticParticipant) -> dict[str, int]:
    return {pid: got["audio"] for pid, got in person.received.items()}


async def test_big_room_forwards_the_three_loudest_voices_and_new_ones(
        last_n_server: TestServer) -> None:
    """More than 8 in the room: silence is gated; of five voices the three loudest are heard,
    and one that starts speaking is heard at once (then ranked)."""
    url = base_url(last_n_server)
    amplitudes = [16000, 8000, 4000, 2000, 1000, 1000, 1000, 1000, 1000]  # -6 .. -30 dBov
    speakers = [Speaker(url, "dai-hoi", f"S{i}", a) for i, a in enumerate(amplitudes)]
    listener = SyntheticParticipant(url, "dai-hoi", "Nghe", audio=False, video=False)
    people = [*speakers, listener]
    try:
        for person in people:
            await person.join()
        ids = [s.participant_id or "" for s in speakers]
        for speaker in speakers[:5]:
            speaker.voice.speaking = True

        def advanced(before: dict[str, int], pid: str) -> int:
            return heard(listener).get(pid, 0) - before.get(pid, 0)

        async def hear(pids: list[str], frames: int, timeout: float = 30.0) -> dict[str, int]:
            before = heard(listener)
            ok = await listener.wait_for(
                lambda: all(advanced(before, pid) >= frames for pid in pids), timeout)
            assert ok, f"not every loud voice was heard: {heard(listener)} (before {before})"
            return {pid: advanced(before, pid) for pid in ids if pid not in pids}

        loudest = ids[:3]
        # The two quieter voices are cut once ranked (after their first second): settle first.
        await hear(loudest, 100)
        others = await hear(loudest, 50)
        assert others == dict.fromkeys(ids[3:], 0), others
        # A new voice is heard at once, before any ranking (its first second), then cut.
        before = heard(listener)
        speakers[6].voice.speaking = True
        assert await listener.wait_for(lambda: advanced(before, ids[6]) >= 10, 15), heard(listener)
        assert not listener.errors
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
