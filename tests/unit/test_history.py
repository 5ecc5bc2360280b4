import pytest

from sfu.history import RtpHistory
from tests.unit.helpers import rtp_bytes


def rtp(seq: int, marker: int = 0) -> bytes:
    """Timestamp 0, SSRC 0x12345678; ``marker`` is the payload's one byte (tells packets apart)."""
    return rtp_bytes(seq, 0, 0x12345678, bytes((marker,)))


def test_get_returns_stored_packet() -> None:
    h = RtpHistory(16)
    p = rtp(1000)
    h.put(1000, p)
    assert h.get(1000) is p
    assert h.get(1001) is None  # never stored
    assert h.get(1000 + 16) is None  # same slot, other seq


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
        h.put(seq, rtp(seq, marker=i & 0xFF))
    for seq in present:
        packet = h.get(seq)
        assert packet is not None and packet[2:4] == seq.to_bytes(2, "big")
    for seq in absent:
        assert h.get(seq) is None


def test_out_of_order_put_overwrites_only_its_slot() -> None:
    h = RtpHistory(8)
    for seq in (65534, 65535, 0, 1):
        h.put(seq, rtp(seq))
    h.put(65533, rtp(65533))  # a late packet, slot 5, nothing else there
    assert [h.get(s) is not None for s in (65533, 65534, 65535, 0, 1)] == [True] * 5


def test_short_packet_is_never_returned() -> None:
    h = RtpHistory(4)
    h.put(0, b"\x80\x60")
    assert h.get(0) is None


@pytest.mark.parametrize("size", [0, -4, 3, 500, 65536])
def test_size_must_be_power_of_two(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        RtpHistory(size)


def test_ring_exists_only_once_a_packet_is_stored_and_until_cleared() -> None:
    h = RtpHistory(16)
    assert not h.allocated and h.get(7) is None  # a consumer that never sent holds no ring
    h.put(7, rtp(7))
    assert h.allocated and h.get(7) is not None
    h.clear()
    assert not h.allocated and h.get(7) is None
    h.put(8, rtp(8))
    assert h.get(8) is not None and h.get(7) is None


def test_rewritten_payload_is_kept_as_the_shared_original_plus_its_prefix() -> None:
    header = rtp(300)[:12]
    original = bytes(range(40))
    rewritten = b"\xaa\xbb\xcc" + original[3:]  # a consumer's own picture id, same length
    h = RtpHistory(16)
    h.put(300, header, rewritten, original)
    assert h.get(300) == header + rewritten  # what the subscriber was sent, byte for byte
    entry = h._slots[300 & 15] if h._slots is not None else None
    assert entry is not None and entry[1] is original  # the shared bytes, not a copy
    h.put(301, rtp(301)[:12], b"\x01\x02", b"\x09\x02")  # shorter than the prefix
    assert h.get(301) == rtp(301)[:12] + b"\x01\x02"
    h.put(302, rtp(302)[:12], original, original)  # not rewritten: stored as is
    assert h.get(302) == rtp(302)[:12] + original
