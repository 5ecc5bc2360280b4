"""``native.forward_send`` (sfu/_fanout_send.c): a fan-out's forward and send in one C call,
each copy written straight into its send buffer. Against the other paths of
tests/unit/test_native_fanout.py (its rooms: real DatagramWriters, UDP sockets on 127.0.0.1 and
libsrtp sessions): the same bytes on the wire and the same counters with fast and slow consumers
mixed, over a chunk of 64, with a failed send, in a forked child, and with a batch sent from a
callback inside the call.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sfu import aiortc_hooks, native
from sfu import producer as producer_module
from sfu.types import DropReason, PauseReason
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import rtp_view, vp8_payload
from tests.unit.test_native_fanout import (
    CHILD_RING,
    FUSED,
    NO_URING,
    PATHS,
    Room,
    close_room,
    exit_code_of_child,
    make_room,
    rtp_head,
    use_path,
)
from tests.unit.test_native_fanout import _uring_back_on as _uring_back_on  # autouse fixture

NO_FUSED = pytest.mark.skipif(
    not FUSED, reason="no native forward_send (not built, or switched off)")


@pytest.fixture
async def rooms() -> AsyncIterator[list[Room]]:
    made: list[Room] = []
    yield made
    for room in made:
        await close_room(room)


def keyed_stream(count: int, size: int = 700, every: int = 10) -> list[RtpView]:
    """VP8 with a keyframe every ``every`` packets (a paused consumer may resume)."""
    packets = []
    for i in range(count):
        payload = vp8_payload(20 + i // 2, 1, key=i % every == 0, start=i % 2 == 0)
        packets.append(rtp_view(500 + i, 3000 * (i // 2), payload + bytes([i]) * size,
                                marker=i % 2))
    return packets


def outcome(room: Room) -> list[tuple[object, ...]]:
    """What each subscriber received and what its consumer and writer counted."""
    return [(sub.received, consumer.packets_sent, consumer.octets_sent, dict(consumer.drops),
             sub.writer.sent_packets, sub.writer.sent_bytes, sub.writer.protect_errors)
            for sub, consumer in zip(room.subscribers, room.consumers, strict=True)]


class Calls:
    """Counts calls of a function that it then runs."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.count = 0

    def __call__(self, *args: Any) -> Any:
        self.count += 1
        return self.function(*args)


async def run_mixed(path: str, rooms: list[Room], monkeypatch: pytest.MonkeyPatch,
                    n: int = 5) -> tuple[list[tuple[object, ...]], int, int]:
    """A fan-out where some copies take forward_send (or forward) and others Consumer.send: a
    Python writer (subscriber 1), a consumer paused and resumed at a keyframe (2), one whose
    target moves to a layer that never comes (3: keeps the current one, asking for keyframes),
    and a fresh one's first copy (its NACK ring allocated by Consumer.send)."""
    random.seed(5)
    room = await make_room(use_path(path), n=n, python_writers=(1,))
    rooms.append(room)
    fused = Calls(native.forward_send)
    sends = Calls(producer_module.send_batch)
    monkeypatch.setattr(native, "forward_send", fused)
    monkeypatch.setattr(producer_module, "send_batch", sends)
    stream = keyed_stream(40)
    for i, packet in enumerate(stream):
        if i == 7:
            room.consumers[2].set_target(None, PauseReason.BANDWIDTH)
        if i == 15:
            room.consumers[2].set_target(0)
            room.consumers[3].set_target(1)
        room.producer.receive(packet, room.producer.layers[0], 100 + i * 0.01)
    expected = [40] * n
    expected[2] = 40 - (20 - 7)  # paused at 7, resumed at the keyframe at 20
    await room.wait_for(expected)
    monkeypatch.undo()
    return outcome(room), fused.count, sends.count


@NO_URING
@NO_FUSED
async def test_mixed_fast_and_slow_consumers_keep_their_packets_and_counters(
        rooms: list[Room], monkeypatch: pytest.MonkeyPatch) -> None:
    results = {}
    for path in ("uring", "sendto", "python", "two-calls"):
        results[path] = await run_mixed(path, rooms, monkeypatch)
    python = results["python"][0]
    for path, (state, fused_calls, send_calls) in results.items():
        assert state == python, path
        if path in ("uring", "sendto"):
            assert fused_calls == 40  # every packet's fan-out in one call ...
            # ... and send_batch only for Consumer.send's native copies: the first packet's
            # (NACK rings allocated) and subscriber 2's switch back at the keyframe.
            assert send_calls == 2
        elif path == "two-calls":
            assert fused_calls == 0 and send_calls == 40
    assert python[1][1] == 40 and python[2][1] == 27 and python[2][3]
    assert python[3][3] == {}  # kept layer 0 waiting for layer 1's keyframe, nothing dropped


@NO_URING
@NO_FUSED
async def test_a_fan_out_longer_than_a_chunk_goes_whole_on_every_path(
        rooms: list[Room]) -> None:
    """70 consumers: forward_send flushes its queue at 64 copies and again at the end."""
    received = {}
    for path in ("uring", "sendto", "python", "two-calls"):
        random.seed(9)
        room = await make_room(use_path(path), n=70)
        rooms.append(room)
        for i, packet in enumerate(keyed_stream(4)):
            room.producer.receive(packet, room.producer.layers[0], 10 + i * 0.01)
        await room.wait_for([4] * 70)
        received[path] = outcome(room)
        assert all(state[1] == 4 and state[4] == 4 for state in received[path]), path
    assert received["uring"] == received["sendto"] == received["python"] == received["two-calls"]


@pytest.mark.parametrize("path", [p for p in PATHS if p.values[0] != "python"])
async def test_a_copy_whose_send_fails_is_uncounted_and_the_others_go(
        path: str, rooms: list[Room]) -> None:
    """Subscriber 1's target points at a closed descriptor for the second packet (taken by
    forward_send, or forward + send_batch): its copy is uncounted (consumer and writer), the
    writer drops its target, and subscribers 0 and 2 get both packets."""
    room = await make_room(use_path(path), n=3)
    rooms.append(room)
    first, second, third = keyed_stream(3)
    room.producer.receive(first, room.producer.layers[0], 1.0)  # NACK rings allocated
    await room.wait_for([1, 1, 1])
    writer = room.subscribers[1].writer
    target = writer._native
    assert target is not None
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_fd = closed.fileno()
    closed.close()
    writer._native = (target[0], dead_fd, target[2])
    room.producer.receive(second, room.producer.layers[0], 1.01)
    assert writer._native is None  # batch_failed dropped it: re-made on the next send
    await room.wait_for([2, 1, 2])
    consumer = room.consumers[1]
    size = len(room.subscribers[1].received[0]) + aiortc_hooks.SRTP_AUTH_TAG_LEN  # protected
    assert (consumer.packets_sent, consumer.octets_sent) == (1, len(first.payload))
    assert consumer.drops[DropReason.NOT_CONNECTED] == 1
    assert (writer.sent_packets, writer.sent_bytes, writer.protect_errors) == (1, size, 0)
    for i in (0, 2):
        assert room.consumers[i].packets_sent == 2 and room.subscribers[i].writer.sent_packets == 2
    # not connected (the stand-in transport): counted as Consumer.send counts it
    room.producer.receive(third, room.producer.layers[0], 1.02)
    await room.wait_for([3, 1, 3])
    assert consumer.drops[DropReason.NOT_CONNECTED] == 2 and consumer.packets_sent == 1


@NO_URING
@NO_FUSED
@CHILD_RING
async def test_a_forked_child_forwards_through_a_ring_of_its_own(rooms: list[Room]) -> None:
    """forward_send in a forked child (worker processes may fork) sets up the child's ring;
    its copies arrive and none is reported failed."""
    room = await make_room(use_path("uring"), n=2)
    rooms.append(room)
    first, second = keyed_stream(2)
    room.producer.receive(first, room.producer.layers[0], 1.0)

    def child_forwards() -> bool:
        room.producer.receive(second, room.producer.layers[0], 1.01)
        return ([c.packets_sent for c in room.consumers] == [2, 2]
                and native.uring_state() == "on")

    assert exit_code_of_child(child_forwards) == 0
    await room.wait_for([2, 2])
    for sub in room.subscribers:
        assert [RtpView.parse(d).payload for d in sub.received] == [first.payload,
                                                                     second.payload]


class NestedSender:
    """A transport-cc stamper whose ``next`` sends a batch of its own (a Python callback that
    runs inside forward_send while earlier copies wait in the send arena)."""

    def __init__(self, target: native.NativeTarget) -> None:
        self.target = target
        self.calls = 0

    def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int:
        self.calls += 1
        batch: list[native.BatchItem] = [
            (self.target, rtp_head(900 + k, 0x77), b"nested%d" % k, None) for k in range(2)]
        assert native.send_batch(batch) is None
        return self.calls


@pytest.mark.parametrize("path", [p for p in PATHS if p.values[0] in ("uring", "sendto")])
async def test_a_batch_sent_from_inside_forward_send_leaves_its_queued_copies_alone(
        path: str, rooms: list[Room]) -> None:
    """Consumer 2's stamper sends a batch while the copies of consumers 0 and 1 wait in the
    arena: that batch goes out with sendto, and every copy arrives as it was made."""
    room = await make_room(use_path(path), n=3)
    rooms.append(room)
    first, second = keyed_stream(2)
    room.producer.receive(first, room.producer.layers[0], 1.0)
    target = room.subscribers[2].writer._native
    assert target is not None
    nested = NestedSender(target)
    room.consumers[2].twcc = nested
    room.consumers[2].twcc_id = 5
    room.producer.receive(second, room.producer.layers[0], 1.01)
    assert nested.calls == 1
    await room.wait_for([2, 2, 4])
    for sub in room.subscribers[:2]:
        assert [RtpView.parse(d).payload for d in sub.received] == [first.payload,
                                                                     second.payload]
    views = [RtpView.parse(d) for d in room.subscribers[2].received]
    assert [v.payload for v in views] == [first.payload, b"nested0", b"nested1", second.payload]
    assert views[3].extensions[5] == b"\x00\x01"  # the stamper's number, in the fused copy


@pytest.mark.parametrize("env, expected", [({}, "True True"),
                                           ({"DIEMCAU_NO_FUSED_SEND": "1"}, "True False")])
def test_no_fused_send_env_takes_forward_and_send_in_a_fresh_process(
        env: dict[str, str], expected: str) -> None:
    if not FUSED:
        pytest.skip("no native forward_send in this build (or switched off here)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIEMCAU_NO_")}
    code = ("from sfu import aiortc_hooks, native; "
            "print(native.forward_ready(), native.fused_ready())")
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == expected
