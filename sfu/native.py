"""The optional compiled fan-out (``sfu/_fanout.c``) and what it needs from Python.

One incoming packet gives every consumer's copy in one pass: ``Producer.receive`` collects each
copy (its subscriber's ``NativeTarget``, the rewritten header, the payload, the consumer) in a
batch, and ``send_batch`` protects and sends them all in one call, in C. The extension is built
by ``pip install -e .`` (setuptools, the system's C compiler); when it is missing, or
``DIEMCAU_NO_NATIVE=1``, ``native_enabled()`` is false, no target is made and every copy takes
the pure-Python path (``DatagramWriter.send_rtp``), with the same packets on the wire. In the
steady state ``forward_send`` makes, protects and sends a fan-out's copies in one call, without
the batch (sfu/_fanout_send.c).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeAlias

NO_NATIVE_ENV = "DIEMCAU_NO_NATIVE"
NO_FUSED_ENV = "DIEMCAU_NO_FUSED_SEND"
"""Set (not 0): ``forward`` queues its copies in a batch that ``send`` protects and sends (two
calls, a header bytes object and a tuple per copy) instead of ``forward_send`` (for A/B runs)."""

NativeTarget: TypeAlias = tuple[int, int, bytes]
"""(address of the subscriber's libsrtp srtp_t, socket fd, struct sockaddr of its peer)."""
BatchItem: TypeAlias = tuple[NativeTarget, bytes, bytes, Any]
"""(target, rewritten header, payload, the consumer that made the copy)."""

BATCH_TOO_LONG_OR_PROTECT = 1
BATCH_SEND_FAILED = 2
"""Reasons ``send_batch`` reports a copy it could not send."""


def _load() -> ModuleType | None:
    try:
        from sfu import _fanout  # type: ignore[attr-defined]  # built by setuptools, optional
    except ImportError:
        return None
    module: ModuleType = _fanout
    return module


_MODULE = _load()


def native_available() -> bool:
    """The extension was built and imports."""
    return _MODULE is not None


def native_enabled() -> bool:
    """Use the extension for writers made now: built, not switched off by DIEMCAU_NO_NATIVE."""
    return _MODULE is not None and os.environ.get(NO_NATIVE_ENV, "") in ("", "0")


def set_protect_address(address: int) -> None:
    if _MODULE is not None:
        _MODULE.set_protect(address)


def _function(name: str) -> Callable[..., Any] | None:
    """A function of the extension, None when it is missing or older than this code (a stale
    build after an upgrade: the newer native paths stay off, the older ones still work)."""
    function: Callable[..., Any] | None = getattr(_MODULE, name, None)
    return function


def set_unprotect_address(address: int) -> bool:
    """Hand libsrtp's srtp_unprotect to the extension; False when it cannot take it."""
    set_unprotect = _function("set_unprotect")
    if set_unprotect is None or _function("receive") is None:
        return False
    set_unprotect(address)
    return True


def _no_native(_batch: list[BatchItem]) -> list[tuple[int, int]] | None:
    raise RuntimeError("no native fan-out: batches are empty without it")


send_batch: Callable[[list[BatchItem]], list[tuple[int, int]] | None] = (
    _MODULE.send if _MODULE is not None else _no_native)
"""Protect and send a batch: None when every copy went out, else [(index, reason)]."""


def uring_state(enable: bool | None = None) -> str:
    """The fan-out's send path for batches: "on" (a chunk of copies per io_uring_enter), "off"
    (switched off, or DIEMCAU_NO_URING=1), "unavailable: <why>" (no io_uring here: one sendto
    per copy), "retired: <why>", or "absent" (an extension without it). ``enable`` switches it
    for the batches sent from now on (tests run both)."""
    uring = _function("uring")
    if uring is None:
        return "absent"
    state: str = uring() if enable is None else uring(enable)
    return state


def describe() -> str:
    """How this process forwards, for the start-up log."""
    if not native_enabled():
        return "pure Python (no compiled fan-out)" if _MODULE is None else (
            f"pure Python ({NO_NATIVE_ENV}=1)")
    state = uring_state()
    two_calls = (f"; forward and send in two calls ({NO_FUSED_ENV}=1)"
                 if os.environ.get(NO_FUSED_ENV, "") not in ("", "0") else "")
    if state == "on":
        return "compiled, copies sent through io_uring" + two_calls
    return f"compiled, one sendto per copy (io_uring {state})" + two_calls


def _no_receive(_ctx: int, _fd: int, _data: bytes) -> tuple[bytes | None, int]:
    raise RuntimeError("no native receive: the caller checks native_enabled()")


receive: Callable[[int, int, bytes], tuple[bytes | None, int]] = (
    _function("receive") or _no_receive)
"""One SRTP datagram just read from a socket: (libsrtp's unprotect of it, or None when it fails
authentication or has no RTP length; the kernel's arrival time of the last datagram read from
``fd`` on aiortc's clock in ms, or -1)."""


def _no_receive_view(_ctx: int, _fd: int, _data: bytes) -> tuple[Any, int]:
    raise RuntimeError("no native receive_view: the caller checks view_ready()")


def _no_parse_view(_data: bytes) -> Any:
    raise RuntimeError("no native parse_view: the caller checks view_ready()")


receive_view: Callable[[int, int, bytes], tuple[Any, int]] = (
    _function("receive_view") or _no_receive_view)
"""``receive`` with the RTP header parsed in C: (an ``RtpView``; or the plain bytes when
``RtpView.parse`` must decide (a two-byte extension block, or a packet it refuses); or None as
``receive`` gives it, the arrival ms or -1)."""

parse_view: Callable[[bytes], Any] = _function("parse_view") or _no_parse_view
"""An ``RtpView`` of plain RTP bytes parsed in C, or None when ``RtpView.parse`` must decide."""

_VIEW_READY = [False]


def init_view(view_type: type) -> bool:
    """Give the extension ``RtpView`` (whose __slots__ ``receive_view`` fills); False (and
    ``view_ready()`` False) without the extension, with DIEMCAU_NO_NATIVE=1, an older build, or
    a slot not where it expects."""
    init = _function("init_view")
    ready = bool(native_enabled() and init is not None and _function("receive_view") is not None
                 and init(view_type))
    _VIEW_READY[0] = ready
    return ready


def view_ready() -> bool:
    """``receive_view`` and ``parse_view`` may be used."""
    return _VIEW_READY[0]


_FORWARD_READY = [False]
_FUSED_READY = [False]


def init_forward(types: tuple[type, ...], srtp_tag_len: int, rtp_overhead: int) -> bool:
    """Give ``forward`` the classes whose __slots__ it reads and writes (Consumer,
    SequenceRewriter, TimestampRewriter, Vp8PictureIdMunger, RtpHistory, DatagramWriter,
    TransportSequencer: its ``next`` runs in C too, sfu/_fanout_twcc.c);
    False (and ``forward_ready()`` False) without the extension, with DIEMCAU_NO_NATIVE=1 or
    when a slot is not where it expects."""
    init = _function("init_forward")
    ready = bool(native_enabled() and init is not None and _function("forward") is not None
                 and init(types, srtp_tag_len, rtp_overhead))
    _FORWARD_READY[0] = ready
    _FUSED_READY[0] = (ready and _function("forward_send") is not None
                       and os.environ.get(NO_FUSED_ENV, "") in ("", "0"))
    return ready


def forward_ready() -> bool:
    """``forward`` may be used: producers hand their steady-state copies to it."""
    return _FORWARD_READY[0]


def fused_ready() -> bool:
    """``forward_send`` may be used instead of ``forward`` + ``send_batch`` (with
    ``forward_ready()``; not with DIEMCAU_NO_FUSED_SEND=1 or an older build)."""
    return _FUSED_READY[0]


def _no_forward(*_args: Any) -> None:
    raise RuntimeError("no native forward: the caller checks forward_ready()")


forward: Callable[..., None] = _function("forward") or _no_forward
"""forward(consumers, layer, seq, timestamp, marker, payload, vp8_ids, now, batch, blocks, packet,
slow, errors): ``Consumer.send`` of each consumer in the steady state (queued in ``batch``);
the others are appended to ``slow``, (consumer, exception) of a failure after a change to
``errors``. ``blocks(packet, ext_key, now)`` gives (elements, block) per run of equal keys."""


forward_send: Callable[..., list[tuple[Any, int, int, int]] | None] = (
    _function("forward_send") or _no_forward)
"""forward_send(consumers, layer, seq, timestamp, marker, payload, vp8_ids, now, blocks, packet,
slow, errors): ``forward`` whose copies are protected and sent in the same call (written
straight into the send buffers, sfu/_fanout_send.c; through io_uring, a flush per 64 copies and
one at the end, or one sendto each). None when every copy went out, else [(consumer, reason,
header size, payload size)] of the copies it counted as sent and could not send (reasons as
``send_batch``'s) for ``Consumer.batch_failed``."""


def dry_run(enable: bool | None = None) -> bool:
    """Benchmarks only: with True, ``forward_send`` builds each copy in its send buffer but
    neither protects nor sends it (bench/twcc_forward.py --no-io). False without the function."""
    function = _function("dry_run")
    if function is None:
        return False
    state: bool = function() if enable is None else function(enable)
    return state


def sockaddr(family: int, address: Any) -> bytes | None:
    """The ``struct sockaddr_in``/``sockaddr_in6`` bytes for a datagram socket's peer address
    (Linux layout), None for what this cannot express."""
    try:
        if family == socket.AF_INET:
            host, port = address[0], address[1]
            return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
                    + socket.inet_pton(socket.AF_INET, host) + bytes(8))
        if family == socket.AF_INET6:
            host, port = address[0], address[1]
            flowinfo = address[2] if len(address) > 2 else 0
            scope_id = address[3] if len(address) > 3 else 0
            host = host.split("%", 1)[0]
            return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, flowinfo)
                    + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope_id))
    except (OSError, ValueError, TypeError, IndexError, struct.error):
        return None
    return None


class OwnedFd:
    """A duplicate of a socket's descriptor, owned here: the number cannot be reused by another
    file while we hold it, however the event loop closes its own; closed by ``close``."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd: int | None = None

    def replace(self, sock: Any) -> int | None:
        self.close()
        try:
            self.fd = os.dup(sock.fileno())
        except (OSError, AttributeError, ValueError):
            self.fd = None
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _no_extension_blocks(_producer: Any, _packet: Any, _key: Any, _now: float) -> Any:
    raise RuntimeError("no native extension_blocks: the caller checks blocks_ready()")


def blocks_ready() -> bool:
    """``extension_blocks`` may stand in for ``Producer._blocks`` (sfu/_fanout_blocks.c)."""
    return native_enabled() and _function("extension_blocks") is not None


extension_blocks: Callable[[Any, Any, Any, float], tuple[bytes, bytes]] = (
    _function("extension_blocks") or _no_extension_blocks)
"""extension_blocks(producer, packet, key, now) -> (elements, block): ``producer._blocks`` in
one C call; anything it does not take as Python would, it hands to ``producer._blocks``."""
