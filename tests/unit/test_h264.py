import random

import pytest

from sfu.wire.h264 import is_h264_keyframe


def nal(nal_type: int, size: int = 6, nri: int = 3) -> bytes:
    return bytes((nri << 5 | nal_type,)) + bytes(range(1, size))


def stap_a(*units: bytes) -> bytes:
    return b"\x78" + b"".join(len(u).to_bytes(2, "big") + u for u in units)  # 0x78: NRI 3, type 24


def fu_a(nal_type: int, *, start: bool, end: bool = False) -> bytes:
    header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
    return bytes((0x7C, header)) + bytes(20)  # 0x7C: NRI 3, type 28


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (nal(5), True),  # IDR slice
        (nal(7), True),  # SPS
        (nal(1), False),  # non-IDR slice
        (nal(8), False),  # PPS alone
        (nal(6), False),  # SEI
        (nal(5, size=1), True),  # header byte only
        (stap_a(nal(7), nal(8), nal(5)), True),
        (stap_a(nal(7), nal(8)), True),
        (stap_a(nal(8), nal(5, size=30)), True),
        (stap_a(nal(6), nal(1)), False),
        (stap_a(nal(9), nal(1, size=1)), False),
        (stap_a(), False),  # no aggregation unit at all
        (stap_a(nal(7), nal(5))[:-1], False),  # last unit truncated
        (stap_a(nal(7)) + b"\x00", False),  # stray byte: size field cut short
        (stap_a(nal(7)) + b"\x00\x00", False),  # zero-size unit
        (b"\x78\xff\xff\x67", False),  # size beyond the payload
        (fu_a(5, start=True), True),
        (fu_a(7, start=True), True),
        (fu_a(5, start=False), False),  # middle fragment
        (fu_a(5, start=False, end=True), False),
        (fu_a(1, start=True), False),
        (b"\x7c", False),  # FU indicator without FU header
        (b"\x7c\x85", True),
        (b"", False),
        (bytes((0x19, 0x00, 0x02, 0x65, 0x00)), False),  # STAP-B is not handled
    ],
)
def test_is_h264_keyframe(payload: bytes, expected: bool) -> None:
    assert is_h264_keyframe(payload) is expected


def test_never_raises_on_garbage() -> None:
    rng = random.Random(6184)
    seen = set()
    for _ in range(20000):
        seen.add(is_h264_keyframe(rng.randbytes(rng.randrange(0, 12))))
    assert seen == {True, False}
