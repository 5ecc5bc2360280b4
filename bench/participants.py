"""The participants of ``diemcau bench forward``: a publisher of pre-encoded media, subscribers
that only count what they receive, and groups of them in this process or in a worker process.

The publisher replays pre-encoded VP8 + Opus (``loadtest.media``: no encoder runs here). A
subscriber is the load generator's cheap receiver: its aiortc receivers never start
(``aiortc_hooks.idle_receiver``) and SRTP is counted straight off the socket, undecrypted
(``aiortc_hooks.receive_srtp_directly``); only what arrives before the ICE pair is nominated
takes aiortc's path (``hook_transport``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from loadtest.childproc import ChildProcess, obey_parent
from loadtest.client import SyntheticParticipant
from loadtest.media import AUDIO_LEVEL_DBOV, Clip, PreEncodedAudioTrack, PreEncodedVideoTrack
from loadtest.server import STOP_TIMEOUT_S, BenchError, process_cpu_s
from sfu import aiortc_hooks

JOIN_CONCURRENCY = 8
JOIN_TIMEOUT_S = 20.0
SRTP_AUTH_TAG = 10  # bytes: AES_CM_128_HMAC_SHA1_80, what aiortc negotiates


# -- the participants -----------------------------------------------------------------------------


class BenchPublisher(SyntheticParticipant):
    """Publishes the pre-encoded clip: aiortc's senders only packetize, never encode.

    ``audio_level`` (dBov, like browsers) adds the ssrc-audio-level extension to audio packets;
    None sends audio without it, as aiortc does for pre-encoded packets.
    """

    def __init__(self, base_url: str, room: str, clip: Clip,
                 audio_level: int | None = AUDIO_LEVEL_DBOV) -> None:
        # audio=False: SyntheticParticipant.publish would add aiortc's AudioStreamTrack (an Opus
        # encoder); publish() below adds the pre-encoded audio track itself.
        super().__init__(base_url, room, "publisher", audio=False, decode=False,
                         video_track_factory=lambda: self.video_track)
        self.audio_level = audio_level
        self.video_track = PreEncodedVideoTrack(clip)
        self.audio_track = PreEncodedAudioTrack(clip)

    async def publish(self, timeout: float = 10.0) -> None:
        audio = self.publisher.addTransceiver(self.audio_track, direction="sendonly")
        if self.audio_level is not None:
            aiortc_hooks.send_audio_level(audio.sender, self.audio_level)
        await super().publish(timeout)  # adds the video track (audio, then video), negotiates

    async def close(self) -> None:
        self.video_track.stop()
        self.audio_track.stop()
        await super().close()


class CountingSubscriber(SyntheticParticipant):
    """Receives without decoding: its subscriber transport's decrypted RTP is only counted."""

    def __init__(self, base_url: str, room: str, name: str) -> None:
        super().__init__(base_url, room, name, audio=False, video=False, decode=False)
        self.packets: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._kind_by_pt: dict[int, str] = {}

    def _on_rtp(self, data: bytes, _arrival_ms: int) -> None:
        kind = self._kind_by_pt.get(data[1] & 0x7F, "other")
        self.packets[kind] += 1
        self.bytes[kind] += len(data)

    def _learn_payload_types(self, sdp: str) -> None:
        for media in SessionDescription.parse(sdp).media:
            for codec in media.rtp.codecs:
                if codec.payloadType is not None:  # always set in a parsed SDP
                    self._kind_by_pt[codec.payloadType] = media.kind

    async def _answer(self, message: dict[str, Any]) -> None:
        # SyntheticParticipant._answer, minus the decoding consumers: once the offer is applied
        # the transceivers and their (bundled) DTLS transport exist; hook them before the answer
        # starts the connection (receivers' receive() runs only after setLocalDescription).
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            self._learn_payload_types(message["sdp"])
            # The cheap receiver (as loadtest's): aiortc's receivers never start (no decoder
            # thread, no RTCP task) and SRTP is counted straight off the socket, undecrypted
            # (the header is in the clear); only what comes before the ICE pair is nominated
            # takes aiortc's path. No REMB: with no estimate the server sends every tile its
            # (only) layer, and never gates a REMB-less subscriber to audio-only.
            new = []
            for transceiver in pc.getTransceivers():
                if id(transceiver.receiver) not in self._taken_receivers:
                    self._taken_receivers.add(id(transceiver.receiver))
                    aiortc_hooks.idle_receiver(transceiver.receiver)
                transport = transceiver.receiver.transport
                if id(transport) not in self._taken_transports:
                    self._taken_transports.add(id(transport))
                    aiortc_hooks.hook_transport(transport, self._on_rtp, lambda _data: None)
                    new.append(transport)
            aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            for transport in new:
                aiortc_hooks.receive_srtp_directly(transport, self._on_srtp)
            await self.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})

    def _on_srtp(self, data: bytes, _srtp: Any) -> None:
        kind = self._kind_by_pt.get(data[1] & 0x7F, "other")
        self.packets[kind] += 1
        self.bytes[kind] += len(data) - SRTP_AUTH_TAG  # the decrypted packet's size


# -- subscriber groups: in this process or in a worker process ------------------------------------


def _counts_of(subscribers: list[CountingSubscriber]) -> dict[str, Any]:
    packets: Counter[str] = Counter()
    octets: Counter[str] = Counter()
    receiving = 0
    for sub in subscribers:
        packets.update(sub.packets)
        octets.update(sub.bytes)
        receiving += sub.packets["video"] > 0
    return {"subscribers": len(subscribers), "receiving_video": receiving,
            "packets": sum(packets.values()), "video_packets": packets["video"],
            "audio_packets": packets["audio"], "bytes": sum(octets.values()),
            "video_bytes": octets["video"], "errors": sum(len(s.errors) for s in subscribers)}


class LocalGroup:
    """Subscribers in this process."""

    def __init__(self, base_url: str, room: str, names: list[str]) -> None:
        self.subscribers = [CountingSubscriber(base_url, room, name) for name in names]

    async def start(self) -> None:
        semaphore = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def join(sub: CountingSubscriber) -> None:
            async with semaphore:
                await sub.join(JOIN_TIMEOUT_S)

        await asyncio.gather(*(join(sub) for sub in self.subscribers))

    async def counts(self) -> dict[str, Any]:
        return {**_counts_of(self.subscribers), "cpu_s": 0.0}  # our CPU is counted by the caller

    async def stop(self) -> None:
        await asyncio.gather(*(sub.leave() for sub in self.subscribers), return_exceptions=True)


async def _child(conn: Any, base_url: str, room: str, names: list[str]) -> None:
    """A worker process: hosts a LocalGroup, obeys the parent."""
    group = LocalGroup(base_url, room, names)

    async def start() -> tuple[str, Any]:
        try:
            await group.start()
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            return ("error", f"{type(exc).__name__}: {exc}")
        return ("started", None)

    def counts(_argument: Any) -> dict[str, Any]:
        return {**_counts_of(group.subscribers), "cpu_s": process_cpu_s()}

    await obey_parent(conn, {"counts": counts}, group.stop, STOP_TIMEOUT_S, start)


class RemoteGroup(ChildProcess):
    """Subscribers in a worker process (its own event loop and core)."""

    error = BenchError
    poll_s = 0.2

    def __init__(self, base_url: str, room: str, names: list[str]) -> None:
        super().__init__(_child, (base_url, room, names), "diemcau-bench-subscribers")
        self.names = names

    async def start(self) -> None:
        kind, value = await self._start(JOIN_TIMEOUT_S * (1 + len(self.names) / JOIN_CONCURRENCY)
                                        + 10)
        if kind != "started":
            raise BenchError(f"worker process failed to join: {value}")

    async def counts(self) -> dict[str, Any]:
        return await self._call("counts", None, 10)

    async def stop(self) -> None:
        await self._stop(STOP_TIMEOUT_S + 5)


async def sum_counts(groups: list[LocalGroup | RemoteGroup]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for counts in await asyncio.gather(*(group.counts() for group in groups)):
        total.update(counts)
    return dict(total)


class LoopLag:
    """How late this event loop wakes up (a starved load generator would distort the pacing)."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.max_lag = max(self.max_lag, loop.time() - due)

    def start(self) -> None:
        self.max_lag = 0.0
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
        return self.max_lag
