"""The load generator's receive hub: every subscriber socket of a process, read on one beat.

An event loop reads a UDP socket one datagram per wake-up: a readiness event, a callback, a
``recvfrom`` and a protocol call per packet. A synthetic participant receives ~600 packets a
second (nine videos and three voices), so fifty of them in one process cost the loop 30,000
wake-ups a second: what made the load generator cost as much as the server it loads. The hub
owns those sockets instead (the event loop never polls them): on each beat of the process's
``Pacer`` it asks one ``epoll`` which sockets have data and reads each with one ``recvmmsg``
(``loadtest/rxbatch.py``), so a beat reads every datagram that arrived since the last, in a
few calls. Each datagram keeps the kernel's receive time, so delays and jitter are measured
from its arrival, not from the beat (at most ``Pacer.period`` later).

What is read goes where the event loop would have sent it: SRTP from the nominated ICE peer,
once the DTLS keys exist, straight to the participant's ``CheapReceiver`` (still encrypted);
everything else (STUN, DTLS, SRTCP, strangers) to the socket's aioice protocol, as before.
Sending is a plain non-blocking ``sendto`` (``PolledTransport``), as the event loop's is.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from loadtest import rxbatch

logger = logging.getLogger(__name__)

RECEIVE_BUFFER = 1 << 20
"""Bytes of socket buffer asked for: a beat's worth of datagrams (and a starved beat's) must
fit, or the kernel drops them (counted as ``udp_rcvbuf_drops`` by the load test)."""
MAX_READS = 16
"""``recvmmsg`` calls per socket per beat at most (16 x 64 datagrams): bounded work."""

SrtpReceiver = Callable[[bytes, Any, float], None]
"""(SRTP as received, the receive SRTP session, kernel arrival in wall-clock seconds)."""
SrtpState = Callable[[], tuple[Any, Any]]
"""-> (the receive SRTP session or None before the keys, the nominated peer's address)."""


class PolledTransport(asyncio.DatagramTransport):
    """A datagram transport whose socket the hub reads (not the event loop)."""

    def __init__(self, hub: ReceiveHub, sock: socket.socket, protocol: Any) -> None:
        super().__init__()
        self._hub = hub
        self._sock = sock
        self._protocol = protocol
        self._closed = False
        self.send_dropped = 0  # a full send buffer: the datagram is gone, as UDP's would be

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closed:
            return
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:
            self._protocol.error_received(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname() if not self._closed else default
        return default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.detach(self._sock)
        self._sock.close()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closed outside the loop (at exit): tell the protocol now
            self._protocol.connection_lost(None)
            return
        loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class _Polled:
    """One socket of the hub: its protocol, and the SRTP shortcut once set."""

    __slots__ = ("sock", "protocol", "on_srtp", "state", "session", "fast")

    def __init__(self, sock: socket.socket, protocol: Any) -> None:
        self.sock = sock
        self.protocol = protocol
        self.on_srtp: SrtpReceiver | None = None
        self.state: SrtpState | None = None
        self.session: Any = None  # the receive session last seen ...
        self.fast: Any = None  # ... and what decrypts for it (rxbatch.fast_session)


class ReceiveHub:
    """The sockets one process reads on its beat (see the module docstring)."""

    def __init__(self, native: bool | None = None) -> None:
        self._read = rxbatch.reader(native)
        self.native = self._read is rxbatch.recv_native
        self._epoll = select.epoll()
        self._polled: dict[int, _Polled] = {}
        self.datagrams = 0  # read, all kinds
        self.srtp = 0  # of them, handed to a receiver directly
        self.reads = 0  # recv calls that returned something
        self.errors = 0  # socket errors read (e.g. ICMP port unreachable)
        self.handler_errors = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._polled)

    def open(self, host: str, protocol: Any, port: int = 0) -> PolledTransport:
        """Bind a UDP socket on ``host``, give ``protocol`` its transport, read it from now on."""
        if self.closed:
            raise OSError("the receive hub is closed")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            rxbatch.enable_stamps(sock)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        transport = PolledTransport(self, sock, protocol)
        self._polled[sock.fileno()] = _Polled(sock, protocol)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        protocol.connection_made(transport)
        return transport

    def take_srtp(self, sock: socket.socket, on_srtp: SrtpReceiver, state: SrtpState) -> bool:
        """From now on, SRTP on ``sock`` from the peer ``state()`` names goes to ``on_srtp``
        (once ``state()`` has a session). False for a socket the hub does not read."""
        polled = self._polled.get(sock.fileno()) if sock.fileno() >= 0 else None
        if polled is None or polled.sock is not sock:
            return False
        polled.on_srtp, polled.state = on_srtp, state
        return True

    def detach(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        polled = self._polled.get(fd)
        if polled is not None and polled.sock is sock:
            del self._polled[fd]
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def drain(self) -> int:
        """Read every socket that has data (called on each beat); how many datagrams."""
        if not self._polled:
            return 0
        total = 0
        for fd, _events in self._epoll.poll(0):
            polled = self._polled.get(fd)
            if polled is not None:
                total += self._read_socket(polled)
        self.datagrams += total
        return total

    def _read_socket(self, polled: _Polled) -> int:
        read = self._read
        sock = polled.sock
        srtp: Any = None
        peer: Any = None
        if polled.state is not None:
            srtp, peer = polled.state()
            if srtp is not polled.session:
                polled.session = srtp
                polled.fast = rxbatch.fast_session(srtp) if self.native else srtp
            srtp = polled.fast
        on_srtp = polled.on_srtp if srtp is not None else None
        count = direct = 0
        for _ in range(MAX_READS):
            try:
                batch = read(sock, rxbatch.BATCH)
            except OSError:
                self.errors += 1  # reported once by the kernel: read on
                continue
            if not batch:
                break
            self.reads += 1
            count += len(batch)
            for data, sender, stamp in batch:
                try:
                    if on_srtp is not None and sender == peer and len(data) > 12 \
                            and 127 < data[0] < 192 and not 191 < data[1] < 224:
                        on_srtp(data, srtp, stamp / 1e9 if stamp else time.time())
                        direct += 1
                    else:
                        polled.protocol.datagram_received(data, sender)
                except Exception:  # noqa: BLE001 - one datagram must not stop the beat
                    self.handler_errors += 1
                    if self.handler_errors <= 3:
                        logger.exception("datagram handler failed")
            if len(batch) < rxbatch.BATCH:
                break
            if polled.sock is not sock or sock.fileno() < 0:
                break  # closed by a handler
        self.srtp += direct
        return count

    def close(self) -> None:
        """Stop reading (the sockets stay with their transports, which close them)."""
        self.closed = True
        for polled in list(self._polled.values()):
            self.detach(polled.sock)
        self._epoll.close()
