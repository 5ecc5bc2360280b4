"""A day of synthetic meetings, driven through the real ``MeetingLog`` and ``Journal`` (clock
injected) into a real SQLite file, becomes a daily report with known totals; the Markdown, JSON
and HTML forms carry them. Set ``DIEMCAU_REPORT_ARTIFACTS`` to a directory to keep the files."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import msgspec

from signaling.journal import Journal
from signaling.meeting_log import MeetingLog, QualityReading
from signaling.ops_cli import run_report
from signaling.report import DailyReport, daily_report, day_bounds
from signaling.report_render import render
from signaling.store import DB_FILE, JoinRecord, RecordingRow, SqliteStore

DAY = dt.date(2026, 12, 3)
OFFSET = 420  # Vietnam


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def at(self, hhmm: str, day: dt.date = DAY) -> float:
        hours, minutes = (int(x) for x in hhmm.split(":"))
        self.now = day_bounds(day, OFFSET)[0] + hours * 3600 + minutes * 60
        return self.now

    def __call__(self) -> float:
        return self.now


async def synthetic_day(data_dir: Path) -> None:
    """Room so-noi-vu: a scheduled meeting (08:00-10:00) with three participants, one drops
    out and comes back, one is audio-only for 10 minutes, one has poor quality; room ubnd: an ad
    hoc meeting of two, recorded for 20 minutes; refused joins; a meeting the next day."""
    store = await SqliteStore.open(data_dir / DB_FILE)
    clock = Clock()
    journal = Journal(store, clock=clock)
    log = MeetingLog(journal, store, clock)
    org = await store.create_organisation("Sở Nội vụ")
    room = await store.create_room("so-noi-vu", org.id)
    await store.create_room("ubnd", org.id)
    await store.create_meeting(room.id, "Giao ban", DAY.isoformat(), "08:00", "10:00",
                               weekly=True, utc_offset_min=OFFSET)

    async def join(room: str, pid: str, name: str, hhmm: str) -> None:
        clock.at(hhmm)
        await log.joined(room, pid, f"account:{name}", name, "member", "10.0.0.9")

    def leave(room: str, pid: str, hhmm: str, reason: str = "requested") -> None:
        clock.at(hhmm)
        log.left(room, pid, reason)

    def refuse(room: str, code: str, count: int, hhmm: str) -> JoinRecord:
        at = clock.at(hhmm)
        log.refused(room, "?", code, "203.0.113.5")  # the first of a merged run
        return JoinRecord(at, room, "?", "?", "203.0.113.5", code, count, at + 30)

    refusals = [refuse("so-noi-vu", "bad-password", 3, "07:50")]
    await join("so-noi-vu", "a1", "alice", "07:55")  # 5 minutes early: the scheduled meeting
    await join("so-noi-vu", "b1", "bob", "08:00")
    await join("so-noi-vu", "c1", "carol", "08:05")
    clock.at("08:20")
    log.audio_only("so-noi-vu", "b1", "down", True, "bandwidth", 1_200_000)
    clock.at("08:30")
    log.audio_only("so-noi-vu", "b1", "down", False, None)
    leave("so-noi-vu", "c1", "08:40", "disconnected")
    await join("so-noi-vu", "c2", "carol", "08:41")  # back within 2 minutes: a reconnection
    clock.at("08:45")
    assert log.quality([QualityReading("so-noi-vu", "c2", 0.08, 500.0),
                        QualityReading("so-noi-vu", "a1", 0.01, 40.0)]) == 1
    clock.now += 30
    log.quality([QualityReading("so-noi-vu", "c2", 0.12, 300.0)])
    leave("so-noi-vu", "a1", "09:55")
    leave("so-noi-vu", "b1", "09:56")
    leave("so-noi-vu", "c2", "09:57")
    await join("ubnd", "d1", "dan", "14:00")
    rec_start = clock.at("14:05")
    log.recording("ubnd", "rec1", True, "account:dan")
    await join("ubnd", "e1", "eve", "14:10")
    refusals.append(refuse("ubnd", "room-full", 1, "14:15"))
    rec_end = clock.at("14:25")
    log.recording("ubnd", "rec1", False, "account:dan", state="complete")
    leave("ubnd", "e1", "14:30")
    leave("ubnd", "d1", "14:40")
    clock.at("09:00", DAY + dt.timedelta(days=1))  # the next day: not in this report
    await log.joined("so-noi-vu", "a9", "account:alice", "alice", "member", "10.0.0.9")
    await journal.flush()
    for record in refusals:
        await store.record_join(record)
    await store.add_recording(RecordingRow("rec1", "ubnd", org.id, None, rec_start, None,
                                           "recording", "account:dan"))
    await store.finish_recording("rec1", ended_at=rec_end, state="complete",
                                 stopped_by="account:dan", participants=("dan", "eve"),
                                 files=())
    await journal.close()
    await store.close()


async def test_a_day_of_events_gives_a_report_with_known_totals(tmp_path: Path) -> None:
    await synthetic_day(tmp_path)
    store = await SqliteStore.open(tmp_path / DB_FILE)  # reopened: read from the file
    try:
        report = await daily_report(store, DAY, now=day_bounds(DAY, OFFSET)[1] + 3600,
                                    utc_offset_min=OFFSET)
    finally:
        await store.close()
    t = report.totals
    assert (t.meetings, t.scheduled, t.ad_hoc) == (2, 1, 1)
    assert t.participants == 5
    # alice 120 + bob 116 + carol 35 + 76 = 347 in so-noi-vu; dan 40 + eve 20 = 60 in ubnd
    assert t.participant_minutes == 407
    assert t.peak_concurrent == 3
    assert t.recordings == 1
    assert t.refusals == {"bad-password": 3, "room-full": 1}
    assert t.reconnections == 1
    assert t.audio_only_minutes == 10
    assert t.poor_quality_participants == 1
    so, ubnd = report.rooms
    assert so.room == "so-noi-vu" and so.meetings[0].scheduled and so.meetings[0].title == \
        "Giao ban"
    assert so.meetings[0].minutes == 122  # 07:55 to 09:57
    assert {a.name: a.minutes for a in so.participants} == {"alice": 120, "bob": 116,
                                                             "carol": 111}
    assert {a.name: a.joins for a in so.participants}["carol"] == 2
    assert (so.peak_concurrent, so.peak_at) == (3, _at("08:05"))
    poor = so.poor_quality[0]
    assert (poor.identity, poor.samples, poor.worst_loss, poor.worst_rtt_ms) == \
        ("carol", 2, 0.12, 500)
    assert [(p.at, p.kind) for p in so.problems] == [
        (_at("07:50"), "join-refused"), (_at("08:20"), "audio-only"),
        (_at("08:41"), "reconnected"), (_at("08:45"), "poor-quality"),
        (_at("08:45") + 30, "poor-quality")]
    assert not ubnd.meetings[0].scheduled and ubnd.participant_minutes == 60
    assert ubnd.recordings[0].minutes == 20 and ubnd.refusals == {"room-full": 1}
    texts = {fmt: render(report, fmt) for fmt in ("md", "json", "html")}
    assert "| Meetings held | 2 (1 scheduled, 1 ad hoc) |" in texts["md"]
    assert "| Participant minutes | 407 |" in texts["md"]
    assert "- 08:20 audio-only (bob): downlink, bandwidth, estimate 1.20 Mbit/s" in texts["md"]
    assert "- 08:45 poor-quality (carol): loss 8.0 %, round trip 500 ms" in texts["md"]
    assert msgspec.json.decode(texts["json"], type=DailyReport) == report
    assert texts["html"].count("data:image/png;base64,") == 3
    assert "<td>Participant minutes</td><td>407</td>" in texts["html"]
    assert "---" not in texts["html"]  # the Markdown's table rules are not rows
    assert "<th>Participant</th><th>Minutes</th><th>Joins</th>" in texts["html"]
    keep = os.environ.get("DIEMCAU_REPORT_ARTIFACTS")
    if keep:
        for fmt in ("md", "html"):
            Path(keep, f"daily-report-{DAY}.{fmt}").write_text(texts[fmt], encoding="utf-8")


async def test_the_command_line_writes_the_report(tmp_path: Path) -> None:
    await synthetic_day(tmp_path)
    out = tmp_path / "report.md"
    args = ["--data-dir", str(tmp_path), "--date", DAY.isoformat(), "-o", str(out)]
    from diemcau.cli import build_parser

    parsed = build_parser().parse_args(["report", "daily", *args])
    assert await asyncio.to_thread(run_report, parsed) == 0
    assert "| Participants | 5 |" in out.read_text(encoding="utf-8")


def _at(hhmm: str) -> float:
    return Clock().at(hhmm)


def test_a_room_named_like_a_formula_still_plots() -> None:
    from signaling.report import build_report
    from signaling.store.journal_models import MeetingEvent

    at = day_bounds(DAY, OFFSET)[0] + 3600
    events = [MeetingEvent(at=at, kind="participant-joined", room="$\\frac{$", participant="p",
                           identity="guest:1", detail={"name": "<b>x</b> | y"})]
    report = build_report(DAY, OFFSET, events, [], [], at + 60)
    page = render(report, "html")
    assert page.count("data:image/png;base64,") == 2
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; | y" in page
