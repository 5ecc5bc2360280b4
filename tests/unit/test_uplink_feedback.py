"""Transport-cc feedback to a publisher must report every packet that reached us (issue 10).

Chromium's send-side estimator (GoogCC) is driven only by our feedback. A packet that arrived but
is reported lost reads as loss on an unconstrained link, and a probe whose padding is reported lost
measures nothing: the browser stays on its lowest simulcast layer. Every datagram the publisher
sends carries a transport-wide sequence number, whatever becomes of it here (padding-only RTX
is discarded, some packets are refused): recording comes before any such decision.
"""

from __future__ import annotations

import random

from sfu.types import DropReason
from sfu.wire.twcc import FeedbackRecorder, TransportFeedback
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


def test_feedback_over_a_busy_trace_reports_every_arrival_once_received() -> None:
    """A publisher's trace as a busy server sees it, on aiortc's clock (seconds since 1900, where
    the 24-bit reference time wraps every 18 min): 2 ms media, bursts of probe padding, small
    reordering, transport sequence wrap, a 400 ms event-loop stall during which no feedback goes
    out, and real loss. Every packet from the first to the last must be reported; each one that
    arrived must end up reported received, at its arrival time (250 us ticks, modulo the 24-bit
    reference time); feedback counts must run on without a gap (mod 256)."""
    rng = random.Random(10)
    recorder = FeedbackRecorder()
    t = 3_973_000_000.0 + rng.random()  # December 2026 in NTP seconds
    arrived: dict[int, float] = {}
    lost: set[int] = set()
    seq = 65_000
    pending: list[tuple[int, float]] = []
    last_feedback = t
    stall_until = 0.0
    reports: list[TransportFeedback] = []
    for step in range(8000):
        t += 0.002 if step % 40 else 0.0005  # every 40th a probe burst spacing
        if rng.random() < 0.01:
            lost.add(seq & 0xFFFF)
        else:
            pending.append((seq & 0xFFFF, t))
        seq += 1
        if len(pending) > 2 or rng.random() < 0.5:  # deliver, sometimes two swapped
            if len(pending) >= 2 and rng.random() < 0.05:
                pending[0], pending[1] = pending[1], pending[0]
            for s, at in pending:
                recorder.on_packet(s, at)
                arrived[s] = at
                lost.discard(s)
            pending.clear()
        if step == 3000:
            stall_until = t + 0.4
        if t >= stall_until and t - last_feedback >= 0.05:
            last_feedback = t
            for _ in range(8):
                data = recorder.build(t, 1, 2)
                if data is None:
                    break
                reports.append(TransportFeedback.parse(data))
    for s, at in pending:
        recorder.on_packet(s, at)
        arrived[s] = at
        lost.discard(s)
    while (data := recorder.build(t, 1, 2)) is not None:
        reports.append(TransportFeedback.parse(data))
    lost.discard((seq - 1) & 0xFFFF)  # lost after the last arrival: nothing can report it yet
    final: dict[int, float | None] = {}
    for fb in reports:
        base_us = fb.reference_time * 64_000
        for s, delta in fb.arrivals:
            final[s] = None if delta is None else base_us + delta
    assert set(final) == set(arrived) | lost
    period_us = (1 << 24) * 64_000
    for s, at in arrived.items():
        got = final[s]
        assert got is not None, f"transport seq {s} arrived but its last report says lost"
        assert abs((at * 1e6 - got + period_us / 2) % period_us - period_us / 2) <= 125.0001
    assert all(final[s] is None for s in lost)
    counts = [fb.feedback_count for fb in reports]
    assert all((b - a) % 256 == 1 for a, b in zip(counts, counts[1:], strict=False))
    assert len(counts) > 256  # the count wrapped
