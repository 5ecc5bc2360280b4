"""SRTP arrival times are the kernel's receive times (issue 10): a reader that gets to a datagram
late (a busy CPU) must not make the transport-cc feedback we send read that as link delay."""

from __future__ import annotations

import socket
import time

from aiortc import clock

from sfu.arrival_stamps import MAX_STAMPS, ArrivalStamps, kernel_arrival_ms

LATE_READ_S = 0.2  # the reader is this late: what a stalled event loop does


def test_the_kernel_stamp_is_when_the_datagram_arrived_not_when_it_was_read() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        kernel_arrival_ms(rx)  # the first call switches the kernel's receive stamps on
        sent_ms = clock.current_ms()
        tx.sendto(b"\x80" + bytes(20), rx.getsockname())
        time.sleep(LATE_READ_S)
        rx.recvfrom(2048)
        read_ms = clock.current_ms()
        stamp = kernel_arrival_ms(rx)
    finally:
        rx.close()
        tx.close()
    assert stamp is not None
    assert sent_ms - 5 <= stamp <= sent_ms + 100, (sent_ms, stamp)
    assert read_ms - stamp >= LATE_READ_S * 1000 - 20, (read_ms, stamp)


def test_a_socket_without_a_stamp_gives_none() -> None:
    assert kernel_arrival_ms(object()) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
        fresh.bind(("127.0.0.1", 0))
        first = kernel_arrival_ms(fresh)  # nothing read yet
    assert first is None


def test_stamps_follow_the_datagram_object_and_stay_bounded() -> None:
    stamps = ArrivalStamps()
    first, second = bytes([0x80, 1]), bytes([0x80, 2])
    stamps.put(first, 1000)
    stamps.put(second, 1005)
    stamps.take(second)
    assert stamps.last_ms == 1005
    stamps.take(first)
    assert stamps.last_ms == 1000
    stamps.take(first)  # taken already: no stale stamp
    assert stamps.last_ms is None
    keep = [bytes([0x80]) + i.to_bytes(4, "big") for i in range(MAX_STAMPS + 10)]
    for i, data in enumerate(keep):
        stamps.put(data, i)
    stamps.take(keep[0])
    assert stamps.last_ms is None  # the oldest went
    stamps.take(keep[-1])
    assert stamps.last_ms == MAX_STAMPS + 9
