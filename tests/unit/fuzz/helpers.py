"""Shared material for the fuzz targets in this package: self-made valid RTP/RTCP built with
aiortc's own classes, seeded mutations (bit flips, truncations, length-field corruption, splices),
a real Publisher + Subscriber pair wired by hand (``Harness``), and the bounded hypothesis
settings every target uses (``FUZZ``: derandomized, no database, so CI is reproducible).
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
)
from hypothesis import HealthCheck, settings

from sfu.consumer import Consumer
from sfu.negotiation import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID
from sfu.producer import Producer
from sfu.publisher import Publisher
from sfu.subscriber import Subscriber
from sfu.types import Codec, Kind
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import ListWriter

FIXTURE = Path(__file__).parents[2] / "data" / "chrome156_simulcast_offer.sdp"

MAX_EXAMPLES = 300
MUTATIONS = 1500
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# The publisher's negotiated ids (as in the Chrome offer) and the SSRCs of its tracks.
MID_ID, ABS_SEND_TIME_ID, AUDIO_LEVEL_ID = 9, 2, 1
VIDEO_SSRC, VIDEO_RTX_SSRC, AUDIO_SSRC = 0x1000, 0x1001, 0x2000
LEARNT_SSRC, H264_SSRC = 0x3000, 0x4000  # announced only through the MID extension
VP8, VP8_RTX, OPUS, H264, H264_RTX = 96, 97, 111, 102, 103
# The subscriber side: the consumers' SSRCs and their (random) RTX SSRCs.
SUB_SSRC_BASE = 0x7000


# -- a cheap, real Publisher + Subscriber pair -------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _parameters(codecs: list[tuple[str, int, int, int | None]], ssrc: int | None,
                rtx_ssrc: int | None) -> RTCRtpReceiveParameters:
    params = []
    for mime, clock_rate, pt, rtx_pt in codecs:
        params.append(RTCRtpCodecParameters(mimeType=mime, clockRate=clock_rate, payloadType=pt))
        if rtx_pt is not None:
            params.append(RTCRtpCodecParameters(
                mimeType=mime.split("/")[0] + "/rtx", clockRate=clock_rate, payloadType=rtx_pt,
                parameters={"apt": pt}))
    encodings = []
    if ssrc is not None:
        rtx = RTCRtpRtxParameters(ssrc=rtx_ssrc) if rtx_ssrc is not None else None
        encodings.append(RTCRtpDecodingParameters(ssrc=ssrc, payloadType=codecs[0][2], rtx=rtx))
    return RTCRtpReceiveParameters(
        codecs=params,
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=MID_ID, uri=URI_MID),
            RTCRtpHeaderExtensionParameters(id=ABS_SEND_TIME_ID, uri=URI_ABS_SEND_TIME),
            RTCRtpHeaderExtensionParameters(id=AUDIO_LEVEL_ID, uri=URI_AUDIO_LEVEL),
        ],
        encodings=encodings,
    )


TRACKS = [
    # mid, kind, codecs, SSRC (None: learnt from the MID extension), RTX SSRC
    ("0", Kind.VIDEO, [("video/VP8", 90000, VP8, VP8_RTX)], VIDEO_SSRC, VIDEO_RTX_SSRC),
    ("1", Kind.AUDIO, [("audio/opus", 48000, OPUS, None)], AUDIO_SSRC, None),
    ("2", Kind.VIDEO, [("video/VP8", 90000, VP8, VP8_RTX)], None, None),
    ("3", Kind.VIDEO, [("video/H264", 90000, H264, H264_RTX)], None, None),
]


class Harness:
    """A real Publisher and Subscriber wired by hand, as a Room would, without any network.

    The publisher's producers are negotiated through the same ``_configure`` path that aiortc's
    receivers call; every producer has one consumer on the subscriber, writing into a list.
    """

    def __init__(self, publisher_pc: RTCPeerConnection, subscriber_pc: RTCPeerConnection) -> None:
        self.clock = Clock()
        self.writer = ListWriter(keep_rtp=600, keep_rtcp=100)  # bounded: long runs
        self.subscriber = Subscriber("sub", subscriber_pc, self._send_offer, self.clock)
        self.publisher = Publisher("pub", publisher_pc, self._on_producer, self.clock)
        self.publisher._writer = self.writer  # type: ignore[assignment]  # the RTCP it sends
        self.consumers: list[Consumer] = []
        for mid, kind, codecs, ssrc, rtx_ssrc in TRACKS:
            producer = Producer(f"pub:{mid}", "pub", kind, mid, self.publisher._send_pli)
            self.publisher.producers[mid] = producer
            self.publisher._configure(producer, _parameters(codecs, ssrc, rtx_ssrc))
        self.prime()

    async def _send_offer(self, sdp: str, tracks: dict[str, dict[str, str]]) -> None:
        pass

    def _on_producer(self, producer: Producer) -> None:
        index = len(self.consumers)
        ssrc, rtx_ssrc = SUB_SSRC_BASE + 2 * index, SUB_SSRC_BASE + 2 * index + 1
        consumer = Consumer(producer, "sub", producer.mid, ssrc, rtx_ssrc, self.writer)
        codec = producer.codec
        assert codec is not None
        rtx = None if codec.rtx_payload_type is None else codec.payload_type + 11
        consumer.configure(Codec(codec.mime_type, codec.clock_rate, codec.payload_type + 10, rtx),
                           audio_level_id=3, abs_send_time_id=4)
        producer.consumers.append(consumer)
        self.subscriber.consumers[producer.id] = consumer
        self.subscriber._by_ssrc[ssrc] = consumer
        self.subscriber._by_ssrc[rtx_ssrc] = consumer
        self.consumers.append(consumer)

    def prime(self) -> None:
        """Valid traffic first, so consumers are synced and have history to answer NACKs."""
        for data in valid_rtp_packets():
            self.rtp(data)
        assert all(c.packets_sent for c in self.consumers), "priming forwarded nothing"

    def rtp(self, data: bytes) -> None:
        self.clock.now += 0.003
        self.publisher._on_rtp(data, int(self.clock.now * 1000))

    def publisher_rtcp(self, data: bytes) -> None:
        self.publisher._on_rtcp(data)

    def subscriber_rtcp(self, data: bytes) -> None:
        self.clock.now += 0.003
        self.subscriber.on_rtcp(data)

    def sent_seqs(self) -> list[int]:
        """Sequence numbers the first (video) consumer sent: what a subscriber may NACK."""
        ssrc = self.consumers[0].ssrc
        return sorted({struct.unpack_from("!H", p, 2)[0] for p in self.writer.rtp
                       if struct.unpack_from("!I", p, 8)[0] == ssrc})

    async def close(self) -> None:
        await self.subscriber.close()
        await self.publisher.close()


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    h = Harness(RTCPeerConnection(), RTCPeerConnection())
    try:
        yield h
    finally:
        await h.close()


# -- valid material, built with aiortc ---------------------------------------------------------


def _aiortc_map() -> HeaderExtensionsMap:
    extensions_map = HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=MID_ID, uri=URI_MID),
        RTCRtpHeaderExtensionParameters(id=ABS_SEND_TIME_ID, uri=URI_ABS_SEND_TIME),
        RTCRtpHeaderExtensionParameters(id=AUDIO_LEVEL_ID, uri=URI_AUDIO_LEVEL),
        RTCRtpHeaderExtensionParameters(
            id=4, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
        RTCRtpHeaderExtensionParameters(id=10, uri="urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
    ]))
    return extensions_map


def _packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, *, marker: int = 0,
            mid: str | None = None, abs_send_time: int | None = None,
            audio_level: tuple[bool, int] | None = None, twcc: int | None = None,
            rid: str | None = None, csrc: list[int] | None = None, padding: int = 0) -> bytes:
    packet = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq & 0xFFFF,
                       timestamp=ts & 0xFFFFFFFF, ssrc=ssrc, payload=payload)
    packet.extensions.mid = mid
    packet.extensions.abs_send_time = abs_send_time
    packet.extensions.audio_level = audio_level
    packet.extensions.transport_sequence_number = twcc
    packet.extensions.rtp_stream_id = rid
    packet.csrc = csrc or []
    packet.padding_size = padding
    data = packet.serialize(_aiortc_map())
    if padding:  # aiortc pads with os.urandom: make the material deterministic
        data = data[:-padding] + bytes(padding - 1) + bytes([padding])
    return data


VP8_KEY = bytes([0x90, 0x80, 0x12]) + bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(40)
VP8_DELTA = bytes([0x90, 0x80, 0x13]) + bytes([0x31, 0x02, 0x00]) + bytes(40)
VP8_WIDE_PID = bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40]) + bytes([0x10, 0x02, 0x00]) + bytes(20)
H264_STAP_A = bytes([0x18, 0x00, 0x05, 0x67, 0x42, 0x00, 0x1F, 0xE9, 0x00, 0x03, 0x68, 0xCE, 0x38,
                     0x00, 0x06, 0x65, 0x88, 0x84, 0x00, 0x33, 0xFF])
H264_FU_A = bytes([0x7C, 0x85]) + bytes(50)
OPUS_FRAME = bytes([0xFC, 0xFF, 0xFE]) + bytes(60)


def valid_rtp_packets() -> list[bytes]:
    out = []
    seq, ts = 100, 9000
    for i in range(6):
        payload = VP8_KEY if i == 0 else VP8_DELTA
        out.append(_packet(VP8, seq + i, ts + 3000 * i, VIDEO_SSRC, payload, marker=1, mid="0",
                           abs_send_time=(i * 0x4000) & 0xFFFFFF, twcc=i))
        out.append(_packet(OPUS, 500 + i, 48000 + 960 * i, AUDIO_SSRC, OPUS_FRAME, mid="1",
                           audio_level=(True, 30 + i)))
        out.append(_packet(VP8, 700 + i, 1000 + 3000 * i, LEARNT_SSRC, payload, mid="2",
                           rid="h", abs_send_time=(i * 0x4100) & 0xFFFFFF))
        out.append(_packet(H264, 900 + i, 5000 + 3000 * i, H264_SSRC,
                           H264_STAP_A if i == 0 else bytes([0x41]) + bytes(30), mid="3"))
    # a lost video packet (seq 106 skipped: NACK upstream), then its retransmission over RTX
    out.append(_packet(VP8, 107, 30000, VIDEO_SSRC, VP8_DELTA, mid="0", abs_send_time=0x20000))
    out.append(_packet(VP8_RTX, 1, 27000, VIDEO_RTX_SSRC, struct.pack("!H", 106) + VP8_DELTA,
                       mid="0"))
    out.append(_packet(VP8_RTX, 2, 27000, VIDEO_RTX_SSRC, b"", padding=200))  # a probe
    out.append(_packet(VP8, 108, 33000, VIDEO_SSRC, VP8_WIDE_PID, csrc=[1, 2]))
    out.append(_packet(H264, 907, 30000, H264_SSRC, H264_FU_A, mid="3", padding=3))
    out.append(_packet(VP8, 109, 36000, VIDEO_SSRC, VP8_DELTA, mid="m" * 20))  # two-byte form
    out.append(_packet(VP8, 110, 39000, VIDEO_SSRC, b"", padding=255))  # padding only
    return out


def valid_rtcp_packets(harness_seqs: list[int] | None = None) -> list[bytes]:
    sub = [SUB_SSRC_BASE + i for i in range(2 * len(TRACKS))]
    lost = sorted(set(harness_seqs or [1, 2, 3, 40, 41, 60000]))
    report = RtcpReceiverInfo(ssrc=VIDEO_SSRC, fraction_lost=3, packets_lost=7,
                              highest_sequence=70000, jitter=12, lsr=0x12345678, dlsr=0x100)
    sr = RtcpSrPacket(ssrc=VIDEO_SSRC, sender_info=RtcpSenderInfo(
        ntp_timestamp=0xE1234567_89ABCDEF, rtp_timestamp=90000, packet_count=100,
        octet_count=120000), reports=[report])
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=VIDEO_SSRC, items=[(1, b"cname-abc")]),
                                  RtcpSourceInfo(ssrc=AUDIO_SSRC, items=[(1, b"x"), (6, b"t")])])
    rr = RtcpRrPacket(ssrc=sub[0], reports=[report, report])
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sub[0])
    fir = RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=sub[4],
                         fci=struct.pack("!LBxxx", sub[4], 3))
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sub[0], lost=lost)
    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                          fci=pack_remb_fci(2_500_000, [sub[0], sub[4]]))
    bye = RtcpByePacket(sources=[VIDEO_SSRC, AUDIO_SSRC])
    audio_sr = RtcpSrPacket(ssrc=AUDIO_SSRC, sender_info=RtcpSenderInfo(
        ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4))
    return [
        bytes(sr) + bytes(sdes),
        bytes(audio_sr),
        bytes(rr),
        bytes(rr) + bytes(pli),
        bytes(pli),
        bytes(fir),
        bytes(nack),
        bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sub[1], lost=lost[:2])),
        bytes(remb),
        bytes(rr) + bytes(remb) + bytes(nack) + bytes(fir),
        bytes(bye),
        bytes(sr) + bytes(sdes) + bytes(bye),
    ]


# -- mutations --------------------------------------------------------------------------------


def _flip_bits(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _set_byte(rng: random.Random, data: bytearray) -> None:
    data[rng.randrange(len(data))] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])


def _truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data)):]


def _extend(rng: random.Random, data: bytearray) -> None:
    data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))


def _cut_middle(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    del data[i : i + rng.randint(1, 16)]


def _rtp_length_fields(rng: random.Random, data: bytearray) -> None:
    """Corrupt what says how long things are: CC, X/P bits, extension words, padding byte."""
    choice = rng.randrange(5)
    if choice == 0:
        data[0] = (data[0] & 0xF0) | rng.randrange(16)  # CSRC count
    elif choice == 1:
        data[0] ^= rng.choice([0x10, 0x20, 0x30])  # X and/or P bit
    elif choice == 2 and data[0] & 0x10 and len(data) >= 16:
        pos = 12 + 4 * (data[0] & 0x0F)
        if pos + 4 <= len(data):
            words = struct.unpack_from("!H", data, pos + 2)[0]
            words = rng.choice([0, 1, 0xFF, 0xFFFF, words + 1, max(0, words - 1)])
            struct.pack_into("!H", data, pos + 2, words & 0xFFFF)
    elif choice == 3:
        data[-1] = rng.choice([0, 1, len(data) - 1, len(data), 0xFF]) & 0xFF  # padding length
    elif len(data) > 16:  # an extension element's length nibble / byte
        i = rng.randrange(16, min(len(data), 40))
        data[i] = (data[i] & 0xF0) | rng.randrange(16)


def _rtcp_length_fields(rng: random.Random, data: bytearray) -> None:
    """Corrupt an RTCP header's length or count, the padding bit, or a REMB/NACK count."""
    # walk to a random packet of the compound (trusting the lengths we have not corrupted yet)
    starts, pos = [], 0
    while pos + 4 <= len(data):
        starts.append(pos)
        pos += 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
    pos = rng.choice(starts) if starts else 0
    if pos + 4 > len(data):
        return
    choice = rng.randrange(5)
    if choice == 0:
        length = struct.unpack_from("!H", data, pos + 2)[0]
        new = rng.choice([0, 1, 0xFFFF, max(0, length - 1), length + 1])
        struct.pack_into("!H", data, pos + 2, new & 0xFFFF)
    elif choice == 1:
        data[pos] = (data[pos] & 0xE0) | rng.randrange(32)  # report/item count or fmt
    elif choice == 2:
        data[pos] ^= 0x20  # padding bit
    elif choice == 3:
        data[pos + 1] = rng.choice([200, 201, 202, 203, 204, 205, 206, 207, 192, 0])
    elif pos + 16 < len(data) and data[pos + 12 : pos + 16] == b"REMB":
        data[pos + 16] = rng.choice([0, 1, 2, 5, 255])  # number of SSRCs in the REMB


def _splice(rng: random.Random, data: bytearray, others: list[bytes]) -> None:
    other = rng.choice(others)
    data[rng.randrange(len(data)):] = other[rng.randrange(len(other)):]


def mutants(seeds: list[bytes], length_fields: Callable[[random.Random, bytearray], None],
            count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    simple = [_flip_bits, _set_byte, _truncate, _extend, _cut_middle, length_fields]
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if not data:
                break
            if rng.random() < 0.1:
                _splice(rng, data, seeds)
            else:
                rng.choice(simple)(rng, data)
        yield bytes(data)


# -- the properties ----------------------------------------------------------------------------


def _short_remb(data: bytes) -> bool:
    """A REMB whose SSRC count overruns its FCI: aiortc's unpack_remb_fci raises struct.error."""
    try:
        packets = RtcpPacket.parse(data)
    except ValueError:
        return False
    return any(
        isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP and p.fci[:4] == b"REMB"
        and len(p.fci) >= 8 and len(p.fci) < 8 + 4 * p.fci[4]
        for p in packets
    )


def check_rtp_view(data: bytes) -> None:
    try:
        view = RtpView.parse(data)
    except ValueError:
        return
    assert view.payload == data[len(data) - view.padding_size - len(view.payload):
                                len(data) - view.padding_size]
    assert 0 <= view.payload_type < 128 and view.marker in (0, 1)


def feed(h: Harness, data: bytes, known: Counter[str]) -> None:
    """Every handler gets every input (RTP and RTCP share the bundled transport's bytes)."""
    check_rtp_view(data)
    h.rtp(data)
    h.publisher_rtcp(data)
    h.subscriber_rtcp(data)
    if _short_remb(data):
        known["short REMB survived"] += 1
