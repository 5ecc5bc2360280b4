"""An authenticated participant that sends whatever bytes it likes through its own SRTP session.

``Attacker`` joins like any client and publishes an audio and a video track whose aiortc senders
never send (their tracks never yield a frame). Everything on those SSRCs is written by the test:
real VP8 frames (aiortc's encoder) and Opus packets so the other participants start receiving it,
interleaved with hostile packets, all SRTP-protected with the connection's own keys and sent on
its ICE pair (``sfu.aiortc_hooks.DatagramWriter``). So the server cannot tell the attacker from a
browser until it looks at the packets.

``adversarial_rtp`` / ``adversarial_rtcp`` build the deterministic, self-made corpus (seeded):
extension blocks of wrong sizes and forms, broken VP8 descriptors and H.264 NAL units, SSRC churn,
sequence jumps, truncated and garbled RTCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy
from aiortc import MediaStreamTrack, RTCRtpTransceiver, RTCSessionDescription
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)
from av import VideoFrame

from loadtest.client import SyntheticParticipant
from sfu import aiortc_hooks
from sfu.negotiation import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID

OPUS_SILENCE = bytes([0xF8, 0xFF, 0xFE])  # one 20 ms Opus frame (CELT, silence)
FRAME_INTERVAL_S = 0.1
KEYFRAME_EVERY = 10  # frames: the receivers' consumers (re)start on a keyframe

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)?\s+(\S+)")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([\w-]+)/(\d+)")


class IdleTrack(MediaStreamTrack):
    """A track that never yields a frame: aiortc's sender for it never sends a packet."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


@dataclass
class Track:
    mid: str
    ssrc: int
    payload_type: int
    ext_ids: dict[str, int]
    seq: int = 0
    timestamp: int = 0

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq


def _sections(sdp: str) -> list[list[str]]:
    out: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def _track_of(section: list[str], transceiver: RTCRtpTransceiver, codec: str) -> Track:
    mid = next(line[6:] for line in section if line.startswith("a=mid:"))
    pt = next(int(m.group(1)) for line in section
              if (m := _RTPMAP.match(line)) and m.group(2).lower() == codec)
    ids = {m.group(2): int(m.group(1)) for line in section if (m := _EXTMAP.match(line))}
    ssrc, _rtx = aiortc_hooks.sender_ssrcs(transceiver.sender)
    return Track(mid, ssrc, pt, ids, seq=random.Random(ssrc).randrange(30000))


def rtp_header(track: Track, seq: int, timestamp: int, marker: int = 0,
               ssrc: int | None = None, pt: int | None = None) -> bytes:
    return struct.pack("!BBHII", 0x80, (marker << 7) | (track.payload_type if pt is None else pt),
                       seq, timestamp & 0xFFFFFFFF, track.ssrc if ssrc is None else ssrc)


def one_byte_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([(i << 4) | ((len(v) - 1) & 0x0F)]) + v for i, v in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def two_byte_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0x1000, len(body) // 4) + body


def with_extension(header: bytes, block: bytes) -> bytes:
    return bytes([header[0] | 0x10]) + header[1:] + block


class Attacker(SyntheticParticipant):
    def __init__(self, base_url: str, room: str, name: str = "Mallory") -> None:
        super().__init__(base_url, room, name, audio=False, video=False)
        self.audio_track: Track | None = None
        self.video_track: Track | None = None
        self.writer: aiortc_hooks.DatagramWriter | None = None
        self.sent = {"rtp": 0, "rtcp": 0, "refused_by_srtp": 0}
        self._encoder = get_encoder(
            RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96))
        self._frames = 0
        self._media_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _answer(self, message: dict[str, Any]) -> None:
        return  # the attacker does not subscribe (it would only cost this machine CPU)

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        joined = await super().join(timeout)  # publishes nothing: audio and video are False
        await self.publish(timeout)
        return joined

    async def publish(self, timeout: float = 10.0) -> None:
        pc = self.publisher
        audio = pc.addTransceiver(IdleTrack("audio"), direction="sendonly")
        video = pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        answer = await self.request({"type": "publish", "sdp": sdp}, "publish_answer", timeout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        sections = _sections(sdp)
        self.audio_track = _track_of(sections[0], audio, "opus")
        self.video_track = _track_of(sections[1], video, "vp8")
        self.writer = aiortc_hooks.DatagramWriter(audio.sender.transport)
        if not await self.wait_for(lambda: pc.connectionState == "connected", timeout):
            raise TimeoutError(f"attacker's publisher not connected: {pc.connectionState}")
        self._media_task = asyncio.ensure_future(self._media_forever())

    # -- valid media, so that the others receive (and decode) the attacker's tracks -------------

    def send_rtp(self, data: bytes) -> None:
        assert self.writer is not None
        try:  # libsrtp refuses some garbage (pylibsrtp.Error), and too long input (ValueError)
            sent = self.writer.send_rtp(data)
        except ValueError:
            sent = False
        self.sent["rtp" if sent else "refused_by_srtp"] += 1

    def send_rtcp(self, data: bytes) -> None:
        assert self.writer is not None
        try:
            sent = self.writer.send_rtcp(data)
        except ValueError:
            sent = False
        self.sent["rtcp" if sent else "refused_by_srtp"] += 1

    def send_frame(self) -> None:
        video, audio = self.video_track, self.audio_track
        assert video is not None and audio is not None
        frame = VideoFrame.from_ndarray(
            numpy.full((120, 160, 3), (self._frames * 7) % 256, dtype="uint8"), format="bgr24")
        frame.pts = self._frames * 9000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = self._encoder.encode(frame, self._frames % KEYFRAME_EVERY == 0)
        video.timestamp = (video.timestamp + 9000) & 0xFFFFFFFF
        for i, payload in enumerate(payloads):
            marker = int(i == len(payloads) - 1)
            self.send_rtp(rtp_header(video, video.next_seq(), video.timestamp, marker) + payload)
        for _ in range(5):  # 100 ms of audio, with a valid audio level
            audio.timestamp = (audio.timestamp + 960) & 0xFFFFFFFF
            header = rtp_header(audio, audio.next_seq(), audio.timestamp)
            level_id = audio.ext_ids.get(URI_AUDIO_LEVEL)
            if level_id:
                header = with_extension(header, one_byte_block([(level_id, b"\x1e")]))
            self.send_rtp(header + OPUS_SILENCE)
        self._frames += 1

    async def _media_forever(self) -> None:
        while True:
            self.send_frame()
            await asyncio.sleep(FRAME_INTERVAL_S)

    async def close(self) -> None:
        if self._media_task is not None:
            self._media_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._media_task
        await super().close()


class Victim(SyntheticParticipant):
    """A decoding participant whose receivers send no REMB.

    Why: aiortc sends one REMB per video receiver, estimated from that stream alone, and a
    low-rate, bursty stream (the attacker's 160x120 frames; equally a legitimate participant's
    small camera) makes its estimate a few dozen kbit/s. The SFU's downlink control then reads
    the connection as congested, switches the subscriber to audio only and, with no video left
    to estimate from, never switches back - with or without any hostile packet (a control run
    without the attack shows the same). That is the downlink estimator's problem, reported
    separately; these victims measure the forwarding path, so the SFU gets no REMB from them.
    """

    def __init__(self, base_url: str, room: str, name: str) -> None:
        # Switched off as each offer is applied, before any await: switched off after the answer
        # (as this class first did), a receiver made by a re-offer could send one REMB of a few
        # kbit/s first, and that estimate, never refreshed, kept the attacker's video paused
        # for bandwidth at the victims (a failure seen under load).
        super().__init__(base_url, room, name, remb=False)


# -- the self-made adversarial corpus ------------------------------------------------------------

BAD_VP8 = [
    bytes([0x90]), bytes([0x90, 0x80]), bytes([0x90, 0x80, 0x81]), bytes([0x90, 0x40]),
    bytes([0x90, 0x20]), bytes([0x90, 0xF0, 0x81, 0x01, 0x02, 0x03]),
    bytes([0x10, 0x02, 0x00]) + bytes(3), bytes([0x10, 0x01]),
]
BAD_H264 = [
    bytes([0x65]), bytes([0xE5, 0x88, 0x00]), bytes([0x00, 0x11, 0x22]),
    bytes([0x19, 0x00, 0x02, 0x65, 0x00]), bytes([0x1D, 0x85, 0x00]), bytes([0x1F, 0x00, 0x00]),
    bytes([0x18, 0x00, 0x09, 0x67, 0x42]), bytes([0x18, 0x00, 0x00, 0x67]),
    bytes([0x7C, 0xC5, 0x00]), bytes([0x7C, 0x9C, 0x00]), bytes([0x7C, 0x85]),
]


def adversarial_rtp(attacker: Attacker, seed: int = 8) -> Iterator[tuple[str, bytes]]:
    """(attack class, packet) in a deterministic order; sequence numbers continue the tracks'
    own, so every packet is the newest one and would be forwarded if it passed the checks."""
    rng = random.Random(seed)
    audio, video = attacker.audio_track, attacker.video_track
    assert audio is not None and video is not None
    level_id = audio.ext_ids.get(URI_AUDIO_LEVEL, 1)
    mid_id = video.ext_ids.get(URI_MID, 1)
    abs_id = video.ext_ids.get(URI_ABS_SEND_TIME, 3)

    def audio_packet(block: bytes, payload: bytes = OPUS_SILENCE) -> bytes:
        header = rtp_header(audio, audio.next_seq(), audio.timestamp)
        return with_extension(header, block) + payload

    def video_packet(payload: bytes, block: bytes = b"") -> bytes:
        header = rtp_header(video, video.next_seq(), video.timestamp)
        return (with_extension(header, block) if block else header) + payload

    for size in range(2, 17):  # audio level must be 1 byte: the packet that killed receivers
        yield "bad-extension", audio_packet(one_byte_block([(level_id, bytes(range(size)))]))
    for size in (0, 2, 3, 64, 255):
        yield "bad-extension", audio_packet(two_byte_block([(level_id, bytes(size))]))
    for _ in range(100):  # unknown ids, both forms, random sizes
        elements = [(rng.choice([i for i in range(1, 15) if i not in (level_id, mid_id)]),
                     rng.randbytes(rng.randint(1, 16))) for _ in range(rng.randint(1, 4))]
        yield "unknown-extension", audio_packet(one_byte_block(elements))
        yield "unknown-extension", audio_packet(two_byte_block(
            [(rng.randint(15, 255), rng.randbytes(rng.randint(0, 40)))]))
    for size in (1, 2, 4, 5):
        yield "bad-extension", video_packet(bytes([0x10, 0x01, 0, 0]) + bytes(20),
                                            one_byte_block([(abs_id, bytes(size))]))
    for _ in range(50):  # truncated / overrunning blocks
        block = bytearray(one_byte_block([(level_id, b"\x10"), (abs_id, b"\x00\x01\x02")]))
        struct.pack_into("!H", block, 2, rng.randint(3, 0xFFFF))
        yield "truncated-extension", audio_packet(bytes(block), b"")
    for payload in BAD_VP8:
        for _ in range(10):
            yield "bad-vp8", video_packet(payload)
    for _ in range(200):  # random descriptors: valid ones are forwarded, broken ones dropped
        yield "garbled-vp8", video_packet(rng.randbytes(rng.randint(1, 12)))
    for payload in BAD_H264:
        for _ in range(5):
            yield "bad-h264", video_packet(payload)
    for _ in range(20):  # sequence jumps back and forth
        video.seq = (video.seq + 30000) & 0xFFFF
        yield "seq-jump", video_packet(bytes([0x10, 0x01, 0, 0]) + bytes(20))
    for i in range(3000):  # a new SSRC on every packet, claiming the video track by MID
        header = rtp_header(video, i & 0xFFFF, i * 3000, ssrc=0x50000000 + i)
        block = one_byte_block([(mid_id, video.mid.encode())])
        yield "ssrc-churn", with_extension(header, block) + bytes([0x10, 0x01, 0, 0]) + bytes(20)
    for i in range(1000):  # new SSRCs without MID
        yield "ssrc-churn", rtp_header(video, i, i, ssrc=0x60000000 + i) + rng.randbytes(30)


def adversarial_rtcp(attacker: Attacker, seed: int = 9, count: int = 300) -> Iterator[bytes]:
    """Valid RTCP of every type the server reads, then truncated, garbled and spliced copies."""
    rng = random.Random(seed)
    video = attacker.video_track
    assert video is not None
    ssrc = video.ssrc
    valid = [
        bytes(RtcpSrPacket(ssrc=ssrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=1 << 40, rtp_timestamp=1234, packet_count=1, octet_count=100))),
        bytes(RtcpRrPacket(ssrc=ssrc, reports=[RtcpReceiverInfo(
            ssrc=1, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0,
            dlsr=0)])),
        bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=1)),
        bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0,
                             fci=pack_remb_fci(300000, [1]))),
        bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=ssrc, media_ssrc=1, lost=[1, 2, 3])),
        bytes(RtcpByePacket(sources=[ssrc])),
    ]
    yield from valid
    for _ in range(count):
        data = bytearray(b"".join(rng.sample(valid, rng.randint(1, 3))))
        action = rng.randrange(4)
        if action == 0:
            del data[rng.randint(4, len(data) - 1):]
        elif action == 1:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 2:
            struct.pack_into("!H", data, 2, rng.randrange(0x10000))
        else:
            data += rng.randbytes(rng.randint(1, 40))
        data[0] = 0x80 | (data[0] & 0x3F)  # keep version 2: it must reach the parser
        if len(data) >= 8:
            yield bytes(data)
