"""The synthetic participant's gallery page: speakers first, then the others from after us."""

from __future__ import annotations

from loadtest import report
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


async def test_recent_speakers_stay_ahead_of_the_page_as_in_the_web_client() -> None:
    """web/gallery.js keeps earlier speakers after the current ones; last-N forwards recent
    speakers ahead of the page, so a page without them would show placeholders."""
    person = LoadParticipant("http://127.0.0.1:9", "room", "p3", gallery_page=4,
                             marker_index={})
    try:
        person.others = {f"id{i}": f"p{i}" for i in (0, 1, 2, 4, 5, 6, 7)}
        person._joined_after = 3
        person._on_event({"type": "speakers", "participant_ids": ["id1"]})
        person._on_event({"type": "speakers", "participant_ids": ["id2", "id0"]})
        assert person.shown() == ["id2", "id0", "id1", "id4"]
        person._on_event({"type": "speakers", "participant_ids": []})
        assert person.shown() == ["id2", "id0", "id1", "id4"]  # nobody speaks: order kept
    finally:
        await person.close()


async def test_a_page_tile_the_server_does_not_forward_is_reported_not_hidden() -> None:
    """The ramp's symptom (issue 11): a participant who joined while the speakers spoke
    steadily never heard of them; its page (9 others) lacked them, last-N forwarded the 3
    speakers plus 6 of its page, and the report counted 6 of 6 wanted videos arriving. The
    3 page tiles without video now show in the window, the figures and the objectives."""
    person = LoadParticipant("http://127.0.0.1:9", "room", "p9", gallery_page=3,
                             marker_index={})
    try:
        person.others = {f"id{i}": f"p{i}" for i in range(9)}
        person._joined_after = 9  # joined last, no `speakers` heard: its page is id0..id2
        speakers = ["id6", "id7"]
        person.events.append({"type": "forwarded", "participant_ids": [*speakers, "id0"],
                              "last_n": 3})
        window = person.window()
        assert window["video_expected"] == 1  # what was counted before: "all that is wanted"
        assert window["tiles_without_video"] == ["p1", "p2"]
        assert window["page_tiles"] == 3 and window["videos_received"] == 0
        quality = report.aggregate([window])
        assert quality["tiles_without_video"] == 2
        assert quality["tiles_without_video_by_participant"] == {"p9": ["p1", "p2"]}
        assert quality["videos_per_participant"]["min"] == 0
        assert any("2 gallery tiles shown without video" in b
                   for b in report.slo_breaches(quality, None, 1.0))
        # Told who speaks, its page holds them: every tile of it is forwarded.
        person._on_event({"type": "speakers", "participant_ids": speakers})
        assert person.shown() == ["id6", "id7", "id0"]
        window = person.window()
        assert window["tiles_without_video"] == [] and window["video_expected"] == 3
        assert "tiles_without_video" not in " ".join(
            report.slo_breaches(report.aggregate([window]), None, 1.0))
        assert report.aggregate([window])["tiles_without_video"] == 0
    finally:
        await person.close()
