"""What happens in meetings, as events for the journal: rooms starting and finishing (scheduled
or ad hoc), participants joining and leaving (with their minutes), reconnections, audio-only
periods and their reason, poor-quality samples, recordings.

The session and the recording service call it; it keeps only what it needs to turn calls into
durations (who is in which room since when). Everything but the schedule look-up of a room's
first join is synchronous, so no call delays a join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from signaling.journal import Journal
from signaling.store import Store, is_on
from signaling.store.journal_models import AuditEntry, Detail, MeetingEvent

logger = logging.getLogger(__name__)

RECONNECT_WINDOW_S = 120.0
"""Back in the same room within this after dropping out (not leaving on purpose): a
reconnection."""
VOLUNTARY = frozenset({"requested", "removed", "ended", "denied", "server-shutdown"})
SCHEDULE_EARLY_S = 900.0
"""A room opened up to 15 minutes before a scheduled meeting belongs to that meeting."""
QUALITY_EVERY_S = 30.0
POOR_LOSS = 0.05
POOR_RTT_MS = 400.0
MAX_RECENT = 10_000


@dataclass(frozen=True)
class QualityReading:
    room: str
    participant_id: str
    loss: float
    """Fraction of packets lost, 0..1 (the worse of the two directions)."""
    rtt_ms: float | None


@runtime_checkable
class QualityProbe(Protocol):
    """Per-participant loss and round trip, implemented by a media plane that measures them
    (the sampler is idle until one does)."""

    def quality_readings(self) -> Sequence[QualityReading]: ...


@dataclass
class _Presence:
    identity: str
    joined_at: float
    audio_only: dict[str, tuple[float, str]] = field(default_factory=dict)
    """direction -> (since, reason) while audio-only."""


@dataclass
class _LiveRoom:
    started_at: float
    participants: dict[str, _Presence] = field(default_factory=dict)


class MeetingLog:
    def __init__(self, journal: Journal, store: Store,
                 clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.store = store
        self.clock = clock
        self._rooms: dict[str, _LiveRoom] = {}
        self._left: dict[tuple[str, str], tuple[float, str]] = {}  # (room, identity) -> (at, why)

    def _event(self, at: float, kind: str, room: str, participant: str = "",
               identity: str = "", **detail: str | int | float | bool | None) -> None:
        self.journal.event(MeetingEvent(at=at, kind=kind, room=room, participant=participant,
                                        identity=identity, detail=detail))

    # -- participants ----------------------------------------------------------------------------

    async def joined(self, room: str, participant_id: str, identity: str, name: str,
                     role: str, address: str, took_over: bool = False) -> None:
        now = self.clock()
        live = self._rooms.get(room)
        first = live is None
        if live is None:
            live = self._rooms[room] = _LiveRoom(now)
        live.participants[participant_id] = _Presence(identity, now)
        left = self._left.pop((room, identity), None)
        gap = None if left is None else now - left[0]
        reconnect = took_over or (gap is not None and gap <= RECONNECT_WINDOW_S
                                  and left is not None and left[1] not in VOLUNTARY)
        if first:
            self.journal.event(MeetingEvent(at=now, kind="room-started", room=room,
                                            detail=await self._schedule(room, now)))
        self._event(now, "participant-joined", room, participant_id, identity, name=name,
                    role=role, address=address, reconnect=reconnect)
        if reconnect:
            self._event(now, "reconnected", room, participant_id, identity,
                        gap_s=round(gap, 1) if gap is not None else 0.0)
        self.journal.audit(AuditEntry(at=now, actor=identity, action="room.join", room=room,
                                      target=participant_id, address=address,
                                      detail={"role": role, "name": name}))

    async def _schedule(self, room: str, now: float) -> Detail:
        try:
            stored = await self.store.find_room(room)
            meetings = [] if stored is None else await self.store.list_meetings(stored.id)
        except Exception:  # the event matters more than its detail
            logger.exception("could not look up the schedule of room %r", room)
            meetings = []
        for meeting in meetings:
            if is_on(meeting, now, SCHEDULE_EARLY_S):
                return {"scheduled": True, "meeting_id": meeting.id, "title": meeting.title}
        return {"scheduled": False}

    def left(self, room: str, participant_id: str, reason: str, address: str = "") -> None:
        live = self._rooms.get(room)
        presence = None if live is None else live.participants.pop(participant_id, None)
        if live is None or presence is None:
            return
        now = self.clock()
        for direction in list(presence.audio_only):
            self._audio_only_ended(now, room, participant_id, presence, direction)
        self._event(now, "participant-left", room, participant_id, presence.identity,
                    minutes=_minutes(now - presence.joined_at), reason=reason)
        self.journal.audit(AuditEntry(at=now, actor=presence.identity, action="room.leave",
                                      room=room, target=participant_id, address=address,
                                      detail={"reason": reason}))
        self._left[(room, presence.identity)] = (now, reason)
        while len(self._left) > MAX_RECENT:
            del self._left[next(iter(self._left))]
        if not live.participants and reason != "taken-over":  # the taker joins next
            del self._rooms[room]
            self._event(now, "room-finished", room, minutes=_minutes(now - live.started_at))

    def refused(self, room: str, identity: str, code: str, address: str) -> None:
        """A refused join (the first of a run the join audit merges: see ``JoinAudit``)."""
        now = self.clock()
        self._event(now, "join-refused", room, "", identity, code=code, address=address)
        self.journal.audit(AuditEntry(at=now, actor=identity, action="room.join", room=room,
                                      address=address, outcome=code))

    # -- media -----------------------------------------------------------------------------------

    def audio_only(self, room: str, participant_id: str, direction: str, on: bool,
                   reason: str | None, estimate_bps: int | None = None) -> None:
        presence = self._presence(room, participant_id)
        if presence is None:
            return
        now = self.clock()
        if on and direction not in presence.audio_only:
            why = reason or "bandwidth"
            presence.audio_only[direction] = (now, why)
            self._event(now, "audio-only-started", room, participant_id, presence.identity,
                        direction=direction, reason=why, estimate_bps=estimate_bps)
        elif not on and direction in presence.audio_only:
            self._audio_only_ended(now, room, participant_id, presence, direction)

    def _audio_only_ended(self, now: float, room: str, participant_id: str,
                          presence: _Presence, direction: str) -> None:
        since, why = presence.audio_only.pop(direction)
        self._event(now, "audio-only-ended", room, participant_id, presence.identity,
                    direction=direction, reason=why, minutes=_minutes(now - since))

    def quality(self, readings: Sequence[QualityReading]) -> int:
        """One round of samples: poor ones (loss over 5 %, round trip over 400 ms) become
        events. Returns how many."""
        now, poor = self.clock(), 0
        for reading in readings:
            presence = self._presence(reading.room, reading.participant_id)
            if presence is None:
                continue
            if reading.loss > POOR_LOSS or (reading.rtt_ms or 0.0) > POOR_RTT_MS:
                poor += 1
                self._event(now, "poor-quality", reading.room, reading.participant_id,
                            presence.identity, loss=round(reading.loss, 4),
                            rtt_ms=None if reading.rtt_ms is None else round(reading.rtt_ms))
        return poor

    async def sample_quality(self, probe: QualityProbe,
                             every_s: float = QUALITY_EVERY_S) -> None:
        """Run until cancelled: a round of quality samples every ``every_s``."""
        while True:
            await asyncio.sleep(every_s)
            try:
                self.quality(probe.quality_readings())
            except Exception:
                logger.exception("quality sampling failed")

    # -- recordings ------------------------------------------------------------------------------

    def recording(self, room: str, recording_id: str, started: bool, by: str,
                  address: str = "", state: str = "") -> None:
        now = self.clock()
        kind = "recording-started" if started else "recording-finished"
        self._event(now, kind, room, identity=by, recording=recording_id, state=state or None)
        self.journal.audit(AuditEntry(at=now, actor=by, action=f"recording.{kind[10:]}",
                                      room=room, target=recording_id, address=address))

    def _presence(self, room: str, participant_id: str) -> _Presence | None:
        live = self._rooms.get(room)
        return None if live is None else live.participants.get(participant_id)

    def live_rooms(self) -> dict[str, int]:
        return {room: len(live.participants) for room, live in self._rooms.items()}


def _minutes(seconds: float) -> float:
    return round(max(0.0, seconds) / 60.0, 2)
