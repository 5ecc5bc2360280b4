"""Real encoded media for the recorder tests: encoded once per process with PyAV (tests only),
packetized with aiortc's own RTP packetizers, so the depacketizers meet what aiortc sends."""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass
from fractions import Fraction

import av
from aiortc.codecs.h264 import H264Encoder

from loadtest.media import encode_audio, encode_video_sized
from recorder.recording import Recording
from sfu import aiortc_hooks
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import rtp_bytes

VP8_SIZE = (320, 240)
FPS = 30
VIDEO_FRAMES = 60  # 2 s
KEYFRAME_INTERVAL = 30  # 1 s
AUDIO_SECONDS = 2
T0 = 1_800_000_000.0  # the server's wall clock when a test recording starts


@dataclass(frozen=True)
class Frame:
    data: bytes
    keyframe: bool


@functools.cache
def vp8_frames() -> tuple[Frame, ...]:
    frames, keys = encode_video_sized(VP8_SIZE[0], VP8_SIZE[1], 400_000, VIDEO_FRAMES,
                                      KEYFRAME_INTERVAL)
    return tuple(Frame(f, k) for f, k in zip(frames, keys, strict=True))


@functools.cache
def opus_frames() -> tuple[bytes, ...]:
    return tuple(encode_audio(AUDIO_SECONDS))


@functools.cache
def h264_payloads() -> tuple[tuple[tuple[bytes, ...], bool], ...]:
    """aiortc's H.264 encoder + packetizer (STAP-A for SPS/PPS, FU-A for big slices):
    (payloads, is key frame) per frame, 20 frames of 320x240 noise, a key frame every 10."""
    encoder = H264Encoder()
    rng = random.Random(3)
    out = []
    for index in range(20):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.planes[0].update(rng.randbytes(320 * 240))
        frame.planes[1].update(bytes([128]) * (160 * 120))
        frame.planes[2].update(bytes([128]) * (160 * 120))
        frame.pts = index * 3000
        frame.time_base = Fraction(1, 90000)
        payloads, _timestamp = encoder.encode(frame, force_keyframe=index % 10 == 0)
        out.append((tuple(payloads), index % 10 == 0))
    return tuple(out)


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    return aiortc_hooks.vp8_packetize(frame, picture_id)  # aiortc's RFC 7741 packetizer


def rtp(payload: bytes, seq: int, timestamp: int, *, marker: bool = False, ssrc: int = 1234,
        payload_type: int = 96) -> RtpView:
    return RtpView.parse(rtp_bytes(seq, timestamp, ssrc, payload, pt=payload_type,
                                   marker=int(marker)))


def vp8_stream(frames: tuple[Frame, ...], *, seq0: int = 0, ts0: int = 0, ssrc: int = 1234,
               ts_step: int = 3000) -> list[list[RtpView]]:
    """Each frame's packets (the marker on its last), as a publisher sends them."""
    out = []
    seq = seq0
    for index, frame in enumerate(frames):
        payloads = vp8_payloads(frame.data, index & 0x7FFF)
        packets = []
        for i, payload in enumerate(payloads):
            packets.append(rtp(payload, seq, ts0 + index * ts_step,
                               marker=i == len(payloads) - 1, ssrc=ssrc))
            seq += 1
        out.append(packets)
    return out


def opus_stream(frames: tuple[bytes, ...], *, seq0: int = 0, ts0: int = 0,
                ssrc: int = 5678) -> list[RtpView]:
    return [rtp(f, seq0 + i, ts0 + i * 960, ssrc=ssrc, payload_type=111)
            for i, f in enumerate(frames)]


def feed_participant(recording: Recording, name: str, *, ntp_offset: float, seq0: int,
                     ts0: int, delay_s: float) -> None:
    """One publisher: video + audio captured from T0, sent with RTP origins of its own, its NTP
    clock ``ntp_offset`` s away from the server's, arriving ``delay_s`` later."""
    video = recording.add_track(f"{name}-video", name, "vp8")
    audio = recording.add_track(f"{name}-audio", name, "opus")
    vssrc, assrc = zlib.crc32(f"{name}v".encode()), zlib.crc32(f"{name}a".encode())
    video.on_sender_report(vssrc, T0 + ntp_offset, ts0, T0 + delay_s)
    audio.on_sender_report(assrc, T0 + ntp_offset, ts0 ^ 0x5555, T0 + delay_s)
    vframes = vp8_stream(vp8_frames(), seq0=seq0, ts0=ts0, ssrc=vssrc)
    apackets = opus_stream(opus_frames(), seq0=seq0, ts0=ts0 ^ 0x5555, ssrc=assrc)
    for i, packets in enumerate(vframes):
        for packet in packets:
            video.on_rtp(packet, T0 + i / 30 + delay_s)
    for i, packet in enumerate(apackets):
        audio.on_rtp(packet, T0 + i * 0.02 + delay_s)
