"""``DatagramWriter``: RTP/RTCP protected and sent synchronously on a connected DTLS transport
(one of the aiortc hook points, docs/architecture.md; re-exported by ``sfu.aiortc_hooks``, the
module callers use), and the classes the compiled forward path reads (``sfu/_fanout.c``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState

from sfu import native
from sfu.native_srtp import srtp_context_address

SRTP_AUTH_TAG_LEN = 10
"""Bytes SRTP adds (AES_CM_128_HMAC_SHA1_80, aiortc's first choice): the native path counts
sent bytes for the downlink's sending rate before the packet is protected."""


class DatagramWriter:
    """Protects and sends RTP/RTCP on a connected DTLS transport, synchronously.

    ``RTCDtlsTransport._send_rtp`` goes through four coroutines down to ``sendto``; this does the
    same work (SRTP protect, then the nominated pair's UDP transport) in plain calls. Returns
    False when the transport is not (or no longer) connected.

    With the native fan-out (``sfu.native``), ``queue_rtp`` adds a copy to the producer's batch
    instead: the target holds this writer's libsrtp session and a duplicate of the pair's socket
    descriptor (``OwnedFd``: never reused while held), made and dropped with the cached pair.
    """

    __slots__ = ("_dtls", "_srtp", "_sendto", "_addr", "_pair", "sent_packets", "sent_bytes",
                 "protect_errors", "_native", "_use_native", "_fd", "__weakref__")

    def __init__(self, dtls: RTCDtlsTransport, use_native: bool | None = None) -> None:
        self._dtls = dtls
        self._srtp: Any = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self._pair: Any = None
        self.sent_packets = 0
        self.sent_bytes = 0
        self.protect_errors = 0
        self._native: native.NativeTarget | None = None
        self._use_native = (native.native_enabled() if use_native is None
                            else use_native and native.native_available())
        self._fd = native.OwnedFd()
        weakref.finalize(self, self._fd.close)

    @property
    def is_native(self) -> bool:
        """Copies currently go out through the native fan-out."""
        return self._native is not None

    def _drop(self) -> bool:
        self._sendto = None
        if self._native is not None:
            self._native = None
            self._fd.close()
        return False

    def _refresh(self) -> bool:
        dtls = self._dtls
        if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
            return self._drop()
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return self._drop()
        self._srtp = dtls._tx_srtp
        self._pair = pair
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        self._native = None
        if self._use_native:
            self._native = self._native_target(pair.protocol.transport, pair.remote_addr)
        return True

    def _native_target(self, transport: Any, addr: Any) -> native.NativeTarget | None:
        ctx = srtp_context_address(self._srtp)
        sock = transport.get_extra_info("socket")
        address = native.sockaddr(getattr(sock, "family", -1), addr)
        if ctx is None or address is None:
            self._fd.close()
            return None
        fd = self._fd.replace(sock)
        return (ctx, fd, address) if fd is not None else None

    def _ready(self) -> bool:
        # The nominated pair may change (ICE restart, consent failure): check it cheaply.
        dtls = self._dtls
        if dtls._state != DtlsState.CONNECTED:
            return self._drop()
        if self._sendto is None or dtls.transport._connection._nominated.get(1) is not self._pair:
            return self._refresh()
        return True

    def send_rtp(self, packet: bytes) -> bool:
        if self._sendto is None and not self._ready():
            return False
        try:
            data = self._srtp.protect(packet)
        except (pylibsrtp.Error, ValueError):  # ValueError: over pylibsrtp's 1,500-byte buffer
            self.protect_errors += 1  # a malformed packet of ours: drop it, keep the others
            return False
        try:
            self._sendto(data, self._addr)  # type: ignore[misc]  # _ready() set it
        except (OSError, AttributeError):
            return self._drop()
        self.sent_packets += 1
        self.sent_bytes += len(data)
        return True

    def queue_rtp(self, batch: list[native.BatchItem], head: bytes, payload: bytes,
                  consumer: Any) -> bool:
        """Add one copy to the producer's batch (``sfu.native.send_batch`` sends it), or send it
        now when there is no native target. Counted as sent; ``batch_failed`` undoes it."""
        target = self._native
        if target is None:
            return self.send_rtp(head + payload)
        batch.append((target, head, payload, consumer))
        self.sent_packets += 1
        self.sent_bytes += len(head) + len(payload) + SRTP_AUTH_TAG_LEN
        return True

    def batch_failed(self, reason: int, size: int) -> None:
        """A queued copy of ``size`` bytes was not sent (``sfu.native`` reason)."""
        self.sent_packets -= 1
        self.sent_bytes -= size + SRTP_AUTH_TAG_LEN
        if reason == native.BATCH_TOO_LONG_OR_PROTECT:
            self.protect_errors += 1
        else:
            self._drop()  # re-validated (and the descriptor re-made) on the next send

    def send_rtcp(self, packet: bytes) -> bool:
        if not self._ready():
            return False
        try:
            data = self._srtp.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.protect_errors += 1
            return False
        try:
            self._sendto(data, self._addr)  # type: ignore[misc]  # _ready() set it
        except (OSError, AttributeError):
            return self._drop()
        return True

    def check(self) -> bool:
        """Re-validate the cached pair (call periodically, e.g. from the RTCP timer)."""
        return self._ready()

    def close(self) -> None:
        """Release the duplicated descriptor (the subscriber is gone)."""
        self._use_native = False
        self._drop()


def _init_native_forward() -> bool:
    """The classes ``native.forward`` reads, once DatagramWriter exists (sfu/_fanout.c)."""
    from sfu.consumer import RTP_OVERHEAD, Consumer
    from sfu.history import RtpHistory
    from sfu.wire.rewriting import SequenceRewriter, TimestampRewriter
    from sfu.wire.twcc import TransportSequencer
    from sfu.wire.vp8 import Vp8PictureIdMunger

    return native.init_forward((Consumer, SequenceRewriter, TimestampRewriter,
                                Vp8PictureIdMunger, RtpHistory, DatagramWriter,
                                TransportSequencer),
                               SRTP_AUTH_TAG_LEN, RTP_OVERHEAD)


_init_native_forward()
