"""Fuzz target: transport-wide congestion control feedback
(``sfu.wire.twcc.TransportFeedback``), the RTCP a subscriber sends about every packet we forward.

Properties: ``parse`` returns or raises ValueError, on random bytes, on random bytes with a
transport-cc header and on seeded mutations of valid feedback; valid feedback survives a
round trip; whatever parses serializes again to something that parses to the same feedback.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from sfu.wire.seqmath import seq_add
from sfu.wire.twcc import TransportFeedback
from tests.unit.fuzz.helpers import FUZZ, MUTATIONS, mutants

TICK_US = 250


def feedback(base: int, reference: int, count: int,
             deltas: list[int | None]) -> TransportFeedback:
    arrivals: list[tuple[int, int | None]] = []
    at = 0
    for i, delta in enumerate(deltas):
        if delta is None:
            arrivals.append((seq_add(base, i), None))
        else:
            at += delta * TICK_US
            arrivals.append((seq_add(base, i), at))
    return TransportFeedback(0x1234, 0x5678, base, reference, count, arrivals)


DELTAS = st.lists(st.none() | st.integers(0, 255) | st.integers(-0x8000, 0x7FFF),
                  min_size=1, max_size=120)


def valid_feedback() -> list[bytes]:
    rng = random.Random(12)
    out = []
    for size in (1, 2, 7, 8, 14, 15, 30, 100, 300):
        deltas: list[int | None] = [None if rng.random() < 0.2 else
                                    rng.choice([0, 1, 4, 255, 256, -1, -300, 0x7FFF])
                                    for _ in range(size)]
        if all(d is None for d in deltas):
            deltas[0] = 1
        out.append(bytes(feedback(rng.getrandbits(16), rng.randrange(-2**23, 2**23),
                                  rng.getrandbits(8), deltas)))
    return out


def twcc_length_fields(rng: random.Random, data: bytearray) -> None:
    """Corrupt the RTCP length, the status count, a chunk's type/run length, the padding byte."""
    choice = rng.randrange(4)
    if choice == 0:
        struct.pack_into("!H", data, 2, rng.choice([0, 4, len(data) // 4, 0xFFFF]))
    elif choice == 1 and len(data) >= 16:
        struct.pack_into("!H", data, 14, rng.choice([0, 1, 14, 15, 0xFFFF]))
    elif choice == 2 and len(data) >= 22:
        data[20] = rng.choice([0x00, 0x3F, 0x60, 0x80, 0xC0, 0xFF])
    else:
        data[0] ^= 0x20
        data[-1] = rng.choice([0, 1, 3, 4, 0xFF])


def check(data: bytes) -> bool:
    try:
        parsed = TransportFeedback.parse(data)
    except ValueError:
        return False
    again = TransportFeedback.parse(bytes(parsed))
    assert again == parsed
    return True


@FUZZ
@given(st.integers(0, 0xFFFF), st.integers(-2**23, 2**23 - 1), st.integers(0, 255), DELTAS)
def test_valid_feedback_round_trips(base: int, reference: int, count: int,
                                    deltas: list[int | None]) -> None:
    if all(d is None for d in deltas):
        deltas[0] = 0
    original = feedback(base, reference, count, deltas)
    assert TransportFeedback.parse(bytes(original)) == original


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(min_size=20, max_size=400))
def test_random_bytes_with_a_transport_cc_header(data: bytes) -> None:
    body = bytearray(data)
    body[0] = 0x8F | (data[0] & 0x20)
    body[1] = 205
    struct.pack_into("!H", body, 2, (len(body) + 3) // 4 - 1)
    check(bytes(body) + bytes(-len(body) % 4))


def test_mutated_feedback() -> None:
    outcomes: Counter[bool] = Counter()
    for data in mutants(valid_feedback(), twcc_length_fields, MUTATIONS, seed=13):
        outcomes[check(data)] += 1
    assert outcomes[True] > MUTATIONS // 10 and outcomes[False] > MUTATIONS // 4, outcomes
