"""What a meeting has besides media (issue 12): chat, raised hands, connection quality and the
room's documents, over the participants' WebSockets.

One ``RoomExtras`` per app lives on the ``SessionRegistry`` (every session shares it). A
*meeting* is one sitting of a room: it starts with the first participant in an empty room and
ends when the room is empty again (a host's "end" empties it); chat lines are stored with the
meeting's id, so a late joiner gets this sitting's lines and not last week's. Without a control
plane (media-only tests) lines are only relayed: no history, nobody moderates.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfu.link_stats import LinkStatsSource
from signaling import chat
from signaling.chat import CHAT_HISTORY, SenderRates, clean_chat_text, quality_level
from signaling.documents import document_json, download_key
from signaling.messages import Chat, ChatDelete, Hand, ProtocolError, Quality
from signaling.store import ChatMessage

if TYPE_CHECKING:
    from signaling.admission import Admitted
    from signaling.cluster.sitting import SittingBook
    from signaling.moderation import SessionRegistry
    from signaling.session import Session

logger = logging.getLogger(__name__)

MODERATOR_ROLES = frozenset({"host"})


@dataclass
class _Meeting:
    id: str
    hands: dict[str, float] = field(default_factory=dict)  # participant id -> raised at
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # participant id -> last
    lines_sent: int = 0
    identities: dict[str, str] = field(default_factory=dict)  # participant id -> identity


class RoomExtras:
    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self._meetings: dict[str, _Meeting] = {}
        self._rates: dict[str, SenderRates] = {}  # participant id -> windows
        self.sittings: SittingBook | None = None
        """With --redis: the sitting's live state is kept in Redis too and continued by the node
        that takes the room over (signaling/cluster/sitting.py)."""

    # -- lifecycle (from Session) ----------------------------------------------------------------

    def meeting_id(self, room: str) -> str | None:
        meeting = self._meetings.get(room)
        return None if meeting is None else meeting.id

    async def joining(self, session: Session, admitted: Admitted) -> dict[str, Any]:
        """About to be seated: start the meeting if the room is empty; this sitting's chat
        lines, the raised hands and the last quality reports, for ``joined.meeting`` (one
        message: nothing arrives between ``joined`` and what the client asks next)."""
        room, pid = admitted.room, admitted.session_id
        if room not in self._meetings and self.sittings is not None:
            state = await self.sittings.adopt(room)  # a sitting its dead node left, or new
            if room not in self._meetings:
                self._meetings[room] = _Meeting(state.id, lines_sent=state.lines)
                if state.locked and session.control is not None:
                    await _restore_lock(session, room)
        meeting = self._current(room)
        meeting.identities[pid] = admitted.identity
        if self.sittings is not None:
            self.sittings.present(room, admitted.identity, True)
        self._rates[pid] = SenderRates()
        self._restore_hand(room, meeting, pid, admitted.identity)
        lines: list[ChatMessage] = []
        if session.control is not None:
            lines = await session.control.store.list_chat(room, meeting.id, CHAT_HISTORY)
        return {
            "id": meeting.id,
            "chat": [_chat_json(line) for line in lines],
            "hands": sorted(meeting.hands, key=meeting.hands.__getitem__),
            "quality": list(meeting.quality.values()),
            "can_moderate": admitted.role in MODERATOR_ROLES,
        }

    def joined(self, session: Session, admitted: Admitted) -> None:
        """In the media room now: the pin its node's death interrupted is set again."""
        state = self.sittings.live(admitted.room) if self.sittings is not None else None
        if state is not None and state.pinned == admitted.identity:
            try:
                session.plane.pin(admitted.room, admitted.session_id)
            except (KeyError, ValueError):  # gone again meanwhile
                pass

    def on_left(self, room: str, participant_id: str) -> None:
        self._rates.pop(participant_id, None)
        meeting = self._meetings.get(room)
        if meeting is None:
            return
        meeting.quality.pop(participant_id, None)
        identity = meeting.identities.pop(participant_id, None)
        if self.sittings is not None and identity is not None:
            self.sittings.present(room, identity, False)
        if meeting.hands.pop(participant_id, None) is not None:
            self._broadcast(room, {"type": "hand", "participant_id": participant_id,
                                   "raised": False})
            if self.sittings is not None and identity is not None:
                self.sittings.hand(room, identity, None)
        if not any(s.participant_id is not None for s in self.registry.in_room(room)):
            del self._meetings[room]  # the sitting is over
            if self.sittings is not None:
                self.sittings.end(room)

    # -- what moderation changed (kept with the sitting, --redis) ------------------------------

    def on_pinned(self, room: str, participant_id: str | None) -> None:
        meeting = self._meetings.get(room)
        if self.sittings is not None and meeting is not None:
            self.sittings.pin(room, None if participant_id is None
                              else meeting.identities.get(participant_id))

    def on_locked(self, room: str, locked: bool) -> None:
        if self.sittings is not None:
            self.sittings.lock(room, locked)

    def _restore_hand(self, room: str, meeting: _Meeting, pid: str, identity: str) -> None:
        state = self.sittings.live(room) if self.sittings is not None else None
        raised_at = None if state is None else state.hands.get(identity)
        if raised_at is None or pid in meeting.hands:
            return
        meeting.hands[pid] = raised_at  # in `joined.meeting` for them, told to the others:
        self._broadcast(room, {"type": "hand", "participant_id": pid, "raised": True})

    # -- messages --------------------------------------------------------------------------------

    async def on_chat(self, session: Session, message: Chat) -> None:
        room, pid = _where(session)
        try:
            text = clean_chat_text(message.text)
        except ValueError as exc:
            raise ProtocolError("bad-message", str(exc)) from None
        self._rate(pid, "chat")
        meeting = self._current(room)
        if meeting.lines_sent >= chat.MAX_MEETING_LINES:
            raise ProtocolError("limit-exceeded", f"this meeting has reached its "
                                f"{chat.MAX_MEETING_LINES} chat messages")
        meeting.lines_sent += 1
        if self.sittings is not None:
            self.sittings.line(room)
        admitted = session.admitted
        line = ChatMessage(0, room, meeting.id, time.time(),
                           admitted.identity if admitted else f"anon:{pid}",
                           admitted.name if admitted else pid, text)
        if session.control is not None:
            stored = await session.control.store.find_room(room)
            line = await session.control.store.add_chat(stored.id if stored else None, line)
            if self._meetings.get(room) is not meeting:
                return  # the meeting ended while the line was written
        else:  # relayed only: numbered within the sitting
            line = ChatMessage(meeting.lines_sent, room, meeting.id, line.at, line.identity,
                               line.name, text)
        out = _chat_json(line)
        out["from"] = pid
        self._broadcast(room, {"type": "chat", "message": out})

    async def on_chat_delete(self, session: Session, message: ChatDelete) -> None:
        room, _ = _where(session)
        if not _moderates(session) or session.control is None or session.admitted is None:
            raise ProtocolError("not-allowed", "only the host can delete chat messages")
        meeting = self._current(room)
        deleted = await session.control.store.delete_chat(room, meeting.id, message.id,
                                                          session.admitted.identity)
        if deleted is None:
            raise ProtocolError("not-found", f"no chat message {message.id} in this meeting")
        self._broadcast(room, {"type": "chat_deleted", "id": message.id})

    async def on_hand(self, session: Session, message: Hand) -> None:
        room, pid = _where(session)
        target = message.participant_id or pid
        meeting = self._current(room)
        if target != pid:
            if message.raised or not _moderates(session):
                raise ProtocolError("not-allowed", "only the host can lower another "
                                                   "participant's hand")
            if target not in meeting.hands:
                raise ProtocolError("not-found", f"participant {target!r} has no hand raised")
        else:
            self._rate(pid, "hand")
        if message.raised:
            if pid in meeting.hands:
                return
            meeting.hands[pid] = time.time()
        elif meeting.hands.pop(target, None) is None:
            return
        identity = meeting.identities.get(target)
        if self.sittings is not None and identity is not None:
            self.sittings.hand(room, identity, meeting.hands.get(target))
        out: dict[str, Any] = {"type": "hand", "participant_id": target,
                               "raised": message.raised}
        if target != pid:
            out["by"] = pid
        self._broadcast(room, out)

    async def on_quality(self, session: Session, message: Quality) -> None:
        room, pid = _where(session)
        self._rate(pid, "quality")
        report: dict[str, Any] = {"participant_id": pid, "loss": round(message.loss, 4),
                                  "rtt_ms": message.rtt_ms, "layer": message.layer}
        loss, rtt = message.loss, message.rtt_ms
        # What the server measures of the same link, where the media plane can tell: the loss
        # on what it sends them counts too (a client may under-report, or report nothing).
        link = session.plane.link_stats(room, pid) \
            if isinstance(session.plane, LinkStatsSource) else None
        if link is not None:
            report["server"] = {"loss": link.loss, "rtt_ms": link.rtt_ms, "layer": link.layer,
                                "estimate_bps": link.estimate_bps,
                                "audio_only": link.audio_only}
            loss = max(loss, link.loss or 0.0)
            rtt = rtt if rtt is not None else link.rtt_ms
        report["level"] = quality_level(loss, rtt)
        self._current(room).quality[pid] = report
        self._broadcast(room, {"type": "quality", **report})

    async def on_documents(self, session: Session) -> None:
        room, pid = _where(session)
        self._rate(pid, "documents")
        if session.control is None:
            session.send({"type": "documents", "documents": []})
            return
        stored = await session.control.store.find_room(room)
        if stored is None:  # an open room made on the fly has none
            session.send({"type": "documents", "documents": []})
            return
        key, expires = download_key(session.control.secret, stored, time.time())
        documents = await session.control.store.list_documents(stored.id)
        session.send({"type": "documents", "key": key, "expires_at": expires,
                      "documents": [document_json(d, room) for d in documents]})

    # -- helpers ---------------------------------------------------------------------------------

    def _current(self, room: str) -> _Meeting:
        """The room's sitting; a new one if the last person left while this one was joining."""
        meeting = self._meetings.get(room)
        if meeting is None:
            state = self.sittings.live(room) if self.sittings is not None else None
            meeting = self._meetings[room] = _Meeting(
                state.id if state is not None else secrets.token_hex(8))
        return meeting

    def _rate(self, pid: str, what: str) -> None:
        rates = self._rates.setdefault(pid, SenderRates())
        window = getattr(rates, what)
        wait = window.retry_after(time.monotonic())
        if wait:
            raise ProtocolError("rate-limited", f"more than {window.limit} {what} messages in "
                                f"{window.period_s:g} s; retry in {wait:.0f} s")

    def _broadcast(self, room: str, message: dict[str, Any]) -> None:
        for session in self.registry.in_room(room):
            if session.participant_id is not None:  # seated (not in the lobby)
                session.send(message)


async def _restore_lock(session: Session, room: str) -> None:
    """The sitting was locked when its node died; a node with its own store locks it too
    (with a shared store it is locked already)."""
    assert session.control is not None
    stored = await session.control.store.find_room(room)
    if stored is not None and not stored.locked:
        await session.control.store.update_room(room, locked=True)


def _where(session: Session) -> tuple[str, str]:
    if session.participant_id is None or session.room_name is None:
        raise ProtocolError("not-joined", "not in a room")
    return session.room_name, session.participant_id


def _moderates(session: Session) -> bool:
    return session.admitted is not None and session.admitted.role in MODERATOR_ROLES


def _chat_json(line: ChatMessage) -> dict[str, Any]:
    return {"id": line.id, "name": line.name, "text": line.text, "at": line.at}
