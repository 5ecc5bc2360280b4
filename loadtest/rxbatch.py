"""A socket's waiting datagrams in one call: ``recvmmsg`` through the optional compiled helper
(``loadtest/_rxbatch.c``), else ``socket.recvmsg`` in a loop; the same results either way.

Each datagram comes with its sender and the kernel's receive time (``SO_TIMESTAMPNS``, enabled
by ``enable_stamps``): the load generator reads its sockets on a beat (``loadtest/hub.py``),
and measures delay from when the packet arrived, not from when the beat got round to it.
The compiled helper is built by ``pip install -e .`` (setuptools' optional ext-modules, as
``sfu/_fanout.c``); when it is missing, or ``DIEMCAU_NO_NATIVE=1``, the pure-Python reader
is used.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeAlias

from sfu import aiortc_hooks
from sfu.native import NO_NATIVE_ENV

SO_TIMESTAMPNS = 35
"""Linux (asm-generic/socket.h; SCM_TIMESTAMPNS is the same number): a ``struct timespec``
of the receive time as ancillary data of every datagram. Python's socket module lacks it."""
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
BATCH = 64
"""Datagrams per call (the compiled helper's buffer count)."""
MAX_DATAGRAM = 2048
"""Longer datagrams are cut by the kernel and skipped (no RTP packet of ours is that big)."""

Datagram: TypeAlias = tuple[bytes, Any, int]
"""(data, sender address as the socket module gives it, kernel receive time in ns or 0)."""
Reader: TypeAlias = Callable[[socket.socket, int], list[Datagram]]
"""(socket, at most how many) -> what was waiting (empty: nothing); OSError on a socket
error (ECONNREFUSED after an ICMP answer: the next call reads on)."""


def _load() -> ModuleType | None:
    try:
        from loadtest import _rxbatch  # type: ignore[attr-defined]  # optional, compiled
    except ImportError:
        return None
    module: ModuleType = _rxbatch
    return module


_MODULE = _load()
_UNPROTECT = aiortc_hooks.srtp_unprotect_address() if _MODULE is not None else None
if _MODULE is not None and _UNPROTECT is not None:
    _MODULE.set_unprotect(_UNPROTECT)


def native_available() -> bool:
    return _MODULE is not None


def native_enabled() -> bool:
    """Use the compiled reader: built, and not switched off by DIEMCAU_NO_NATIVE."""
    return _MODULE is not None and os.environ.get(NO_NATIVE_ENV, "") in ("", "0")


def enable_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every datagram ``sock`` receives; False where it cannot."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


_CONTROL_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def recv_python(sock: socket.socket, wanted: int) -> list[Datagram]:
    """The pure-Python reader: ``recvmsg`` until the socket is empty or ``wanted`` are read."""
    out: list[Datagram] = []
    recvmsg = sock.recvmsg
    for _ in range(min(wanted, BATCH)):
        try:
            data, ancillary, flags, sender = recvmsg(MAX_DATAGRAM, _CONTROL_SPACE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            if out:
                break  # what was read is returned; the error is gone once reported
            raise
        if flags & socket.MSG_TRUNC:
            continue
        stamp = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS \
                    and len(value) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                stamp = seconds * 1_000_000_000 + nanoseconds
        out.append((data, sender, stamp))
    return out


def recv_native(sock: socket.socket, wanted: int) -> list[Datagram]:
    """The compiled reader: one ``recvmmsg`` call."""
    assert _MODULE is not None
    batch: list[Datagram] = _MODULE.recv(sock.fileno(), wanted)
    return batch


def reader(native: bool | None = None) -> Reader:
    """The reader to use: compiled when ``native`` (None: when enabled), else pure Python."""
    use = native_enabled() if native is None else native and native_available()
    return recv_native if use else recv_python


class NativeSrtp:
    """A receive session whose ``unprotect`` is the compiled helper's (libsrtp called
    directly: pylibsrtp's wrapper costs more than the decryption). Holds the session, whose
    libsrtp context it uses, for as long as it lives."""

    __slots__ = ("session", "unprotect")

    def __init__(self, session: Any, ctx: int) -> None:
        assert _MODULE is not None
        self.session = session
        self.unprotect: Callable[[bytes], bytes] = functools.partial(_MODULE.unprotect, ctx)


def fast_session(session: Any) -> Any:
    """``session``, or a ``NativeSrtp`` over it when the compiled helper can decrypt for it."""
    if _MODULE is None or _UNPROTECT is None or session is None:
        return session
    ctx = aiortc_hooks.receive_srtp_context(session)
    return NativeSrtp(session, ctx) if ctx is not None else session
