"""Fuzz target: RTCP compounds (SR, RR, SDES, BYE, PLI, FIR, NACK, REMB) through aiortc's
``RtcpPacket.parse`` as the Publisher's and Subscriber's handlers use it, on seeded mutations of
valid compounds; the handlers never raise and still work on valid input afterwards.
"""

from __future__ import annotations

from collections import Counter

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from tests.unit.fuzz.helpers import (
    MUTATIONS,
    _rtcp_length_fields,
    _short_remb,
    feed,
    harness,
    mutants,
    valid_rtcp_packets,
)


async def test_handlers_mutated_rtcp() -> None:
    known: Counter[str] = Counter()
    async with harness() as h:
        seeds = valid_rtcp_packets(h.sent_seqs())
        resent_before = sum(c.retransmitted for c in h.consumers)
        for data in mutants(seeds, _rtcp_length_fields, MUTATIONS, seed=3):
            feed(h, data, known)
        for data in seeds:  # and the valid ones still work afterwards
            feed(h, data, known)
        assert sum(c.retransmitted for c in h.consumers) > resent_before, "no NACK answered"
        assert h.subscriber.estimated_bitrate is not None
    # The mutations do reach aiortc's short-REMB struct.error (see the test below).
    assert known["short REMB survived"] > 0


async def test_subscriber_short_remb_does_not_raise() -> None:
    """aiortc's unpack_remb_fci raises struct.error when the SSRC count overruns the packet."""
    remb = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                fci=b"REMB" + bytes([5, 0x08, 0x00, 0x00])))
    assert _short_remb(remb)
    async with harness() as h:
        h.subscriber_rtcp(remb)
