"""SPS picture size against what libx264 actually writes (incl. 1080p cropping)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from recorder.depacketize import ANNEX_B_START
from recorder.h264_sps import sps_size


def encoded_sps(width: int, height: int, profile: str) -> bytes:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.options = {"profile": profile, "preset": "ultrafast", "tune": "zerolatency"}
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.pts = 0
    data = b"".join(bytes(p) for p in codec.encode(frame)) + b"".join(
        bytes(p) for p in codec.encode(None))
    for nal in data.split(b"\x00\x00\x01"):
        nal = nal.rstrip(b"\x00")
        if nal and nal[0] & 0x1F == 7:
            return nal
    raise AssertionError("no SPS in the encoder output")


@pytest.mark.parametrize("size, profile", [
    ((320, 240), "baseline"), ((1920, 1080), "high"), ((642, 362), "main"), ((1280, 720), "high"),
])
def test_sps_size_matches_the_encoder(size: tuple[int, int], profile: str) -> None:
    assert sps_size(encoded_sps(*size, profile)) == size


def test_truncated_or_foreign_nal_is_a_value_error() -> None:
    sps = encoded_sps(1920, 1080, "high")
    for cut in range(1, len(sps) - 1, 3):
        try:
            sps_size(sps[:cut])
        except ValueError:
            continue
    with pytest.raises(ValueError, match="not an H.264 SPS"):
        sps_size(ANNEX_B_START[-1:] + b"\x65")
    with pytest.raises(ValueError, match="truncated"):
        sps_size(sps[:4])
