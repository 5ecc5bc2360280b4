"""The synthetic participant's gallery page: speakers first, then the others from after us."""

from __future__ import annotations

from loadtest.quality import LoadParticipant


async def test_the_page_puts_speakers_first_then_rotates_from_after_us() -> None:
    person = LoadParticipant("http://127.0.0.1:9", "room", "p3", gallery_page=4,
                             marker_index={})
    try:
        person.others = {f"id{i}": f"p{i}" for i in (0, 1, 2, 4, 5, 6, 7)}
        person._joined_after = 3  # p0, p1, p2 were in when p3 joined
        assert person.shown() == ["id4", "id5", "id6", "id7"]
        person._on_event({"type": "speakers", "participant_ids": ["id1", "id9"]})
        assert person.shown() == ["id1", "id4", "id5", "id6"]  # id9 is not in the room
        person.gallery_page = None
        assert len(person.shown()) == 7
        window = person.window()
        assert window["video_expected"] == 7 and len(window["video_missing_from"]) == 7
    finally:
        await person.close()
