import pytest

from sfu.wire.seqmath import (
    pid7_add,
    pid7_diff,
    pid_add,
    pid_diff,
    ref24_diff,
    seq_add,
    seq_diff,
    seq_newer,
    tl0_add,
    tl0_diff,
    ts_add,
    ts_diff,
    ts_newer,
)


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [
        (0, 1, 1),
        (65535, 1, 0),
        (65530, 10, 4),
        (0, -1, 65535),
        (5, -10, 65531),
        (100, 65536, 100),
        (-1, 0, 65535),  # out-of-range input is reduced too
    ],
)
def test_seq_add(a: int, n: int, expected: int) -> None:
    assert seq_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 3, 2),
        (3, 5, -2),
        (0, 65535, 1),
        (65535, 0, -1),
        (10, 65530, 16),
        (65530, 10, -16),
        (32767, 0, 32767),
        (32768, 0, -32768),  # exactly half: the range is [-32768, 32767]
        (0, 32768, -32768),
        (7, 7, 0),
        (65536 + 7, 5, 2),  # extended (unwrapped) values are accepted
    ],
)
def test_seq_diff(a: int, b: int, expected: int) -> None:
    assert seq_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 0, True),
        (0, 1, False),
        (0, 65535, True),
        (65535, 0, False),
        (5, 5, False),
        (32767, 0, True),
        (32768, 0, False),  # half-way is undefined in RFC 1982: neither is newer
        (0, 32768, False),
        (100, 65000, True),
    ],
)
def test_seq_newer(a: int, b: int, expected: bool) -> None:
    assert seq_newer(a, b) is expected


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [
        (0, 1, 1),
        (0xFFFFFFFF, 1, 0),
        (0xFFFFFF00, 0x200, 0x100),
        (0, -1, 0xFFFFFFFF),
        (90000, -90000, 0),
    ],
)
def test_ts_add(a: int, n: int, expected: int) -> None:
    assert ts_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (3000, 0, 3000),
        (0, 3000, -3000),
        (0, 0xFFFFFFFF, 1),
        (0x100, 0xFFFFFF00, 0x200),
        (0x7FFFFFFF, 0, 0x7FFFFFFF),
        (0x80000000, 0, -0x80000000),
    ],
)
def test_ts_diff(a: int, b: int, expected: int) -> None:
    assert ts_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 0, True),
        (0, 1, False),
        (0, 0xFFFFFFFF, True),
        (0x80000000, 0, False),
        (0x7FFFFFFF, 0, True),
        (9, 9, False),
    ],
)
def test_ts_newer(a: int, b: int, expected: bool) -> None:
    assert ts_newer(a, b) is expected


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [(0, 1, 1), (32767, 1, 0), (32760, 20, 12), (0, -1, 32767), (5, 32768, 5)],
)
def test_pid_add(a: int, n: int, expected: int) -> None:
    assert pid_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 3, 2),
        (3, 5, -2),
        (0, 32767, 1),
        (32767, 0, -1),
        (16383, 0, 16383),
        (16384, 0, -16384),
    ],
)
def test_pid_diff(a: int, b: int, expected: int) -> None:
    assert pid_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [(0, 1, 1), (127, 1, 0), (120, 20, 12), (0, -1, 127), (5, 32768 + 128, 5)],
)
def test_pid7_add(a: int, n: int, expected: int) -> None:
    assert pid7_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(5, 3, 2), (0, 127, 1), (127, 0, -1), (63, 0, 63), (64, 0, -64), (1, 0x7F80, 1)],
)
def test_pid7_diff(a: int, b: int, expected: int) -> None:
    assert pid7_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [(0, 1, 1), (255, 1, 0), (250, 10, 4), (0, -1, 255)],
)
def test_tl0_add(a: int, n: int, expected: int) -> None:
    assert tl0_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(5, 3, 2), (0, 255, 1), (255, 0, -1), (127, 0, 127), (128, 0, -128)],
)
def test_tl0_diff(a: int, b: int, expected: int) -> None:
    assert tl0_diff(a, b) == expected


@pytest.mark.parametrize("b", [0, 1, 32767, 32768, 65534, 65535])
@pytest.mark.parametrize("n", [1, 2, 1000, 32767])
def test_seq_add_diff_newer_agree(b: int, n: int) -> None:
    # n steps forward from b is n newer, and never newer the other way round.
    a = seq_add(b, n)
    assert seq_diff(a, b) == n
    assert seq_diff(b, a) == -n
    assert seq_newer(a, b)
    assert not seq_newer(b, a)


def test_ref24_diff_wraps_the_transport_cc_reference_time() -> None:
    assert ref24_diff(0, 0xFFFFFF) == 1
    assert ref24_diff(0xFFFFFF, 0) == -1
    assert ref24_diff(0x7FFFFF, 0) == 0x7FFFFF
    assert ref24_diff(0x800000, 0) == -0x800000
    assert ref24_diff(5, 3) == 2
