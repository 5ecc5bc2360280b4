"""The fan-out on both paths: the native one (sfu/_fanout.c: one call protects and sends every
copy of a packet) and the pure-Python one (DatagramWriter.send_rtp per copy).

Real parts: DatagramWriters on real UDP sockets of the event loop, real libsrtp sessions, and
receivers that unprotect and parse what arrived on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

from sfu import aiortc_hooks, native
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import VP8_IN, rtp_view, vp8_payload

VP8_OUT = Codec("video/VP8", 90000, 100, 101)
KEY = bytes(range(30))

NO_BUILD = pytest.mark.skipif(not native.native_available(),
                              reason="sfu._fanout not built (pip install -e .)")
NO_URING = pytest.mark.skipif(
    not native.native_available() or native.uring_state(True) != "on",
    reason="no io_uring here (the fan-out sends with sendto: the native-sendto path)")
NO_FUSED = pytest.mark.skipif(
    not native.fused_ready(), reason="no native forward_send (not built, or switched off)")
PATHS = [
    pytest.param("uring", id="native-uring", marks=NO_URING),
    pytest.param("sendto", id="native-sendto", marks=NO_BUILD),
    pytest.param("python", id="python"),
    pytest.param("two-calls", id="native-two-calls", marks=NO_URING),
]
"""The fan-out's paths: native copies sent through io_uring (sfu/_fanout_uring.c), native copies
with one sendto each, pure Python; the native ones with ``forward_send`` (forward and send in one
call, sfu/_fanout_send.c) where the build has it, and "two-calls": ``forward`` then
``send_batch`` through io_uring (DIEMCAU_NO_FUSED_SEND=1)."""
FUSED = bool(native.fused_ready())
CHILD_RING = pytest.mark.skipif(
    os.environ.get("DIEMCAU_NO_URING", "") not in ("", "0"),
    reason="a forked child honours DIEMCAU_NO_URING=1 (it sends with sendto)")


@pytest.fixture(autouse=True)
def _uring_back_on() -> Iterator[None]:
    """A test that switched io_uring off (or the fused path) leaves it as the server runs."""
    yield
    if native.native_available():
        native.uring_state(True)
    native._FUSED_READY[0] = FUSED


def use_path(path: str) -> bool:
    """Select a path for the copies sent from now on; True for the native ones."""
    if path != "python":
        ring = path != "sendto"
        assert native.uring_state(ring) == ("on" if ring else "off")
    native._FUSED_READY[0] = FUSED and path != "two-calls"
    return path != "python"


@dataclass
class Subscriber:
    writer: aiortc_hooks.DatagramWriter
    sock: socket.socket
    rx: pylibsrtp.Session
    received: list[bytes] = field(default_factory=list)

    def drain(self) -> list[bytes]:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return self.received
            self.received.append(self.rx.unprotect(data))


@dataclass
class Room:
    pc: RTCPeerConnection
    transports: list[asyncio.DatagramTransport]
    subscribers: list[Subscriber]
    producer: Producer
    consumers: list[Consumer]

    async def wait_for(self, counts: list[int]) -> None:
        """Bounded wait until each receiver holds its expected number of packets."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while [len(s.drain()) for s in self.subscribers] != counts and loop.time() < deadline:
            await asyncio.sleep(0.01)


async def make_room(use_native: bool, n: int = 3, python_writers: tuple[int, ...] = ()) -> Room:
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    dtls = pc.addTransceiver("video", direction="sendonly").sender.transport
    producer = Producer("alice:1", "alice", Kind.VIDEO, "1", lambda p, layer: None)
    producer.set_codec(VP8_IN)
    subscribers, consumers, transports = [], [], []
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        transports.append(transport)
        writer = aiortc_hooks.DatagramWriter(dtls, use_native=use_native
                                             and i not in python_writers)
        # What _refresh takes from a connected DTLS transport and its nominated pair:
        writer._srtp = pylibsrtp.Session(pylibsrtp.Policy(
            key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        writer._sendto = transport.sendto
        writer._addr = sock.getsockname()
        if use_native and i not in python_writers:
            writer._native = writer._native_target(transport, writer._addr)
            assert writer.is_native
        rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY,
                                                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        subscribers.append(Subscriber(writer, sock, rx))
        consumer = Consumer(producer, f"sub{i}", "0", 5000 + 10 * i, 5001 + 10 * i, writer)
        consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=0)
        producer.consumers.append(consumer)
        consumers.append(consumer)
    return Room(pc, transports, subscribers, producer, consumers)


async def close_room(room: Room) -> None:
    for sub in room.subscribers:
        sub.writer.close()
        sub.sock.close()
    for transport in room.transports:
        transport.close()
    await room.pc.close()


@pytest.fixture
async def rooms() -> AsyncIterator[list[Room]]:
    made: list[Room] = []
    yield made
    for room in made:
        await close_room(room)


def vp8_stream(count: int, size: int = 1000) -> list[RtpView]:
    packets = []
    for i in range(count):
        payload = vp8_payload(20 + i // 3, 1, key=i == 0, start=i % 3 == 0) + bytes(size)
        packets.append(rtp_view(100 + i, 3000 * (i // 3), payload, marker=i % 3 == 2))
    return packets


@pytest.mark.parametrize("path", PATHS)
async def test_every_subscriber_receives_every_copy(path: str, rooms: list[Room]) -> None:
    room = await make_room(use_path(path))
    rooms.append(room)
    stream = vp8_stream(30)
    for i, packet in enumerate(stream):
        room.producer.receive(packet, room.producer.layers[0], i * 0.01)
    await room.wait_for([30, 30, 30])
    for sub, consumer in zip(room.subscribers, room.consumers, strict=True):
        views = [RtpView.parse(data) for data in sub.received]
        assert [v.ssrc for v in views] == [consumer.ssrc] * 30
        seqs = [v.sequence_number for v in views]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(30)]
        assert [v.payload[5:] for v in views] == [p.payload[5:] for p in stream]
        assert consumer.packets_sent == 30 and sub.writer.sent_packets == 30
        assert sub.writer.sent_bytes == sum(len(d) for d in sub.received) + 30 * 10


@NO_URING
async def test_every_path_puts_the_same_bytes_on_the_wire(rooms: list[Room]) -> None:
    received = []
    for path in ("uring", "sendto", "python", "two-calls"):
        random.seed(7)  # consumers draw their first sequence number and timestamp
        room = await make_room(use_path(path))
        rooms.append(room)
        for i, packet in enumerate(vp8_stream(12)):
            room.producer.receive(packet, room.producer.layers[0], i * 0.01)
        await room.wait_for([12, 12, 12])
        received.append([sub.received for sub in room.subscribers])
    assert received[0] == received[1] == received[2] == received[3]


@pytest.mark.parametrize("path", PATHS)
async def test_a_copy_too_long_to_protect_is_dropped_and_the_others_go(
        path: str, rooms: list[Room]) -> None:
    room = await make_room(use_path(path))
    rooms.append(room)
    first, second = vp8_stream(2)
    big = rtp_view(102, 3000, vp8_payload(21, 1, key=False) + bytes(1400))
    for i, packet in enumerate((first, big, second)):
        room.producer.receive(packet, room.producer.layers[0], i * 0.01)
    await room.wait_for([2, 2, 2])
    for sub, consumer in zip(room.subscribers, room.consumers, strict=True):
        assert len(sub.received) == 2
        assert sub.writer.protect_errors == 1 and sub.writer.sent_packets == 2
        assert consumer.packets_sent == 2
        assert consumer.drops[DropReason.NOT_CONNECTED] == 1


async def test_native_writer_owns_a_duplicate_descriptor_until_closed(
        rooms: list[Room]) -> None:
    if not native.native_available():
        pytest.skip("sfu._fanout not built")
    room = await make_room(True, n=1)
    rooms.append(room)
    writer = room.subscribers[0].writer
    assert writer._native is not None
    fd = writer._native[1]
    assert fd != room.transports[0].get_extra_info("socket").fileno()
    os.fstat(fd)  # open
    writer.close()
    assert not writer.is_native
    with pytest.raises(OSError):
        os.fstat(fd)


def test_sockaddr_layouts() -> None:
    v4 = native.sockaddr(socket.AF_INET, ("127.0.0.1", 5004))
    assert v4 is not None and len(v4) == 16 and v4[2:4] == b"\x13\x8c" and v4[4:8] == b"\x7f\0\0\1"
    v6 = native.sockaddr(socket.AF_INET6, ("::1", 5004, 0, 0))
    assert v6 is not None and len(v6) == 28 and v6[8:24] == bytes(15) + b"\x01"
    assert native.sockaddr(socket.AF_INET, ("not an address", 1)) is None
    assert native.sockaddr(socket.AF_UNIX, "/tmp/x") is None


def test_no_native_env_switches_new_writers_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NO_NATIVE_ENV, "1")
    assert not native.native_enabled()
    monkeypatch.setenv(native.NO_NATIVE_ENV, "0")
    assert native.native_enabled() == native.native_available()


def test_a_stale_extension_keeps_its_old_paths_and_turns_the_new_ones_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An extension built before ``receive``/``forward`` existed (a stale build after an
    upgrade) must not break the import: those paths stay off, the fan-out still works."""
    import types

    stale = types.SimpleNamespace(send=lambda batch: None, set_protect=lambda address: None)
    monkeypatch.setattr(native, "_MODULE", stale)
    monkeypatch.setattr(native, "_FORWARD_READY", [True])
    assert native._function("send") is not None and native._function("receive") is None
    assert native.set_unprotect_address(1) is False
    assert native.init_forward((), 10, 28) is False and not native.forward_ready()


def test_a_built_forward_accepts_the_classes_it_reads() -> None:
    """The C forward reads Consumer's, the rewriters', RtpHistory's and DatagramWriter's
    __slots__ by name: when one of them changes (RtpHistory's ring once did) it switches itself
    off without a word and forwarding silently falls back to Python. A fresh build must accept
    the classes as they are now."""
    from sfu import native
    from sfu.aiortc_hooks import _init_native_forward

    if not native.native_enabled() or native._function("init_forward") is None:
        pytest.skip("no native forward in this build (pure Python or DIEMCAU_NO_NATIVE=1)")
    assert _init_native_forward() is True
    assert native.forward_ready()


def rtp_head(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 100, seq, seq * 3000, ssrc)


@pytest.mark.parametrize("path", [p for p in PATHS if p.values[0] != "python"])
async def test_a_batch_longer_than_a_chunk_arrives_whole_and_in_order(
        path: str, rooms: list[Room]) -> None:
    """150 copies for 3 sockets: more than one io_uring submission (64 a chunk)."""
    room = await make_room(use_path(path))
    rooms.append(room)
    batch: list[native.BatchItem] = []
    for seq in range(50):
        for sub in room.subscribers:
            assert sub.writer._native is not None
            batch.append((sub.writer._native, rtp_head(seq), bytes([seq]) * 900, None))
    assert native.send_batch(batch) is None
    await room.wait_for([50, 50, 50])
    for sub in room.subscribers:
        views = [RtpView.parse(data) for data in sub.received]
        assert [v.sequence_number for v in views] == list(range(50))
        assert [v.payload[:1] for v in views] == [bytes([seq]) for seq in range(50)]


@pytest.mark.parametrize("path", [p for p in PATHS if p.values[0] != "python"])
async def test_a_send_that_fails_is_reported_and_the_others_go(
        path: str, rooms: list[Room]) -> None:
    """A copy whose socket is gone (EBADF) is reason 2 at its own index; the copies before and
    after it reach their subscribers, on either native path."""
    room = await make_room(use_path(path), n=2)
    rooms.append(room)
    first, second = (sub.writer._native for sub in room.subscribers)
    assert first is not None and second is not None
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_fd = closed.fileno()
    closed.close()
    dead = (first[0], dead_fd, second[2])
    batch: list[native.BatchItem] = [
        (first, rtp_head(1), b"a" * 100, None), (dead, rtp_head(1, 0x99), b"x" * 100, None),
        (second, rtp_head(1), b"b" * 100, None)]
    assert native.send_batch(batch) == [(1, native.BATCH_SEND_FAILED)]
    await room.wait_for([1, 1])
    assert [RtpView.parse(d).payload for d in room.subscribers[0].received] == [b"a" * 100]
    assert [RtpView.parse(d).payload for d in room.subscribers[1].received] == [b"b" * 100]


def exit_code_of_child(check: Callable[[], bool]) -> int:
    """Fork; the child runs ``check`` and says how it went through its exit status (0 true,
    1 false, 99 raised), never going back into pytest. The parent gets that status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = 0 if check() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@NO_URING
@CHILD_RING
async def test_a_forked_child_sends_through_a_ring_of_its_own(rooms: list[Room]) -> None:
    """The parent's ring is not the child's to submit to (worker processes may fork): the child
    sets up its own and its copies arrive."""
    room = await make_room(use_path("uring"), n=2)
    rooms.append(room)
    targets = [sub.writer._native for sub in room.subscribers]
    assert native.send_batch([(t, rtp_head(1), b"p", None) for t in targets if t]) is None

    def child_sends() -> bool:
        failures = native.send_batch([(t, rtp_head(2), b"c", None) for t in targets if t])
        return failures is None and native.uring_state() == "on"

    assert exit_code_of_child(child_sends) == 0
    await room.wait_for([2, 2])
    for sub in room.subscribers:
        assert [RtpView.parse(d).payload for d in sub.received] == [b"p", b"c"]


def test_switching_io_uring_off_and_on() -> None:
    if not native.native_available():
        pytest.skip("sfu._fanout not built")
    assert native.uring_state(False) == "off"
    assert native.uring_state() == "off"
    state = native.uring_state(True)
    assert state == "on" or state.startswith("unavailable: ")


@pytest.mark.parametrize("env, expected", [
    ({"DIEMCAU_NO_URING": "1"}, "compiled, one sendto per copy (io_uring off)"),
    ({"DIEMCAU_NO_NATIVE": "1"}, "pure Python (DIEMCAU_NO_NATIVE=1)"),
    ({"DIEMCAU_NO_URING": "1", "DIEMCAU_NO_FUSED_SEND": "1"},
     "compiled, one sendto per copy (io_uring off); forward and send in two calls "
     "(DIEMCAU_NO_FUSED_SEND=1)"),
])
def test_the_start_up_line_says_which_path_a_fresh_process_takes(
        env: dict[str, str], expected: str) -> None:
    if not native.native_available():
        pytest.skip("sfu._fanout not built")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIEMCAU_NO_")}
    out = subprocess.run([sys.executable, "-c", "from sfu import native; print(native.describe())"],
                         env={**clean, **env}, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == expected


def io_uring_descriptors() -> int:
    """This process's io_uring descriptors (ours, and any a library holds: libuv has one)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += "io_uring" in os.readlink(f"/proc/self/fd/{name}")
    return count


@NO_URING
def test_a_child_switching_io_uring_on_keeps_one_ring_not_its_parents_too() -> None:
    """Switched off in the parent, then on in a forked child: the child closes the inherited
    ring before setting up its own (as many io_uring descriptors after as before, not one
    more)."""
    assert native.uring_state(True) == "on" and native.uring_state(False) == "off"
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest, whatever happens
        code = 99
        try:
            before = io_uring_descriptors()
            state = native.uring_state(True)
            code = 10 + io_uring_descriptors() - before if state == "on" else 98
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 10  # 10 + the rings it added

