"""When the kernel received a datagram (Linux ``SIOCGSTAMP``), on aiortc's clock.

Arrival times stamped when a busy event loop gets round to a packet read a busy CPU as a
queue on the link (issue 10); the kernel's receive time does not. No aiortc internals here:
``sfu.aiortc_hooks`` wires these into the transports.
"""

from __future__ import annotations

import fcntl
import struct
from typing import Any

SIOCGSTAMP = 0x8906
"""Linux ioctl: the kernel's receive time (struct timeval) of the last datagram read."""
UNIX_TO_NTP_S = 2_208_988_800  # aiortc's clock counts milliseconds since 1900
MAX_STAMPS = 2048


def kernel_arrival_ms(sock: Any) -> int | None:
    """When the kernel received the datagram just read from ``sock``, on aiortc's clock; None
    where the platform cannot say (the caller falls back to the time it processes it)."""
    try:
        sec, usec = struct.unpack("@ll", fcntl.ioctl(sock.fileno(), SIOCGSTAMP, bytes(16)))
    except (OSError, AttributeError, ValueError, struct.error):
        return None
    return (sec + UNIX_TO_NTP_S) * 1000 + usec // 1000


class ArrivalStamps:
    """Kernel arrival times of datagrams queued for one DTLS transport's reader, by object
    identity (the same bytes object reaches ``unprotect``); bounded, since DTLS records and
    dropped datagrams are never looked up."""

    __slots__ = ("_stamps", "last_ms")

    def __init__(self) -> None:
        self._stamps: dict[int, int] = {}
        self.last_ms: int | None = None  # of the datagram unprotected last

    def put(self, data: bytes, arrival_ms: int) -> None:
        stamps = self._stamps
        stamps[id(data)] = arrival_ms
        if len(stamps) > MAX_STAMPS:
            del stamps[next(iter(stamps))]

    def take(self, data: bytes) -> None:
        self.last_ms = self._stamps.pop(id(data), None)
