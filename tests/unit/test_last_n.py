"""Last-N: the pure selection (sfu/policy/last_n.py), its use by the downlink policy and the
producer's voice gate, and the room's shell (sfu/last_n.py) with real Subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection

from diemcau.cli import build_parser
from sfu.consumer import Consumer
from sfu.events import MediaEvent, VideosForwarded
from sfu.policy.downlink import DownlinkPolicy
from sfu.policy.last_n import (
    DEFAULT_LAST_N,
    MAX_RECENT_SPEAKERS,
    RECENT_SPEAKER_S,
    SpeakerHistory,
    select_audio,
    select_videos,
)
from sfu.policy.uplink import UplinkPolicy
from sfu.producer import VOICE_START_GRACE_S, Producer
from sfu.publisher import Publisher
from sfu.room import GATE_SILENCE_ABOVE, Participant, Room
from sfu.subscriber import Subscriber
from sfu.types import Codec, DropReason, Kind, PauseReason
from sfu.worker import MediaConfig, Worker
from signaling.settings import ConfigError, load, to_config
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload

OPUS = Codec("audio/opus", 48000, 111)
PEOPLE = [f"p{i}" for i in range(12)]


# -- the pure selection ---------------------------------------------------------------------------


def test_pinned_then_speakers_then_recent_then_shown() -> None:
    chosen = select_videos(
        5, PEOPLE, pinned="p9", speakers=["p7", "p8"], recent=["p6", "p5"],
        shown=["p0", "p1", "p2"],
    )
    assert chosen == ("p9", "p7", "p8", "p6", "p5")


def test_at_most_n_and_each_once() -> None:
    chosen = select_videos(9, PEOPLE, pinned="p3", speakers=["p3", "p4"], recent=["p4", "p3"],
                           shown=PEOPLE)
    assert len(chosen) == 9 and len(set(chosen)) == 9
    assert chosen[:2] == ("p3", "p4")


def test_only_publishers_of_video_are_chosen() -> None:
    """Unknown ids (a stale page, a forged message), and people without video, take no slot."""
    chosen = select_videos(3, ["p1", "p2"], pinned="nobody", speakers=["p0"],
                           shown=["ghost", "p2", "p1"])
    assert chosen == ("p2", "p1")


def test_recent_speakers_are_capped_so_the_page_keeps_its_tiles() -> None:
    recent = PEOPLE[6:]
    chosen = select_videos(9, PEOPLE, recent=recent, shown=PEOPLE[:6])
    assert chosen[:MAX_RECENT_SPEAKERS] == tuple(recent[:MAX_RECENT_SPEAKERS])
    assert chosen[MAX_RECENT_SPEAKERS:] == tuple(PEOPLE[:6])


def test_a_shown_page_is_not_filled_with_others() -> None:
    assert select_videos(9, PEOPLE, shown=["p4", "p5"]) == ("p4", "p5")
    assert select_videos(9, PEOPLE, shown=[]) == ()


def test_without_a_page_the_set_is_filled_and_a_new_speaker_displaces_the_last() -> None:
    first = select_videos(3, PEOPLE)
    assert first == ("p0", "p1", "p2")
    second = select_videos(3, PEOPLE, speakers=["p7"], previous=first)
    assert second == ("p7", "p0", "p1")
    # The speaker stops: as a recent speaker it stays, and nothing flaps.
    third = select_videos(3, PEOPLE, recent=["p7"], previous=second)
    assert set(third) == set(second)
    # Long after: it stays too (what was received ranks before join order).
    assert set(select_videos(3, PEOPLE, previous=third)) == set(second)


def test_zero_means_nothing_chosen() -> None:
    assert select_videos(0, PEOPLE, pinned="p1") == ()


def test_speaker_history_orders_by_recency_and_forgets() -> None:
    history = SpeakerHistory()
    history.update(["a", "b"], 0.0)
    history.update(["c"], 1.0)
    history.update(["a"], 2.0)
    assert history.recent(2.0) == ["a", "c", "b"]
    history.forget("c")
    assert history.recent(2.0) == ["a", "b"]
    history.update([], RECENT_SPEAKER_S + 1.0)
    assert history.recent(RECENT_SPEAKER_S + 1.0) == ["a"]  # b spoke too long ago


def test_audio_goes_to_the_three_loudest() -> None:
    levels = {"a": 30.0, "b": 10.0, "c": 90.0, "d": 20.0, "e": 127.0}
    assert select_audio(levels) == {"b", "d", "a"}
    assert select_audio({"a": 40.0}) == {"a"}
    assert select_audio({}) == frozenset()


# -- the downlink policy and the consumer ---------------------------------------------------------


def video_consumer(owner: str) -> Consumer:
    producer = Producer(f"{owner}:1", owner, Kind.VIDEO, "1", lambda p, layer: None)
    producer.set_codec(VP8_IN)
    consumer = Consumer(producer, "me", "0", 5000, 5001, ListWriter())
    consumer.configure(VP8_IN, 0, 0)
    return consumer


@pytest.mark.parametrize("estimate", [None, 50_000_000.0])
def test_videos_outside_last_n_are_paused_with_their_reason(estimate: float | None) -> None:
    policy = DownlinkPolicy()
    inside, outside = video_consumer("a"), video_consumer("b")
    policy.forwarded = frozenset({"a"})
    decision = policy.decide(estimate, [inside, outside], 10.0, congested=False)
    assert decision.targets[outside] == (None, PauseReason.NOT_IN_LAST_N)
    layer, reason = decision.targets[inside]
    assert layer is not None and reason is None
    outside.set_target(*decision.targets[outside])
    assert outside.pause_reason is PauseReason.NOT_IN_LAST_N
    # Back in the set: the consumer resumes (at a keyframe).
    policy.forwarded = frozenset({"a", "b"})
    decision = policy.decide(estimate, [inside, outside], 10.2, congested=False)
    outside.set_target(*decision.targets[outside])
    assert outside.pause_reason is None


def test_a_consumer_outside_last_n_leaves_the_fan_out_and_counts_what_it_missed() -> None:
    consumer = video_consumer("a")
    producer = consumer.producer
    producer.attach(consumer)
    writer = consumer.writer
    assert isinstance(writer, ListWriter)
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)
    assert consumer not in producer.consumers  # no per-packet cost while outside
    for seq in range(5):
        producer.receive(rtp_view(seq, seq * 3000, vp8_payload(seq, seq, key=seq == 3)),
                         producer.layers[0], seq * 0.03)
    assert writer.rtp == []
    consumer.set_target(0)  # chosen again: back in, resuming at the next keyframe
    assert consumer in producer.consumers and consumer.pause_reason is None
    assert consumer.drops[DropReason.PAUSED] == 5
    producer.receive(rtp_view(5, 15000, vp8_payload(5, 5, key=True)), producer.layers[0], 0.2)
    assert len(writer.rtp) == 1
    # Muted meanwhile: it comes back paused MUTED, not forwarding.
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)
    producer.muted = True
    consumer.set_target(0)
    assert consumer.pause_reason is PauseReason.MUTED and consumer in producer.consumers
    # Closed while outside: never re-enters the fan-out.
    consumer.set_muted(False)
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)
    consumer.close()
    consumer.set_target(0)
    assert consumer not in producer.consumers


def test_last_n_does_not_lift_a_mute() -> None:
    consumer = video_consumer("a")
    consumer.set_muted(True)
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)
    assert consumer.pause_reason is PauseReason.MUTED
    consumer.set_target(0)
    assert consumer.pause_reason is PauseReason.MUTED


# -- the producer's voice gate --------------------------------------------------------------------


def gated_audio() -> tuple[Producer, ListWriter, Consumer]:
    producer = Producer("a:0", "a", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS)
    producer.audio_level_ext_id = 1
    producer.silence_gating = True
    writer = ListWriter()
    consumer = Consumer(producer, "me", "2", 9000, 9001, writer)
    consumer.configure(OPUS, audio_level_id=0, abs_send_time_id=0)
    producer.attach(consumer)
    return producer, writer, consumer


def speak(producer: Producer, first_seq: int, count: int, start: float, level: int = 30) -> None:
    for i in range(count):
        seq = first_seq + i
        packet = rtp_view(seq, 960 * seq, b"\xfc", pt=111, extensions={1: bytes([level])})
        producer.receive(packet, producer.layers[0], start + i * 0.02)


def test_a_voice_that_is_not_among_the_loudest_flows_only_while_it_starts() -> None:
    producer, writer, consumer = gated_audio()
    producer.audio_selected = False
    packets = 100  # 2 s of voice
    speak(producer, 0, packets, 0.0)
    grace = int(VOICE_START_GRACE_S / 0.02) + 1
    assert len(writer.rtp) == grace
    assert consumer.drops[DropReason.NOT_SPEAKER] == packets - grace
    # Its trailing silence (within the hold that keeps a selected voice's pauses) is cut too.
    speak(producer, packets, 20, packets * 0.02, level=127)
    assert len(writer.rtp) == grace
    assert consumer.drops[DropReason.NOT_SPEAKER] == packets + 20 - grace
    # Ranked among the loudest at the next tick: it flows again, numbers contiguous.
    producer.audio_selected = True
    speak(producer, packets + 20, 10, (packets + 20) * 0.02)
    assert len(writer.rtp) == grace + 10
    seqs = [int.from_bytes(p[2:4], "big") for p in writer.rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_a_selected_voice_and_small_rooms_flow_whole() -> None:
    producer, writer, _ = gated_audio()
    speak(producer, 0, 100, 0.0)
    assert len(writer.rtp) == 100
    producer2, writer2, _ = gated_audio()
    producer2.silence_gating = False
    producer2.audio_selected = False  # not gated: the selection does not apply
    speak(producer2, 0, 100, 0.0)
    assert len(writer2.rtp) == 100


# -- the room's shell, with real Subscribers (their peer connections never connect) -------------


class Person:
    def __init__(self, room: Room, pid: str, video: bool = True,
                 joined_at: float = 0.0) -> None:
        self.events: list[MediaEvent] = []
        self.participant = Participant(pid, pid, self.events.append, joined_at=joined_at)
        self.participant.publisher = Publisher(pid, RTCPeerConnection(), lambda p: None,
                                               lambda: 0.0)
        self.participant.subscriber = Subscriber(pid, RTCPeerConnection(), _no_offer,
                                                 lambda: 0.0)
        room.add(self.participant)
        self.audio = Producer(f"{pid}:0", pid, Kind.AUDIO, "0", lambda p, layer: None)
        self.audio.set_codec(OPUS)
        self.audio.audio_level_ext_id = 1
        self.participant.publisher.producers["0"] = self.audio
        room.producer_ready(self.audio)
        if video:
            producer = Producer(f"{pid}:1", pid, Kind.VIDEO, "1", lambda p, layer: None)
            producer.set_codec(VP8_IN)
            self.participant.publisher.producers["1"] = producer
            room.producer_ready(producer)
        self.seq = 0

    def level(self, level: int, now: float) -> None:
        packet = rtp_view(self.seq, 960 * self.seq, b"\xfc", pt=111,
                          extensions={1: bytes([level])})
        self.seq += 1
        self.audio.receive(packet, self.audio.layers[0], now)

    def forwarded(self) -> tuple[str, ...] | None:
        sets = [e.participant_ids for e in self.events if isinstance(e, VideosForwarded)]
        return sets[-1] if sets else None


async def _no_offer(sdp: str, tracks: object) -> None:
    return None


async def close_everyone(live: Room) -> None:
    """Close every participant's subscriber and publisher (their aiortc peers)."""
    for participant in list(live.participants.values()):
        if participant.subscriber is not None:
            await participant.subscriber.close()
        if participant.publisher is not None:
            await participant.publisher.close()


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    live = Room("big", last_n=2)
    yield live
    await close_everyone(live)


async def test_room_forwards_n_videos_that_follow_the_speaker(room: Room) -> None:
    listener = Person(room, "me", video=False)
    people = [Person(room, pid) for pid in ("a", "b")]
    assert listener.forwarded() == ("a", "b")  # each camera chosen as it comes, with room
    people += [Person(room, pid) for pid in ("c", "d")]
    room.maintain(1.0)
    assert listener.forwarded() == ("a", "b")  # join order while nobody speaks
    assert listener.participant.subscriber is not None
    assert listener.participant.subscriber.downlink.policy.forwarded == {"a", "b"}
    people[3].level(10, 1.2)  # d speaks
    room.maintain(1.5)
    assert set(listener.forwarded() or ()) == {"d", "a"}
    assert set(people[0].forwarded() or ()) == {"d", "b"}  # nobody receives their own video
    # A camera turned off frees its slot at once (and takes it back when on again).
    room.set_muted(people[0].participant, Kind.VIDEO, True)
    assert set(listener.forwarded() or ()) == {"d", "b"}
    room.set_muted(people[0].participant, Kind.VIDEO, False)
    room.maintain(2.0)
    assert set(listener.forwarded() or ()) == {"d", "b"}  # b stays: what it has ranks first
    # The client pages: what it shows comes after the speaker, and the set follows at once.
    room.set_shown(listener.participant, ("c", "b"))
    assert listener.forwarded() == ("d", "c")


async def test_room_pin_comes_first_and_zero_turns_last_n_off(room: Room) -> None:
    for pid in ("a", "b", "c"):
        Person(room, pid)
    listener = Person(room, "me", video=False)
    room.maintain(1.0)
    assert listener.forwarded() == ("a", "b")
    room.pin("c")  # at once, not at the next tick
    assert listener.forwarded() == ("c", "a")
    off = Room("small", last_n=0)
    quiet = Person(off, "x")
    Person(off, "y")
    off.maintain(1.0)
    assert quiet.forwarded() is None
    assert quiet.participant.subscriber is not None
    assert quiet.participant.subscriber.downlink.policy.forwarded is None
    for participant in off.participants.values():
        assert participant.subscriber is not None and participant.publisher is not None
        await participant.subscriber.close()
        await participant.publisher.close()


async def test_big_room_forwards_the_three_loudest_voices(room: Room) -> None:
    people = [Person(room, f"v{i}", video=False) for i in range(GATE_SILENCE_ABOVE + 1)]
    for person, level in zip(people, (5, 10, 15, 40, 45), strict=False):
        person.level(level, 1.0)
    room.maintain(1.0)
    selected = {p.participant.id for p in people if p.audio.audio_selected}
    assert selected == {"v0", "v1", "v2"}
    assert all(p.audio.silence_gating for p in people)


# -- configuration -----------------------------------------------------------------------------


def test_last_n_options_and_per_room_override() -> None:
    def config(*argv: str, environ: dict[str, str] | None = None) -> MediaConfig:
        args = vars(build_parser().parse_args(["serve", *argv]))
        flags = {k: v for k, v in args.items() if k not in ("command", "config")}
        return to_config(load(flags, environ={} if environ is None else environ).settings).media

    media = config("--last-n", "4", "--room-last-n", "hoi-dong=16", "--room-last-n", "a=b=0")
    assert media.last_n == 4 and media.room_last_n == (("hoi-dong", 16), ("a=b", 0))
    assert config().last_n == DEFAULT_LAST_N
    assert config(environ={"DIEMCAU_LAST_N": "2"}).last_n == 2
    for bad in (["--last-n", "-1"], ["--last-n", "50"], ["--last-n", "x"],
                ["--room-last-n", "9"], ["--room-last-n", "=9"]):
        with pytest.raises(ConfigError, match="last_n"):
            config(*bad)
    worker = Worker(MediaConfig(last_n=4, room_last_n=(("hoi-dong", 16),)))
    assert worker.room("hoi-dong").last_n.n == 16
    assert worker.room("other").last_n.n == 4


async def test_load_generator_expects_only_the_forwarded_videos() -> None:
    """`diemcau loadtest` reads `forwarded`: a video left out by last-N is not "missing"."""
    from loadtest.quality import LoadParticipant

    person = LoadParticipant("http://127.0.0.1:9", "r", "n")
    try:
        person.others = {"a": "An", "b": "Binh", "c": "Chi"}
        assert person.window()["video_missing_from"] == ["An", "Binh", "Chi"]
        person.events.append({"type": "forwarded", "participant_ids": ["a", "c"], "last_n": 2})
        window = person.window()
        assert window["others"] == 2 and window["video_missing_from"] == ["An", "Chi"]
        person.events.append({"type": "forwarded", "participant_ids": "junk", "last_n": 2})
        assert person.window()["others"] == 3
    finally:
        await person.close()


def test_layers_of_a_publisher_outside_everyones_last_n_are_switched_off() -> None:
    """As for hidden tiles: the uplink control keeps only q of a publisher nobody receives."""
    producer = Producer("a:1", "a", Kind.VIDEO, "1", lambda p, layer: None, rids=["q", "h", "f"])
    producer.set_codec(VP8_IN)
    consumer = Consumer(producer, "me", "0", 1000, 1001, ListWriter())
    consumer.configure(VP8_IN, 0, 0)
    producer.attach(consumer)
    policy = DownlinkPolicy()
    decision = policy.decide(50_000_000.0, [consumer], 0.0, congested=False)
    consumer.wanted_layer = decision.targets[consumer][0]
    uplink = UplinkPolicy()
    assert uplink.active_layers(producer, 0.0) == {"q": True, "h": True, "f": True}
    policy.forwarded = frozenset()  # out of this (the only) subscriber's last-N
    now = 0.0
    for _ in range(12):  # six seconds of room ticks
        now += 0.5
        layer, reason = policy.decide(50_000_000.0, [consumer], now, congested=False)\
            .targets[consumer]
        consumer.wanted_layer = layer
        consumer.set_target(layer, reason)
    assert consumer.pause_reason is PauseReason.NOT_IN_LAST_N
    assert uplink.active_layers(producer, now) == {"q": True, "h": False, "f": False}
