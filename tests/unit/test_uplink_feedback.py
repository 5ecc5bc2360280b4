"""Transport-cc feedback to a publisher must report every packet that reached us (issue 10).

Chromium's send-side estimator (GoogCC) is driven only by our feedback. A packet that arrived but
is reported lost reads as loss on an unconstrained link, and a probe whose padding is reported lost
measures nothing: the browser stays on its lowest simulcast layer. Every datagram the publisher
sends carries a transport-wide sequence number, whatever becomes of it here (padding-only RTX
is discarded, some packets are refused): recording comes before any such decision.
"""

from __future__ import annotations

from sfu.types import DropReason
from sfu.wire.twcc import TransportFeedback
from tests.unit.test_participant_isolation import (
    PUB_TWCC,
    VIDEO_RTX_SSRC,
    VIDEO_SSRC,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    VP8_RTX_PT,
    Room,
    ext_block,
    raw_rtp,
    room,
)


def twcc(seq: int) -> bytes:
    return ext_block([(PUB_TWCC, seq.to_bytes(2, "big"))])


def reported(r: Room) -> dict[int, bool]:
    """Transport sequence number -> reported received, over every feedback sent so far."""
    r.publisher.send_feedback()
    result: dict[int, bool] = {}
    for data in r.rtcp.rtcp:
        if len(data) > 1 and data[1] == 205 and data[0] & 0x1F == 15:
            for seq, arrival in TransportFeedback.parse(data).arrivals:
                result[seq] = result.get(seq, False) or arrival is not None
    return result


async def test_probe_padding_is_reported_received() -> None:
    """Chromium probes with padding-only RTX; it is discarded, but it did arrive."""
    async with room() as r:
        r.publisher._twcc_ext_id = PUB_TWCC  # as Publisher.answer sets it for a transport-cc offer
        r.send(raw_rtp(VP8_PT, 1, VIDEO_SSRC, VP8_KEY, twcc(100)))
        for i in range(5):  # one probe cluster's padding (libwebrtc pads up to 224 bytes)
            r.send(raw_rtp(VP8_RTX_PT, 500 + i, VIDEO_RTX_SSRC, b"", twcc(101 + i)))
        r.send(raw_rtp(VP8_PT, 2, VIDEO_SSRC, VP8_DELTA, twcc(106)))
        assert r.drops().get(DropReason.PADDING_ONLY) == 5  # still discarded, still counted
        got = reported(r)
        assert sorted(got) == list(range(100, 107))
        assert all(got.values()), f"reported lost: {[s for s, ok in got.items() if not ok]}"


async def test_refused_packets_are_reported_received() -> None:
    """A packet refused for its content (RTX before media, a payload type the m-line does not
    have, an unknown SSRC) still crossed the link: loss would be a lie about the link."""
    async with room() as r:
        r.publisher._twcc_ext_id = PUB_TWCC
        r.send(raw_rtp(VP8_PT, 1, VIDEO_SSRC, VP8_KEY, twcc(7)))
        r.send(raw_rtp(VP8_PT + 5, 2, VIDEO_SSRC, VP8_DELTA, twcc(8)))  # wrong payload type
        r.send(raw_rtp(VP8_PT, 3, 0x5555, VP8_DELTA, twcc(9)))  # an SSRC we cannot route
        r.send(raw_rtp(VP8_PT, 4, VIDEO_SSRC, VP8_DELTA, twcc(10)))
        assert r.drops().get(DropReason.UNKNOWN_SSRC) == 2
        got = reported(r)
        assert sorted(got) == [7, 8, 9, 10]
        assert all(got.values()), f"reported lost: {[s for s, ok in got.items() if not ok]}"
