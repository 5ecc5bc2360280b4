"""pylibsrtp's libsrtp, handed to the compiled fan-out (``sfu/_fanout.c``, ``sfu.native``).

sfu/_fanout.c calls libsrtp through the copy pylibsrtp links: the addresses of its
``srtp_protect``/``srtp_unprotect`` (checked against the prototypes the C code assumes) and each
session's ``srtp_t`` (pylibsrtp's private ``Session._srtp``) come from pylibsrtp's cffi binding
here, so no libsrtp header or library is needed to build the extension. When any of this is
missing or different, the native paths stay off and everything runs through pylibsrtp.
"""

from __future__ import annotations

from typing import Any

import pylibsrtp

from sfu import native

SRTP_PROTECT_PROTOTYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
"""libsrtp 2's srtp_protect, as pylibsrtp's binding declares it: what sfu/_fanout.c calls."""


def _srtp_binding() -> tuple[Any, bool]:
    """pylibsrtp's cffi module once sfu._fanout has libsrtp's srtp_protect (None when the
    prototypes differ), and whether it also has srtp_unprotect (for ``native.receive``)."""
    try:
        from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]
    except ImportError:
        return None, False
    try:
        if ffi.typeof(lib.srtp_protect).cname != SRTP_PROTECT_PROTOTYPE:
            return None, False
        native.set_protect_address(int(ffi.cast("uintptr_t", ffi.addressof(lib,
                                                                          "srtp_protect"))))
        if ffi.typeof(lib.srtp_unprotect).cname != SRTP_PROTECT_PROTOTYPE:  # the same shape
            return ffi, False
        unprotect = native.set_unprotect_address(
            int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect"))))
    except (AttributeError, TypeError, ffi.error):
        return None, False
    return ffi, unprotect


_SRTP_FFI, NATIVE_UNPROTECT = _srtp_binding() if native.native_available() else (None, False)
"""NATIVE_UNPROTECT: ``native.receive`` may be used (libsrtp's srtp_unprotect was handed over)."""


def srtp_context_address(session: pylibsrtp.Session) -> int | None:
    """The libsrtp ``srtp_t`` of a pylibsrtp session (its private ``_srtp``), for the native
    fan-out; the session must stay referenced while the address is used."""
    if _SRTP_FFI is None:
        return None
    try:
        return int(_SRTP_FFI.cast("uintptr_t", session._srtp[0]))  # noqa: SLF001
    except (AttributeError, TypeError, IndexError):
        return None
