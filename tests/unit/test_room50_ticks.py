"""A room of 50 (issue 11): the periodic work per subscriber grows with what it receives (its
last-N), not with the room. Counted in calls, never in time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from sfu.consumer import Consumer
from sfu.policy.downlink import DownlinkPolicy
from sfu.producer import Producer
from sfu.subscriber import Subscriber
from sfu.types import Codec, Kind, PauseReason
from tests.unit.helpers import VP8_IN, ListWriter

OPUS = Codec("audio/opus", 48000, 111)
ROOM = 50
LAST_N = 9
OTHERS = [f"p{i}" for i in range(1, ROOM)]


async def _no_offer(sdp: str, tracks: object) -> None:
    return None


@pytest.fixture
async def subscriber() -> AsyncIterator[Subscriber]:
    """One subscriber of a room of 50: 49 video and 49 audio consumers, all negotiated."""
    live = Subscriber("p0", RTCPeerConnection(), _no_offer, lambda: 0.0)
    for owner in OTHERS:
        for kind, mid, codec in ((Kind.AUDIO, "0", OPUS), (Kind.VIDEO, "1", VP8_IN)):
            producer = Producer(f"{owner}:{mid}", owner, kind, mid, lambda p, layer: None)
            producer.set_codec(codec)
            live.add_producer(producer)
    for consumer in live.consumers.values():
        assert consumer.producer.codec is not None
        consumer.configure(consumer.producer.codec, 0, 0)
    yield live
    await live.close()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[Any]:
    """Record the first argument of every call of ``owner.name`` (still calling it)."""
    seen: list[Any] = []
    original: Callable[..., Any] = getattr(owner, name)

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(self if not args else args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return seen


def video_of(subscriber: Subscriber, owner: str) -> Consumer:
    return subscriber.consumers[f"{owner}:1"]


async def test_a_tick_decides_only_for_the_forwarded_videos(
        subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch) -> None:
    forwarded = OTHERS[:LAST_N]
    subscriber.downlink.policy.forwarded = frozenset(forwarded)
    subscriber.tick()  # the first tick looks at everyone once: the others get paused
    for owner in OTHERS:
        consumer = video_of(subscriber, owner)
        if owner in forwarded:
            assert consumer.pause_reason is None and consumer.wanted_layer == 0
        else:
            assert consumer.pause_reason is PauseReason.NOT_IN_LAST_N
            assert consumer.wanted_layer is None
    demands = count_calls(monkeypatch, DownlinkPolicy, "_demand")
    targets = count_calls(monkeypatch, Consumer, "set_target")
    for _ in range(8):  # a second of ticks
        subscriber.tick()
    assert len(demands) == 8 * LAST_N  # was 8 * 49: every video consumer, every tick
    assert {c.producer.participant_id for c in demands} == set(forwarded)
    assert len(targets) == 8 * LAST_N


async def test_a_publisher_leaving_the_set_is_paused_at_the_next_tick_once(
        subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = subscriber.downlink.policy
    policy.forwarded = frozenset(OTHERS[:LAST_N])
    subscriber.tick()
    demands = count_calls(monkeypatch, DownlinkPolicy, "_demand")
    # A speaker comes in (p20), the last of the set (p9) goes.
    policy.forwarded = frozenset([*OTHERS[:LAST_N - 1], "p20"])
    subscriber.tick()
    assert len(demands) == LAST_N + 1  # the nine forwarded and the one that left
    assert video_of(subscriber, "p9").pause_reason is PauseReason.NOT_IN_LAST_N
    assert video_of(subscriber, "p20").pause_reason is None
    demands.clear()
    subscriber.tick()
    assert len(demands) == LAST_N


def test_audio_consumers_still_share_the_budget() -> None:
    """The budget keeps its audio reserve although the tick walks no audio consumer."""
    producer = Producer("a:1", "a", Kind.VIDEO, "1", lambda p, layer: None,
                        rids=["q", "h", "f"])
    producer.set_codec(VP8_IN)
    only = Consumer(producer, "me", "0", 5000, 5001, ListWriter())
    only.configure(VP8_IN, 0, 0)
    policy = DownlinkPolicy()
    # 3 Mbit/s: f (1.5 Mbit/s with its margin) fits alone; 49 voices reserve 2.35 Mbit/s,
    # which leaves room for h only.
    alone = policy.decide(3_000_000.0, [only], 0.0, audio_consumers=0)
    assert alone.targets[only][0] == 2
    shared = policy.decide(3_000_000.0, [only], 0.0, audio_consumers=len(OTHERS))
    assert shared.targets[only][0] == 1


async def test_a_muted_consumer_outside_the_set_is_paused_when_unmuted(
        subscriber: Subscriber) -> None:
    policy = subscriber.downlink.policy
    policy.forwarded = frozenset(OTHERS[:LAST_N])
    outside = video_of(subscriber, "p30")
    outside.set_muted(True)  # muted before the first tick: NOT_IN_LAST_N cannot apply
    subscriber.tick()
    assert outside.pause_reason is PauseReason.MUTED
    subscriber.tick()
    outside.set_muted(False)  # the camera comes back: the room asks for a review
    subscriber.review("p30")
    subscriber.tick()
    assert outside.pause_reason is PauseReason.NOT_IN_LAST_N


async def test_audio_only_keeps_the_videos_outside_last_n_out_of_the_fan_out() -> None:
    policy = DownlinkPolicy(user_audio_only=True)
    inside, outside = (Producer(f"{o}:1", o, Kind.VIDEO, "1", lambda p, layer: None)
                       for o in ("a", "b"))
    policy.forwarded = frozenset({"a"})
    consumers = []
    for producer in (inside, outside):
        producer.set_codec(VP8_IN)
        consumer = Consumer(producer, "me", "0", 5000, 5001, ListWriter())
        consumer.configure(VP8_IN, 0, 0)
        consumers.append(consumer)
    decision = policy.decide(5_000_000.0, consumers, 0.0)
    assert decision.targets[consumers[0]] == (None, PauseReason.BANDWIDTH)
    assert decision.targets[consumers[1]] == (None, PauseReason.NOT_IN_LAST_N)


async def test_a_room_tick_without_news_chooses_nobody_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Last-N at the room's tick: the same speakers, cameras and pin give everyone the same set,
    so nobody's is chosen again; a new speaker makes it choose for everyone."""
    from sfu import last_n
    from sfu.room import Room
    from tests.unit.test_last_n import Person

    room = Room("big", last_n=3)
    people = [Person(room, f"p{i}") for i in range(12)]
    try:
        room.maintain(1.0)
        chosen: list[object] = []
        original = last_n.select_videos

        def counting(*args: Any, **kwargs: Any) -> tuple[str, ...]:
            chosen.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(last_n, "select_videos", counting)
        for tick in range(4):
            room.maintain(1.5 + tick / 2)
        assert chosen == []
        before = people[0].forwarded()
        people[7].level(10, 3.6)  # p7 speaks
        room.maintain(4.0)
        assert len(chosen) == len(people)
        assert people[0].forwarded() != before and "p7" in (people[0].forwarded() or ())
        room.maintain(4.5)  # p7 is quiet now: a recent speaker, chosen again for everyone
        assert "p7" in (people[0].forwarded() or ())
        chosen.clear()
        room.maintain(5.0)  # nothing new
        assert chosen == []
    finally:
        for person in people:
            assert person.participant.subscriber and person.participant.publisher
            await person.participant.subscriber.close()
            await person.participant.publisher.close()


async def test_an_offer_nobody_answered_in_time_is_made_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a room of 50 joining at once a starved client answered too late; its tracks then
    waited for the next change (in a quiet room: forever). Now a fresh offer goes at once."""
    import asyncio

    from sfu.subscriber_negotiator import SubscriberNegotiator

    offers: list[int] = []

    async def offer(self: SubscriberNegotiator) -> None:
        offers.append(len(offers))
        if len(offers) == 1:
            raise TimeoutError  # as asyncio.wait_for on the answer does

    monkeypatch.setattr(SubscriberNegotiator, "_negotiate_once", offer)
    negotiator = SubscriberNegotiator(
        "p0", RTCPeerConnection(), _no_offer, configure=lambda slot: None,
        on_first_offer=lambda transceiver: None, on_transport_cc=lambda ext_id: None,
        notify=lambda event: None)
    negotiator.start()
    try:
        negotiator.changed()  # one change only
        for _ in range(300):
            if len(offers) >= 2:
                break
            await asyncio.sleep(0.01)
        assert offers == [0, 1]
    finally:
        await negotiator.close()
        await negotiator.pc.close()


def test_a_worker_process_walks_its_consumers_for_every_fourth_report_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stats go to signaling every 0.5 s (the heartbeat); the walk over every consumer and
    every room's diagnostics behind them (O(N x N) in a room of N) runs every 2 s."""
    from sfu.plane_server import STATS_FULL_EVERY, PlaneServer
    from sfu.worker import MediaConfig, Worker

    class Channel:
        local_dropped = 0
        reports_out = 0

        def send(self, frame: object) -> None:  # the relay host's outlet; unused here
            raise AssertionError("no frame expected")

    worker = Worker(MediaConfig())
    walks = count_calls(monkeypatch, Worker, "stats")
    channel = Channel()
    server = PlaneServer(worker, channel)  # type: ignore[arg-type]
    reports = []
    for index in range(2 * STATS_FULL_EVERY):
        channel.local_dropped = index  # the shed count stays fresh in every report
        reports.append(server.stats())
    assert len(walks) == 2
    assert [r.local_dropped for r in reports] == list(range(2 * STATS_FULL_EVERY))
    assert all(r.participants == 0 for r in reports)
