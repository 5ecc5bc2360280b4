"""The relay's parts without sockets: far tracks, RTX/NACK, relayed producers, voice slots."""

from __future__ import annotations

import struct

from sfu.producer import Producer
from sfu.relay import (
    VOICE_FRAME_TICKS,
    FarTrack,
    LocalPublication,
    RelayedTrack,
    UpstreamTracks,
    VoiceSlot,
    VoiceSlots,
)
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView, wrap_rtx

VP8 = Codec("video/VP8", 90000, 96, 97)
OPUS = Codec("audio/opus", 48000, 111)

OFFER = """v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=rtpmap:111 opus/48000/2
a=ssrc:1000 cname:x
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=ssrc-group:FID 2000 2001
a=ssrc:2000 cname:x
a=ssrc:2001 cname:x
""".replace("\n", "\r\n")
OWNERS = {"0": {"participant_id": "chair", "kind": "audio"},
          "1": {"participant_id": "chair", "kind": "video"}}


def rtp(seq: int, ssrc: int, pt: int = 96, ts: int = 0, payload: bytes = b"\x10\x00\x00") -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


class Far:
    """UpstreamTracks with recording callbacks and real Producers behind the relayed tracks."""

    def __init__(self, chosen: set[str] | None = None) -> None:
        self.nacks: list[tuple[int, list[int]]] = []
        self.published: list[FarTrack] = []
        self.received: list[RtpView] = []
        self.chosen = chosen
        self.upstream = UpstreamTracks(self.publish, lambda ssrc, lost: self.nacks.append(
            (ssrc, lost)))

    def publish(self, track: FarTrack) -> RelayedTrack | None:
        if self.chosen is not None and track.participant_id not in self.chosen:
            return None
        self.published.append(track)
        far = self

        class Sink(RelayedTrack):
            def receive(self, packet: RtpView, layer: int = 0) -> None:
                far.received.append(packet)

        producer = Producer("p", "relay", track.kind, track.mid, lambda _p, _l: None)
        return Sink(producer, lambda _layer: None, lambda: 0.0)


def test_offer_describes_tracks_with_codecs_rtx_and_owners() -> None:
    far = Far()
    far.upstream.describe(OFFER, OWNERS)
    tracks = {t.mid: t for t in far.upstream.tracks()}
    assert tracks["0"].kind is Kind.AUDIO and tracks["0"].audio_level_ext_id == 1
    assert tracks["0"].codec.name == "opus" and tracks["0"].layers[0].nack is None
    video = tracks["1"]
    assert (video.ssrc, video.rtx_ssrc, video.codec.rtx_payload_type) == (2000, 2001, 97)
    assert video.participant_id == "chair" and video.layers[0].nack is not None


def test_rtx_is_unwrapped_and_garbage_counted() -> None:
    far = Far()
    far.upstream.describe(OFFER, OWNERS)
    far.upstream.on_rtp(rtp(10, 2000))
    far.upstream.on_rtp(wrap_rtx(rtp(11, 2000), 97, 500, 2001))
    assert [p.sequence_number for p in far.received] == [10, 11]
    assert far.received[1].ssrc == 2000 and far.received[1].payload_type == 96
    far.upstream.on_rtp(b"\x80\x60")  # truncated
    far.upstream.on_rtp(rtp(12, 999))  # nobody's SSRC
    far.upstream.on_rtp(struct.pack("!BBHII", 0x80, 97, 501, 0, 2001))  # padding-only RTX
    drops = far.upstream.drops
    assert (drops[DropReason.MALFORMED], drops[DropReason.UNKNOWN_SSRC],
            drops[DropReason.PADDING_ONLY]) == (1, 1, 1)
    assert len(far.received) == 2


def test_a_gap_is_nacked_toward_the_far_server() -> None:
    far = Far()
    far.upstream.describe(OFFER, OWNERS)
    far.upstream.on_rtp(rtp(100, 2000))
    far.upstream.on_rtp(rtp(103, 2000))
    assert far.nacks == [(2000, [101, 102])]
    far.upstream.on_rtp(rtp(30000, 2000))  # a jump, not loss: no NACK storm
    assert len(far.nacks) == 1


def test_only_chosen_participants_are_relayed_and_a_reused_mline_is_a_new_track() -> None:
    far = Far(chosen={"chair"})
    far.upstream.describe(OFFER, OWNERS)
    far.upstream.on_rtp(rtp(1, 1000, 111))
    assert len(far.published) == 1
    # The far server gives the audio m-line to someone else (same SSRC, new owner).
    far.upstream.describe(OFFER, {**OWNERS, "0": {"participant_id": "other", "kind": "audio"}})
    far.upstream.on_rtp(rtp(2, 1000, 111))
    assert len(far.published) == 1 and far.upstream.drops[DropReason.PAUSED] == 1


def test_local_publication_makes_ready_producers_and_carries_keyframe_requests() -> None:
    ready: list[Producer] = []
    asked: list[str] = []
    producers: dict[str, Producer] = {}
    now = [10.0]
    publication = LocalPublication("room", "relay-1", producers, ready.append, lambda: now[0])
    track = publication.add_track("chair.1", Kind.VIDEO, VP8, lambda _layer: asked.append("pli"))
    assert ready == [track.producer] and producers == {track.producer.id: track.producer}
    assert track.producer.codec == VP8 and track.producer.participant_id == "relay-1"
    track.receive(RtpView.parse(rtp(1, 2000)))
    assert track.producer.packets_received == 1 and track.producer.layers[0].ssrc == 2000
    track.producer.request_keyframe(now[0])
    track.producer.request_keyframe(now[0] + 0.1)  # rate-limited for all consumers
    now[0] += 1
    track.request_keyframe()
    assert asked == ["pli", "pli"] and track.keyframe_requests == 2
    publication.close()
    assert track.producer.closed
    track.receive(RtpView.parse(rtp(2, 2000)))
    assert track.producer.packets_received == 1


def test_voice_slot_is_one_continuous_stream_across_voices() -> None:
    slot = VoiceSlot(0xABCD, first_seq=500, first_ts=9000)
    assert slot.rewrite(rtp(7, 1, 100, 123)) is None  # not negotiated yet
    slot.payload_type = 109
    slot.take("a")
    first = RtpView.parse(slot.rewrite(rtp(7, 1, 100, 123)) or b"")
    second = RtpView.parse(slot.rewrite(rtp(8, 1, 100, 123 + 960)) or b"")
    assert (first.sequence_number, first.timestamp) == (500, 9000)
    assert (second.sequence_number, second.timestamp) == (501, 9960)
    assert first.ssrc == 0xABCD and first.payload_type == 109
    slot.take("b")  # another voice, with its own numbering
    third = RtpView.parse(slot.rewrite(rtp(40000, 2, 100, 7)) or b"")
    assert third.sequence_number == 502 and third.timestamp == 9960 + VOICE_FRAME_TICKS


def test_voice_slots_follow_the_speakers() -> None:
    slots = VoiceSlots([VoiceSlot(1), VoiceSlot(2)])
    for slot in slots.slots:
        slot.payload_type = 111
    slots.add("pa", "a")
    slots.add("pb", "b")
    slots.add("pc", "c")  # no free slot
    assert slots.packet("pc", rtp(1, 9, 111)) is None
    assert slots.packet("pa", rtp(1, 9, 111)) is not None
    slots.set_speakers(("c", "a"))  # c speaks: it takes b's slot (b is silent), a keeps its own
    assert {s.owner for s in slots.slots} == {"pa", "pc"}
    slots.set_speakers(())
    slots.remove("pa")  # a leaves: b gets the slot back
    assert {s.owner for s in slots.slots} == {"pb", "pc"}


def test_a_removed_track_is_withdrawn_from_the_room() -> None:
    withdrawn: list[Producer] = []
    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 0.0,
                                   withdrawn.append)
    track = publication.add_track("chair.0", Kind.AUDIO, OPUS, lambda _layer: None)
    publication.remove_track("chair.0")
    publication.remove_track("chair.0")  # twice: nothing more
    assert withdrawn == [track.producer] and track.producer.closed and not producers
    assert not publication.tracks


OFFER_TWO = OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2") + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sendonly\r\n"
    "a=rtpmap:96 VP8/90000\r\na=ssrc:3000 cname:y\r\n")


async def test_pinned_relay_follows_the_far_chair_into_the_near_room() -> None:
    import asyncio

    from sfu.worker import MediaConfig, Worker
    from signaling.relay import Relay, RelaySpec

    worker = Worker(MediaConfig())
    relay = Relay("t", worker, "huyen", RelaySpec("http://127.0.0.1:9", "tinh", pinned=True),
                  None)
    relay._in_near = True
    relay._note_far({"id": "chair", "name": "Chu tich"})
    relay.far_pinned = "chair"
    relay.upstream.describe(OFFER_TWO, {**OWNERS, "2": {"participant_id": "deputy"}})

    def feed() -> None:
        for ssrc, pt in ((1000, 111), (2000, 96), (3000, 96)):
            relay.upstream.on_rtp(rtp(1, ssrc, pt))

    feed()
    room = worker.rooms["huyen"]
    assert sorted(relay.summary()["tracks"]) == ["chair.0", "chair.1"]
    chair_near = relay.summary()["participants"]["chair"]
    assert room.participants[chair_near].name == "Chu tich (relay)"
    assert len(room.participants[chair_near].producers) == 2
    relay.far_pinned = "deputy"  # the far room pins someone else
    relay._sync_tracks()
    assert relay.summary()["tracks"] == [] and relay.summary()["participants"] == {}
    for _ in range(100):  # the chair's near participant leaves (a task)
        if chair_near not in room.participants:
            break
        await asyncio.sleep(0.01)
    assert chair_near not in room.participants
    feed()
    room = worker.rooms["huyen"]  # emptied and made anew (nothing else kept it)
    assert relay.summary()["tracks"] == ["deputy.2"]
    deputy_near = relay.summary()["participants"]["deputy"]
    assert room.participants[deputy_near].name == "tinh (relay)"  # name not known: the room's
    assert [p.id for p in room.participants[deputy_near].producers] == [
        f"{deputy_near}:deputy.2"]
    await relay._leave_near_participants()
    assert "huyen" not in worker.rooms


def test_relays_never_carry_relays() -> None:
    """Two relays between the same rooms (or one into its own source) must not feed a loop."""
    from sfu.local_subscriber import TrackInfo
    from sfu.worker import MediaConfig, Worker
    from signaling.relay import Relay, RelaySpec

    relay = Relay("t", Worker(MediaConfig()), "huyen", RelaySpec("http://127.0.0.1:9", "tinh"),
                  None)
    relay.far_participant_id = "me"
    relay._note_far({"id": "other-relay", "name": "xa (relay)"})
    relay._note_far(["not", "a", "participant"])
    assert relay.chosen("chair") and not relay.chosen("me") and not relay.chosen("other-relay")
    near = [TrackInfo("p1", "relay-ab12", "tinh (relay)", Kind.AUDIO, OPUS),
            TrackInfo("p2", "s-9", "huyen (relay)", Kind.AUDIO, OPUS),
            TrackInfo("p3", "s-7", "An", Kind.VIDEO, VP8)]
    assert [relay.track_added(track) for track in near] == [None, None, None]
    assert relay.track_added(TrackInfo("p4", "s-8", "Binh", Kind.AUDIO, OPUS)) is not None


def test_far_sender_reports_reach_the_near_consumers() -> None:
    """Lip sync across the relay: A's SR (in the timestamps the relay receives) is kept by the
    relayed producer and translated by each near consumer like a publisher's."""
    from sfu.consumer import Consumer

    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 1.0)
    upstream = UpstreamTracks(
        lambda t: publication.add_track(f"chair.{t.mid}", t.kind, t.codec, lambda _layer: None),
        lambda _ssrc, _lost: None)
    upstream.describe(OFFER, OWNERS)
    assert not upstream.on_sender_report(1000, 5 << 32, 48000)  # nothing relayed yet
    upstream.on_rtp(rtp(1, 1000, 111, ts=48000))
    track = publication.tracks["chair.0"]

    class Sink:
        def send_rtp(self, packet: bytes) -> bool:
            return True

    consumer = Consumer(track.producer, "near", "0", 0xAA, 0xAB, Sink())
    consumer.configure(OPUS, 0, 0)
    consumer.set_target(0)
    track.producer.attach(consumer)
    upstream.on_rtp(rtp(2, 1000, 111, ts=48960))
    assert consumer.sender_report() is None
    assert upstream.on_sender_report(1000, 5 << 32, 48960)
    assert not upstream.on_sender_report(2001, 5 << 32, 0)  # an RTX SSRC has no clock
    report = consumer.sender_report()
    assert report is not None and report.sender_info.ntp_timestamp == 5 << 32
    assert report.ssrc == 0xAA


async def test_far_rtcp_garbage_is_counted() -> None:
    from sfu.worker import MediaConfig, Worker
    from signaling.relay import Relay, RelaySpec

    relay = Relay("t", Worker(MediaConfig()), "huyen", RelaySpec("http://127.0.0.1:9", "tinh"),
                  None)
    relay._on_rtcp(b"\x80\xc8\x00")
    assert relay.upstream.drops[DropReason.MALFORMED] == 1


def test_a_far_mute_pauses_the_near_consumers() -> None:
    from sfu.consumer import Consumer
    from sfu.types import PauseReason

    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 1.0)
    track = publication.add_track("chair.1", Kind.VIDEO, VP8, lambda _layer: None)

    class Sink:
        def send_rtp(self, packet: bytes) -> bool:
            return True

    consumer = Consumer(track.producer, "near", "1", 0xAA, 0xAB, Sink())
    consumer.configure(VP8, 0, 0)
    track.producer.attach(consumer)
    track.set_muted(True)
    assert track.producer.muted and consumer.pause_reason is PauseReason.MUTED
    track.set_muted(False)
    assert not track.producer.muted and consumer.pause_reason is None
