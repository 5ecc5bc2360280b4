"""Transport-wide CC wire format, sequencer and recorder (sfu/wire/twcc.py)."""

from __future__ import annotations

import random
import struct

import pytest

from sfu.wire.twcc import (
    TRANSPORT_CC_FMT,
    FeedbackRecorder,
    TransportFeedback,
    TransportSequencer,
)


def header(first: int, length_words: int, base: int, count: int, ref: int, fb_count: int) -> bytes:
    return struct.pack(
        "!BBHIIHHI",
        first,
        205,
        length_words,
        0x01020304,
        0x05060708,
        base,
        count,
        ((ref & 0xFFFFFF) << 8) | fb_count,
    )


# --- hand-built packets, byte by byte from the draft's layout ---


def test_parse_run_length_and_two_bit_vector_with_negative_large_delta() -> None:
    data = (
        header(0xAF, 8, base=65534, count=10, ref=16, fb_count=7)  # V=2 P=1 FMT=15
        # run-length chunk: T=0, S=01 (small delta), run of 3 -> 65534, 65535, 0
        + bytes.fromhex("2003")
        # 2-bit vector: T=1 S=1, symbols 00 10 01 00 00 10 01 -> seqs 1..7
        + bytes.fromhex("c909")
        # deltas in 250 us ticks: 4, 1, 0 (small); +1024 (large); 255 (small); -200 (large); 2
        + bytes.fromhex("04 01 00 0400 ff ff38 02")
        + bytes.fromhex("000003")  # RFC 3550 padding: the last byte counts itself
    )
    assert len(data) == 36
    fb = TransportFeedback.parse(data)
    assert (fb.sender_ssrc, fb.media_ssrc) == (0x01020304, 0x05060708)
    assert (fb.base_sequence, fb.reference_time, fb.feedback_count) == (65534, 16, 7)
    assert fb.arrivals == [
        (65534, 1000),
        (65535, 1250),
        (0, 1250),
        (1, None),
        (2, 257250),
        (3, 321000),
        (4, None),
        (5, None),
        (6, 271000),  # arrived 50 ms before packet 3: a negative large delta
        (7, 271500),
    ]
    again = bytes(fb)  # our encoder may pick other chunks, but as few and the same padding
    assert len(again) == len(data) and again[0] == data[0]
    assert TransportFeedback.parse(again) == fb


def test_parse_one_bit_vector_lost_run_and_draft_zero_padding() -> None:
    data = (
        header(0x8F, 10, base=1000, count=20, ref=-2, fb_count=255)  # P=0
        # 1-bit vector: T=1 S=0, symbols 1 1 0 1 1 1 1 1 1 1 1 1 1 1 -> seqs 1000..1013
        + bytes.fromhex("b7ff")
        + bytes.fromhex("0005")  # run-length: not received x 5 -> 1014..1018
        + bytes.fromhex("4001")  # run-length: large delta x 1 -> 1019
        + bytes([0x10] + [0x04] * 12)  # 13 small deltas: 4 ms, then 1 ms each
        + bytes.fromhex("fff0")  # large delta -16 ticks (-4 ms)
        + bytes(3)  # zero padding without the P bit, as the draft draws it
    )
    assert len(data) == 44
    fb = TransportFeedback.parse(data)
    assert fb.reference_time == -2  # signed 24-bit
    assert fb.feedback_count == 255
    expected: list[tuple[int, int | None]] = [(1000, 4000), (1001, 5000), (1002, None)]
    expected += [(1003 + i, 6000 + 1000 * i) for i in range(11)]
    expected += [(1014 + i, None) for i in range(5)]
    expected += [(1019, 12000)]
    assert fb.arrivals == expected
    assert TransportFeedback.parse(bytes(fb)) == fb


def test_statuses_beyond_the_count_are_ignored() -> None:
    # A 1-bit vector holds 14 symbols; only 3 packets are reported, the rest is filler.
    head = header(0x8F, 6, base=7, count=3, ref=0, fb_count=0)
    data = head + bytes.fromhex("bfff 01 02 03 000000")
    fb = TransportFeedback.parse(data)
    assert fb.arrivals == [(7, 250), (8, 750), (9, 1500)]


# --- encoder choices and round trips ---


def make(arrivals: list[int | None], base: int = 0, ref: int = 0) -> TransportFeedback:
    return TransportFeedback(
        sender_ssrc=1,
        media_ssrc=2,
        base_sequence=base,
        reference_time=ref,
        feedback_count=3,
        arrivals=[((base + i) & 0xFFFF, a) for i, a in enumerate(arrivals)],
    )


@pytest.mark.parametrize(
    ("arrivals", "chunks"),
    [
        # 100 small deltas: one run-length chunk
        ([i * 1000 for i in range(100)], ["2064"]),
        # 20 received, 30 lost, 20 received: three runs
        ([0] * 20 + [None] * 30 + [0] * 20, ["2014", "001e", "2014"]),
        # mixed small/lost, no large: 1-bit vectors of 14
        ([0, None] * 7, ["aaaa"]),
        # a large delta among them: 2-bit vector of 7
        ([0, None, 100_000, 100_250, None, 100_500, 100_750], ["d245"]),
        # 8 large deltas in a row then a lost one: a run beats a 2-bit vector
        ([i * 100_000 for i in range(1, 9)] + [None], ["4008", "0001"]),
    ],
)
def test_encoder_chooses_chunks(arrivals: list[int | None], chunks: list[str]) -> None:
    data = bytes(make(arrivals))
    assert data[20 : 20 + 2 * len(chunks)].hex() == "".join(chunks)
    assert len(data) % 4 == 0
    assert TransportFeedback.parse(data) == make(arrivals)


def random_feedback(rng: random.Random) -> TransportFeedback:
    count = rng.choice([1, 2, 7, 13, 14, 15, 60, rng.randint(1, 600)])
    arrivals: list[int | None] = []
    t = 0
    style = rng.choice(["mixed", "runs", "large"])
    for _ in range(count):
        if (style == "runs" and rng.random() < 0.02) or (style != "runs" and rng.random() < 0.3):
            arrivals.append(None)
            continue
        if style == "large" and rng.random() < 0.5:
            t += rng.randint(-0x8000, 0x7FFF) * 250
        else:
            t += rng.randint(0, 255) * 250
        arrivals.append(t)
    ref = rng.randint(-0x800000, 0x7FFFFF)
    return make(arrivals, base=rng.randint(0, 0xFFFF), ref=ref)


def test_round_trip_random_feedback() -> None:
    rng = random.Random(5)
    for _ in range(300):
        fb = random_feedback(rng)
        data = bytes(fb)
        assert len(data) % 4 == 0
        assert (data[0] & 0x1F, data[1]) == (TRANSPORT_CC_FMT, 205)
        assert (struct.unpack_from("!H", data, 2)[0] + 1) * 4 == len(data)
        assert TransportFeedback.parse(data) == fb


# --- malformed input: always a precise ValueError ---

GOOD = bytes(make([0, 250, None, 100_000, 500]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD[:19], "transport feedback is truncated: 19 bytes"),
        (bytes([0x4F]) + GOOD[1:], "RTP version 1"),
        (GOOD[:1] + bytes([206]) + GOOD[2:], "packet type 206"),
        (bytes([0x81]) + GOOD[1:], "FMT 1"),
        (GOOD[:-4], "transport feedback is truncated: length field says"),
        (GOOD + bytes(4), "4 bytes after its length"),
        (GOOD[:2] + b"\x00\x04" + GOOD[4:20], "transport feedback is truncated: 0 of 5 statuses"),
        (GOOD[:14] + b"\x00\x00" + GOOD[16:], "reports no packets"),
        (GOOD[:20] + b"\x60\x05" + GOOD[22:], "run-length chunk has reserved status 3"),
        (GOOD[:20] + b"\xff\xff" + GOOD[22:], "status vector has reserved status 3"),
        (bytes([GOOD[0] | 0x20]) + GOOD[1:-1] + b"\x40", "invalid padding count 64"),
        (bytes([GOOD[0] | 0x20]) + GOOD[1:-1] + b"\x00", "invalid padding count 0"),
    ],
)
def test_parse_rejects(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransportFeedback.parse(data)


def test_parse_rejects_missing_deltas() -> None:
    # 3 packets received (run-length small x 3) but only 2 delta bytes before the end.
    data = header(0x8F, 5, base=0, count=3, ref=0, fb_count=0) + bytes.fromhex("2003 0101")
    with pytest.raises(ValueError, match="truncated: delta of packet 2"):
        TransportFeedback.parse(data)


@pytest.mark.parametrize(
    ("fb", "message"),
    [
        (make([]), "at least one packet"),
        (make([0, 0x8000 * 250]), "does not fit"),
        (make([0], ref=0x800000), "24 signed bits"),
        (
            TransportFeedback(1, 2, 10, 0, 0, [(10, 0), (12, 250)]),
            "arrival 1 has sequence 12",
        ),
    ],
)
def test_serialize_rejects(fb: TransportFeedback, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bytes(fb)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del buf[rng.randrange(len(buf)) :]
    elif kind == 2:  # corrupt the length field, sometimes consistently with a truncation
        n = rng.randrange(4, len(buf) + 1) // 4 * 4
        del buf[n:]
        struct.pack_into("!H", buf, 2, rng.choice([n // 4 - 1, rng.randrange(0x10000)]) & 0xFFFF)
    elif kind == 3:  # corrupt the status count
        struct.pack_into("!H", buf, 14, rng.randrange(0x10000))
    else:  # random bytes in the chunks / deltas
        for i in range(20, len(buf)):
            if rng.random() < 0.3:
                buf[i] = rng.randrange(256)
    return bytes(buf)


def test_mutation_fuzz_raises_only_value_error() -> None:
    rng = random.Random(11)
    parsed = rejected = 0
    for _ in range(500):
        fb = random_feedback(rng)
        data = mutate(rng, bytes(fb))
        try:
            out = TransportFeedback.parse(data)
        except ValueError:
            rejected += 1
            continue
        parsed += 1
        assert TransportFeedback.parse(bytes(out)) == out  # whatever parses, re-encodes
    assert parsed > 20 and rejected > 100  # both paths were exercised


# --- TransportSequencer ---


def test_sequencer_numbers_wrap_and_lookup() -> None:
    s = TransportSequencer(size=16, first_seq=65530)
    seqs = [s.next(100 + i, 1.0 + i * 0.01, probe_cluster=i % 3 - 1) for i in range(20)]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(20)]
    assert s.lookup(seqs[-1]) == (1.19, 119, 19 % 3 - 1)
    assert s.lookup(seqs[4]) == (1.04, 104, 0)  # last 16 kept
    assert s.lookup(seqs[3]) is None  # overwritten
    assert s.lookup(seqs[-1] + 1) is None  # not sent yet
    assert s.lookup(30000) is None
    assert s.cluster_sent(0) == 7 and s.cluster_sent(1) == 6 and s.cluster_sent(9) == 0
    assert TransportSequencer().lookup(0) is None  # nothing sent


def test_sequencer_sent_bps_matches_brute_force() -> None:
    rng = random.Random(3)
    s = TransportSequencer(size=64)
    sent: list[tuple[float, int]] = []
    t = 0.0
    for step in range(3000):
        t += rng.expovariate(400)
        size = rng.randint(50, 1200)
        s.next(size, t)
        sent.append((t, size))
        if step % 7 == 0:
            window = rng.choice([0.05, 0.1, 0.5])
            recent = sent[-64:]  # only what the ring still holds can be counted
            expected = sum(b for ts, b in recent if ts > t - window) * 8 / window
            assert s.sent_bps(t, window) == pytest.approx(expected)


def test_sequencer_rejects_bad_ring_size() -> None:
    with pytest.raises(ValueError, match="power of two"):
        TransportSequencer(size=1000)


# --- FeedbackRecorder ---


def feedback_of(recorder: FeedbackRecorder) -> TransportFeedback | None:
    data = recorder.build(0.0, 9, 8)
    return None if data is None else TransportFeedback.parse(data)


def test_recorder_reports_reordering_duplicates_and_wrap() -> None:
    r = FeedbackRecorder()
    assert r.build(0.0, 9, 8) is None
    for seq, t in [(65533, 10.0), (65535, 10.002), (65534, 10.003), (65535, 10.5), (1, 10.004)]:
        r.on_packet(seq, t)
    fb = feedback_of(r)
    assert fb is not None
    base = fb.reference_time * 64_000  # arrivals are relative to the reference time
    times = {seq: None if a is None else (base + a) / 1e6 for seq, a in fb.arrivals}
    assert list(times) == [65533, 65534, 65535, 0, 1]
    assert times[65533] == pytest.approx(10.0)
    assert times[65534] == pytest.approx(10.003)
    assert times[65535] == pytest.approx(10.002)  # the duplicate at 10.5 was ignored
    assert times[0] is None
    assert feedback_of(r) is None  # nothing new

    r.on_packet(0, 10.01)  # late: reported lost above, reported again now
    r.on_packet(2, 10.011)
    fb = feedback_of(r)
    assert fb is not None
    assert [seq for seq, _ in fb.arrivals] == [0, 1, 2]
    assert all(a is not None for _, a in fb.arrivals)
    assert fb.feedback_count == 1


def test_recorder_does_not_rereport_very_late_packets() -> None:
    r = FeedbackRecorder()
    for i in range(1000):
        if i != 10:
            r.on_packet(i, i * 0.001)
    while feedback_of(r) is not None:
        pass
    r.on_packet(10, 1.5)  # 990 packets late: recorded, not worth a re-report
    assert feedback_of(r) is None
    r.on_packet(1000, 1.6)
    fb = feedback_of(r)
    assert fb is not None and [s for s, _ in fb.arrivals] == [1000]


def test_recorder_splits_large_backlogs_and_counts_feedback() -> None:
    r = FeedbackRecorder()
    for i in range(1200):
        r.on_packet((60000 + i) & 0xFFFF, 5.0 + i * 0.0001)
    reported: list[int] = []
    counts: list[int] = []
    for _ in range(10):
        fb = feedback_of(r)
        if fb is None:
            break
        assert len(bytes(fb)) <= 1200
        reported += [seq for seq, a in fb.arrivals if a is not None]
        counts.append(fb.feedback_count)
    assert reported == [(60000 + i) & 0xFFFF for i in range(1200)]
    assert counts == [0, 1, 2]


def test_recorder_splits_when_a_delta_does_not_fit() -> None:
    r = FeedbackRecorder()
    r.on_packet(1, 100.0)
    r.on_packet(2, 109.0)  # 9 s later: more than a signed 16-bit delta of 250 us can say
    first, second = feedback_of(r), feedback_of(r)
    assert first is not None and second is not None
    assert [s for s, _ in first.arrivals] == [1]
    assert [s for s, _ in second.arrivals] == [2]
    assert second.reference_time * 0.064 + second.arrivals[0][1] / 1e6 == pytest.approx(109.0)


def test_recorder_feedback_count_wraps() -> None:
    r = FeedbackRecorder()
    counts = []
    for i in range(260):
        r.on_packet(i, i * 0.01)
        fb = feedback_of(r)
        assert fb is not None
        counts.append(fb.feedback_count)
    assert counts[255:] == [255, 0, 1, 2, 3]


def test_recorder_ignores_too_old_and_restarts_on_a_jump() -> None:
    r = FeedbackRecorder(size=64)
    r.on_packet(1000, 1.0)
    assert feedback_of(r) is not None
    r.on_packet(900, 1.01)  # 100 back, older than the ring: ignored
    assert feedback_of(r) is None
    r.on_packet(20000, 1.02)  # far ahead (sender restarted?): no huge run of losses
    fb = feedback_of(r)
    assert fb is not None and fb.arrivals == [(20000, fb.arrivals[0][1])]
