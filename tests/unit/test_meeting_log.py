"""``MeetingLog`` turns session calls into events (clock injected, real SQLite file): a take-over
keeps the meeting whole and counts as a reconnection, a voluntary leave and return does not,
audio-only ends with the participant, poor quality is only what crosses the limits, and event
sinks (a webhook dispatcher) see every event even when one of them fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.journal import Journal
from signaling.meeting_log import MeetingLog, QualityReading
from signaling.store import SqliteStore
from signaling.store.journal_models import MeetingEvent


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.kinds: list[str] = []
        self.fail = fail

    def on_event(self, event: MeetingEvent) -> None:
        self.kinds.append(event.kind)
        if self.fail:
            raise RuntimeError("webhook queue full")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[MeetingLog, Clock, SqliteStore]]:
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    clock = Clock()
    journal = Journal(store, clock=clock)
    yield MeetingLog(journal, store, clock), clock, store
    await journal.close()
    await store.close()


async def kinds(log: MeetingLog, store: SqliteStore) -> list[str]:
    await log.journal.flush()
    return [e.kind for e in await store.list_events(0.0, 1e12)]


async def test_take_over_keeps_the_meeting_and_is_a_reconnection(
        parts: tuple[MeetingLog, Clock, SqliteStore]) -> None:
    log, clock, store = parts
    await log.joined("r", "p1", "account:a", "A", "member", "192.0.2.1")
    clock.now += 60
    log.left("r", "p1", "taken-over")  # the old window is kicked first ...
    await log.joined("r", "p2", "account:a", "A", "member", "192.0.2.2", took_over=True)
    assert await kinds(log, store) == ["room-started", "participant-joined", "participant-left",
                                       "participant-joined", "reconnected"]


async def test_a_voluntary_leave_and_return_is_no_reconnection(
        parts: tuple[MeetingLog, Clock, SqliteStore]) -> None:
    log, clock, store = parts
    await log.joined("r", "p1", "account:a", "A", "member", "192.0.2.1")
    await log.joined("r", "p9", "account:b", "B", "member", "192.0.2.9")
    log.left("r", "p1", "requested")
    clock.now += 30
    await log.joined("r", "p2", "account:a", "A", "member", "192.0.2.1")
    log.left("r", "p2", "disconnected")
    clock.now += 300  # too late to count as a reconnection
    await log.joined("r", "p3", "account:a", "A", "member", "192.0.2.1")
    assert "reconnected" not in await kinds(log, store)


async def test_audio_only_ends_with_the_participant_and_quality_has_limits(
        parts: tuple[MeetingLog, Clock, SqliteStore]) -> None:
    log, clock, store = parts
    await log.joined("r", "p1", "account:a", "A", "member", "192.0.2.1")
    log.audio_only("r", "p1", "down", True, None)
    log.audio_only("r", "p1", "down", True, "bandwidth")  # no second start
    assert log.quality([QualityReading("r", "p1", 0.05, 400.0),  # at the limits: fine
                        QualityReading("r", "p1", 0.0, 401.0),
                        QualityReading("r", "gone", 0.5, None)]) == 1
    clock.now += 120
    log.left("r", "p1", "disconnected")
    await log.journal.flush()
    events = await store.list_events(0.0, 1e12)
    ended = [e for e in events if e.kind == "audio-only-ended"]
    assert [(e.detail["minutes"], e.detail["reason"]) for e in ended] == [(2.0, "bandwidth")]
    assert [e.kind for e in events][-2:] == ["participant-left", "room-finished"]


async def test_sinks_see_every_event_even_when_one_fails(
        parts: tuple[MeetingLog, Clock, SqliteStore]) -> None:
    log, _, store = parts
    failing, working = Sink(fail=True), Sink()
    log.journal.subscribe(failing)
    log.journal.subscribe(working)
    await log.joined("r", "p1", "account:a", "A", "member", "192.0.2.1")
    log.left("r", "p1", "requested")
    expected = ["room-started", "participant-joined", "participant-left", "room-finished"]
    assert failing.kinds == working.kinds == expected
    assert await kinds(log, store) == expected  # the record is whole all the same
