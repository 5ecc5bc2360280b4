"""A participant must not break the others (security issue 8), at the unit tier.

One publisher sends hostile RTP through a real ``Publisher`` (demultiplexing, extension checks,
SSRC learning) into real Producers and Consumers writing into lists. What a subscriber gets must
be something a strict receiver accepts: every forwarded packet is parsed here with aiortc's own
``RtpPacket.parse`` and extension map, and depayloaded with aiortc's depayloader, exactly as an
aiortc client would (its ``HeaderExtensionsMap.get`` raises ``struct.error`` on a 2-byte audio
level, and that exception closes the client's whole transport). Invalid packets are dropped and
counted by reason.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sfu.consumer import Consumer
from sfu.negotiation import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_TWCC
from sfu.negotiation import URI_VIDEO_ORIENTATION as URI_ORIENTATION
from sfu.producer import Producer
from sfu.publisher import NACK_MAX_GAP, SPARE_SSRCS, Publisher
from sfu.types import Codec, DropReason, Kind
from sfu.wire.h264 import inspect_h264
from sfu.wire.rtp_packet import RtpView
from sfu.wire.vp8 import inspect_vp8
from tests.unit.helpers import ListWriter

# The publisher's ids (as Chrome offers them) and the subscriber's (as the server offers them).
PUB_AUDIO_LEVEL, PUB_ABS, PUB_TWCC, PUB_MID, PUB_ORIENTATION = 1, 2, 3, 4, 13
SUB_AUDIO_LEVEL, SUB_ABS = 2, 3
VP8_PT, VP8_RTX_PT, OPUS_PT, H264_PT = 96, 97, 111, 102
VIDEO_SSRC, VIDEO_RTX_SSRC, AUDIO_SSRC, H264_SSRC = 0x1000, 0x1001, 0x2000, 0x3000

VP8_KEY = bytes([0x90, 0x80, 0x12]) + bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(40)
VP8_DELTA = bytes([0x90, 0x80, 0x13]) + bytes([0x31, 0x02, 0x00]) + bytes(40)
H264_IDR = bytes([0x65, 0x88, 0x84]) + bytes(30)
H264_DELTA = bytes([0x41, 0x9A]) + bytes(30)
OPUS_FRAME = bytes([0xFC, 0xFF, 0xFE]) + bytes(60)


def ext_block(elements: Iterable[tuple[int, bytes]], two_byte: bool = False,
              words: int | None = None) -> bytes:
    """A header extension block written by hand (so it can be wrong)."""
    if two_byte:
        body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
        profile = 0x1000
    else:
        body = b"".join(bytes([(i << 4) | ((len(v) - 1) & 0x0F)]) + v for i, v in elements)
        profile = 0xBEDE
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", profile, len(body) // 4 if words is None else words) + body


def raw_rtp(pt: int, seq: int, ssrc: int, payload: bytes, block: bytes = b"",
            ts: int | None = None) -> bytes:
    first = 0x90 if block else 0x80
    ts = seq * 3000 if ts is None else ts
    return struct.pack("!BBHII", first, 0x80 | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + block \
        + payload


def _parameters(mime: str, clock_rate: int, pt: int, rtx_pt: int | None, ssrc: int | None,
                rtx_ssrc: int | None) -> RTCRtpReceiveParameters:
    codecs = [RTCRtpCodecParameters(mimeType=mime, clockRate=clock_rate, payloadType=pt)]
    if rtx_pt is not None:
        codecs.append(RTCRtpCodecParameters(mimeType=mime.split("/")[0] + "/rtx",
                                            clockRate=clock_rate, payloadType=rtx_pt,
                                            parameters={"apt": pt}))
    encodings = []
    if ssrc is not None:
        rtx = RTCRtpRtxParameters(ssrc=rtx_ssrc) if rtx_ssrc is not None else None
        encodings.append(RTCRtpDecodingParameters(ssrc=ssrc, payloadType=pt, rtx=rtx))
    extensions = [(PUB_AUDIO_LEVEL, URI_AUDIO_LEVEL), (PUB_ABS, URI_ABS_SEND_TIME),
                  (PUB_TWCC, URI_TWCC), (PUB_MID, URI_MID), (PUB_ORIENTATION, URI_ORIENTATION)]
    return RTCRtpReceiveParameters(
        codecs=codecs, encodings=encodings,
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions],
    )


TRACKS = [  # mid, kind, mime, clock, pt, rtx pt, SSRC (None: learnt by MID), RTX SSRC
    ("0", Kind.AUDIO, "audio/opus", 48000, OPUS_PT, None, AUDIO_SSRC, None),
    ("1", Kind.VIDEO, "video/VP8", 90000, VP8_PT, VP8_RTX_PT, VIDEO_SSRC, VIDEO_RTX_SSRC),
    ("2", Kind.VIDEO, "video/H264", 90000, H264_PT, None, None, None),
]


class Room:
    """A real Publisher with one consumer per producer, as a Room wires them (no network)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.publisher = Publisher("pub", RTCPeerConnection(), self._on_producer, lambda: self.now)
        self.rtcp = ListWriter()
        self.publisher._writer = self.rtcp  # type: ignore[assignment]
        self.out: dict[str, ListWriter] = {}  # by mid
        self.consumers: dict[str, Consumer] = {}
        for mid, kind, mime, clock, pt, rtx_pt, ssrc, rtx_ssrc in TRACKS:
            producer = Producer(f"pub:{mid}", "pub", kind, mid, self.publisher._send_pli)
            self.publisher.producers[mid] = producer
            self.publisher._configure(producer, _parameters(mime, clock, pt, rtx_pt, ssrc,
                                                            rtx_ssrc))
        self.seq = {VIDEO_SSRC: 1000, AUDIO_SSRC: 2000, H264_SSRC: 3000}

    def _on_producer(self, producer: Producer) -> None:
        writer = self.out[producer.mid] = ListWriter()
        consumer = Consumer(producer, "sub", producer.mid, 0x7000 + int(producer.mid), 0x7100,
                            writer)
        codec = producer.codec
        assert codec is not None
        consumer.configure(Codec(codec.mime_type, codec.clock_rate, codec.payload_type + 10),
                           audio_level_id=SUB_AUDIO_LEVEL, abs_send_time_id=SUB_ABS)
        producer.consumers.append(consumer)
        self.consumers[producer.mid] = consumer

    def producer(self, mid: str) -> Producer:
        return self.publisher.producers[mid]

    def send(self, data: bytes) -> None:
        self.now += 0.005
        self.publisher._on_rtp(data, int(self.now * 1000))

    def next_seq(self, ssrc: int) -> int:
        self.seq[ssrc] += 1
        return self.seq[ssrc]

    def audio(self, block: bytes = b"", payload: bytes = OPUS_FRAME) -> None:
        if not block:
            block = ext_block([(PUB_AUDIO_LEVEL, b"\x10")])
        seq = self.next_seq(AUDIO_SSRC)
        self.send(raw_rtp(OPUS_PT, seq, AUDIO_SSRC, payload, block, ts=seq * 960))

    def vp8(self, payload: bytes, block: bytes = b"") -> None:
        self.send(raw_rtp(VP8_PT, self.next_seq(VIDEO_SSRC), VIDEO_SSRC, payload, block))

    def h264(self, payload: bytes) -> None:
        block = ext_block([(PUB_MID, b"2")])
        self.send(raw_rtp(H264_PT, self.next_seq(H264_SSRC), H264_SSRC, payload, block))

    def drops(self) -> dict[DropReason, int]:
        total: dict[DropReason, int] = dict(self.publisher.drops)
        for producer in self.publisher.producers.values():
            for reason, count in producer.drops.items():
                total[reason] = total.get(reason, 0) + count
        return total


@asynccontextmanager
async def room() -> AsyncIterator[Room]:
    r = Room()
    try:
        yield r
    finally:
        await r.publisher.close()
        await r.publisher.pc.close()


# -- what an aiortc subscriber does with each packet ---------------------------------------------

SUBSCRIBER_MAP = HeaderExtensionsMap()
SUBSCRIBER_MAP.configure(RTCRtpParameters(headerExtensions=[
    RTCRtpHeaderExtensionParameters(id=1, uri=URI_MID),
    RTCRtpHeaderExtensionParameters(id=SUB_AUDIO_LEVEL, uri=URI_AUDIO_LEVEL),
    RTCRtpHeaderExtensionParameters(id=SUB_ABS, uri=URI_ABS_SEND_TIME),
]))
CODEC_OF_MID = {
    "0": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=121),
    "1": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=106),
    "2": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=112),
}


def strict_receiver_accepts(r: Room) -> int:
    """Parse and depayload every forwarded packet as aiortc's receiver does: nothing may raise
    (aiortc itself tolerates only ValueError there; we expect not even that). Returns count."""
    count = 0
    for mid, writer in r.out.items():
        for data in writer.rtp:
            packet = RtpPacket.parse(data, SUBSCRIBER_MAP)
            assert packet.extensions.audio_level is None or mid == "0"
            if packet.payload:
                depayload(CODEC_OF_MID[mid], packet.payload)
            count += 1
    return count


def forwarded_seqs(writer: ListWriter) -> list[int]:
    return [struct.unpack_from("!H", p, 2)[0] for p in writer.rtp]


# -- header extensions ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [b"\x10\x20", b"\x10\x20\x30", bytes(16)])
async def test_audio_level_of_the_wrong_size_is_dropped_and_counted(level: bytes) -> None:
    async with room() as r:
        r.audio()
        r.audio(ext_block([(PUB_AUDIO_LEVEL, level)]))
        r.audio()
        out = r.out["0"]
        assert len(out.rtp) == 2, "the packet with a bad audio level was forwarded"
        assert r.drops() == {DropReason.BAD_EXTENSION: 1}
        first, second = forwarded_seqs(out)
        assert second == (first + 1) & 0xFFFF  # the gap is closed: no NACK for a dropped packet
        strict_receiver_accepts(r)
        assert RtpView.parse(out.rtp[1]).extensions[SUB_AUDIO_LEVEL] == b"\x10"


async def test_two_byte_form_is_read_and_rewritten_to_the_subscribers_one_byte_ids() -> None:
    async with room() as r:
        r.audio(ext_block([(PUB_AUDIO_LEVEL, b"\x85"), (PUB_MID, b"0"), (200, b"x" * 40)],
                          two_byte=True))
        r.audio(ext_block([(PUB_AUDIO_LEVEL, b""), (PUB_MID, b"0")], two_byte=True))
        assert len(r.out["0"].rtp) == 1
        view = RtpView.parse(r.out["0"].rtp[0])
        assert view.data[12:14] == b"\xbe\xde"
        assert set(view.extensions) == {SUB_AUDIO_LEVEL, SUB_ABS}  # id 200 and the MID stay
        assert view.extensions[SUB_AUDIO_LEVEL] == b"\x85"
        assert r.drops() == {DropReason.BAD_EXTENSION: 1}  # the empty audio level
        strict_receiver_accepts(r)


@pytest.mark.parametrize("element", [
    (PUB_ABS, b"\x01\x02"),  # abs-send-time is 3 bytes
    (PUB_ABS, b"\x01\x02\x03\x04"),
    (PUB_TWCC, b"\x01"),  # transport-cc sequence number is 2
    (PUB_TWCC, b"\x01\x02\x03"),
    (PUB_ORIENTATION, b"\x01\x02"),  # video orientation is 1
])
async def test_known_extensions_of_the_wrong_size_drop_the_packet(
        element: tuple[int, bytes]) -> None:
    async with room() as r:
        r.vp8(VP8_KEY)
        r.vp8(VP8_DELTA, ext_block([element]))
        r.vp8(VP8_DELTA)
        assert len(r.out["1"].rtp) == 2
        assert r.drops() == {DropReason.BAD_EXTENSION: 1}


async def test_a_mid_longer_than_16_bytes_is_refused() -> None:
    async with room() as r:
        r.h264(H264_IDR)
        r.send(raw_rtp(H264_PT, 5000, H264_SSRC, H264_DELTA,
                       ext_block([(PUB_MID, b"2" * 40)], True)))
        assert r.drops() == {DropReason.BAD_EXTENSION: 1}
        r.send(raw_rtp(H264_PT, 1, 0x4444, H264_IDR, ext_block([(PUB_MID, b"2" * 40)], True)))
        assert 0x4444 not in r.publisher._routes  # no track has that MID


async def test_unknown_extensions_are_not_forwarded() -> None:
    async with room() as r:
        r.vp8(VP8_KEY, ext_block([(7, b"\xff" * 5), (9, b"\x01"), (PUB_ABS, b"\x01\x02\x03")]))
        view = RtpView.parse(r.out["1"].rtp[0])
        assert set(view.extensions) == {SUB_ABS}  # regenerated abs-send-time only
        assert r.drops() == {}


@pytest.mark.parametrize("block", [
    ext_block([(PUB_AUDIO_LEVEL, b"\x10")], words=0xFFFF),  # longer than the packet
    b"\xbe\xde\x00",  # cut inside the block header
    b"\xbe\xde\x00\x01\x3f\x00\x00\x00",  # an element overrunning its block
])
async def test_truncated_extension_blocks_are_malformed(block: bytes) -> None:
    async with room() as r:
        r.audio()
        r.send(raw_rtp(OPUS_PT, 5000, AUDIO_SSRC, b"" if len(block) < 8 else OPUS_FRAME, block))
        assert len(r.out["0"].rtp) == 1
        assert r.drops() == {DropReason.MALFORMED: 1}


async def test_subscriber_ids_beyond_the_one_byte_form_are_not_used() -> None:
    async with room() as r:
        r.consumers["0"].configure(Codec("audio/opus", 48000, 121), audio_level_id=200,
                                   abs_send_time_id=15, twcc=None, twcc_id=300)
        r.audio()
        r.audio()
        assert len(r.out["0"].rtp) == 2  # forwarded, with no extension block at all
        assert all(p[0] & 0x10 == 0 for p in r.out["0"].rtp)


# -- payload headers --------------------------------------------------------------------------

BAD_VP8 = [
    bytes([0x90]),  # X set, extension byte missing
    bytes([0x90, 0x80]),  # I set, picture id missing
    bytes([0x90, 0x80, 0x81]),  # M set, second picture id byte missing
    bytes([0x90, 0x40]),  # L set, TL0PICIDX missing
    bytes([0x90, 0x20]),  # T set, TID byte missing
    bytes([0x90, 0xF0, 0x81, 0x01, 0x02, 0x03]),  # every field present, no VP8 data
    bytes([0x10, 0x02, 0x00]) + bytes(3),  # a key frame of 6 bytes (its header needs 10)
    bytes([0x10, 0x01]),  # a frame start shorter than the 3-byte frame tag
]
BAD_H264 = [
    bytes([0x65]),  # one byte
    bytes([0xE5, 0x88, 0x00]),  # forbidden bit set
    bytes([0x00, 0x11, 0x22]),  # type 0
    bytes([0x19, 0x00, 0x02, 0x65, 0x00]),  # STAP-B (25): not in packetization-mode 1
    bytes([0x1D, 0x85, 0x00]),  # FU-B (29)
    bytes([0x1F, 0x00, 0x00]),  # type 31
    bytes([0x18, 0x00, 0x09, 0x67, 0x42]),  # STAP-A unit overruns the payload
    bytes([0x18, 0x00, 0x00, 0x67]),  # STAP-A unit of size 0
    bytes([0x18, 0x00, 0x02, 0x80, 0x42]),  # STAP-A unit with F set
    bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00]),  # trailing byte after the last unit
    bytes([0x7C, 0xC5, 0x00]),  # FU-A with both S and E
    bytes([0x7C, 0x9C, 0x00]),  # FU-A of an FU-A
    bytes([0x7C, 0x85]),  # FU-A without data
]


@pytest.mark.parametrize("payload", BAD_VP8, ids=lambda p: p.hex())
async def test_invalid_vp8_descriptors_are_dropped_and_counted(payload: bytes) -> None:
    assert inspect_vp8(payload) == -1
    async with room() as r:
        r.vp8(VP8_KEY)
        r.vp8(payload)
        r.vp8(VP8_DELTA)
        out = r.out["1"]
        assert len(out.rtp) == 2
        assert r.drops() == {DropReason.BAD_PAYLOAD: 1}
        first, second = forwarded_seqs(out)
        assert second == (first + 1) & 0xFFFF
        assert strict_receiver_accepts(r) == 2


@pytest.mark.parametrize("payload", BAD_H264, ids=lambda p: p.hex())
async def test_invalid_h264_nal_units_are_dropped_and_counted(payload: bytes) -> None:
    assert inspect_h264(payload) == -1
    async with room() as r:
        r.h264(H264_IDR)
        r.h264(payload)
        r.h264(H264_DELTA)
        assert len(r.out["2"].rtp) == 2
        assert r.drops() == {DropReason.BAD_PAYLOAD: 1}
        assert strict_receiver_accepts(r) == 2


def test_valid_payloads_are_classified() -> None:
    assert inspect_vp8(VP8_KEY) == 1 and inspect_vp8(VP8_DELTA) == 0
    assert inspect_vp8(bytes([0x00, 0x01])) == 0  # continuation of a frame: 1 byte of data is fine
    assert inspect_h264(H264_IDR) == 1 and inspect_h264(H264_DELTA) == 0
    stap = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE, 0x00, 0x02, 0x65, 0x88])
    assert inspect_h264(stap) == 1
    assert inspect_h264(bytes([0x7C, 0x85, 0x00])) == 1  # FU-A start of an IDR
    assert inspect_h264(bytes([0x7C, 0x45, 0x00])) == 0  # its end


# -- SSRCs ------------------------------------------------------------------------------------


async def test_ssrc_churn_is_bounded_and_counted() -> None:
    """Thousands of new SSRCs claiming a track by MID: the table stays bounded, the rest is
    counted and forgotten, and the track's real SSRC keeps flowing."""
    async with room() as r:
        r.vp8(VP8_KEY)
        # a renegotiation configures the track again: its SDP SSRCs must not count twice
        _mid, _kind, mime, clock, pt, rtx_pt, ssrc, rtx_ssrc = TRACKS[1]
        r.publisher._configure(r.producer("1"), _parameters(mime, clock, pt, rtx_pt, ssrc,
                                                            rtx_ssrc))
        routes_before = len(r.publisher._routes)
        mid_block = ext_block([(PUB_MID, b"1"), (PUB_ABS, b"\x00\x00\x01")])
        for i in range(3000):
            r.send(raw_rtp(VP8_PT, i, 0x10000 + i, VP8_DELTA, mid_block))
        for i in range(1000):  # no MID at all: unknown, and never stored either
            r.send(raw_rtp(VP8_PT, i, 0x20000 + i, VP8_DELTA))
        learnt = len(r.publisher._routes) - routes_before
        # the video track had 2 SSRCs from the SDP; one layer allows 2 + SPARE_SSRCS in all
        assert learnt == SPARE_SSRCS
        drops = r.drops()
        assert drops[DropReason.SSRC_LIMIT] == 3000 - SPARE_SSRCS
        assert drops[DropReason.UNKNOWN_SSRC] == 1000
        r.publisher.estimate_now()  # the estimator takes its samples in batches
        assert len(r.publisher._estimator.ssrcs) <= 2 + SPARE_SSRCS
        # H264's SSRC is learnt by MID too: its own allowance is untouched by the video churn
        r.h264(H264_IDR)
        assert len(r.out["2"].rtp) == 1


async def test_a_sequence_jump_does_not_become_a_storm_of_nacks() -> None:
    async with room() as r:
        r.vp8(VP8_KEY)
        for _ in range(50):  # alternate between two far-apart sequence ranges
            for seq in (r.seq[VIDEO_SSRC] + 30000, r.seq[VIDEO_SSRC] + 1):
                r.seq[VIDEO_SSRC] = seq
                r.send(raw_rtp(VP8_PT, seq, VIDEO_SSRC, VP8_DELTA))
        assert r.rtcp.rtcp == []  # a jump is not loss: nothing to NACK
        route = r.publisher._routes[VIDEO_SSRC]
        assert route.nack is not None and len(route.nack.missing) <= NACK_MAX_GAP
        # real loss is still NACKed
        r.seq[VIDEO_SSRC] += 3
        r.vp8(VP8_DELTA)
        assert len(r.rtcp.rtcp) == 1
