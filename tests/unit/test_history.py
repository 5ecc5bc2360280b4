import pytest

from sfu.history import RtpHistory


def put(h: RtpHistory, seq: int, marker_byte: int = 0) -> bytes:
    """Timestamp seq * 3000, marker bit seq & 1; ``marker_byte`` is the payload (tells apart)."""
    payload = bytes((marker_byte,)) * 20
    h.put(seq, (seq * 3000) & 0xFFFFFFFF, seq & 1, payload)
    return payload


def test_get_returns_what_was_sent() -> None:
    h = RtpHistory(16)
    payload = put(h, 1001)
    assert h.get(1001) == ((1001 * 3000) & 0xFFFFFFFF, 1, payload)
    got = h.get(1001)
    assert got is not None and got[2] is payload  # the shared object, not a copy
    assert h.get(1002) is None  # never stored
    assert h.get(1001 + 16) is None  # same slot, other seq


def test_timestamp_and_marker_keep_every_bit() -> None:
    h = RtpHistory(4)
    h.put(0xFFFF, 0xFFFFFFFF, 1, b"x")
    h.put(0, 0, 0, b"y")
    assert h.get(0xFFFF) == (0xFFFFFFFF, 1, b"x")
    assert h.get(0) == (0, 0, b"y")


@pytest.mark.parametrize(
    ("size", "first", "count", "present", "absent"),
    [
        # (size, first seq put, packets put in order, seqs still there, seqs overwritten)
        (16, 0, 16, [0, 15], []),
        (16, 0, 17, [1, 16], [0]),
        (16, 65530, 20, [65534, 65535, 0, 1, 7], [65530, 65533]),  # across the wrap
        (512, 65000, 1000, [65535, 0, 463, 464 - 512 + 65536], [65000, 65487]),
        (1, 5, 3, [7], [5, 6]),
    ],
)
def test_ring_keeps_the_last_size_packets(
    size: int, first: int, count: int, present: list[int], absent: list[int]
) -> None:
    h = RtpHistory(size)
    for i in range(count):
        seq = (first + i) & 0xFFFF
        put(h, seq, marker_byte=i & 0xFF)
    for seq in present:
        got = h.get(seq)
        assert got is not None and got[0] == (seq * 3000) & 0xFFFFFFFF
        assert got[2][0] == (seq - first) & 0xFFFF & 0xFF
    for seq in absent:
        assert h.get(seq) is None


def test_out_of_order_put_overwrites_only_its_slot() -> None:
    h = RtpHistory(8)
    for seq in (65534, 65535, 0, 1):
        put(h, seq)
    put(h, 65533)  # a late packet, slot 5, nothing else there
    assert [h.get(s) is not None for s in (65533, 65534, 65535, 0, 1)] == [True] * 5


@pytest.mark.parametrize("size", [0, -4, 3, 500, 65536])
def test_size_must_be_power_of_two(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        RtpHistory(size)


def test_ring_exists_only_once_a_packet_is_stored_and_until_cleared() -> None:
    h = RtpHistory(16)
    assert not h.allocated and h.get(7) is None  # a consumer that never sent holds no ring
    put(h, 7)
    assert h.allocated and h.get(7) is not None
    h.clear()
    assert not h.allocated and h.get(7) is None
    put(h, 8)
    assert h.get(8) is not None and h.get(7) is None


def test_rewritten_payload_is_kept_as_the_shared_original_plus_its_prefix() -> None:
    original = bytes(range(40))
    rewritten = b"\xaa\xbb\xcc" + original[3:]  # a consumer's own picture id, same length
    h = RtpHistory(16)
    h.put(300, 1234, 1, rewritten, original)
    assert h.get(300) == (1234, 1, rewritten)  # what the subscriber was sent, byte for byte
    h.put(301, 1, 0, b"\x01\x02", b"\x09\x02")  # shorter than the prefix
    assert h.get(301) == (1, 0, b"\x01\x02")
    h.put(302, 2, 0, b"\x00\x00\x00\x00\x00\x00\x07", b"\x05\x00\x00\x00\x00\x00\x07")
    assert h.get(302) == (2, 0, b"\x00\x00\x00\x00\x00\x00\x07")  # a prefix of zero bytes
    h.put(303, 3, 0, original, original)  # not rewritten: stored as is
    got = h.get(303)
    assert got is not None and got[2] is original
    h.put(300 + 16, 5, 0, original)  # the slot reused: its old prefix must not leak
    got = h.get(316)
    assert got is not None and got[2] is original
