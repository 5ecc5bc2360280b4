"""Limits on what one WebSocket client may make the server do (docs/protocol.md, Limits).

Pure core: no sockets, no await, time passed in. The session (signaling/session.py) applies
these before anything expensive happens: an SDP is counted, never parsed, before it is refused.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable

PREJOIN_MAX_MESSAGE_BYTES = 32 << 10
"""Largest frame before `join` succeeds: a join with every credential field full fits."""
JOIN_TIMEOUT_S = 10.0
"""A socket that has not joined (or reached the lobby) by then is closed."""
MAX_UNJOINED_PER_ADDRESS = 16
"""WebSockets one remote address may hold open before they joined; more get HTTP 429."""
MAX_OFFER_SECTIONS = 8
"""Media sections (m= lines) in one `publish` offer; a browser sends 2 (audio, video)."""
MAX_PUBLISH_SDP_BYTES = 64 << 10
"""Size of one `publish` offer (a Chrome simulcast offer is about 10 KB)."""
MAX_OFFERS_PER_MINUTE = 12
"""`publish` offers (first offer and re-offers) in any 60 s."""
MAX_SDP_CANDIDATES = 20
"""ICE candidates carried inside one offer."""
MAX_TRICKLED_CANDIDATES = 20
"""ICE candidates one client may trickle per peer connection."""
MAX_SHOWN = 64
"""Participant ids in one `shown` message (a 7x7 page fits)."""
MAX_SHOWN_PER_10S = 20
"""`shown` messages in any 10 s (a client sends one per page turn, coalesced)."""


class LimitExceeded(Exception):
    """A client went past one of these limits; ``limit`` is the number it may not pass."""

    def __init__(self, what: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.limit = limit


def count_sections(sdp: str) -> int:
    """m= lines, counted on the text (no SDP parse: this runs before the parser is allowed)."""
    return sdp.count("\nm=") + sdp.startswith("m=")


def count_candidates(sdp: str) -> int:
    return sdp.count("\na=candidate:") + sdp.startswith("a=candidate:")


def check_offer(sdp: str) -> None:
    """Refuse an offer that would keep the parser (and the event loop) busy for long."""
    sections = count_sections(sdp)
    if sections > MAX_OFFER_SECTIONS:
        raise LimitExceeded("offer-sections", MAX_OFFER_SECTIONS,
                            f"offer has {sections} media sections; at most "
                            f"{MAX_OFFER_SECTIONS} are allowed")
    candidates = count_candidates(sdp)
    if candidates > MAX_SDP_CANDIDATES:
        raise LimitExceeded("offer-candidates", MAX_SDP_CANDIDATES,
                            f"offer carries {candidates} ICE candidates; at most "
                            f"{MAX_SDP_CANDIDATES} are allowed")


ANSWER_SLACK_BYTES = 16 << 10
"""A subscriber answer may be at most twice the server's offer plus this (browsers' answers are
smaller than our offers); a bigger one is refused before it is parsed."""


def check_answer(sdp: str, offer_sections: int, offer_bytes: int) -> None:
    """An answer has the offer's sections (JSEP) and is not much bigger than the offer:
    anything else is refused on its text, before the parser spends the loop's time on it.
    A zero ``offer_*`` means no offer is known yet (the session then refuses on state)."""
    sections = count_sections(sdp)
    if offer_sections and sections > offer_sections:
        raise LimitExceeded("answer-sections", offer_sections,
                            f"answer has {sections} media sections; the offer had "
                            f"{offer_sections}")
    limit = 2 * offer_bytes + ANSWER_SLACK_BYTES
    if offer_bytes and len(sdp) > limit:
        raise LimitExceeded("answer-size", limit,
                            f"answer of {len(sdp)} characters; at most {limit} for this offer")


class Window:
    """At most ``limit`` events in any ``period_s``: a sliding window of event times."""

    def __init__(self, limit: int, period_s: float) -> None:
        self.limit = limit
        self.period_s = period_s
        self._times: deque[float] = deque()

    def retry_after(self, now: float) -> float:
        """0 if an event may happen now (and records it), else seconds until one may."""
        while self._times and self._times[0] <= now - self.period_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return self._times[0] + self.period_s - now
        self._times.append(now)
        return 0.0


def announced_scopes(addresses: Iterable[str] | None) -> frozenset[str]:
    """Which special scopes the server's own ICE addresses use ("loopback", "link-local").

    A candidate in such a scope can only be reached when the server itself lives there (tests
    with ``--ice-address 127.0.0.1``); otherwise it points the server's STUN checks at its own
    host or LAN segment on a client's say-so.
    """
    scopes = set()
    for text in addresses or ():
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        scope = _scope(address)
        if scope is not None:
            scopes.add(scope)
    return frozenset(scopes)


def _scope(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return "multicast/broadcast"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return None


def refused_candidate_address(ip: str, allowed_scopes: frozenset[str]) -> str | None:
    """Why a remote candidate's address is refused (its scope), or None if it is acceptable.

    mDNS names (``*.local``) are not addresses yet: aiortc resolves them later, and the
    resolved address is not checked here.
    """
    if ip.endswith(".local"):
        return None
    scope = _scope(ipaddress.ip_address(ip))  # ValueError names a malformed address
    if scope is None or scope in allowed_scopes:
        return None
    return scope
