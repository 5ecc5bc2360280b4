"""Helpers shared by the unit tests (the fuzz targets add theirs in ``tests/unit/fuzz/helpers.py``):
a writer that keeps what the SFU sends, and RTP packets built by hand (so they can be wrong)."""

from __future__ import annotations

import struct

from sfu.types import Codec
from sfu.wire.rtp_packet import RtpView

VP8_IN = Codec("video/VP8", 90000, 96, 97)
"""A publisher's VP8 with RTX, as Chrome offers it."""


class ListWriter:
    """Stands in for the DTLS/UDP shell (``aiortc_hooks.DatagramWriter``): keeps what is sent.

    ``keep_rtp`` / ``keep_rtcp`` bound the lists to their newest packets (long fuzz runs)."""

    def __init__(self, keep_rtp: int | None = None, keep_rtcp: int | None = None) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.keep_rtp = keep_rtp
        self.keep_rtcp = keep_rtcp

    def send_rtp(self, packet: bytes) -> bool:
        self.rtp.append(packet)
        if self.keep_rtp is not None:
            del self.rtp[:-self.keep_rtp]
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        if self.keep_rtcp is not None:
            del self.rtcp[:-self.keep_rtcp]
        return True

    def check(self) -> bool:
        return True


def rtp_bytes(
    seq: int = 1000,
    ts: int = 123456,
    ssrc: int = 0x11223344,
    payload: bytes = b"",
    *,
    pt: int = 96,
    marker: int = 0,
    version: int = 2,
    padding: bool = False,
    extension: bool = False,
    csrc_count: int = 0,
) -> bytes:
    """A 12-byte RTP header with exactly the given bits, then ``payload`` (which may hold CSRCs,
    an extension block or padding written by the caller). Sequence number and timestamp wrap."""
    b0 = (version << 6) | (padding << 5) | (extension << 4) | csrc_count
    return struct.pack("!BBHII", b0, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF,
                       ssrc) + payload


def rtp_view(seq: int, ts: int, payload: bytes, ssrc: int = 0xA1, pt: int = 96, marker: int = 1,
             extensions: dict[int, bytes] | None = None) -> RtpView:
    """An already parsed packet, as a Publisher hands it to a Producer (no wire bytes)."""
    return RtpView(b"", pt, marker, seq, ts, ssrc, extensions or {}, payload, 0)


def vp8_payload(picture_id: int, tl0: int, key: bool, start: bool = True) -> bytes:
    """A VP8 payload descriptor (15-bit picture id, TL0PICIDX) and the start of a frame."""
    descriptor = bytes([0x80 | (0x10 if start else 0), 0xC0, 0x80 | (picture_id >> 8),
                        picture_id & 0xFF, tl0])
    return descriptor + bytes([0x00 if key else 0x01]) + b"\x9d\x01\x2a" + b"\x00" * 16
