"""Weekly meeting schedules: is a meeting on at time t? Pure functions, time passed in.

Times are local wall-clock times at a fixed UTC offset (Vietnam: +07:00, no daylight saving), so
no time-zone database is needed.
"""

from __future__ import annotations

import datetime as dt

from signaling.store.models import Meeting

EARLY_JOIN_S = 15 * 60
"""Endpoints may join this long before a meeting starts (rooms are set up ahead of time)."""


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD``; ValueError otherwise."""
    if len(text) != 10:
        raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}")
    return dt.date.fromisoformat(text)


def parse_time(text: str) -> dt.time:
    """``HH:MM``; ValueError otherwise."""
    if len(text) != 5 or text[2] != ":":
        raise ValueError(f"expected a time HH:MM, got {text!r}")
    return dt.time(int(text[:2]), int(text[3:]))


def check_meeting_times(first_date: str, start: str, end: str, until: str | None) -> None:
    """Raise ValueError naming what is wrong with a schedule (meetings end on the day they
    start: none of ours runs past midnight)."""
    first = parse_date(first_date)
    if parse_time(end) <= parse_time(start):
        raise ValueError(f"end {end} is not after start {start}")
    if until is not None and parse_date(until) < first:
        raise ValueError(f"until {until} is before first_date {first_date}")


def occurs_on(meeting: Meeting, day: dt.date) -> bool:
    """Does the meeting have an occurrence on this local date?"""
    first = parse_date(meeting.first_date)
    if day < first or (meeting.until is not None and day > parse_date(meeting.until)):
        return False
    if not meeting.weekly:
        return day == first
    return day.weekday() == first.weekday()


def is_on(meeting: Meeting, t: float, early_s: float = 0.0) -> bool:
    """Is the meeting on at POSIX time ``t`` (or starting within ``early_s``)?"""
    tz = dt.timezone(dt.timedelta(minutes=meeting.utc_offset_min))
    local = dt.datetime.fromtimestamp(t, tz)
    start, end = parse_time(meeting.start), parse_time(meeting.end)
    # The early window may reach back over midnight: look at today's and tomorrow's occurrence.
    for day in (local.date(), local.date() + dt.timedelta(days=1)):
        if not occurs_on(meeting, day):
            continue
        begins = dt.datetime.combine(day, start, tz) - dt.timedelta(seconds=early_s)
        ends = dt.datetime.combine(day, end, tz)
        if begins <= local < ends:
            return True
    return False


def next_start(meeting: Meeting, t: float) -> float | None:
    """The POSIX time of the next occurrence starting at or after ``t`` (None: no more)."""
    tz = dt.timezone(dt.timedelta(minutes=meeting.utc_offset_min))
    local = dt.datetime.fromtimestamp(t, tz)
    start = parse_time(meeting.start)
    day = max(local.date(), parse_date(meeting.first_date))
    for _ in range(8):
        if occurs_on(meeting, day):
            begins = dt.datetime.combine(day, start, tz)
            if begins >= local:
                return begins.timestamp()
        day += dt.timedelta(days=1)
    return None  # a weekly meeting recurs within 8 days unless its series has ended
