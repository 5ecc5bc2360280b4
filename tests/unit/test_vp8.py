import random

import pytest

from sfu.wire.vp8 import Vp8Descriptor, Vp8PictureIdMunger, is_vp8_keyframe

# --- builders for synthetic payloads (independent of the module's own serialiser) ---

# VP8 frame tag (RFC 6386 9.1): bit 0 is P (0 = key frame), bit 4 show_frame. A key frame tag is
# followed by the start code 9d 01 2a and the dimensions.
KEY_HEADER = bytes((0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01))
DELTA_HEADER = bytes((0x11, 0x02, 0x00))
BODY = bytes(range(40))


def descriptor(
    *,
    start: bool = True,
    partition_id: int = 0,
    non_reference: bool = False,
    picture_id: int | None = None,
    wide: bool = True,
    tl0: int | None = None,
    tid: int | None = None,
    sync: bool = False,
    keyidx: int | None = None,
) -> bytes:
    x = 0
    ext = b""
    if picture_id is not None:
        x |= 0x80
        ext += bytes((0x80 | picture_id >> 8, picture_id & 0xFF)) if wide else bytes((picture_id,))
    if tl0 is not None:
        x |= 0x40
        ext += bytes((tl0,))
    if tid is not None or keyidx is not None:
        tk = 0
        if tid is not None:
            x |= 0x20
            tk |= tid << 6 | (0x20 if sync else 0)
        if keyidx is not None:
            x |= 0x10
            tk |= keyidx
        ext += bytes((tk,))
    b0 = (0x80 if x else 0) | (0x20 if non_reference else 0) | (0x10 if start else 0)
    return bytes((b0 | partition_id,)) + (bytes((x,)) + ext if x else b"")


def keyframe(**kw: object) -> bytes:
    return descriptor(**kw) + KEY_HEADER + BODY  # type: ignore[arg-type]


def delta(**kw: object) -> bytes:
    return descriptor(**kw) + DELTA_HEADER + BODY  # type: ignore[arg-type]


def continuation(**kw: object) -> bytes:
    return descriptor(start=False, **kw) + BODY  # type: ignore[arg-type]


def read_ids(payload: bytes) -> tuple[int | None, int | None]:
    d = Vp8Descriptor.parse(payload)
    return d.picture_id, d.tl0picidx


# --- Vp8Descriptor.parse ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x10", Vp8Descriptor(True, 0, False, None, False, None, None, False, None, 1)),
        (b"\x23", Vp8Descriptor(False, 3, True, None, False, None, None, False, None, 1)),
        (b"\x90\x80\x05", Vp8Descriptor(True, 0, False, 5, False, None, None, False, None, 3)),
        (
            b"\x90\x80\xff\xff",
            Vp8Descriptor(True, 0, False, 0x7FFF, True, None, None, False, None, 4),
        ),
        (
            b"\x90\xe0\x81\x23\x07\xa0",
            Vp8Descriptor(True, 0, False, 0x123, True, 7, 2, True, None, 6),
        ),
        (b"\x80\x10\x1f", Vp8Descriptor(False, 0, False, None, False, None, None, False, 31, 3)),
        (b"\x80\x40\xff", Vp8Descriptor(False, 0, False, None, False, 255, None, False, None, 3)),
        # T clear: TID and Y bits are ignored even if set in the byte.
        (b"\x80\x10\xe5", Vp8Descriptor(False, 0, False, None, False, None, None, False, 5, 3)),
        # X set with an empty extension, and reserved bits set: both ignored.
        (b"\xd8\x0f", Vp8Descriptor(True, 0, False, None, False, None, None, False, None, 2)),
    ],
)
def test_parse(raw: bytes, expected: Vp8Descriptor) -> None:
    assert Vp8Descriptor.parse(raw + b"\x00payload") == expected


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "empty payload"),
        (b"\x80", "X bit set but the extension byte is missing"),
        (b"\x80\x80", "I bit set but the picture id is missing"),
        (b"\x80\x80\x81", "M bit set but the second picture id byte is missing"),
        (b"\x80\xc0\x05", "L bit set but TL0PICIDX is missing"),
        (b"\x80\xe0\x81\x00\x07", "T or K bit set but the TID/KEYIDX byte is missing"),
        (b"\x80\x10", "T or K bit set but the TID/KEYIDX byte is missing"),
    ],
)
def test_parse_truncated(raw: bytes, detail: str) -> None:
    with pytest.raises(ValueError, match=f"^VP8 descriptor is truncated: {detail}$"):
        Vp8Descriptor.parse(raw)


ROUND_TRIP = [
    descriptor(),
    descriptor(start=False, partition_id=5, non_reference=True),
    descriptor(picture_id=0, wide=False),
    descriptor(picture_id=127, wide=False, tl0=9),
    descriptor(picture_id=0x7FFF),
    descriptor(picture_id=128, tl0=0, tid=3, sync=True),
    descriptor(picture_id=4000, tl0=200, tid=1, keyidx=17),
    descriptor(keyidx=0),
    descriptor(tid=0),
]


@pytest.mark.parametrize("raw", ROUND_TRIP)
def test_round_trip(raw: bytes) -> None:
    parsed = Vp8Descriptor.parse(raw + DELTA_HEADER)
    assert parsed.size == len(raw)
    assert bytes(parsed) == raw
    assert Vp8Descriptor.parse(bytes(parsed)) == parsed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"partition_id": 8}, "partition_id 8 out of range"),
        ({"picture_id": 128, "picture_id_15bit": False}, "7-bit picture_id 128 out of range"),
        ({"picture_id": 0x8000, "picture_id_15bit": True}, "15-bit picture_id 32768 out of range"),
        ({"tl0picidx": 256}, "tl0picidx 256 out of range"),
        ({"tid": 4}, "tid 4 out of range"),
        ({"keyidx": 32}, "keyidx 32 out of range"),
        ({"layer_sync": True}, "layer_sync requires tid"),
    ],
)
def test_serialise_rejects_out_of_range(changes: dict[str, object], message: str) -> None:
    d = Vp8Descriptor.parse(descriptor())
    for name, value in changes.items():
        setattr(d, name, value)
    with pytest.raises(ValueError, match=message):
        bytes(d)


# --- is_vp8_keyframe ---


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (keyframe(), True),
        (keyframe(picture_id=5, wide=False), True),
        (keyframe(picture_id=30000), True),
        (keyframe(picture_id=300, tl0=4, tid=0, sync=True, keyidx=3), True),
        (keyframe(keyidx=1), True),
        (delta(), False),
        (delta(picture_id=300, tl0=4, tid=0), False),
        (keyframe(start=False), False),  # not the start of a partition
        (keyframe(partition_id=1), False),  # start of partition 1: no payload header
        (continuation(picture_id=300), False),
        (b"", False),
        (b"\x10", False),  # descriptor only, no payload header
        (b"\x90", False),  # X set, extension missing
        (b"\x90\x80", False),  # I set, picture id missing
        (b"\x90\x80\x81", False),  # M set: second byte is consumed, header missing
        (b"\x90\x80\x81\x00", False),
        (b"\x90\x80\x05\x10", True),  # shortest key frame start: 7-bit pid + P=0
        (b"\x90\x70\x10", False),  # L, T, K set: the only byte left is TL0PICIDX
    ],
)
def test_is_vp8_keyframe(payload: bytes, expected: bool) -> None:
    assert is_vp8_keyframe(payload) is expected


def reference_is_keyframe(payload: bytes) -> bool:
    try:
        d = Vp8Descriptor.parse(payload)
    except ValueError:
        return False
    return (
        d.start_of_partition
        and d.partition_id == 0
        and d.size < len(payload)
        and not payload[d.size] & 1
    )


def test_is_vp8_keyframe_never_raises_and_agrees_with_parse() -> None:
    rng = random.Random(7741)
    seen = set()
    for _ in range(20000):
        payload = rng.randbytes(rng.randrange(0, 8))
        result = is_vp8_keyframe(payload)
        assert result is reference_is_keyframe(payload), payload.hex()
        seen.add(result)
    for raw in ROUND_TRIP:
        for cut in range(len(raw) + len(KEY_HEADER)):
            seen.add(is_vp8_keyframe((raw + KEY_HEADER)[:cut]))
    assert seen == {True, False}


# --- Vp8PictureIdMunger ---


def test_fast_path_returns_same_object() -> None:
    m = Vp8PictureIdMunger()
    m.sync(100, 7)
    for payload in (keyframe(picture_id=100, tl0=7), delta(picture_id=101, tl0=7), b"\x10\x00"):
        assert m.rewrite(payload) is payload
    assert (m.last_picture_id, m.last_tl0picidx) == (101, 7)


@pytest.mark.parametrize(
    ("first", "second", "wide", "expected_pids"),
    [
        # (source A pids, source B pids, 15-bit?, expected output pids for B)
        ([10, 11, 12], [5000, 5001], True, [13, 14]),
        ([32766, 32767], [9, 10, 11], True, [0, 1, 2]),  # output wraps at 2**15
        ([0, 1], [32767, 0], True, [2, 3]),  # input wraps at 2**15
        ([126, 127], [50, 51], False, [0, 1]),  # 7-bit stays 7-bit and wraps at 128
        ([3, 4], [127, 0, 1], False, [5, 6, 7]),
    ],
)
def test_picture_id_continues_across_switch(
    first: list[int], second: list[int], wide: bool, expected_pids: list[int]
) -> None:
    m = Vp8PictureIdMunger()
    m.sync(first[0], None)
    out_a = [read_ids(m.rewrite(delta(picture_id=p, wide=wide)))[0] for p in first]
    assert out_a == first  # nothing output before: the input is kept
    m.sync(second[0], None)
    outs = []
    for i, p in enumerate(second):
        payload = keyframe(picture_id=p, wide=wide) if i == 0 else delta(picture_id=p, wide=wide)
        rewritten = m.rewrite(payload)
        size = Vp8Descriptor.parse(payload).size
        assert len(rewritten) == len(payload)  # width unchanged
        assert rewritten[size:] == payload[size:]
        assert Vp8Descriptor.parse(rewritten).picture_id_15bit is wide
        outs.append(read_ids(rewritten)[0])
    assert outs == expected_pids


@pytest.mark.parametrize(
    ("last_a", "first_b", "expected"),
    [(7, 200, 8), (255, 3, 0), (254, 254, 255), (0, 255, 1)],
)
def test_tl0picidx_continues_across_switch(last_a: int, first_b: int, expected: int) -> None:
    m = Vp8PictureIdMunger()
    m.rewrite(delta(picture_id=1, tl0=last_a))
    m.sync(1000, first_b)
    out = m.rewrite(keyframe(picture_id=1000, tl0=first_b, tid=0, sync=True))
    assert read_ids(out) == (2, expected)
    assert m.rewrite(delta(picture_id=1001, tl0=first_b, tid=1))[4] == expected
    assert m.last_tl0picidx == expected


def test_rewrite_keeps_other_fields_and_body() -> None:
    m = Vp8PictureIdMunger()
    m.rewrite(delta(picture_id=10, tl0=1))
    m.sync(500, 40)
    src = keyframe(picture_id=500, tl0=40, tid=2, sync=True, keyidx=9)
    out = m.rewrite(src)
    a, b = Vp8Descriptor.parse(src), Vp8Descriptor.parse(out)
    assert (b.picture_id, b.tl0picidx) == (11, 2)
    b.picture_id, b.tl0picidx = a.picture_id, a.tl0picidx
    assert a == b
    assert out[a.size :] == src[a.size :]
    assert is_vp8_keyframe(out)


def test_reordered_packet_does_not_move_last_back() -> None:
    m = Vp8PictureIdMunger()
    for p in (32766, 32767, 0, 32765):  # 32765 arrives late, across the wrap
        m.rewrite(delta(picture_id=p))
    assert m.last_picture_id == 0
    m.sync(77, None)
    assert read_ids(m.rewrite(keyframe(picture_id=77)))[0] == 1


def test_source_without_picture_id_is_left_alone() -> None:
    m = Vp8PictureIdMunger()
    m.rewrite(delta(picture_id=10))
    m.sync(None, None)
    payload = keyframe()
    assert m.rewrite(payload) is payload
    assert m.last_picture_id == 10


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x90", b"\x90\x80", b"\x90\x80\x81", b"\x90\xc0\x05", b"\x90\xe0\x81\x00\x07"],
)
def test_malformed_payload_is_returned_unchanged(payload: bytes) -> None:
    m = Vp8PictureIdMunger()
    m.rewrite(delta(picture_id=10, tl0=3))
    m.sync(999, 99)  # non-zero offsets, so the slow path would be taken if parsing succeeded
    assert m.rewrite(payload) is payload
    assert (m.last_picture_id, m.last_tl0picidx) == (10, 3)


def test_keyframe_size_reads_the_frame_header() -> None:
    from sfu.wire.vp8 import vp8_keyframe_size

    # descriptor (X, S; 15-bit picture id) + key frame tag + start code + 640x360
    header = bytes([0x00, 0x00, 0x00]) + b"\x9d\x01\x2a" + (640).to_bytes(2, "little") + (
        360).to_bytes(2, "little")
    assert vp8_keyframe_size(bytes([0x90, 0x80, 0x81, 0x23]) + header) == (640, 360)
    assert vp8_keyframe_size(bytes([0x90, 0x80, 0x81, 0x23]) + b"\x01" + header[1:]) is None
    assert vp8_keyframe_size(bytes([0x80, 0x80, 0x81, 0x23]) + header) is None  # not S
    assert vp8_keyframe_size(b"\x90") is None
