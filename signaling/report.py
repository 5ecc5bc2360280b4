"""The daily report: what a day's meetings were, from the stored event record (so a restart
loses nothing): meetings held (scheduled or ad hoc), participants and their minutes, peak
concurrent, recordings, join refusals by code, reconnections, time audio-only, participants with
poor quality, and each problem with its time, per room and in total.

``build_report`` is pure (events in, report out, times passed in); ``daily_report`` reads the
store; ``render_md`` writes Markdown (``signaling/report_html.py`` the printable HTML).

A day is a local calendar day (UTC + ``utc_offset_min``; Vietnam is +420). A participant still
in at the end of the day counts until then; one whose leave was never recorded (the server was
killed) counts until the room next starts, or the day ends.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from signaling.store import RecordingRow, Store
from signaling.store.journal_models import MeetingEvent

DEFAULT_UTC_OFFSET_MIN = 420
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 31)
"""Days a report may be asked for (beyond, date arithmetic overflows)."""


def parse_day(text: str) -> dt.date:
    """YYYY-MM-DD within FIRST_DAY..LAST_DAY, else ValueError naming the problem."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD, got {text[:40]!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"date {day} is outside {FIRST_DAY}..{LAST_DAY}")
    return day


class Meeting(msgspec.Struct, frozen=True):
    started_at: float
    ended_at: float | None
    minutes: float
    scheduled: bool
    title: str = ""


class Attendance(msgspec.Struct, frozen=True):
    identity: str
    name: str
    minutes: float
    joins: int


class PoorQuality(msgspec.Struct, frozen=True):
    identity: str
    samples: int
    worst_loss: float
    worst_rtt_ms: float | None
    first_at: float
    last_at: float


class Problem(msgspec.Struct, frozen=True):
    at: float
    kind: str  # join-refused | reconnected | audio-only | poor-quality | recording-failed
    who: str
    text: str


class Recording(msgspec.Struct, frozen=True):
    id: str
    started_at: float
    minutes: float
    state: str
    started_by: str


class RoomReport(msgspec.Struct, frozen=True):
    room: str
    meetings: list[Meeting]
    participants: list[Attendance]
    participant_minutes: float
    peak_concurrent: int
    peak_at: float | None
    recordings: list[Recording]
    refusals: dict[str, int]
    reconnections: int
    audio_only_minutes: float
    poor_quality: list[PoorQuality]
    problems: list[Problem]
    concurrency: list[tuple[float, int]]
    """(time, participants in the room) at every change: the plot's line."""


class Totals(msgspec.Struct, frozen=True):
    meetings: int
    scheduled: int
    ad_hoc: int
    participants: int
    participant_minutes: float
    peak_concurrent: int
    peak_at: float | None
    recordings: int
    refusals: dict[str, int]
    reconnections: int
    audio_only_minutes: float
    poor_quality_participants: int
    problems: int


class DailyReport(msgspec.Struct, frozen=True):
    date: str
    utc_offset_min: int
    since: float
    until: float
    generated_at: float
    totals: Totals
    rooms: list[RoomReport]


def day_bounds(day: dt.date, utc_offset_min: int) -> tuple[float, float]:
    tz = dt.timezone(dt.timedelta(minutes=utc_offset_min))
    start = dt.datetime.combine(day, dt.time(0, 0), tz)
    return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


async def daily_report(store: Store, day: dt.date, now: float,
                       utc_offset_min: int = DEFAULT_UTC_OFFSET_MIN) -> DailyReport:
    since, until = day_bounds(day, utc_offset_min)
    events = await store.list_events(since, until)
    refusals = await store.refusal_counts(since, until)
    recordings = await store.list_recordings(since=since, until=until, limit=100_000)
    return build_report(day, utc_offset_min, events, refusals, recordings, now)


@dataclass
class _Room:
    """A room's day being replayed."""

    present: dict[str, tuple[float, str]] = field(default_factory=dict)
    """participant id -> (joined at, identity)"""
    names: dict[str, str] = field(default_factory=dict)
    since: float = 0.0
    minutes: dict[str, float] = field(default_factory=dict)
    joins: Counter[str] = field(default_factory=Counter)
    meetings: list[Meeting] = field(default_factory=list)
    open_meeting: tuple[float, bool, str] | None = None
    concurrency: list[tuple[float, int]] = field(default_factory=list)
    peak: int = 0
    peak_at: float | None = None
    reconnections: int = 0
    audio_only_s: float = 0.0
    audio_only: dict[tuple[str, str], float] = field(default_factory=dict)
    """(participant, direction) -> since"""
    problems: list[Problem] = field(default_factory=list)
    poor: dict[str, list[MeetingEvent]] = field(default_factory=dict)
    recorded: dict[str, tuple[float, str, float | None, str]] = field(default_factory=dict)
    """recording id -> (started at, by, finished at, state), from the events: a recording
    deleted since (no longer in the catalogue) still counts as made."""


def build_report(day: dt.date, utc_offset_min: int, events: list[MeetingEvent],
                 refusals: list[tuple[str, str, int]], recordings: list[RecordingRow],
                 now: float) -> DailyReport:
    since, until = day_bounds(day, utc_offset_min)
    end = min(until, max(now, since))  # today: up to now
    rooms: dict[str, _Room] = {}

    def room_of(name: str) -> _Room:
        return rooms.setdefault(name, _Room(since=since))

    for event in sorted(events, key=lambda e: e.at):
        _replay(room_of(event.room), event)
    refused: dict[str, Counter[str]] = {}
    for room, code, count in refusals:
        refused.setdefault(room, Counter())[code] += count
        room_of(room)
    by_room: dict[str, list[Recording]] = {}
    for row in recordings:
        ended = row.ended_at if row.ended_at is not None else end
        by_room.setdefault(row.room, []).append(Recording(
            row.id, row.started_at, round((ended - row.started_at) / 60, 2), row.state,
            row.started_by))
        room_of(row.room)
        if row.state == "failed":
            room_of(row.room).problems.append(Problem(
                row.ended_at or row.started_at, "recording-failed", row.started_by,
                f"recording {row.id} failed: {row.error or 'unknown error'}"))
    for name, state in rooms.items():
        listed = {r.id for r in by_room.get(name, [])}
        for rid, (started, by, finished, how) in state.recorded.items():
            if rid not in listed:
                by_room.setdefault(name, []).append(Recording(
                    rid, started, round(((finished or end) - started) / 60, 2),
                    f"{how}, no longer in the archive", by))
    reports = [_finish(name, state, end, refused.get(name, Counter()),
                       sorted(by_room.get(name, []), key=lambda r: r.started_at))
               for name, state in sorted(rooms.items())]
    return DailyReport(day.isoformat(), utc_offset_min, since, until, now,
                       _totals(reports), reports)


def _replay(room: _Room, e: MeetingEvent) -> None:
    d = e.detail
    problems = room.problems
    if e.kind == "room-started":
        _close_all(room, e.at)  # a leave never recorded (a killed server) ends here
        room.open_meeting = (e.at, bool(d.get("scheduled")), str(d.get("title") or ""))
    elif e.kind == "room-finished":
        _close_meeting(room, e.at)
    elif e.kind == "participant-joined":
        if room.open_meeting is None:  # began before the day (or its start was lost)
            room.open_meeting = (e.at, False, "")
        room.present[e.participant] = (e.at, e.identity)
        room.names[e.identity] = str(d.get("name") or e.identity)
        room.joins[e.identity] += 1
        _concurrency(room, e.at)
    elif e.kind == "participant-left":
        if e.participant not in room.present:  # joined before the day: its part of the day
            minutes = min(float(d.get("minutes") or 0.0), (e.at - room.since) / 60)
            room.minutes[e.identity] = room.minutes.get(e.identity, 0.0) + minutes
            room.names.setdefault(e.identity, e.identity)
        _leave(room, e.participant, e.at)
    elif e.kind == "reconnected":
        room.reconnections += 1
        problems.append(Problem(e.at, "reconnected", _who(room, e),
                                f"back after {d.get('gap_s', 0)} s"))
    elif e.kind == "join-refused":
        who = e.identity if e.identity not in ("", "?") else "unknown"
        problems.append(Problem(e.at, "join-refused", who,
                                f"{d.get('code')} from {d.get('address')}"))
    elif e.kind == "audio-only-started":
        room.audio_only[(e.participant, str(d.get("direction")))] = e.at
        estimate = d.get("estimate_bps")
        problems.append(Problem(e.at, "audio-only", _who(room, e),
                                f"{d.get('direction')}link, {d.get('reason')}"
                                + (f", estimate {float(estimate) / 1e6:.2f} Mbit/s"
                                   if isinstance(estimate, int | float) else "")))
    elif e.kind == "audio-only-ended":
        started = room.audio_only.pop((e.participant, str(d.get("direction"))), None)
        if started is not None:
            room.audio_only_s += e.at - started
    elif e.kind == "recording-started":
        room.recorded[str(d.get("recording"))] = (e.at, e.identity, None, "recording")
    elif e.kind == "recording-finished" and str(d.get("recording")) in room.recorded:
        started, by, _, _ = room.recorded[str(d.get("recording"))]
        room.recorded[str(d.get("recording"))] = (started, by, e.at, str(d.get("state")))
    elif e.kind == "poor-quality":
        room.poor.setdefault(e.identity, []).append(e)
        rtt = d.get("rtt_ms")
        problems.append(Problem(e.at, "poor-quality", _who(room, e),
                                f"loss {float(d.get('loss') or 0) * 100:.1f} %"
                                + (f", round trip {rtt} ms" if rtt is not None else "")))


def _who(room: _Room, e: MeetingEvent) -> str:
    return room.names.get(e.identity, e.identity or e.participant)


def _leave(room: _Room, participant: str, at: float) -> None:
    joined = room.present.pop(participant, None)
    if joined is None:
        return
    room.minutes[joined[1]] = room.minutes.get(joined[1], 0.0) + (at - joined[0]) / 60
    for key in [k for k in room.audio_only if k[0] == participant]:
        room.audio_only_s += at - room.audio_only.pop(key)
    _concurrency(room, at)


def _close_all(room: _Room, at: float) -> None:
    for participant in list(room.present):
        _leave(room, participant, at)
    _close_meeting(room, at)


def _close_meeting(room: _Room, at: float | None) -> None:
    if room.open_meeting is None:
        return
    started, scheduled, title = room.open_meeting
    ended = at if at is not None else None
    minutes = 0.0 if ended is None else round((ended - started) / 60, 2)
    room.meetings.append(Meeting(started, ended, minutes, scheduled, title))
    room.open_meeting = None


def _concurrency(room: _Room, at: float) -> None:
    count = len(room.present)
    room.concurrency.append((at, count))
    if count > room.peak:
        room.peak, room.peak_at = count, at


def _finish(name: str, room: _Room, end: float, refused: Counter[str],
            recordings: list[Recording]) -> RoomReport:
    still_open = room.open_meeting
    for participant in list(room.present):  # still in at the end of the day (or now)
        _leave(room, participant, end)
    for key in list(room.audio_only):
        room.audio_only_s += end - room.audio_only.pop(key)
    if still_open is not None:
        started, scheduled, title = still_open
        room.meetings.append(Meeting(started, None, round((end - started) / 60, 2),
                                     scheduled, title))
        room.open_meeting = None
    attendance = sorted((Attendance(identity, room.names.get(identity, identity),
                                    round(minutes, 2), room.joins.get(identity, 0))
                         for identity, minutes in room.minutes.items()),
                        key=lambda a: (-a.minutes, a.identity))
    poor = sorted((PoorQuality(identity, len(samples),
                               max(float(s.detail.get("loss") or 0.0) for s in samples),
                               max((float(v) for s in samples
                                    if isinstance(v := s.detail.get("rtt_ms"), int | float)),
                                   default=None),
                               samples[0].at, samples[-1].at)
                   for identity, samples in room.poor.items()), key=lambda p: p.first_at)
    poor = [PoorQuality(room.names.get(p.identity, p.identity), p.samples, p.worst_loss,
                        p.worst_rtt_ms, p.first_at, p.last_at) for p in poor]
    problems = sorted(room.problems, key=lambda p: p.at)
    return RoomReport(
        name, room.meetings, attendance, round(sum(room.minutes.values()), 2), room.peak,
        room.peak_at, recordings, dict(sorted(refused.items())), room.reconnections,
        round(room.audio_only_s / 60, 2), poor, problems, room.concurrency)


def _totals(rooms: list[RoomReport]) -> Totals:
    meetings = [m for r in rooms for m in r.meetings]
    refusals: Counter[str] = Counter()
    for r in rooms:
        refusals.update(r.refusals)
    # Peak across the server: replay every room's changes on one clock.
    changes = sorted((at, r.room, n) for r in rooms for at, n in r.concurrency)
    current: dict[str, int] = {}
    peak, peak_at = 0, None
    for at, room, n in changes:
        current[room] = n
        if sum(current.values()) > peak:
            peak, peak_at = sum(current.values()), at
    identities = {a.identity for r in rooms for a in r.participants}
    return Totals(
        meetings=len(meetings), scheduled=sum(m.scheduled for m in meetings),
        ad_hoc=sum(not m.scheduled for m in meetings), participants=len(identities),
        participant_minutes=round(sum(r.participant_minutes for r in rooms), 2),
        peak_concurrent=peak, peak_at=peak_at, recordings=sum(len(r.recordings) for r in rooms),
        refusals=dict(sorted(refusals.items())),
        reconnections=sum(r.reconnections for r in rooms),
        audio_only_minutes=round(sum(r.audio_only_minutes for r in rooms), 2),
        poor_quality_participants=sum(len(r.poor_quality) for r in rooms),
        problems=sum(len(r.problems) for r in rooms))
