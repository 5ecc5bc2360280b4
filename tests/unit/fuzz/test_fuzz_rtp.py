"""Fuzz target: RTP as the SFU parses it (``RtpView``) and the Publisher's and Subscriber's
handlers, on random bytes and on seeded mutations of valid packets.

Properties: ``RtpView.parse`` returns or raises ValueError; the handlers never raise (an
exception there is caught by aiortc_hooks and costs a packet, but it is still a bug).
"""

from __future__ import annotations

import struct
from collections import Counter

from aiortc.rtp import RtcpPacket, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from sfu.wire.rtp_packet import RtpView
from tests.unit.fuzz.helpers import (
    FUZZ,
    MUTATIONS,
    VIDEO_SSRC,
    _aiortc_map,
    _rtp_length_fields,
    check_rtp_view,
    feed,
    harness,
    mutants,
    valid_rtcp_packets,
    valid_rtp_packets,
)


def test_valid_material_is_valid() -> None:
    for data in valid_rtp_packets():
        RtpView.parse(data)
        RtpPacket.parse(data, _aiortc_map())
    for data in valid_rtcp_packets():
        assert RtcpPacket.parse(data)


@FUZZ
@given(st.binary(max_size=1500))
def test_rtp_view_random_bytes(data: bytes) -> None:
    check_rtp_view(data)


@FUZZ
@given(st.binary(min_size=12, max_size=1500))
def test_rtp_view_random_bytes_with_rtp_version(data: bytes) -> None:
    check_rtp_view(bytes([0x80 | (data[0] & 0x3F)]) + data[1:])


def test_rtp_view_mutated_packets() -> None:
    outcomes: Counter[str] = Counter()
    for data in mutants(valid_rtp_packets(), _rtp_length_fields, 5 * MUTATIONS, seed=1):
        try:
            RtpView.parse(data)
            outcomes["ok"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert outcomes["ok"] > MUTATIONS // 2 and outcomes["ValueError"] > MUTATIONS // 2, outcomes


async def test_handlers_random_bytes() -> None:
    known: Counter[str] = Counter()
    async with harness() as h:

        @FUZZ
        @given(st.binary(max_size=1500))
        def fuzz(data: bytes) -> None:
            feed(h, data, known)

        @FUZZ
        @given(st.binary(min_size=12, max_size=300))
        def fuzz_valid_version(data: bytes) -> None:
            # random bytes that look like RTP/RTCP version 2, with our SSRCs now and then
            data = bytearray(data)
            data[0] = 0x80 | (data[0] & 0x3F)
            if data[1] & 1:
                struct.pack_into("!I", data, 8, VIDEO_SSRC)
            feed(h, bytes(data), known)

        fuzz()
        fuzz_valid_version()


async def test_handlers_mutated_rtp() -> None:
    known: Counter[str] = Counter()
    async with harness() as h:
        for data in mutants(valid_rtp_packets(), _rtp_length_fields, MUTATIONS, seed=2):
            feed(h, data, known)
        assert h.publisher.drops, "no mutant was dropped: the mutations do nothing"
        assert sum(p.packets_received for p in h.publisher.producers.values()) > MUTATIONS // 4
