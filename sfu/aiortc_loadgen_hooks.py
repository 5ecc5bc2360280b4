"""The aiortc internals only the load generator, the benchmarks and the tests use (never on the
server's path). Split from ``sfu.aiortc_hooks`` for size; it re-exports every name here, so
callers import one module, and ``tests/unit/test_aiortc_hooks.py`` guards both files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

logger = logging.getLogger(__name__)

__all__ = [
    "LOADGEN_INSTANCE_ATTRS",
    "SrtpHandler",
    "gather_on_polled_sockets",
    "ice_sockets",
    "idle_receiver",
    "missing_loadgen_internals",
    "receive_srtp_context",
    "receive_srtp_directly",
    "send_audio_level",
    "srtp_receive_state",
    "srtp_unprotect_address",
    "take_srtp_early",
    "vp8_packetize",
]



# -- The load generator and tests only (never on the server's path) -------------------------------
# loadtest/, bench/ and the tests reach into aiortc too; those names live here as well, so that one
# module holds every aiortc internal and one test (tests/unit/test_aiortc_hooks.py) guards them.

LOADGEN_INSTANCE_ATTRS = ("_connection",)
"""Instance attributes of ``RTCIceTransport`` used below (checked on a live object by the test)."""

SrtpHandler = Callable[[bytes, Any], None]
"""(an SRTP packet as received, still encrypted; the transport's receive SRTP session) -> None."""


def missing_loadgen_internals() -> list[str]:
    """Names the load generator and tests need that the installed aiortc lacks."""
    from aioice.ice import Connection
    from aiortc.codecs.vpx import Vp8Encoder

    required: list[tuple[type, str]] = [
        (RTCRtpSender, "_next_encoded_frame"),
        (Vp8Encoder, "_packetize"),
        (Connection, "get_component_candidates"),  # gather_on_polled_sockets replaces it
    ]
    return [f"{owner.__name__}.{name}" for owner, name in required if not hasattr(owner, name)]


def send_audio_level(sender: RTCRtpSender, level_dbov: int) -> bool:
    """Make an aiortc sender of pre-encoded audio send the ssrc-audio-level extension.

    aiortc computes the level only for frames it encodes; for ``av.Packet`` input it sends no
    audio-level extension at all, unlike browsers (Chrome and Firefox send it on every packet).
    The encoded frame's ``audio_level`` is set on the way out of ``_next_encoded_frame``.
    Returns False (and changes nothing) when aiortc no longer has that name.
    """
    original = getattr(sender, "_next_encoded_frame", None)
    if original is None:
        logger.warning("aiortc has no RTCRtpSender._next_encoded_frame: no audio level sent")
        return False

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None and frame.audio_level is None:
            frame.audio_level = -level_dbov
        return frame

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]  # the hook
    return True


def take_srtp_early(dtls: RTCDtlsTransport, on_srtp: SrtpHandler) -> bool:
    """Hand SRTP packets to ``on_srtp`` straight off the ICE connection, before aiortc's queue,
    receive task and decryption (``session.unprotect(data)`` decrypts one when wanted).

    Only RTP once DTLS has its keys; everything else (STUN, DTLS, SRTCP, packets before the
    handshake) takes aiortc's normal path. For a receiver that measures without decrypting (the
    load generator's quality subscriber): the server must let aiortc authenticate every packet.
    ``on_srtp`` must not raise. Returns False (and changes nothing) when a name is gone.
    """
    connection = getattr(getattr(dtls, "transport", None), LOADGEN_INSTANCE_ATTRS[0], None)
    original = getattr(connection, "data_received", None)
    if original is None or not hasattr(dtls, "_rx_srtp"):
        return False

    def data_received(data: bytes, component: int) -> None:
        srtp = dtls._rx_srtp
        if srtp is not None and 127 < data[0] < 192 and not 191 < data[1] < 224:
            on_srtp(data, srtp)
        else:
            original(data, component)

    connection.data_received = data_received  # type: ignore[union-attr]  # checked above
    return True


def vp8_packetize(frame: bytes, picture_id: int) -> list[bytes]:
    """aiortc's RFC 7741 VP8 packetizer: payloads as aiortc's sender would send them (tests)."""
    from aiortc.codecs.vpx import Vp8Encoder

    return Vp8Encoder._packetize(frame, picture_id)


def idle_receiver(receiver: RTCRtpReceiver) -> None:
    """A receiver that never starts: no decoder thread, no RTCP task (the load generator's
    cheap receiver reads the transport itself and sends its own receiver reports). Only the
    public ``receive`` is replaced; ``stop`` then has nothing to stop."""

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        return None

    receiver.receive = receive  # type: ignore[method-assign]  # the hook itself


def receive_srtp_directly(dtls: RTCDtlsTransport, on_srtp: SrtpHandler) -> int:
    """Hand SRTP from the nominated ICE peer to ``on_srtp`` straight from the socket's
    ``datagram_received``: no guard, no arrival stamp, no aioice queue, no aiortc receive task.

    The load generator's cheap receiver: its cost per packet is one Python call plus what
    ``on_srtp`` does (which decrypts only when it wants the payload). Everything else (STUN,
    DTLS, SRTCP, anything before the keys exist or from another address) takes the socket's
    normal path. Call after gathering (``setLocalDescription``). ``on_srtp`` must not raise.
    Returns how many sockets were hooked (0 when a name is gone).
    """
    connection = getattr(getattr(dtls, "transport", None), LOADGEN_INSTANCE_ATTRS[0], None)
    protocols = getattr(connection, "_protocols", None)
    if connection is None or protocols is None or not hasattr(dtls, "_rx_srtp"):
        return 0
    nominated = connection._nominated
    cache: list[Any] = [None, None]  # the nominated pair, its remote address
    hooked = 0
    for protocol in protocols:
        if getattr(protocol, "_diemcau_direct", False):
            continue
        protocol._diemcau_direct = True
        original = protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple[Any, ...],
                              _original: Any = original) -> None:
            srtp = dtls._rx_srtp
            if srtp is not None and len(data) > 12 and 127 < data[0] < 192 \
                    and not 191 < data[1] < 224:
                pair = nominated.get(1)
                if pair is not cache[0]:  # (re)nominated: its address, once
                    cache[0], cache[1] = pair, tuple(pair.remote_addr) if pair else None
                if addr == cache[1]:
                    on_srtp(data, srtp)
                    return
            _original(data, addr)

        protocol.datagram_received = datagram_received
        hooked += 1
    return hooked


OpenPolled = Callable[[str, Any], Any]
"""(host, protocol) -> the protocol's transport on a new UDP socket bound on ``host`` that the
event loop never reads (the load generator's ``loadtest.hub.ReceiveHub`` does); OSError when
it cannot bind."""


def gather_on_polled_sockets(pc: Any, announce: list[str], open_polled: OpenPolled) -> None:
    """Host candidates on ``announce`` for every ICE gatherer of ``pc`` made so far, each on a
    socket from ``open_polled`` behind the same datagram guard as ``configure_ice`` gives the
    server's; no STUN or TURN. Call after the transceivers exist, before
    ``setLocalDescription``. For the load generator's subscribers: their sockets are read in
    batches on a beat instead of one datagram per event-loop wake-up.
    """
    from sfu.aiortc_hooks import GuardedStunProtocol, add_host_candidate, count_srtp_failures
    from sfu.wire.demux import DatagramDrops, MediaPortGuard

    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        connection = dtls.transport.iceGatherer._connection
        if getattr(connection, "_diemcau_configured", False):
            continue
        connection._diemcau_configured = True
        drops = DatagramDrops()
        count_srtp_failures(dtls, drops)
        guard = MediaPortGuard()

        async def gather_component(
            component: int, addresses: list[str], timeout: int = 5,
            _connection: Any = connection, _guard: MediaPortGuard = guard,
            _dtls: RTCDtlsTransport = dtls, _drops: DatagramDrops = drops,
        ) -> list[Any]:
            candidates = []
            for host in announce:
                protocol = GuardedStunProtocol(_connection, _guard, _dtls, _drops)
                try:
                    transport = open_polled(host, protocol)
                except OSError:
                    logger.warning("ICE: cannot bind a UDP socket on %s", host)
                    continue
                candidates.append(add_host_candidate(_connection, protocol, transport,
                                                     component))
            return candidates

        connection.get_component_candidates = gather_component


def srtp_receive_state(dtls: RTCDtlsTransport) -> Callable[[], tuple[Any, Any]]:
    """A cheap question for a socket reader: () -> (the transport's receive SRTP session, None
    before the DTLS keys exist; the nominated ICE pair's remote address, None before one)."""
    connection = dtls.transport._connection
    nominated = connection._nominated
    cache: list[Any] = [None, None]  # the pair, its remote address

    def state() -> tuple[Any, Any]:
        pair = nominated.get(1)
        if pair is not cache[0]:  # (re)nominated: its address, once
            cache[0], cache[1] = pair, tuple(pair.remote_addr) if pair is not None else None
        return dtls._rx_srtp, cache[1]

    return state


def ice_sockets(dtls: RTCDtlsTransport) -> list[Any]:
    """The UDP sockets of the transport's ICE connection (its host candidates')."""
    connection = dtls.transport._connection
    out = []
    for protocol in connection._protocols:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            out.append(sock)
    return out


SRTP_UNPROTECT_PROTOTYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
"""libsrtp 2's srtp_unprotect as pylibsrtp's binding declares it: what loadtest/_rxbatch.c calls."""


def srtp_unprotect_address() -> int | None:
    """The address of ``srtp_unprotect`` in the libsrtp pylibsrtp links (for the load
    generator's compiled reader), None when the binding is not the one expected."""
    try:
        from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        if ffi.typeof(lib.srtp_unprotect).cname != SRTP_UNPROTECT_PROTOTYPE:
            return None
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))
    except (AttributeError, TypeError, ffi.error):
        return None


def receive_srtp_context(session: Any) -> int | None:
    """The libsrtp ``srtp_t`` of a receive session (a pylibsrtp ``Session``, or the counting
    wrapper ``count_srtp_failures`` puts around one), None when there is none. The session
    must stay referenced while the address is used."""
    import pylibsrtp

    inner = getattr(session, "_session", session)
    if not isinstance(inner, pylibsrtp.Session):
        return None
    try:
        from pylibsrtp._binding import ffi

        return int(ffi.cast("uintptr_t", inner._srtp[0]))
    except (ImportError, AttributeError, TypeError, IndexError):
        return None
