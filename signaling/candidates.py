"""ICE candidates a client sends, checked before aioice sees them (pure: no I/O).

aioice trusts what it is given (a port of 99999 later kills the ICE socket), and a candidate at
an address we will not send to (``signaling.limits.refused_candidate_address``) is dropped from
offers or refused when trickled.
"""

from __future__ import annotations

import ipaddress

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from signaling.limits import refused_candidate_address

CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}


def check_candidate(candidate: RTCIceCandidate) -> None:
    """ValueError naming the field when aioice could not use ``candidate`` safely."""
    if not 0 < candidate.port < 65536:
        raise ValueError(f"port {candidate.port} is out of range")
    if candidate.protocol.lower() not in ("udp", "tcp"):
        raise ValueError(f"protocol {candidate.protocol!r} is not udp or tcp")
    if candidate.type not in CANDIDATE_TYPES:
        raise ValueError(f"type {candidate.type!r} is not one of {sorted(CANDIDATE_TYPES)}")
    if not candidate.ip.endswith(".local"):
        ipaddress.ip_address(candidate.ip)  # ValueError names the bad address


def strip_refused_candidates(sdp: str, allowed_scopes: frozenset[str]
                             ) -> tuple[str, list[tuple[str, str]]]:
    """The offer without candidates at addresses we refuse (loopback, link-local, ...), and the
    (scope, address) of each one dropped.

    Dropped rather than refusing the offer: a browser may list such an address among good ones,
    and the call should still work. Malformed lines stay for the SDP parser to name.
    """
    if "a=candidate:" not in sdp:
        return sdp, []
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:"):
            try:
                ip = candidate_from_sdp(line[len("a=candidate:"):].strip()).ip
                scope = refused_candidate_address(ip, allowed_scopes)
            except Exception:  # malformed: the SDP parser refuses it with a precise error
                scope = None
            if scope is not None:
                dropped.append((scope, ip))
                continue
        kept.append(line)
    return "".join(kept), dropped
