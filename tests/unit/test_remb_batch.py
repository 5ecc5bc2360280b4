"""The publisher's REMB estimator takes its samples in batches (sfu/publisher.py REMB_BATCH_S):
the same estimates as feeding aiortc's estimator packet by packet, and REMBs still go out."""

from __future__ import annotations

from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, unpack_remb_fci

from sfu.publisher import REMB_BATCH_MAX, REMB_INTERVAL_S
from tests.unit.test_participant_isolation import (
    PUB_ABS,
    VIDEO_SSRC,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    ext_block,
    raw_rtp,
    room,
)


def rembs(packets: list[bytes]) -> list[int]:
    """The bitrates of the REMBs among the publisher's RTCP."""
    out = []
    for data in packets:
        for packet in RtcpPacket.parse(data):
            if isinstance(packet, RtcpPsfbPacket) and packet.fci.startswith(b"REMB"):
                out.append(unpack_remb_fci(packet.fci)[0])
    return out


async def test_batched_estimates_equal_per_packet_estimates_and_rembs_go_out() -> None:
    reference = RemoteBitrateEstimator()
    want: int | None = None
    async with room() as r:
        abs_send, seen = 0, []
        for i in range(600):  # 3 s of a ~1 Mbit/s stream, 5 ms apart, one pause
            if i == 300:
                r.now += 0.4
            abs_send = (abs_send + 1311 + (i % 5) * 40) & 0xFFFFFF
            block = ext_block([(PUB_ABS, abs_send.to_bytes(3, "big"))])
            payload = (VP8_KEY if i == 0 else VP8_DELTA) + bytes(900 + (i % 7) * 30)
            data = raw_rtp(VP8_PT, 1 + i, VIDEO_SSRC, payload, block)
            r.send(data)
            remb = reference.add(int(r.now * 1000), abs_send, len(data), VIDEO_SSRC)
            if remb is not None:
                want = remb[0]
            assert len(r.publisher._remb_samples) <= REMB_BATCH_MAX  # bounded
            if i % 50 == 49:  # at any moment, the batch handed over gives the same estimate
                seen.append((r.publisher.estimate_now(), want))
        assert want is not None and all(got == ref for got, ref in seen)
        sent = rembs(r.rtcp.rtcp)
        # one REMB per interval at most, over 3.4 s of packets: some went out
        assert 2 <= len(sent) <= int(3.4 / REMB_INTERVAL_S) + 1
        assert all(value > 0 for value in sent)
