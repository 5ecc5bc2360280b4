"""Automatic reconnection: a participant whose connection drops keeps its seat for a grace
period, and a new WebSocket that shows the seat's resume token takes it back as the same
participant (same id, same seat), with no leave and join for the others.

- On ``joined`` the client gets a ``resume_token`` (256-bit, random, known to this process only).
- A socket that ends without ``leave`` (network change, outage, page reload) is *held*: the
  others get ``participant_state`` ``reconnecting``; after ``--reconnect-grace`` seconds without
  a resume the participant leaves as usual.
- ``join`` with ``resume`` (and the same room) hands the seat over: the old media connections
  close quietly (the others see no ``participant_left``), the new session joins the media plane
  under the same participant id (the others see ``participant_state`` ``connected``, and the
  server's next offer moves them onto the new tracks, reusing their m-lines). The old socket is
  closed if it still looked alive (a network change can leave it half-open for a while).

A resume token is a bearer credential for one seat while that seat exists: it dies with the seat
(leave, removal, end of the grace period) and is never stored.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode
from aiohttp.http import WebSocketError

from signaling.messages import Join, ProtocolError

if TYPE_CHECKING:
    from signaling.session import Session

logger = logging.getLogger(__name__)


class ResumeBook:
    """Resume tokens of the seats of this process, and the participants being handed over."""

    def __init__(self) -> None:
        self._by_token: dict[str, Session] = {}
        self.handing_over: set[str] = set()  # participant ids between old and new session

    def issue(self, session: Session) -> str:
        token = secrets.token_urlsafe(32)
        self._by_token[token] = session
        return token

    def find(self, token: str) -> Session | None:
        # Constant-time enough: a dict lookup by a 256-bit random key leaks nothing useful.
        return self._by_token.get(token)

    def revoke(self, token: str | None) -> None:
        if token is not None:
            self._by_token.pop(token, None)

    def __len__(self) -> int:
        return len(self._by_token)


def tell_room(session: Session, message: dict[str, object]) -> None:
    """Send ``message`` to everyone else in the session's room."""
    if session.room_name is None:
        return
    for other in session.sessions.in_room(session.room_name):
        if other is not session and other.participant_id is not None:
            other.send(message)


def should_hold(session: Session, close_code: int | None) -> bool:
    """Keep the seat? Only for a participant in a room whose socket went away: no close code
    or 1006 (the connection died: an outage, a network change), 1001 (going away), or an
    application code 4000-4999. Not for a clean close (1000, how the client ends a call), nor
    when the server closed it for a reason of its own (1009 too large, 1008 policy, ...)."""
    went_away = close_code is None or close_code in (
        WSCloseCode.GOING_AWAY, WSCloseCode.ABNORMAL_CLOSURE) or 4000 <= close_code < 5000
    if isinstance(session.ws.exception(), WebSocketError):
        went_away = False  # a protocol violation (a frame too large, ...): aiohttp closed it
    return (session.participant_id is not None and not session.closing
            and session.config.reconnect_grace_s > 0 and went_away)


async def hold(session: Session) -> bool:
    """The socket dropped: keep the seat for the grace period. True when another session took
    it over (nothing left to do), False when the caller should leave as usual."""
    participant_id = session.participant_id
    assert participant_id is not None
    session.held.clear()
    session.holding = True
    tell_room(session, {"type": "participant_state", "participant_id": participant_id,
                        "state": "reconnecting"})
    logger.info("%s dropped (close code %s); holding its seat for %.0f s", participant_id,
                session.ws.close_code, session.config.reconnect_grace_s)
    try:
        await asyncio.wait_for(session.held.wait(), session.config.reconnect_grace_s)
    except TimeoutError:
        pass
    session.holding = False
    return session.handed_over


async def hand_over(old: Session) -> None:
    """Close the old session's media quietly and mark it handed over (its task then ends
    without leaving). The participant id stays in ``handing_over`` until the new join."""
    room, participant_id = old.room_name, old.participant_id
    old.handed_over = True
    old.participant_id = None
    old.sessions.resume.revoke(old.resume_token)
    old.resume_token = None
    old.held.set()
    if room is not None and participant_id is not None:
        old.sessions.resume.handing_over.add(participant_id)
        await old.plane.leave(room, participant_id)
    if not old.ws.closed:  # the old socket still looked alive (a network change)
        old.close_socket(WSCloseCode.GOING_AWAY)


async def resume_join(session: Session, message: Join) -> None:
    """``join`` with ``resume``: take the held (or half-open) seat back."""
    token = message.resume or ""
    old = session.sessions.resume.find(token)
    if old is None or old.room_name != message.room or old.admitted is None \
            or old.handed_over or old.participant_id is None:
        raise ProtocolError("resume-expired", "this seat is gone (left, removed, or held too "
                            "long); join again")
    admitted = old.admitted
    session.adopt(old)
    await hand_over(old)
    try:
        await session.finish_join(admitted)
    finally:
        session.sessions.resume.handing_over.discard(admitted.session_id)
    tell_room(session, {"type": "participant_state", "participant_id": admitted.session_id,
                        "state": "connected"})
    logger.info("%s resumed its seat in %r", admitted.session_id, admitted.room)
