"""Three aiortc participants meet through the real server on loopback; media is really decoded."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.client import SyntheticParticipant
from tests.conftest import base_url

pytestmark = pytest.mark.media


async def test_three_participants_decode_each_other(server) -> None:
    url = base_url(server)
    people = [SyntheticParticipant(url, "phong-hop", name) for name in ("An", "Binh", "Chi")]
    try:
        for person in people:
            await person.join()
        ids = {p.participant_id for p in people}

        def everyone_receives() -> bool:
            for person in people:
                for other in ids - {person.participant_id}:
                    got = person.received.get(other, {})
                    if got.get("video", 0) < 5 or got.get("audio", 0) < 5:
                        return False
            return True

        ok = await people[0].wait_for(everyone_receives, timeout=30)
        summary = {p.name: dict(p.received) for p in people}
        assert ok, f"not every participant decoded the others: {summary}"
        for person in people:
            assert set(person.others) == ids - {person.participant_id}
            assert not person.errors
    finally:
        await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)


async def test_leaving_and_joining_renegotiates_and_reuses_mlines(server) -> None:
    url = base_url(server)
    an = SyntheticParticipant(url, "doi-nguoi", "An")
    binh = SyntheticParticipant(url, "doi-nguoi", "Binh")
    chi = SyntheticParticipant(url, "doi-nguoi", "Chi")
    try:
        await an.join()
        await binh.join()
        assert await an.wait_for(lambda: an.received[binh.participant_id]["video"] >= 3, 20)
        mids_with_binh = set(an.tracks)
        await binh.leave()
        assert await an.wait_for(lambda: binh.participant_id not in an.others, 5)
        assert await an.wait_for(lambda: an.tracks == {}, 5), an.tracks  # m-lines now inactive
        await chi.join()
        assert await an.wait_for(lambda: an.received[chi.participant_id]["video"] >= 3, 20), (
            dict(an.received)
        )
        assert await an.wait_for(lambda: an.received[chi.participant_id]["audio"] >= 3, 10)
        # Chi's tracks came on the m-lines Binh left: the SDP did not grow.
        assert set(an.tracks) == mids_with_binh
        assert {info["participant_id"] for info in an.tracks.values()} == {chi.participant_id}
        assert an.others == {chi.participant_id: "Chi"}
    finally:
        for person in (an, binh, chi):
            await person.leave()
