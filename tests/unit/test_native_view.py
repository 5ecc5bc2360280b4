"""``native.parse_view`` / ``native.receive_view`` (sfu/_fanout_receive.c): an incoming packet's
RTP header parsed in C into the ``RtpView`` the publisher reads.

Every byte reaching it is an attacker's. For any input, the C parser either gives an RtpView
equal slot for slot to ``RtpView.parse``'s, or None, and then Python's parser decides (it
raises for what it refuses, or parses the shapes left to it: the two-byte extension profile).
It never raises and never crashes. Corpora: hand-made shapes and every truncation of them,
3,000 random datagrams from a fixed seed, and Janus' public RTP fuzzing corpus when
DIEMCAU_PUBLIC_CORPORA names it. The publisher then treats the packets alike whichever way
they were parsed (same drops, same packets out).
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pylibsrtp
import pytest

from sfu import native, native_srtp
from sfu.wire.rtp_packet import RtpView
from tests.unit.test_participant_isolation import (
    AUDIO_SSRC,
    OPUS_FRAME,
    OPUS_PT,
    PUB_ABS,
    PUB_AUDIO_LEVEL,
    PUB_MID,
    VIDEO_RTX_SSRC,
    VIDEO_SSRC,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    VP8_RTX_PT,
    ext_block,
    raw_rtp,
    room,
)

pytestmark = pytest.mark.skipif(not native.view_ready(),
                                reason="sfu._fanout not built (pip install -e .)")

SLOTS = RtpView.__slots__
KEY = bytes(range(30))


def shapes() -> list[bytes]:
    """Genuine and broken packets of every shape the parser branches on."""
    one = ext_block([(PUB_AUDIO_LEVEL, b"\x90"), (PUB_ABS, b"\x01\x02\x03"), (PUB_MID, b"1")])
    packets = [
        raw_rtp(VP8_PT, 1, VIDEO_SSRC, VP8_KEY),
        raw_rtp(VP8_PT, 65535, VIDEO_SSRC, VP8_DELTA, one, ts=0xFFFFFFFF),
        raw_rtp(OPUS_PT, 2, AUDIO_SSRC, b"", one),  # no payload
        raw_rtp(VP8_PT, 3, VIDEO_SSRC, VP8_DELTA, ext_block([(1, b"ab")], two_byte=True)),
        raw_rtp(VP8_PT, 4, VIDEO_SSRC, VP8_DELTA, ext_block([(2, b"x")], words=9)),  # too long
        raw_rtp(VP8_PT, 5, VIDEO_SSRC, VP8_DELTA, ext_block([(15, b"x"), (2, b"y")])),  # stop
        raw_rtp(VP8_PT, 6, VIDEO_SSRC, VP8_DELTA, b"\xbe\xde\x00\x02\x00\x00\x21\xaa\xbb\xcc"
                b"\x00\x00"),  # padding bytes between elements
        raw_rtp(VP8_PT, 7, VIDEO_SSRC, VP8_DELTA, b"\xbe\xde\x00\x01\x2f\x00\x00\x00"),  # past end
        raw_rtp(VP8_PT, 8, VIDEO_SSRC, VP8_DELTA, b"\xbe\xde\x00\x02\x10\x01\x10\x02"
                b"\x00\x00\x00\x00"),  # the same id twice: the last one wins, as in Python
        raw_rtp(VP8_PT, 9, VIDEO_SSRC, VP8_DELTA, b"\x12\x34\x00\x01abcd"),  # unknown profile
        raw_rtp(VP8_RTX_PT, 10, VIDEO_RTX_SSRC, b"\x03\xe8" + VP8_DELTA),
    ]
    csrc = bytearray(raw_rtp(VP8_PT, 11, VIDEO_SSRC, VP8_DELTA))
    csrc[0] |= 2
    packets.append(bytes(csrc[:12]) + bytes(8) + bytes(csrc[12:]))  # two CSRCs
    padded = bytearray(raw_rtp(VP8_PT, 12, VIDEO_SSRC, VP8_DELTA + bytes(3) + b"\x04", one))
    padded[0] |= 0x20
    packets.append(bytes(padded))  # 4 bytes of padding
    for pad in (0, 255):
        bad = bytearray(padded)
        bad[-1] = pad
        packets.append(bytes(bad))  # a padding length of 0, or past the header
    packets.append(b"\x40" + packets[0][1:])  # version 1
    return packets


def corpus() -> list[bytes]:
    rng = random.Random(1111)
    out = []
    for packet in shapes():
        out += [packet[:cut] for cut in range(len(packet) + 1)]  # every truncation
    for _ in range(3000):
        size = rng.choice((rng.randrange(0, 40), rng.randrange(0, 300)))
        data = bytearray(rng.randbytes(size))
        if data and rng.random() < 0.8:
            data[0] = 0x80 | (data[0] & 0x3F)  # RTP-shaped: version 2, any flags
        if len(data) > 16 and rng.random() < 0.5:
            data[0] |= 0x10
            data[12:14] = b"\xbe\xde"  # the one-byte profile, any length
        out.append(bytes(data))
    public = os.environ.get("DIEMCAU_PUBLIC_CORPORA")
    if public:
        out += [p.read_bytes() for p in sorted(
            Path(public, "fuzzers", "corpora", "rtp_fuzzer").glob("*"))[:3000] if p.is_file()]
    return out


def same_view(c_view: RtpView, data: bytes) -> None:
    python = RtpView.parse(data)  # the C parser gave a view: Python must accept it too
    for slot in SLOTS:
        assert getattr(c_view, slot) == getattr(python, slot), slot
    assert type(c_view.extensions) is dict and type(c_view.payload) is bytes


def test_the_c_parser_agrees_with_rtp_view_parse_on_hostile_input() -> None:
    parsed = refused = two_byte = 0
    for data in corpus():
        view = native.parse_view(data)
        if view is not None:
            assert type(view) is RtpView
            same_view(view, data)
            parsed += 1
            continue
        try:
            python = RtpView.parse(data)
        except ValueError:
            refused += 1
            continue
        # Python accepts what C left to it: only the two-byte profile is left on purpose.
        assert data[0] & 0x10 and struct.unpack_from("!H", data, 12 + 4 * (data[0] & 15))[0] \
            & 0xFFF0 == 0x1000, data.hex()
        assert python.sequence_number == struct.unpack_from("!H", data, 2)[0]
        two_byte += 1
    assert parsed > 400 and refused > 400 and two_byte >= 1, (parsed, refused, two_byte)


def test_parse_view_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        native.parse_view(bytearray(raw_rtp(VP8_PT, 1, VIDEO_SSRC, VP8_KEY)))  # type: ignore[arg-type]


def test_receive_view_unprotects_and_parses_as_receive_then_parse() -> None:
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    rx_check = pylibsrtp.Session(pylibsrtp.Policy(key=KEY,
                                                  ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    ctx = native_srtp.srtp_context_address(rx)
    assert ctx is not None
    seen = set()
    for seq, packet in enumerate(shapes()):
        if len(packet) < 12 or packet[0] >> 6 != 2:
            continue
        packet = packet[:2] + struct.pack("!H", 100 + seq) + packet[4:]  # no replay
        protected = tx.protect(packet)
        got, arrival = native.receive_view(ctx, -1, protected)
        assert arrival == -1
        assert rx_check.unprotect(protected) == packet
        if isinstance(got, RtpView):
            same_view(got, packet)
            seen.add("view")
        else:
            assert got == packet  # handed back for RtpView.parse to decide
            seen.add("bytes")
    assert seen == {"view", "bytes"}
    genuine = tx.protect(raw_rtp(VP8_PT, 500, VIDEO_SSRC, VP8_DELTA))
    forged = bytearray(genuine)
    forged[-1] ^= 1
    rng = random.Random(7)
    for data in [b"", genuine[:11], bytes(forged), b"\x80" * 1501,
                 *(rng.randbytes(rng.randrange(0, 200)) for _ in range(300))]:
        assert native.receive_view(ctx, -1, data) == (None, -1)
    assert isinstance(native.receive_view(ctx, -1, genuine)[0], RtpView)
    assert native.receive_view(ctx, -1, genuine) == (None, -1)  # a replay is refused


async def test_the_publisher_treats_a_c_parsed_packet_as_a_python_parsed_one() -> None:
    """Two publishers get the same datagrams, one as bytes (``_on_rtp``), one as the hook
    hands them (``receive_view``'s RtpView, or bytes when C left the parsing to Python)."""
    level = ext_block([(PUB_AUDIO_LEVEL, b"\x10")])
    stream = [raw_rtp(VP8_PT, 1001 + i, VIDEO_SSRC, VP8_KEY if i == 0 else VP8_DELTA)
              for i in range(20)]
    stream += [raw_rtp(OPUS_PT, 2001 + i, AUDIO_SSRC, OPUS_FRAME, level, ts=960 * i)
               for i in range(10)]
    stream += [raw_rtp(VP8_RTX_PT, 7, VIDEO_RTX_SSRC, b"")]  # padding-only RTX
    stream += [raw_rtp(OPUS_PT, 2020, AUDIO_SSRC, OPUS_FRAME, ext_block(
        [(PUB_AUDIO_LEVEL, b"\x10\x11")]))]  # a wrong-size audio level
    stream += corpus()[:400]
    async with room() as by_bytes, room() as by_view:
        views = 0
        for data in stream:
            by_bytes.send(data)
            by_view.now += 0.005
            view = native.parse_view(data)
            if view is None:
                by_view.publisher._on_rtp(data, int(by_view.now * 1000))
            else:
                views += 1
                by_view.publisher._on_rtp_view(view, int(by_view.now * 1000))
        assert views > 100
        assert by_view.drops() == by_bytes.drops()
        for mid, writer in by_bytes.out.items():
            # each consumer starts its sequence numbers and timestamps at random: the rest
            # of every packet (header fields, extensions, payload) must match
            assert [p[:2] + p[8:] for p in by_view.out[mid].rtp] \
                == [p[:2] + p[8:] for p in writer.rtp], mid
        assert by_bytes.out["0"].rtp and by_bytes.out["1"].rtp  # audio and VP8 went out
        # the same NACKs (each publisher's own RTCP sender SSRC is random)
        assert by_bytes.rtcp.rtcp and [p[:4] + p[8:] for p in by_view.rtcp.rtcp] \
            == [p[:4] + p[8:] for p in by_bytes.rtcp.rtcp]
