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
from sfu.room import Room
from tests.unit.test_last_n import Person


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    live = Room("big", last_n=3)
    yield live
    for participant in list(live.participants.values()):
        if participant.subscriber is not None:
            await participant.subscriber.close()
        if participant.publisher is not None:
            await participant.publisher.close()


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
