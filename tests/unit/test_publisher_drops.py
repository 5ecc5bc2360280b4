"""Every packet the publisher does not forward is counted under a DropReason (sfu/publisher.py)."""

from sfu.types import DropReason
from tests.unit.test_participant_isolation import (
    VIDEO_RTX_SSRC,
    VP8_RTX_PT,
    raw_rtp,
    room,
)


async def test_padding_only_rtx_is_counted() -> None:
    async with room() as r:
        before = sum(len(w.rtp) for w in r.out.values())
        r.send(raw_rtp(VP8_RTX_PT, 7, VIDEO_RTX_SSRC, b""))  # the publisher probing its uplink
        assert r.drops().get(DropReason.PADDING_ONLY) == 1
        assert sum(len(w.rtp) for w in r.out.values()) == before


async def test_rtx_before_any_media_of_its_layer_is_counted() -> None:
    async with room() as r:
        # A simulcast layer's repair stream can be learnt (repaired-RID) before its media SSRC.
        r.producer("1").layers[0].ssrc = None
        r.send(raw_rtp(VP8_RTX_PT, 8, VIDEO_RTX_SSRC, b"\x03\xe8" + b"\x10" * 20))
        assert r.drops().get(DropReason.RTX_BEFORE_MEDIA) == 1
        assert not r.out["1"].rtp
