"""All wraparound arithmetic of the project, in one place.

RTP counters wrap: 16-bit sequence numbers, 32-bit timestamps, the 15-bit (or 7-bit) VP8
picture id, the 8-bit TL0PICIDX and the 24-bit transport-cc reference time. Every comparison of
such counters must go through the helpers below so that the wrap is handled the same way
everywhere.

Conventions:
- Arguments may be any Python int (negative, or larger than the field, e.g. an "extended"
  counter that has been unwrapped); results are always reduced to the field.
- `*_diff(a, b)` is the signed distance a - b, in [-half, half - 1] of the field size.
- `*_newer(a, b)` follows RFC 1982 serial-number arithmetic: a is after b when the forward
  distance from b to a is in [1, half - 1]. A distance of exactly half is undefined in RFC 1982;
  here neither value is newer than the other then (both calls return False).

The functions are plain int arithmetic (no branches, no allocation) because they run per packet.
"""

__all__ = [
    "pid7_add",
    "pid7_diff",
    "pid_add",
    "pid_diff",
    "ref24_diff",
    "seq_add",
    "seq_diff",
    "seq_newer",
    "tl0_add",
    "tl0_diff",
    "ts_add",
    "ts_diff",
    "ts_newer",
]

# --- 16-bit RTP sequence numbers (RFC 3550) ---


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**16 (n may be negative)."""
    return (a + n) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed a - b in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number a comes after b (RFC 1982)."""
    return 0 < ((a - b) & 0xFFFF) < 0x8000


# --- 32-bit RTP timestamps ---


def ts_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & 0xFFFFFFFF


def ts_diff(a: int, b: int) -> int:
    """Signed a - b in [-2**31, 2**31 - 1]."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """True if timestamp a comes after b (RFC 1982)."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


# --- VP8 picture id (RFC 7741): 15 bits, or 7 bits in the short form ---


def pid_add(a: int, n: int) -> int:
    """a + n modulo 2**15."""
    return (a + n) & 0x7FFF


def pid_diff(a: int, b: int) -> int:
    """Signed a - b in [-16384, 16383] for 15-bit picture ids."""
    return ((a - b + 0x4000) & 0x7FFF) - 0x4000


def pid7_add(a: int, n: int) -> int:
    """a + n modulo 2**7 (the short picture id form)."""
    return (a + n) & 0x7F


def pid7_diff(a: int, b: int) -> int:
    """Signed a - b in [-64, 63] for 7-bit picture ids (only the low 7 bits of a, b count)."""
    return ((a - b + 0x40) & 0x7F) - 0x40


# --- VP8 TL0PICIDX: 8 bits ---


def tl0_add(a: int, n: int) -> int:
    """a + n modulo 2**8."""
    return (a + n) & 0xFF


def tl0_diff(a: int, b: int) -> int:
    """Signed a - b in [-128, 127]."""
    return ((a - b + 0x80) & 0xFF) - 0x80


# --- transport-cc reference time: 24 bits, signed on the wire, in 64 ms units ---


def ref24_diff(a: int, b: int) -> int:
    """Signed a - b in [-2**23, 2**23 - 1]; ref24_diff(x, 0) reads x as the signed 24-bit field."""
    return ((a - b + 0x800000) & 0xFFFFFF) - 0x800000
