"""The load generator's batched receive (``loadtest/rxbatch.py``, ``loadtest/hub.py``), on both
paths: the compiled ``recvmmsg`` reader and the pure-Python ``recvmsg`` one.

Real UDP sockets on loopback; the SRTP "session" is any object (the hub only passes it on).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from loadtest import rxbatch
from loadtest.hub import ReceiveHub
from loadtest.pacer import Pacer

PATHS = [pytest.param(False, id="python"),
         pytest.param(True, id="recvmmsg", marks=pytest.mark.skipif(
             not rxbatch.native_available(), reason="loadtest._rxbatch not built"))]

RTP = bytes([0x80, 96]) + bytes(30)  # first byte 128-191, second not RTCP
RTCP = bytes([0x80, 200]) + bytes(30)
STUN = bytes(20)


def bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def wait_readable(sock: socket.socket, timeout: float = 2.0) -> None:
    import select

    select.select([sock], [], [], timeout)


@pytest.mark.parametrize("native", PATHS)
def test_a_burst_is_read_in_batches_with_senders_and_kernel_times(native: bool) -> None:
    read = rxbatch.reader(native)
    assert (read is rxbatch.recv_native) == native
    receiver, sender = bound(), bound()
    try:
        assert rxbatch.enable_stamps(receiver)
        assert read(receiver, rxbatch.BATCH) == []  # nothing waiting: nothing, no error
        before = time.time()
        count = rxbatch.BATCH + 36
        for i in range(count):
            sender.sendto(i.to_bytes(2, "big") + bytes(100), receiver.getsockname())
        wait_readable(receiver)
        got = read(receiver, rxbatch.BATCH) + read(receiver, rxbatch.BATCH)
        assert [int.from_bytes(d[:2], "big") for d, _s, _t in got] == list(range(count))
        assert {s for _d, s, _t in got} == {sender.getsockname()}
        stamps = [t / 1e9 for _d, _s, t in got]
        assert all(before - 1 <= t <= time.time() + 1 for t in stamps)
        assert stamps == sorted(stamps)
        assert read(receiver, rxbatch.BATCH) == []
        sender.sendto(b"x" * 10, receiver.getsockname())
        wait_readable(receiver)
        assert [d for d, _s, _t in read(receiver, 1)] == [b"x" * 10]  # at most what was asked
    finally:
        receiver.close()
        sender.close()


@pytest.mark.parametrize("native", PATHS)
def test_an_oversized_datagram_is_skipped_and_the_next_read(native: bool) -> None:
    read = rxbatch.reader(native)
    receiver, sender = bound(), bound()
    try:
        sender.sendto(bytes(rxbatch.MAX_DATAGRAM + 500), receiver.getsockname())
        sender.sendto(b"after", receiver.getsockname())
        wait_readable(receiver)
        deadline = time.monotonic() + 2
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            got = [d for d, _s, _t in read(receiver, rxbatch.BATCH)]
        assert got == [b"after"]
    finally:
        receiver.close()
        sender.close()


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.lost = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def drain_until(hub: ReceiveHub, done: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        hub.drain()
        time.sleep(0.002)


@pytest.mark.parametrize("native", PATHS)
async def test_srtp_from_the_peer_goes_to_the_receiver_everything_else_to_ice(
        native: bool) -> None:
    hub = ReceiveHub(native)
    assert hub.native == native
    protocol = Recorder()
    transport = hub.open("127.0.0.1", protocol)
    sock = transport.get_extra_info("socket")
    address = transport.get_extra_info("sockname")
    peer, stranger = bound(), bound()
    taken: list[tuple[bytes, Any, float]] = []
    session: list[Any] = [None]  # no keys yet
    assert hub.take_srtp(sock, lambda data, srtp, at: taken.append((data, srtp, at)),
                         lambda: (session[0], peer.getsockname()))
    try:
        peer.sendto(RTP, address)  # before the keys: to ICE/DTLS, as aiortc would see it
        drain_until(hub, lambda: protocol.received)
        assert [d for d, _a in protocol.received] == [RTP] and not taken
        session[0] = "srtp-session"
        before = time.time()
        for data in (RTP, RTCP, STUN, RTP[:12]):
            peer.sendto(data, address)
        stranger.sendto(RTP, address)
        drain_until(hub, lambda: len(taken) + len(protocol.received) >= 6)
        assert [(d, s) for d, s, _t in taken] == [(RTP, "srtp-session")]
        assert before - 1 <= taken[0][2] <= time.time() + 1  # the kernel's receive time
        assert sorted((d, a) for d, a in protocol.received[1:]) == sorted(
            [(RTCP, peer.getsockname()), (STUN, peer.getsockname()),
             (RTP[:12], peer.getsockname()), (RTP, stranger.getsockname())])
        # sending goes out on the same socket
        transport.sendto(b"answer", peer.getsockname())
        wait_readable(peer)
        assert peer.recvfrom(100) == (b"answer", address)
        assert hub.datagrams == 6 and hub.srtp == 1
    finally:
        transport.close()
        peer.close()
        stranger.close()
    await asyncio.sleep(0)
    assert protocol.lost and len(hub) == 0 and sock.fileno() == -1
    hub.close()


@pytest.mark.parametrize("native", PATHS)
async def test_a_failing_receiver_loses_one_datagram_not_the_beat(native: bool) -> None:
    hub = ReceiveHub(native)
    protocol = Recorder()
    transport = hub.open("127.0.0.1", protocol)
    peer = bound()
    seen: list[bytes] = []

    def receive(data: bytes, _srtp: Any, _at: float) -> None:
        seen.append(data)
        if len(seen) == 1:
            raise RuntimeError("a bug in one participant")

    hub.take_srtp(transport.get_extra_info("socket"), receive,
                  lambda: ("keys", peer.getsockname()))
    try:
        for i in range(3):
            peer.sendto(RTP + bytes([i]), transport.get_extra_info("sockname"))
        drain_until(hub, lambda: len(seen) >= 3)
        assert len(seen) == 3 and hub.handler_errors == 1
    finally:
        transport.close()
        peer.close()
        hub.close()


@pytest.mark.parametrize("native", PATHS)
async def test_the_pacer_reads_its_hub_on_every_beat(native: bool) -> None:
    pacer = Pacer(0.002, ReceiveHub(native))
    protocol = Recorder()
    transport = pacer.open_polled("127.0.0.1", protocol)
    peer = bound()
    try:
        peer.sendto(STUN, transport.get_extra_info("sockname"))
        for _ in range(200):  # the beat runs by itself once a socket is open
            if protocol.received:
                break
            await asyncio.sleep(0.005)
        assert protocol.received == [(STUN, peer.getsockname())] and pacer.ticks > 0
    finally:
        transport.close()
        peer.close()
        await pacer.close()
    with pytest.raises(OSError):
        pacer.hub.open("127.0.0.1", Recorder())  # closed: no more sockets


@pytest.mark.skipif(not rxbatch.native_available(), reason="loadtest._rxbatch not built")
def test_the_compiled_decryption_is_libsrtps_and_refuses_what_it_refuses() -> None:
    import pylibsrtp

    from sfu.wire.rtp_packet import pack_header

    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    plain_rx = pylibsrtp.Session(pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    native_rx = rxbatch.fast_session(pylibsrtp.Session(pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)))
    assert isinstance(native_rx, rxbatch.NativeSrtp)
    packets = [tx.protect(pack_header(0x80, 96, seq, 3000 * seq, 1234) + bytes([seq]) * 900)
               for seq in range(1, 40)]
    for packet in packets:
        assert native_rx.unprotect(packet) == plain_rx.unprotect(packet)
    tampered = bytearray(tx.protect(pack_header(0x80, 96, 50, 0, 1234) + bytes(100)))
    tampered[20] ^= 1
    with pytest.raises(ValueError):
        native_rx.unprotect(bytes(tampered))  # not authentic
    with pytest.raises(ValueError):
        native_rx.unprotect(packets[3])  # a replay
    with pytest.raises(ValueError):
        native_rx.unprotect(b"\x80")  # not even a header
    assert rxbatch.fast_session("not a session") == "not a session"
