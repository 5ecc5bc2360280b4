"""A participant who joins while others speak is told who speaks at once (issue 11).

The `speakers` message was sent only when the set changed, so a newcomer to a room with steady
speakers never heard of them: its gallery (web client and load generator alike: speakers first,
then join order) put other people on page 1, while last-N forwarded the speakers first and then
only the first N - len(speakers) tiles of that page. The page showed placeholders for the rest,
and the speakers' videos came to tiles off the page: 6 videos seen of 9 in the one-core ramp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfu.events import Speakers
from sfu.policy.last_n import SpeakerHistory
from sfu.room import Room
from tests.unit.test_last_n import Person, close_everyone


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    live = Room("big", last_n=3)
    yield live
    await close_everyone(live)


def speakers_told(person: Person) -> list[tuple[str, ...]]:
    return [e.participant_ids for e in person.events if isinstance(e, Speakers)]


def web_client_page(person: Person, room: Room, size: int) -> tuple[str, ...]:
    """web/gallery.js's order: the speakers it was told of (latest first), then join order."""
    told = speakers_told(person)
    speakers = list(told[-1]) if told else []
    others = [pid for pid in room.participants if pid != person.participant.id]
    ranked = [pid for pid in speakers if pid in others]
    ranked += [pid for pid in others if pid not in ranked]
    return tuple(ranked[:size])


async def test_a_newcomer_hears_who_speaks_and_its_whole_page_gets_video(room: Room) -> None:
    people = [Person(room, pid) for pid in ("a", "b", "c", "d", "e")]
    people[3].level(10, 1.0)  # d and e speak, and keep speaking
    people[4].level(20, 1.0)
    room.maintain(1.5)
    assert room.speakers == ["d", "e"]
    told_before = [len(speakers_told(p)) for p in people]
    late = Person(room, "late", video=False)
    assert speakers_told(late) == [("d", "e")]  # before: nothing until the speakers change
    assert [len(speakers_told(p)) for p in people] == told_before  # the others: no news
    page = web_client_page(late, room, 3)
    assert page == ("d", "e", "a")
    room.set_shown(late.participant, page)
    # Every tile on its page gets video (before: d, e forwarded off the page, b and c shown as
    # placeholders).
    assert set(late.forwarded() or ()) == set(page)


async def test_nobody_speaking_tells_a_newcomer_nothing(room: Room) -> None:
    for pid in ("a", "b"):
        Person(room, pid)
    room.maintain(1.0)
    late = Person(room, "late")
    assert speakers_told(late) == []


def test_recent_speakers_are_those_heard_since_a_time() -> None:
    history = SpeakerHistory()
    history.update(["a"], 1.0)
    history.update(["b"], 2.0)
    recent = history.recent(3.0)
    assert recent == ["b", "a"]
    assert history.heard_since(recent, 1.5) == ["b"]
    assert history.heard_since(recent, 0.0) == ["b", "a"]
    assert history.heard_since(["ghost"], 0.0) == []


async def test_a_newcomer_gets_no_recent_speaker_it_never_heard(room: Room) -> None:
    """Somebody who spoke before we joined (and stopped) ranks ahead of the page only for those
    who heard them: a newcomer's gallery knows nothing of them, its page would show a
    placeholder while their video came to a tile off the page."""
    people = [Person(room, pid) for pid in ("a", "b", "c", "d", "e")]
    people[3].level(10, 1.0)  # d speaks, then stops
    room.maintain(1.5)
    room.maintain(3.0)
    assert room.speakers == [] and room.last_n.history.recent(3.0) == ["d"]
    early = people[0]
    room.set_shown(early.participant, ("b", "c", "e"))
    assert set(early.forwarded() or ()) == {"d", "b", "c"}  # d stays for who heard it: as before
    late = Person(room, "late", video=False, joined_at=3.5)
    assert speakers_told(late) == []  # nobody speaks now
    page = web_client_page(late, room, 3)
    assert page == ("a", "b", "c")
    room.set_shown(late.participant, page)
    assert set(late.forwarded() or ()) == set(page)  # before: d, a, b (c a placeholder)
