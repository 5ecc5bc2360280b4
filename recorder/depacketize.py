"""RTP packets -> complete encoded frames (VP8, Opus, H.264), for the recorder. Pure: no I/O.

One frame is the run of packets with one RTP timestamp and consecutive sequence numbers, ended by
the marker bit (or by the next packet carrying a new timestamp, for senders that omit the marker).
Packets are buffered by extended sequence number, so reordering within the wait window is
repaired. A hole that does not fill within ``max_wait_s`` (or a buffer over ``max_packets``) is a
loss: the damaged frame is dropped (``FrameDropReason.MISSING_PACKETS``) and a video track drops
every frame until the next key frame (``WAITING_FOR_KEYFRAME``): a decoder could not use them.
Nothing is invented for the hole: the recording keeps the gap.

Codec payload formats: VP8 RFC 7741 (descriptor parsed by ``sfu.wire.vp8``), Opus RFC 7587 (one
packet is one frame), H.264 RFC 6184 (single NAL unit, STAP-A, FU-A; output is an Annex-B access
unit).
Wraparound of the 16-bit sequence number goes through ``sfu.wire.seqmath``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from recorder.h264_sps import sps_size
from sfu.wire.rtp_packet import RtpView
from sfu.wire.seqmath import seq_diff
from sfu.wire.vp8 import Vp8Descriptor, frame_start_offset, is_vp8_keyframe, vp8_keyframe_size

__all__ = [
    "Depacketizer",
    "EncodedFrame",
    "FrameDropReason",
    "H264Depacketizer",
    "OpusDepacketizer",
    "Vp8Depacketizer",
    "depacketizer_for",
]

MAX_WAIT_S = 0.5
"""How long a hole may wait for a late or retransmitted packet before the frame is given up."""
MAX_PACKETS = 1024
"""Buffered packets at most (a 1080p key frame is ~200 packets)."""
RESET_DISTANCE = 3000
"""A sequence number this far from the newest one is a restarted stream, not reordering."""

ANNEX_B_START = b"\x00\x00\x00\x01"


class FrameDropReason(enum.Enum):
    """Why a frame (or, for LATE, a packet) was not handed to the writer."""

    MISSING_PACKETS = "missing_packets"  # a hole in the frame did not fill in time
    WAITING_FOR_KEYFRAME = "waiting_for_keyframe"  # complete, but follows a loss or the start
    MALFORMED = "malformed"  # the payloads do not depacketize
    LATE = "late"  # packet: a duplicate, or older than what was already emitted
    STREAM_RESET = "stream_reset"  # buffered when the SSRC changed or the sequence jumped


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    data: bytes  # VP8 frame / Opus packet / H.264 Annex-B access unit
    timestamp: int  # RTP timestamp as sent (32 bit)
    ssrc: int
    keyframe: bool  # always True for audio
    arrival_s: float  # when its last packet arrived (caller's clock)
    size: tuple[int, int] | None = None  # (width, height) of a key frame (VP8 header, H.264 SPS)
    parameter_sets: bytes = b""  # H.264: Annex-B SPS + PPS in force for this key frame


class Depacketizer:
    """The reorder buffer and frame boundaries; subclasses say how payloads become a frame."""

    is_video = True

    def __init__(self, max_wait_s: float = MAX_WAIT_S, max_packets: int = MAX_PACKETS) -> None:
        self.max_wait_s = max_wait_s
        self.max_packets = max_packets
        self.drops: Counter[FrameDropReason] = Counter()
        self.frames = 0
        self._buffer: dict[int, tuple[RtpView, float]] = {}
        self._ssrc: int | None = None
        self._highest: int | None = None  # extended sequence number
        self._next: int | None = None  # extended sequence number of the next frame's first packet
        self._broken_ts: int | None = None  # timestamp of a frame whose head was given up
        self._started = False  # a frame was emitted or given up: _next only moves forwards now
        self.waiting_for_keyframe = self.is_video

    # -- codec hooks ------------------------------------------------------------------------------

    def is_frame_start(self, payload: bytes) -> bool:
        """Can this payload begin a frame? Used to find the next frame after a hole."""
        return True

    def assemble(self, packets: list[RtpView], arrival_s: float) -> EncodedFrame:
        """One frame from its packets in order; ValueError when they do not depacketize."""
        raise NotImplementedError

    # -- the buffer -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the buffered packets (a layer switch): video waits for the next key frame."""
        if self._buffer:
            timestamps = {packet.timestamp for packet, _ in self._buffer.values()}
            self.drops[FrameDropReason.STREAM_RESET] += len(timestamps)
        self._buffer.clear()
        self._ssrc = self._highest = self._next = self._broken_ts = None
        self._started = False
        self.waiting_for_keyframe = self.is_video

    def push(self, packet: RtpView, arrival_s: float) -> list[EncodedFrame]:
        """Add one packet; returns the frames it completed (in order)."""
        if packet.ssrc != self._ssrc:
            self.reset()
            self._ssrc = packet.ssrc
        if self._highest is None:
            ext = packet.sequence_number
        else:
            ext = self._highest + seq_diff(packet.sequence_number, self._highest)
            if abs(ext - self._highest) > RESET_DISTANCE:
                self.reset()
                self._ssrc = packet.ssrc
                ext = packet.sequence_number
        if ext in self._buffer:
            self.drops[FrameDropReason.LATE] += 1
            return []
        if self._next is not None and ext < self._next:
            if self._started or self._next - ext > self.max_packets:
                self.drops[FrameDropReason.LATE] += 1
                return []
            self._next = ext  # reordered at the very start: an earlier packet came second
        self._buffer[ext] = (packet, arrival_s)
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if self._next is None:
            self._next = ext
        return self._drain(arrival_s)

    def poll(self, now_s: float) -> list[EncodedFrame]:
        """Give up holes older than the wait window even when no packet arrives."""
        return self._drain(now_s)

    def flush(self) -> None:
        """End of the track: whatever is still buffered is incomplete."""
        if self._buffer:
            timestamps = {packet.timestamp for packet, _ in self._buffer.values()}
            self.drops[FrameDropReason.MISSING_PACKETS] += len(timestamps)
        self._buffer.clear()

    def _drain(self, now_s: float) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        while self._buffer and self._next is not None:
            if not self._started:
                # The first packet seen may be from the middle of a frame: give earlier ones
                # the wait window to arrive, then skip to the next frame start.
                entry = self._buffer.get(self._next)
                if entry is not None and not self.is_frame_start(entry[0].payload):
                    oldest = min(arrival for _, arrival in self._buffer.values())
                    if (now_s - oldest <= self.max_wait_s
                            and len(self._buffer) <= self.max_packets):
                        break
                    self._drop_partial_head()
                    continue
            end = self._complete_end(self._next)
            if end is not None:
                self._emit(self._next, end, out)
                continue
            if not self._hole_expired(now_s):
                break
            self._skip_hole()
        return out

    def _drop_partial_head(self) -> None:
        """The stream began mid-frame: drop that frame's tail, resume at the next timestamp."""
        assert self._next is not None
        buffer = self._buffer
        timestamp = buffer[self._next][0].timestamp
        while self._next in buffer and buffer[self._next][0].timestamp == timestamp:
            del buffer[self._next]
            self._next += 1
        self.drops[FrameDropReason.MISSING_PACKETS] += 1
        self._broken_ts = timestamp  # more of its tail may still arrive after a hole
        self._started = True

    def _hole_expired(self, now_s: float) -> bool:
        """A packet is missing at or after ``_next`` and waiting longer cannot help: packets
        after the hole have waited ``max_wait_s``, or the buffer is full. A frame whose last
        packets simply have not arrived yet is not a hole."""
        if len(self._buffer) > self.max_packets:
            return True
        hole = self._next
        assert hole is not None
        while hole in self._buffer:
            hole += 1
        after = [arrival for ext, (_, arrival) in self._buffer.items() if ext > hole]
        return bool(after) and now_s - min(after) > self.max_wait_s

    def _complete_end(self, start: int) -> int | None:
        """Extended sequence number of the last packet of the frame at ``start`` if complete."""
        buffer = self._buffer
        first = buffer.get(start)
        if first is None:
            return None
        timestamp = first[0].timestamp
        ext = start
        while True:
            packet = buffer[ext][0]
            if packet.marker or not self.is_video:
                return ext
            following = buffer.get(ext + 1)
            if following is None:
                return None
            if following[0].timestamp != timestamp:
                return ext  # the sender left the marker out: the new timestamp ends the frame
            ext += 1

    def _emit(self, start: int, end: int, out: list[EncodedFrame]) -> None:
        entries = [self._buffer.pop(ext) for ext in range(start, end + 1)]
        self._next = end + 1
        self._started = True
        packets = [packet for packet, _ in entries]
        if packets[0].timestamp == self._broken_ts:
            return  # the tail of a frame already counted as lost in an earlier hole
        self._broken_ts = None
        try:
            frame = self.assemble(packets, entries[-1][1])
        except ValueError:
            self.drops[FrameDropReason.MALFORMED] += 1
            if self.is_video:
                self.waiting_for_keyframe = True
            return
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                self.drops[FrameDropReason.WAITING_FOR_KEYFRAME] += 1
                return
            self.waiting_for_keyframe = False
        self.frames += 1
        out.append(frame)

    def _skip_hole(self) -> None:
        """Declare the first hole lost: drop the damaged frame, resume at the next frame start."""
        assert self._next is not None and self._highest is not None
        self._started = True
        buffer = self._buffer
        hole = self._next
        broken: int | None = None
        while hole in buffer:  # the head of the damaged frame, before its hole
            broken = buffer.pop(hole)[0].timestamp
            hole += 1
        self.drops[FrameDropReason.MISSING_PACKETS] += 1
        if self.is_video:
            self.waiting_for_keyframe = True
        previous_ts = broken
        for ext in sorted(buffer):
            packet = buffer[ext][0]
            before = buffer.get(ext - 1)
            if before is not None:
                starts = before[0].marker or before[0].timestamp != packet.timestamp
            else:
                starts = packet.timestamp != previous_ts and self.is_frame_start(packet.payload)
            if starts and packet.timestamp != broken:
                self._next = ext
                self._broken_ts = None
                return
            del buffer[ext]
            previous_ts = packet.timestamp
        # Nothing usable buffered: resume after the newest packet, and drop any late tail.
        self._next = self._highest + 1
        self._broken_ts = previous_ts


class OpusDepacketizer(Depacketizer):
    """RFC 7587: one RTP packet carries one Opus packet, which is one frame for Matroska."""

    is_video = False

    def assemble(self, packets: list[RtpView], arrival_s: float) -> EncodedFrame:
        packet = packets[0]
        if not packet.payload:
            raise ValueError("Opus RTP packet has an empty payload")
        return EncodedFrame(packet.payload, packet.timestamp, packet.ssrc, True, arrival_s)


class Vp8Depacketizer(Depacketizer):
    """RFC 7741: strip each packet's payload descriptor; the frame starts with S=1, PID=0."""

    def is_frame_start(self, payload: bytes) -> bool:
        return frame_start_offset(payload) is not None

    def assemble(self, packets: list[RtpView], arrival_s: float) -> EncodedFrame:
        first = packets[0].payload
        if frame_start_offset(first) is None:
            raise ValueError("VP8 frame does not begin with the start of partition 0")
        parts = []
        for packet in packets:
            payload = packet.payload
            size = Vp8Descriptor.parse(payload).size
            parts.append(payload[size:])
        data = b"".join(parts)
        if not data:
            raise ValueError("VP8 frame is empty")
        keyframe = is_vp8_keyframe(first)
        size_wh = vp8_keyframe_size(first) if keyframe else None
        if keyframe and size_wh is None:
            raise ValueError("VP8 key frame header is truncated or has no start code")
        return EncodedFrame(data, packets[0].timestamp, packets[0].ssrc, keyframe, arrival_s,
                            size_wh)


_NAL_IDR = 5
_NAL_SPS = 7
_NAL_PPS = 8
_STAP_A = 24
_FU_A = 28


class H264Depacketizer(Depacketizer):
    """RFC 6184 packetization mode 0/1: single NAL unit, STAP-A and FU-A -> Annex-B.

    The newest SPS and PPS are kept and put in front of a key frame that lacks them, so every
    key frame in the file starts a decodable sequence (and the writer gets its CodecPrivate).
    """

    def __init__(self, max_wait_s: float = MAX_WAIT_S, max_packets: int = MAX_PACKETS) -> None:
        super().__init__(max_wait_s, max_packets)
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def is_frame_start(self, payload: bytes) -> bool:
        if not payload:
            return False
        if payload[0] & 0x1F == _FU_A:
            return len(payload) > 1 and bool(payload[1] & 0x80)
        return True

    def assemble(self, packets: list[RtpView], arrival_s: float) -> EncodedFrame:
        nals = nal_units(packets)
        types = {nal[0] & 0x1F for nal in nals}
        for nal in nals:
            kind = nal[0] & 0x1F
            if kind == _NAL_SPS:
                self.sps = nal
            elif kind == _NAL_PPS:
                self.pps = nal
        keyframe = _NAL_IDR in types
        parameter_sets = b""
        size: tuple[int, int] | None = None
        if keyframe:
            if self.sps is None or self.pps is None:
                raise ValueError("H.264 IDR picture without any SPS/PPS seen")
            parameter_sets = ANNEX_B_START + self.sps + ANNEX_B_START + self.pps
            size = sps_size(self.sps)  # a broken SPS: the frame is dropped as MALFORMED
            if _NAL_SPS not in types or _NAL_PPS not in types:
                nals = [self.sps, self.pps, *nals]
        data = b"".join(ANNEX_B_START + nal for nal in nals)
        return EncodedFrame(data, packets[0].timestamp, packets[0].ssrc, keyframe, arrival_s,
                            size, parameter_sets)


def nal_units(packets: list[RtpView]) -> list[bytes]:
    """The NAL units of one access unit's packets, in order; ValueError on a malformed payload."""
    nals: list[bytes] = []
    fragment: bytearray | None = None
    for packet in packets:
        payload = packet.payload
        if not payload:
            raise ValueError("H.264 RTP packet has an empty payload")
        kind = payload[0] & 0x1F
        if kind == _FU_A:
            if len(payload) < 3:
                raise ValueError("H.264 FU-A packet is truncated")
            fu = payload[1]
            if fu & 0x80:
                if fragment is not None:
                    raise ValueError("H.264 FU-A start inside an unfinished fragmented unit")
                fragment = bytearray(((payload[0] & 0xE0) | (fu & 0x1F),))
            elif fragment is None:
                raise ValueError("H.264 FU-A continuation without its start")
            fragment += payload[2:]
            if fu & 0x40:
                nals.append(bytes(fragment))
                fragment = None
            continue
        if fragment is not None:
            raise ValueError("H.264 fragmented unit was not finished")
        if 1 <= kind <= 23:
            nals.append(payload)
        elif kind == _STAP_A:
            pos, size = 1, len(payload)
            while pos < size:
                if pos + 2 > size:
                    raise ValueError("H.264 STAP-A unit size is truncated")
                length = (payload[pos] << 8) | payload[pos + 1]
                pos += 2
                if length == 0 or pos + length > size:
                    raise ValueError(f"H.264 STAP-A unit of {length} bytes overruns the packet")
                nals.append(payload[pos:pos + length])
                pos += length
        else:
            raise ValueError(f"H.264 NAL unit type {kind} is not supported (mode 0/1 only)")
    if fragment is not None:
        raise ValueError("H.264 fragmented unit was not finished")
    if not nals:
        raise ValueError("H.264 access unit has no NAL unit")
    return nals


# Constructors, not type[Depacketizer]: each codec takes its own keyword options.
_DEPACKETIZERS: dict[str, Callable[..., Depacketizer]] = {
    "vp8": Vp8Depacketizer,
    "opus": OpusDepacketizer,
    "h264": H264Depacketizer,
}


def depacketizer_for(codec: str, **kwargs: float) -> Depacketizer:
    """A depacketizer for a codec name ("vp8", "opus", "h264"; case-insensitive)."""
    try:
        cls = _DEPACKETIZERS[codec.lower()]
    except KeyError:
        raise ValueError(f"no depacketizer for codec {codec!r}") from None
    return cls(**kwargs)
