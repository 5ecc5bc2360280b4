"""The Publisher's in-order shortcut around aiortc's NackGenerator (issue 11) tracks what the
generator itself would: the same highest number, the same missing set, the same NACKs, through
gaps, repairs, duplicates, reordering and the 16-bit wrap."""

from __future__ import annotations

import random

from aiortc.rtcrtpreceiver import NackGenerator

from tests.unit.test_participant_isolation import (
    VIDEO_SSRC,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    raw_rtp,
    room,
)


class _Seq:
    __slots__ = ("sequence_number",)

    def __init__(self, seq: int) -> None:
        self.sequence_number = seq


def _sequence(seed: int, start: int) -> list[int]:
    rng = random.Random(seed)
    seqs, seq = [], start
    for _ in range(400):
        step = rng.choice([1, 1, 1, 1, 1, 2, 3, 0, -1, -2, 5])  # mostly in order
        seq = (seq + step) & 0xFFFF
        seqs.append(seq)
    return seqs


async def test_the_shortcut_tracks_as_aiortc_does() -> None:
    for seed, start in ((1, 1000), (2, 65300), (3, 65530), (4, 40)):
        reference = NackGenerator()
        nacks = 0
        async with room() as r:
            r.seq[VIDEO_SSRC] = start
            r.vp8(VP8_KEY)
            assert reference.add(_Seq(start + 1)) is False  # type: ignore[arg-type]
            for seq in _sequence(seed, start + 1):
                r.send(raw_rtp(VP8_PT, seq, VIDEO_SSRC, VP8_DELTA))
                nacks += reference.add(_Seq(seq))  # type: ignore[arg-type]
                nack = r.publisher._routes[VIDEO_SSRC].nack
                assert nack is not None
                assert (nack.max_seq, nack.missing) == (reference.max_seq, reference.missing)
            assert nacks > 0  # the sequence did lose packets
            assert len(r.rtcp.rtcp) == nacks
