import random

import pytest

from sfu.wire.rewriting import MAX_DROP_RUNS, SequenceRewriter, TimestampRewriter
from sfu.wire.seqmath import pid_diff, seq_add, seq_diff, ts_add, ts_diff
from sfu.wire.vp8 import Vp8Descriptor, Vp8PictureIdMunger, is_vp8_keyframe

# --- SequenceRewriter: scenarios of ("in", seq, expected output) / ("drop", seq) / ("sync", seq)

Op = tuple[str, int] | tuple[str, int, int | None]

SEQ_SCENARIOS: dict[str, tuple[int, list[Op]]] = {
    "implicit start, gap and reorder kept": (
        1000,
        [("in", 5, 1000), ("in", 6, 1001), ("in", 8, 1003), ("in", 7, 1002)],
    ),
    "output wraps": (
        65534,
        [("in", 10, 65534), ("in", 11, 65535), ("in", 12, 0), ("in", 13, 1)],
    ),
    "input wraps": (
        7,
        [("in", 65534, 7), ("in", 65535, 8), ("in", 0, 9), ("in", 1, 10)],
    ),
    "explicit sync near 65535": (
        65535,
        [("sync", 65535), ("in", 65535, 65535), ("in", 0, 0), ("in", 65534, None)],
    ),
    "switch source": (
        100,
        [
            ("in", 500, 100),
            ("in", 501, 101),
            ("sync", 40000),
            ("in", 40000, 102),
            ("in", 39999, None),  # new source, older than the switch point
            ("in", 40001, 103),
        ],
    ),
    "switch when last output is 65535": (
        65534,
        [("in", 1, 65534), ("in", 2, 65535), ("sync", 30000), ("in", 30000, 0)],
    ),
    "drop newest shifts later packets": (
        0,
        [("in", 10, 0), ("drop", 11), ("in", 12, 1), ("in", 13, 2)],
    ),
    "packet older than a drop keeps its number": (
        0,
        [("in", 10, 0), ("drop", 12), ("in", 13, 2), ("in", 11, 1), ("in", 12, None)],
    ),
    "packet after a drop, reordered": (
        0,
        [("in", 10, 0), ("drop", 11), ("in", 13, 2), ("in", 12, 1)],
    ),
    "drops across the wrap": (
        100,
        [
            ("in", 65533, 100),
            ("drop", 65534),
            ("drop", 65535),
            ("drop", 0),
            ("in", 1, 101),
            ("in", 2, 102),
            ("in", 65535, None),  # duplicate of a dropped packet
            ("in", 0, None),
            ("in", 65533, 100),
        ],
    ),
    "two drop runs across the wrap, reordering": (
        0,
        [
            ("in", 65530, 0),
            ("drop", 65532),
            ("in", 65534, 3),
            ("drop", 65535),
            ("drop", 1),
            ("in", 3, 6),
            ("in", 2, 5),
            ("in", 0, 4),  # between the two runs
            ("in", 65533, 2),  # between the first run and the second
            ("in", 65531, 1),  # before both runs
        ],
    ),
    "reordering across the wrap": (
        500,
        [("in", 65534, 500), ("in", 1, 503), ("in", 65535, 501), ("in", 0, 502)],
    ),
    "duplicates": (
        0,
        [("in", 7, 0), ("in", 7, 0), ("in", 8, 1), ("in", 8, 1), ("in", 7, 0)],
    ),
    "late drop is ignored (leaves a hole)": (
        0,
        [("in", 10, 0), ("in", 12, 2), ("drop", 11), ("in", 13, 3), ("in", 11, 1)],
    ),
    "drop of the newest packet, repeated or after sending": (
        0,
        [
            ("in", 10, 0),
            ("drop", 10),  # already sent: nothing to shift
            ("in", 11, 1),
            ("drop", 12),
            ("in", 12, None),  # duplicate of the newest packet, which was dropped
            ("drop", 12),  # duplicate drop: shifts nothing more
            ("in", 13, 2),
        ],
    ),
    "drop before any input": (
        40,
        [("drop", 65535), ("in", 0, 40), ("in", 65535, None)],
    ),
    "drops then switch": (
        0,
        [("in", 1, 0), ("drop", 2), ("drop", 3), ("sync", 9000), ("in", 9000, 1), ("in", 4, None)],
    ),
    "drop of the switch keyframe's successor": (
        200,
        [("sync", 65535), ("in", 65535, 200), ("drop", 0), ("in", 1, 201), ("in", 0, None)],
    ),
}


@pytest.mark.parametrize(("first_output", "ops"), SEQ_SCENARIOS.values(), ids=SEQ_SCENARIOS)
def test_sequence_scenarios(first_output: int, ops: list[Op]) -> None:
    r = SequenceRewriter(first_output)
    for step, op in enumerate(ops):
        if op[0] == "in":
            assert r.input(op[1]) == op[2], f"step {step}: {op}"  # type: ignore[misc]
        elif op[0] == "drop":
            r.drop(op[1])
        else:
            r.sync(op[1])


def test_last_output_tracks_newest() -> None:
    r = SequenceRewriter(65535)
    assert r.last_output == 65534  # nothing output yet: sync will give first_output
    r.input(1)
    r.input(3)
    r.input(2)
    assert r.last_output == 1
    r.drop(4)
    assert r.last_output == 1
    r.sync(777)
    assert r.input(777) == 2 == r.last_output


@pytest.mark.parametrize("start", [0, 30000, 65000, 65535])
def test_long_stream_with_drops_and_reordering_matches_model(start: int) -> None:
    # Three full wraps of input, padding bursts dropped at the head, adjacent swaps. Model: an
    # output number is the count of forwarded-or-hole slots before the packet.
    rng = random.Random(start)
    n = 3 * 65536 + 123
    order = list(range(n))
    for i in range(1, n - 1, 7):  # not 0: the first arrival starts the stream
        if rng.random() < 0.5:
            order[i], order[i + 1] = order[i + 1], order[i]
    is_padding = [rng.random() < 0.05 for _ in range(n)]
    r = SequenceRewriter(start)
    newest = -1
    dropped_at_head: set[int] = set()
    results: dict[int, int | None] = {}
    for e in order:
        seq = (start + e) & 0xFFFF
        if is_padding[e]:
            r.drop(seq)
            if e > newest:
                dropped_at_head.add(e)
        else:
            results[e] = r.input(seq)
        newest = max(newest, e)
    expected_out = start
    for e in range(n):
        if e in dropped_at_head:
            continue
        if not is_padding[e]:
            assert results[e] == expected_out & 0xFFFF, e
        expected_out += 1  # a forwarded packet, or a hole left by a late drop


def test_forgotten_drop_runs_make_older_packets_unsendable() -> None:
    r = SequenceRewriter(0)
    r.input(0)
    seq = 1
    for _ in range(MAX_DROP_RUNS + 1):  # one run too many: the first run is forgotten
        r.drop(seq + 1)  # seq itself is still missing (reordered)
        seq += 2
    assert r.input(1) is None  # older than the forgotten run
    assert r.input(3) == 2  # older than the oldest remembered run: still right
    assert r.input(seq) == seq - (MAX_DROP_RUNS + 1)


# --- TimestampRewriter


@pytest.mark.parametrize(
    ("first_output", "inputs", "expected"),
    [
        (1000, [(5000, 0.0), (8000, 0.033), (5000, 0.04)], [1000, 4000, 1000]),
        (0xFFFFFF00, [(0, 0.0), (0x200, 0.1)], [0xFFFFFF00, 0x100]),  # output wraps
        (7, [(0xFFFFFFFF, 0.0), (1, 0.1)], [7, 9]),  # input wraps
    ],
)
def test_timestamp_first_sync_and_offset(
    first_output: int, inputs: list[tuple[int, float]], expected: list[int]
) -> None:
    r = TimestampRewriter(90000, first_output)
    r.sync(inputs[0][0], inputs[0][1])
    outs = [r.input(ts, t) for ts, t in inputs]
    assert outs == expected
    assert r.offset is not None
    assert all(ts_add(ts, r.offset) == out for (ts, _), out in zip(inputs, outs, strict=True))


@pytest.mark.parametrize(
    ("clock_rate", "last_ts", "last_time", "switch_time", "expected_advance"),
    [
        (90000, 1000, 10.0, 10.5, 45000),
        (48000, 0xFFFFFFF0, 3.0, 3.02, 960),  # wraps
        (90000, 5, 1.0, 1.0, 1),  # no time passed: still moves on
        (90000, 5, 2.0, 1.5, 1),  # clock went backwards: still moves on
        (90000, 5, 0.0, 1e6, 0x7FFFFFFF),  # long pause: capped at half the space
    ],
)
def test_timestamp_switch_advances_by_elapsed_time(
    clock_rate: int, last_ts: int, last_time: float, switch_time: float, expected_advance: int
) -> None:
    r = TimestampRewriter(clock_rate, last_ts)
    r.input(123456, last_time)  # implicit first sync: 123456 -> last_ts
    r.sync(777, switch_time)
    out = r.input(777, switch_time)
    assert out == ts_add(last_ts, expected_advance)
    assert ts_diff(out, last_ts) > 0
    assert r.offset == ts_add(out, -777)


def test_timestamp_elapsed_counts_from_last_packet_sent() -> None:
    r = TimestampRewriter(90000, 0)
    r.input(100, 1.0)
    r.input(100, 1.2)  # same frame, later packet
    r.input(50, 1.3)  # reordered older frame: neither last_output nor its time move
    assert r.last_output == 0
    r.sync(9, 1.5)
    assert r.input(9, 1.5) == 27000  # 0.3 s after the last packet of the newest frame


def test_timestamp_repeated_sync_before_output_uses_first_output() -> None:
    r = TimestampRewriter(90000, 4242)
    r.sync(1, 0.0)
    r.sync(99999, 5.0)
    assert r.input(99999, 5.0) == 4242


# --- a source switch through every rewriter, as the forwarding path uses them


def vp8_packet(pid: int, tl0: int, key: bool) -> bytes:
    desc = Vp8Descriptor(True, 0, False, pid, True, tl0, 0, key, None, 0)
    return bytes(desc) + (b"\x10\x02\x00\x9d\x01\x2a" if key else b"\x11\x02\x00") + bytes(30)


def test_source_switch_keeps_output_continuous() -> None:
    seq_r = SequenceRewriter(65530)
    ts_r = TimestampRewriter(90000, 0xFFFFF000)
    vp8_r = Vp8PictureIdMunger()
    sent: list[tuple[str, int, int, int, int, float]] = []  # (frame, seq, ts, pid, tl0, time)

    current = ["A"]

    def forward(frame: str, seq: int, ts: int, payload: bytes, now: float) -> None:
        # As the forwarder must: a packet of another source than the current one cannot be told
        # apart by its numbers, so it never reaches the rewriters; a key frame switches sources.
        if frame[0] != current[0]:
            if not is_vp8_keyframe(payload):
                return
            current[0] = frame[0]
            d = Vp8Descriptor.parse(payload)
            seq_r.sync(seq)
            ts_r.sync(ts, now)
            vp8_r.sync(d.picture_id, d.tl0picidx)
        out_seq = seq_r.input(seq)
        if out_seq is None:
            return
        d = Vp8Descriptor.parse(vp8_r.rewrite(payload))
        assert d.picture_id is not None and d.tl0picidx is not None
        sent.append((frame, out_seq, ts_r.input(ts, now), d.picture_id, d.tl0picidx, now))

    # Publisher A: 2 packets per frame, 30 fps, with seq, pid and tl0 about to wrap.
    now = 0.0
    for f in range(6):
        for k in range(2):
            payload = vp8_packet((32765 + f) & 0x7FFF, (254 + f) & 0xFF, False)
            forward(f"A{f}", (65533 + 2 * f + k) & 0xFFFF, 1000 + 3000 * f, payload, now)
            now += 0.005
        now += 0.02
    a_count = len(sent)
    now += 0.1  # the switch takes a while
    # Publisher B: unrelated numbers, starts on a key frame; a late packet of A slips in.
    for f in range(4):
        for k in range(2):
            payload = vp8_packet(9000 + f, 50 + f, f == 0 and k == 0)
            forward(f"B{f}", 20000 + 2 * f + k, 777 + 3000 * f, payload, now)
            now += 0.005
        if f == 0:
            forward("A-late", (65533 + 5) & 0xFFFF, 7000, vp8_packet(32767, 0, False), now)
        now += 0.02

    assert a_count == 12
    assert [e[0] for e in sent[a_count:]] == ["B0", "B0", "B1", "B1", "B2", "B2", "B3", "B3"]
    for prev, cur in zip(sent, sent[1:], strict=False):
        assert seq_diff(cur[1], prev[1]) == 1
        if cur[0] == prev[0]:  # same frame: same timestamp and ids
            assert (cur[2], cur[3], cur[4]) == (prev[2], prev[3], prev[4])
        else:
            assert ts_diff(cur[2], prev[2]) > 0
            assert pid_diff(cur[3], prev[3]) == 1
            assert cur[4] == (prev[4] + 1) & 0xFF
    last_a, first_b = sent[a_count - 1], sent[a_count]
    assert ts_diff(first_b[2], last_a[2]) == int((first_b[5] - last_a[5]) * 90000)
    assert [e[1] for e in (sent[0], sent[-1])] == [65530, seq_add(65530, 19)]
    assert [e[3] for e in sent[::2]] == [(32765 + i) & 0x7FFF for i in range(10)]
