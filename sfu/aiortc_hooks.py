"""Every use of aiortc's private internals lives here, and nowhere else.

aiortc is a WebRTC endpoint: each receiver depayloads, jitter-buffers and decodes on a thread, and
each sender encodes. An SFU must do neither, so we hook it at the RTP level (see
``docs/architecture.md#aiortc-hook-points-and-why``):

- incoming SRTP is still decrypted by aiortc's ``RTCDtlsTransport``; we replace the transport
  instance's ``_handle_rtp_data`` / ``_handle_rtcp_data`` so packets reach the SFU as bytes,
  skipping ``RtpPacket.parse`` and the receivers entirely;
- receivers never decode: the decoder thread that ``receive()`` starts is stopped at once;
- senders never run: ``RTCRtpSender.send`` is replaced on the instance to record the negotiated
  parameters only, so there are no per-sender RTP/RTCP tasks (4,900 of them in a room of 50);
- outgoing packets are SRTP-protected and handed to the nominated ICE pair's datagram transport
  synchronously, skipping four layers of coroutines per packet;
- every datagram reaching a media port passes ``sfu.wire.demux.MediaPortGuard`` before aioice and
  aiortc see it (``GuardedStunProtocol``): garbage is dropped and counted, never an exception;
- SRTP's arrival time is the kernel's receive time of its datagram (``ArrivalStamps``), not the
  time aiortc's reader dequeues it: the feedback we send a browser must not read a busy CPU as
  a queue on the link (issue 10).

These names are private, so aiortc is pinned (==1.16.0) and ``missing_internals()`` is checked by a
test that fails loudly when one disappears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aioice import stun
from aioice.ice import Connection, StunProtocol
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import clock as aiortc_clock
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters

from sfu import native
from sfu.aiortc_loadgen_hooks import *  # noqa: F403 - its __all__: callers use this one module
from sfu.aiortc_memory_hooks import *  # noqa: F403 - its __all__, as for the load generator's
from sfu.aiortc_writer import (  # noqa: F401 - re-exported: callers use this module
    SRTP_AUTH_TAG_LEN,
    DatagramWriter,
    _init_native_forward,
)
from sfu.arrival_stamps import ArrivalStamps, kernel_arrival_ms
from sfu.native_srtp import NATIVE_UNPROTECT as _NATIVE_UNPROTECT
from sfu.native_srtp import srtp_context_address
from sfu.ratelog import handler_errors
from sfu.wire.demux import DatagramDrop, DatagramDrops, IceCredentials, MediaPortGuard
from sfu.wire.rtp_packet import RtpView

logger = logging.getLogger(__name__)

RtpHandler = Callable[[bytes, int], None]
RtpViewHandler = Callable[[RtpView, int], None]
"""(decrypted RTP bytes, arrival time in ms) -> None."""
RtcpHandler = Callable[[bytes], None]

# (owner, attribute) pairs this module relies on.
_REQUIRED: list[tuple[type, str]] = [
    (RTCDtlsTransport, "_handle_rtp_data"),
    (RTCDtlsTransport, "_handle_rtcp_data"),
    (RTCDtlsTransport, "_recv_next"),
    (RTCDtlsTransport, "_send_rtp"),
    (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder"),
    (RTCRtpReceiver, "receive"),
    (RTCRtpSender, "send"),
    (StunProtocol, "datagram_received"),
    (Connection, "data_received"),
    (Connection, "request_received"),
]
# Instance attributes set in __init__ (checked on live objects by the test).
DTLS_INSTANCE_ATTRS = ("_tx_srtp", "_rx_srtp", "_state", "transport")
SENDER_INSTANCE_ATTRS = ("_ssrc", "_rtx_ssrc", "_stream_id")
ICE_CONNECTION_ATTRS = ("_nominated", "_queue", "_check_list")
STUN_PROTOCOL_ATTRS = ("receiver", "transactions")  # set in StunProtocol.__init__


def missing_internals() -> list[str]:
    """Names this module needs that the installed aiortc lacks (empty when all is well)."""
    missing = [f"{owner.__name__}.{name}" for owner, name in _REQUIRED if not hasattr(owner, name)]
    if not hasattr(aiortc_clock, "current_ms"):
        missing.append("aiortc.clock.current_ms")
    return missing


def hook_transport(dtls: RTCDtlsTransport, on_rtp: RtpHandler, on_rtcp: RtcpHandler,
                   on_rtp_view: RtpViewHandler | None = None) -> None:
    """Deliver the transport's decrypted RTP and RTCP to the SFU instead of aiortc's receivers.

    An exception escaping into ``RTCDtlsTransport._recv_next`` would close the whole transport
    (every track of that participant): the handlers are guarded, and a failure drops one packet.
    ``on_rtp_view`` (optional) takes a packet the compiled receive path already parsed
    (``native.receive_view``); ``on_rtp`` gets every other one, as bytes.
    """

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        # Runs right after ``unprotect`` of this very datagram (no await in between in
        # ``_recv_next``): the stamp taken there is this packet's.
        stamps = getattr(dtls._rx_srtp, "stamps", None)
        if stamps is not None and stamps.last_ms is not None:
            arrival_time_ms = stamps.last_ms
        try:
            on_rtp(data, arrival_time_ms)
        except Exception as exc:
            handler_errors.exception("RTP", exc)

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            on_rtcp(data)
        except Exception as exc:
            handler_errors.exception("RTCP", exc)

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]  # the hook itself
    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]  # the hook itself
    # For GuardedStunProtocol's direct path (no queue, no coroutine per packet)
    setattr(dtls, DIRECT_HANDLERS, (on_rtp, on_rtcp, on_rtp_view))


native.init_view(RtpView)  # the class native.receive_view builds (sfu/_fanout_receive.c)

DIRECT_HANDLERS = "_diemcau_direct_handlers"
"""Attribute of a hooked RTCDtlsTransport: (on_rtp, on_rtcp, on_rtp_view or None), called
synchronously."""


def release_connection(pc: RTCPeerConnection) -> None:
    """After ``pc.close()``: break the reference cycles of a closed connection, so reference
    counting frees it and all it holds (SDP, transceivers, transports, SRTP sessions) at once,
    without the cyclic collector (``sfu/gctune.py``). The cycles: aiortc's event listeners
    (a transport's ``statechange`` listeners are bound methods of the connection that owns
    it), our own hooks (a transport's handlers and a sender's ``send`` are closures over the
    Publisher, Subscriber or negotiator that hold the connection; our ICE gathering and
    guarded sockets over aioice's connection and the transport). Left to the collector: 10
    objects per connection (pyOpenSSL's verify callback, a cycle of its own)."""
    pc.remove_all_listeners()
    transports: dict[int, RTCDtlsTransport] = {}
    for transceiver in pc.getTransceivers():
        for end in (transceiver.sender, transceiver.receiver):
            vars(end).pop("send", None)  # capture_sender
            vars(end).pop("receive", None)  # disable_decoding
            if end.transport is not None:
                transports[id(end.transport)] = end.transport
    for dtls in transports.values():
        dtls.remove_all_listeners()  # count_srtp_failures, the connection's state updates
        for name in ("_handle_rtp_data", "_handle_rtcp_data", DIRECT_HANDLERS):
            vars(dtls).pop(name, None)  # hook_transport: back to aiortc's (closed) methods
        ice = dtls.transport
        ice.remove_all_listeners()
        ice.iceGatherer.remove_all_listeners()
        connection = ice.iceGatherer._connection
        vars(connection).pop("get_component_candidates", None)  # configure_ice's, over itself
        # Its pairs' protocols (GuardedStunProtocol) hold the DTLS transport that holds it.
        connection._check_list = []
        connection._nominated.clear()


def _guarded(handler: Callable[..., None], what: str, *args: Any) -> None:
    try:
        handler(*args)
    except Exception as exc:
        handler_errors.exception(what, exc)


def disable_decoding(
    receiver: RTCRtpReceiver, on_receive: Callable[[RTCRtpReceiveParameters], None]
) -> None:
    """Let ``receive()`` run for its bookkeeping, then stop the decoder thread it started."""
    original = receiver.receive

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        await original(parameters)
        receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]  # name-mangled
        on_receive(parameters)

    receiver.receive = receive  # type: ignore[method-assign]  # the hook itself


def capture_sender(
    sender: RTCRtpSender, on_parameters: Callable[[RTCRtpSendParameters], None]
) -> None:
    """Replace ``send()`` so the sender never starts its RTP/RTCP tasks; we send for it."""

    async def send(parameters: RTCRtpSendParameters) -> None:
        on_parameters(parameters)

    sender.send = send  # type: ignore[method-assign]  # the hook itself


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) that aiortc announced for this sender in its SDP."""
    return sender._ssrc, sender._rtx_ssrc


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """aiortc puts every track of a connection in one MediaStream; give each its own msid."""
    sender._stream_id = stream_id


def arrival_ms() -> int:
    return aiortc_clock.current_ms()




RECEIVER_INSTANCE_ATTRS = ("_RTCRtpReceiver__remote_bitrate_estimator",)
"""Instance attributes of a video ``RTCRtpReceiver`` used here (checked by the test)."""


def disable_remb(receiver: RTCRtpReceiver) -> bool:
    """Stop a (client-side) video receiver from estimating and sending REMB on its own.

    The load generator sends REMB values it chooses instead (``loadtest/simulcast.py``).
    Returns False when aiortc no longer has the attribute (nothing was changed).
    """
    name = RECEIVER_INSTANCE_ATTRS[0]
    if not hasattr(receiver, name):
        return False
    setattr(receiver, name, None)
    return True


# -- The media ports: every datagram passes the guard first ---------------------------------------

MAX_BACKLOG = 1000
"""Datagrams waiting for the DTLS transport's reader; beyond this the reader is behind a flood,
and queueing more would only delay the media behind it (and cost memory)."""


class _CountingSrtpSession:
    """aiortc's inbound SRTP session, counting what libsrtp refuses. Anything it raises becomes
    ``pylibsrtp.Error``, the one exception ``_recv_next`` survives (pylibsrtp raises ValueError
    on input over its buffer, which would close the transport)."""

    __slots__ = ("_session", "_drops", "stamps")

    def __init__(self, session: Any, drops: DatagramDrops,
                 stamps: ArrivalStamps | None = None) -> None:
        self._session = session
        self._drops = drops
        self.stamps = stamps

    def unprotect(self, data: bytes) -> bytes:
        if self.stamps is not None:
            self.stamps.take(data)
        try:
            return self._session.unprotect(data)
        except (pylibsrtp.Error, ValueError) as exc:
            self._drops.add(DatagramDrop.SRTP_UNAUTHENTICATED)
            raise pylibsrtp.Error(str(exc)) from None

    def unprotect_rtcp(self, data: bytes) -> bytes:
        try:
            return self._session.unprotect_rtcp(data)
        except (pylibsrtp.Error, ValueError) as exc:
            self._drops.add(DatagramDrop.SRTP_UNAUTHENTICATED)
            raise pylibsrtp.Error(str(exc)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def count_srtp_failures(dtls: RTCDtlsTransport, drops: DatagramDrops,
                        stamps: ArrivalStamps | None = None) -> None:
    """Once DTLS is connected (keys exist), count inbound SRTP that fails authentication (and
    pick up each datagram's kernel arrival time from ``stamps``)."""

    def on_state() -> None:
        session = dtls._rx_srtp
        if dtls._state == DtlsState.CONNECTED and session is not None \
                and not isinstance(session, _CountingSrtpSession):
            # A wrapper, not a pylibsrtp.Session: aiortc calls only unprotect/unprotect_rtcp.
            dtls._rx_srtp = _CountingSrtpSession(  # type: ignore[assignment]
                session, drops, stamps)

    dtls.on("statechange", on_state)


class GuardedStunProtocol(StunProtocol):
    """aioice's UDP protocol for a host candidate, with ``MediaPortGuard`` in front.

    It replaces ``StunProtocol.datagram_received`` (same dispatch, on the message the guard has
    already parsed); nothing a datagram contains can raise out of it.
    """

    def __init__(self, connection: Connection, guard: MediaPortGuard, dtls: RTCDtlsTransport,
                 drops: DatagramDrops, stamps: ArrivalStamps | None = None) -> None:
        super().__init__(connection)
        self.guard = guard
        self.dtls = dtls
        self.drops = drops
        self.stamps = stamps
        # (pylibsrtp session, its srtp_t, socket fd or -1) for native.receive, made at the
        # first SRTP datagram of a keyed transport (the session must stay referenced).
        self._native_rx: tuple[Any, int, int] | None = None
        self._use_native = _NATIVE_UNPROTECT and native.native_enabled()

    def _credentials(self) -> IceCredentials:
        connection = self.receiver
        return IceCredentials(connection.local_username, connection.local_password,
                              connection.remote_username, connection.remote_password)

    # bytes, as asyncio.DatagramProtocol declares and a UDP socket delivers (aioice widened it).
    def datagram_received(  # type: ignore[override]
        self, data: bytes, addr: tuple[Any, ...]
    ) -> None:
        source = (addr[0], addr[1])  # an IPv6 four-tuple to a two-tuple, as aioice does
        try:
            if self.guard.passes_srtp(data, source, self.dtls._state == DtlsState.CONNECTED) \
                    and self._direct(data, self.receiver):
                return  # media: the guard's rules in one call, then straight to the SFU
            verdict = self.guard.check(
                data, source, self._credentials, self.transactions,
                self.dtls._state == DtlsState.CONNECTED,
            )
            if isinstance(verdict, DatagramDrop):
                self.drops.add(verdict)
                return
            connection = self.receiver
            _kind, message = verdict
            if message is None:
                if 127 < data[0] < 192 and self._direct(data, connection):
                    return
                if connection._queue.qsize() >= MAX_BACKLOG:
                    self.drops.add(DatagramDrop.BACKLOG)
                    return
                if self.stamps is not None and 127 < data[0] < 192:  # SRTP/SRTCP (RFC 7983)
                    sock = self.transport.get_extra_info("socket") if self.transport else None
                    arrival = kernel_arrival_ms(sock) if sock is not None else None
                    if arrival is not None:
                        self.stamps.put(data, arrival)
                connection.data_received(data, self.local_candidate.component)
            elif message.message_class == stun.Class.REQUEST:
                connection.request_received(message, source, self)
            else:
                self.transactions[message.transaction_id].response_received(message, source)
        except Exception as exc:  # a bug here or in aioice: drop the datagram, keep the port
            self.drops.add(DatagramDrop.HANDLER_ERROR)
            handler_errors.exception("datagram", exc)


    def _direct(self, data: bytes, connection: Connection) -> bool:
        """SRTP/SRTCP on a connected, hooked transport: unprotect and hand it to the SFU now.

        aiortc would queue the datagram for ``RTCDtlsTransport._recv_next`` (a future, a task
        step and two coroutines per packet) to do the same. Only while that queue is empty, so
        nothing overtakes a datagram still queued; False leaves the datagram to aiortc.
        """
        dtls = self.dtls
        handlers = getattr(dtls, DIRECT_HANDLERS, None)
        rx = dtls._rx_srtp
        if handlers is None or rx is None or not connection._queue.empty():
            return False
        try:
            if len(data) >= 2 and 191 < data[1] < 209:  # RTCP, as aiortc's is_rtcp decides
                _guarded(handlers[1], "RTCP", rx.unprotect_rtcp(data))
            elif self._use_native and self._receive_native(data, rx, handlers[0], handlers[2]):
                pass
            else:
                arrival = None
                if self.stamps is not None and self.transport is not None:  # as the queued path
                    arrival = kernel_arrival_ms(self.transport.get_extra_info("socket"))
                plain = rx.unprotect(data)
                _guarded(handlers[0], "RTP", plain, arrival if arrival is not None
                         else aiortc_clock.current_ms())
        except pylibsrtp.Error:
            pass  # counted by _CountingSrtpSession, as when aiortc drops it
        return True

    def _receive_native(self, data: bytes, rx: Any, on_rtp: RtpHandler,
                        on_view: RtpViewHandler | None) -> bool:
        """The RTP branch of ``_direct`` in one C call (``native.receive``: kernel arrival time
        and libsrtp's unprotect, without pylibsrtp's wrapper; ``native.receive_view`` when the
        handler takes a parsed packet: the header parsed too); False when this transport's
        session cannot go that way (the caller takes the Python path)."""
        session = rx._session if isinstance(rx, _CountingSrtpSession) else rx
        target = self._native_rx
        if target is None or target[0] is not session:
            ctx = srtp_context_address(session)
            if ctx is None:
                self._use_native = False
                return False
            fd = -1
            if self.stamps is not None and self.transport is not None:  # as the Python path
                try:
                    fd = self.transport.get_extra_info("socket").fileno()
                except (AttributeError, OSError, ValueError):
                    fd = -1
            target = self._native_rx = (session, ctx, fd)
        if on_view is not None and native.view_ready():
            plain, arrival = native.receive_view(target[1], target[2], data)
        else:
            plain, arrival = native.receive(target[1], target[2], data)
        if plain is None:
            if isinstance(rx, _CountingSrtpSession):  # as its unprotect counts a refusal
                rx._drops.add(DatagramDrop.SRTP_UNAUTHENTICATED)
            return True
        if arrival < 0:
            arrival = aiortc_clock.current_ms()
        try:  # as _guarded, without its frame: this runs for every packet
            if on_view is None or type(plain) is bytes:
                on_rtp(plain, arrival)
            else:  # an RtpView: receive_view parsed it
                on_view(plain, arrival)
        except Exception as exc:
            handler_errors.exception("RTP", exc)
        return True


# -- ICE: announced addresses and a UDP port range ------------------------------------------------
# aioice gathers every interface except 127.0.0.1, on any port, and offers no way to choose
# either. An operator needs both (firewalls, loopback tests), so each connection's host
# gathering is replaced on the instance; STUN/TURN (only when configured) still run as aioice does.


class PortAllocator:
    """Hands out UDP ports from a range, round-robin, skipping ports the OS refuses."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 < low <= high < 65536:
            raise ValueError(f"bad UDP port range {low}-{high}")
        self.low, self.high = low, high
        self._next = low

    def candidates(self) -> list[int]:
        size = self.high - self.low + 1
        start = self._next
        self._next = self.low + (start - self.low + 1) % size
        return [self.low + (start - self.low + i) % size for i in range(size)]


def configure_ice(
    pc: Any, announce: list[str] | None, ports: PortAllocator | None,
    drops: DatagramDrops | None = None,
) -> None:
    """Restrict host candidates of every ICE gatherer of ``pc`` created so far, and guard their
    sockets (``GuardedStunProtocol``; drops counted in ``drops``).

    Call after the transceivers exist and before ``setLocalDescription`` (which gathers).
    ``announce`` None keeps aioice's own choice of interfaces.
    """
    from aioice.ice import get_host_addresses

    counts = drops if drops is not None else DatagramDrops()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        gatherer = dtls.transport.iceGatherer
        connection = gatherer._connection
        if getattr(connection, "_diemcau_configured", False):
            continue
        connection._diemcau_configured = True
        stamps = ArrivalStamps()
        count_srtp_failures(dtls, counts, stamps)
        guard = MediaPortGuard()  # one per connection: its sockets share the trusted sources
        original = connection.get_component_candidates

        async def gather_component(
            component: int, addresses: list[str], timeout: int = 5,
            _connection: Any = connection, _original: Any = original,
            _guard: MediaPortGuard = guard, _dtls: RTCDtlsTransport = dtls,
            _stamps: ArrivalStamps = stamps,
        ) -> list[Any]:
            loop = asyncio.get_running_loop()
            # ``addresses`` is aioice's own list (every interface but 127.0.0.1): replaced.
            hosts = announce if announce is not None else get_host_addresses(True, False)
            candidates = []
            for host in hosts:
                bound = None
                for port in ports.candidates() if ports else [0]:
                    try:
                        bound = await loop.create_datagram_endpoint(
                            lambda: GuardedStunProtocol(_connection, _guard, _dtls, counts,
                                                        _stamps),
                            local_addr=(host, port),
                        )
                        break
                    except OSError:
                        continue
                if bound is None:
                    logger.warning("ICE: no free UDP port on %s in the configured range", host)
                    continue
                transport, protocol = bound
                candidates.append(add_host_candidate(_connection, protocol, transport,
                                                     component))
            if _connection.stun_server or _connection.turn_server:
                candidates += await _original(component=component, addresses=[], timeout=timeout)
            return candidates

        connection.get_component_candidates = gather_component


def add_host_candidate(connection: Any, protocol: Any, transport: Any, component: int) -> Any:
    """The host candidate of ``transport``'s socket, given to ``protocol`` and ``connection`` as
    aioice's own gathering does (the server's guarded sockets and the load generator's)."""
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority

    sockname = transport.get_extra_info("sockname")
    protocol.local_candidate = Candidate(
        foundation=candidate_foundation("host", "udp", sockname[0]), component=component,
        transport="udp", priority=candidate_priority(component, "host"),
        host=sockname[0], port=sockname[1], type="host")
    connection._protocols.append(protocol)
    return protocol.local_candidate
