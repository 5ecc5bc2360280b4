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
    "idle_receiver",
    "missing_loadgen_internals",
    "receive_srtp_directly",
    "send_audio_level",
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
    from aiortc.codecs.vpx import Vp8Encoder

    required: list[tuple[type, str]] = [
        (RTCRtpSender, "_next_encoded_frame"),
        (Vp8Encoder, "_packetize"),
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
