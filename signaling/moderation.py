"""Moderation of live meetings: the ``Moderator`` the REST API calls, over the live sessions.

Sessions register themselves by participant id (and lobby guests by their session id, which is
the participant id they will get); the moderator finds them there, and the media plane does the
muting and pinning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sfu.plane import MediaPlane
from sfu.types import Kind
from signaling.api_models import ParticipantInfo
from signaling.control import ControlPlane
from signaling.relay_moderation import find_relayed
from signaling.relay_spec import RELAY_ID_PREFIX
from signaling.resume import ResumeBook
from signaling.room_extras import RoomExtras

if TYPE_CHECKING:
    from signaling.relay import Relay
    from signaling.session import Session


class SessionRegistry:
    """participant id -> live Session (joined or waiting in a lobby)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self.extras = RoomExtras(self)  # chat, hands, quality, documents (issue 12)
        self.resume = ResumeBook()  # automatic reconnection (signaling/resume.py)

    def add(self, participant_id: str, session: Session) -> None:
        self._sessions[participant_id] = session

    def discard(self, participant_id: str, session: Session) -> None:
        if self._sessions.get(participant_id) is session:
            del self._sessions[participant_id]

    def get(self, participant_id: str) -> Session | None:
        return self._sessions.get(participant_id)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def in_room(self, room: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.room_name == room]


class LiveModerator:
    def __init__(self, plane: MediaPlane, control: ControlPlane,
                 sessions: SessionRegistry) -> None:
        self.plane = plane
        self.control = control
        self.sessions = sessions
        self.relays: dict[str, Relay] = {}
        """The relays into this server's rooms (signaling/relay_api.py): their people in a room
        have no session here and are moderated through them (signaling/relay_moderation.py)."""

    def _session(self, room: str, participant_id: str) -> Session:
        session = self.sessions.get(participant_id)
        if session is None or session.room_name != room:
            raise KeyError(participant_id)
        return session

    def participants(self, room: str) -> list[ParticipantInfo]:
        live = self.plane.room_state(room)
        if live is None:
            return []
        out = []
        for participant in live.participants:
            session = self.sessions.get(participant.id)
            admitted = session.admitted if session is not None else None
            out.append(ParticipantInfo(
                id=participant.id, name=participant.name,
                role=admitted.role if admitted else (
                    "relay" if participant.id.startswith(RELAY_ID_PREFIX) else "member"),
                identity=admitted.identity if admitted else "",
                audio_muted=participant.audio_muted, video_muted=participant.video_muted,
                pinned=live.pinned == participant.id,
            ))
        return out

    def waiting(self, room: str) -> list[ParticipantInfo]:
        return [ParticipantInfo(id=w.session_id, name=w.principal.name, role=w.principal.role,
                                identity=w.principal.identity)
                for w in self.control.admission.lobby(room)]

    async def mute(self, room: str, participant_id: str,
                   kind: Literal["audio", "video"]) -> None:
        relayed = find_relayed(self.relays.values(), room, participant_id)
        if relayed is not None:  # B stops forwarding it; A's meeting is not touched
            relayed.mute(Kind(kind))
            return
        session = self._session(room, participant_id)
        if session.participant_id is None:
            raise KeyError(participant_id)
        # The server stops forwarding at once; the client is told so it shows (and keeps) it.
        self.plane.set_muted(room, session.participant_id, Kind(kind), True)
        session.send({"type": "muted_by_host", "kind": kind})

    async def remove(self, room: str, participant_id: str) -> None:
        relayed = find_relayed(self.relays.values(), room, participant_id)
        if relayed is not None:  # no longer relayed into this room; A's meeting goes on
            relayed.remove()
            return
        session = self._session(room, participant_id)
        if session.admitted is not None:  # keep them out: no rejoin with the same identity
            await self.control.admission.exclude(room, session.admitted.identity)
        await session.kick("removed")

    async def set_locked(self, room: str, locked: bool) -> None:
        self.sessions.extras.on_locked(room, locked)
        for session in self.sessions.in_room(room):
            session.send({"type": "room_locked", "locked": locked})

    async def admit(self, room: str, participant_id: str) -> None:
        session = self._session(room, participant_id)
        admitted = await self.control.admission.seat_waiting(room, participant_id)
        await session.finish_join(admitted)

    async def deny(self, room: str, participant_id: str) -> None:
        session = self._session(room, participant_id)
        self.control.admission.deny_waiting(room, participant_id)
        await session.kick("denied")

    async def end(self, room: str) -> None:
        self.control.admission.clear_room(room)
        for session in self.sessions.in_room(room):
            await session.kick("ended")

    async def pin(self, room: str, participant_id: str | None) -> None:
        self.plane.pin(room, participant_id)
        self.sessions.extras.on_pinned(room, participant_id)
