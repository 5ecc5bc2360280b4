"""``native.extension_blocks`` (sfu/_fanout_blocks.c) must give exactly what ``Producer._blocks``
gives (the elements every consumer of one packet shares and the finished block), raise where it
raises, and hand anything unusual to it. ``native.forward`` asks it once per packet."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.producer import Producer
from sfu.types import Kind
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import rtp_view

pytestmark = pytest.mark.skipif(not native.blocks_ready(),
                                reason="sfu._fanout not built (pip install -e .)")


def producer(audio_level_ext_id: int | None) -> Producer:
    made = Producer("p:0", "p", Kind.AUDIO, "0", lambda _producer, _layer: None)
    made.audio_level_ext_id = audio_level_ext_id
    return made


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", call(*args)
    except Exception as exc:  # the same class of error on both paths
        return "raises", type(exc)


def both(made: Producer, packet: Any, key: Any, now: float) -> tuple[Any, Any]:
    return (outcome(made._blocks, packet, key, now),
            outcome(native.extension_blocks, made, packet, key, now))


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    own_id=st.one_of(st.none(), st.integers(1, 14)),
    level=st.one_of(st.none(), st.binary(min_size=0, max_size=20)),
    other=st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=4), max_size=3),
    audio_level_id=st.integers(0, 20),
    abs_send_time_id=st.integers(0, 20),
    now=st.one_of(st.floats(0, 1e7, allow_nan=False), st.floats(-10, 0, allow_nan=False)),
)
def test_the_same_elements_block_and_errors_as_python(
    own_id: int | None, level: bytes | None, other: dict[int, bytes], audio_level_id: int,
    abs_send_time_id: int, now: float,
) -> None:
    extensions = dict(other)
    if own_id is not None and level is not None:
        extensions[own_id] = level
    made = producer(own_id)
    packet = rtp_view(1, 2, b"x", extensions=extensions)
    python, c = both(made, packet, (audio_level_id, abs_send_time_id), now)
    assert c == python


@pytest.mark.parametrize("key", [
    (1, 2, 3), [1, 2], (True, 2), (1.0, 2), (1, -1), (1, 300), (None, 2), "12",
])
def test_an_unusual_key_gets_what_python_gives(key: Any) -> None:
    made = producer(1)
    packet = rtp_view(1, 2, b"x", extensions={1: b"\x85"})
    python, c = both(made, packet, key, 12.5)
    assert c == python


def test_a_level_that_is_not_bytes_or_a_packet_of_another_kind_goes_to_python() -> None:
    made = producer(1)
    for packet in (rtp_view(1, 2, b"x", extensions={1: bytearray(b"\x85")}),  # type: ignore[dict-item]
                   RtpView(b"", 96, 0, 1, 2, 3, {1: memoryview(b"\x85")}, b"x", 0)):  # type: ignore[dict-item]
        python, c = both(made, packet, (3, 4), 7.25)
        assert c == python
    called = []

    class Odd(Producer):
        def _blocks(self, packet: RtpView, key: tuple[int, int], now: float) -> tuple[bytes, bytes]:
            called.append(key)
            return b"e", b"b"

    odd = Odd("p:0", "p", Kind.AUDIO, "0", lambda _producer, _layer: None)
    odd.audio_level_ext_id = 1  # so the level is looked up, in a packet that has no extensions
    assert native.extension_blocks(odd, object(), (1, 2), 1.0) == (b"e", b"b")  # no extensions
    assert called == [(1, 2)]


def test_an_integer_now_and_a_packet_without_elements() -> None:
    made = producer(None)
    packet = rtp_view(1, 2, b"x")
    assert native.extension_blocks(made, packet, (0, 0), 3.0) == (b"", b"")
    python, c = both(made, packet, (0, 5), 3)  # an int, not a float: Python decides
    assert c == python and c[0] == "value"
