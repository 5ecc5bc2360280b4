"""B's moderation of relayed people without sockets (signaling/relay_moderation.py): a real
in-process Worker and a Relay fed far RTP as in tests/unit/test_relay.py."""

from __future__ import annotations

import asyncio

from sfu.types import Kind
from sfu.worker import MediaConfig, Worker
from signaling.relay import Relay, RelaySpec
from signaling.relay_moderation import MAX_DECISIONS, RelayModeration, find_relayed
from tests.unit.test_relay import OFFER_TWO, OWNERS, rtp


def relay_in(worker: Worker) -> Relay:
    relay = Relay("t", worker, "huyen", RelaySpec("http://127.0.0.1:9", "tinh"), None)
    relay._in_near = True
    relay._note_far({"id": "chair", "name": "Chu tich"})
    relay.upstream.describe(OFFER_TWO, {**OWNERS, "2": {"participant_id": "deputy"}})
    return relay


def feed(relay: Relay) -> None:
    for ssrc, pt in ((1000, 111), (2000, 96), (3000, 96)):
        relay.upstream.on_rtp(rtp(1, ssrc, pt))


async def until_gone(worker: Worker, participant_id: str) -> bool:
    for _ in range(200):  # the near participant leaves in a task
        if participant_id not in worker.rooms["huyen"].participants:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_mute_holds_against_the_far_side_and_across_a_new_publication() -> None:
    worker = Worker(MediaConfig())
    relay = relay_in(worker)
    feed(relay)
    chair = relay.near_people()["chair"].participant_id
    assert find_relayed([relay], "other-room", chair) is None
    assert find_relayed([relay], "huyen", "not-a-relay") is None
    person = find_relayed([relay], "huyen", chair)
    assert person is not None and person.far_id == "chair"
    person.mute(Kind.AUDIO)
    room = worker.rooms["huyen"]
    audio = [p for p in room.participants[chair].producers if p.kind is Kind.AUDIO]
    video = [p for p in room.participants[chair].producers if p.kind is Kind.VIDEO]
    assert audio and all(p.muted for p in audio) and not any(p.muted for p in video)
    assert room.participants[chair].muted["audio"]  # shown (REST list, track_muted)
    relay._far_muted({"participant_id": "chair", "kind": "audio", "muted": False})
    assert all(p.muted for p in audio), "the far side's unmute lifted B's mute"
    # the far link comes back: the chair is published anew, still muted on B
    await relay._leave_near_participants()
    for far in relay.upstream.tracks():
        far.relayed, far.relayed_for = None, ""
    feed(relay)
    again = relay.near_people()["chair"].participant_id
    assert again != chair
    producers = worker.rooms["huyen"].participants[again].producers
    assert all(p.muted for p in producers if p.kind is Kind.AUDIO)
    assert worker.rooms["huyen"].participants[again].muted["audio"]
    await relay._leave_near_participants()


async def test_a_removed_far_participant_is_relayed_no_more() -> None:
    worker = Worker(MediaConfig())
    relay = relay_in(worker)
    feed(relay)
    chair = relay.near_people()["chair"].participant_id
    deputy = relay.near_people()["deputy"].participant_id
    person = find_relayed([relay], "huyen", chair)
    assert person is not None
    person.remove()
    assert await until_gone(worker, chair)
    feed(relay)  # the far side still sends: nothing of the chair comes back
    assert set(relay.near_people()) == {"deputy"}
    assert relay.near_people()["deputy"].participant_id == deputy
    assert relay._far_tiles["chair"] == (0, 0)  # A is asked for none of their video
    assert relay.summary()["moderation"] == {"removed": ["chair"], "muted": {}}
    await relay._leave_near_participants()


def test_decisions_stay_bounded_forgetting_those_who_left_first() -> None:
    decisions = RelayModeration()
    for i in range(MAX_DECISIONS):
        decisions.remove(f"far{i}", gone=())
        decisions.mute(f"far{i}", Kind.AUDIO, gone=())
    decisions.remove("new", gone={"far5"})
    decisions.mute("new", Kind.VIDEO, gone={"far5"})
    assert len(decisions.removed) == MAX_DECISIONS and "far5" not in decisions.removed
    assert "far0" in decisions.removed and "new" in decisions.removed
    assert len(decisions.muted) == MAX_DECISIONS and decisions.is_muted("new", Kind.VIDEO)
    decisions.remove("newer", gone=())  # nobody left: the oldest goes
    assert "far0" not in decisions.removed and len(decisions.removed) == MAX_DECISIONS
