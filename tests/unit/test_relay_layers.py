"""Simulcast layers over the relay, without sockets: A's per-layer streams to a relay
(sfu/layer_streams.py), B's far track with layers (sfu/relay.py), and the relay's near side in a
worker process (sfu/plane_relay.py)."""

from __future__ import annotations

import struct

from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from sfu.consumer import Consumer
from sfu.downlink_control import DownlinkControl
from sfu.events import LayerStream, TrackDescription, ignore_events
from sfu.layer_streams import LayerStreams
from sfu.plane_process import WorkerLost
from sfu.plane_relay import RelayHost, RemotePublication, rtp_bytes
from sfu.plane_wire import (
    RelayCall,
    RelayKeyframe,
    RelayKeyframeWanted,
    RelayPublish,
    RelayRtp,
    RelaySenderReport,
    RelayTrack,
    Report,
)
from sfu.policy.downlink import DownlinkPolicy
from sfu.producer import Layer, Producer
from sfu.relay import FarTrack, LocalPublication, TrackFeed, UpstreamTracks, far_layers
from sfu.rtcp_router import RtcpRouter
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView, wrap_rtx
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload
from tests.unit.test_relay import OFFER, rtp

RIDS = ["q", "h", "f"]


def simulcast_producer(asked: list[int]) -> Producer:
    def request(_producer: Producer, layer: Layer) -> None:
        asked.append(layer.index)

    producer = Producer("chair:1", "chair", Kind.VIDEO, "1", request, RIDS)
    producer.set_codec(VP8_IN)
    return producer


def layered(asked: list[int], now: float = 0.0) -> tuple[
        Producer, LayerStreams, list[Consumer], ListWriter, RtcpRouter]:
    """A's side: a relay subscriber's consumers of a simulcast producer, one per layer."""
    producer = simulcast_producer(asked)
    writer = ListWriter()
    router = RtcpRouter(DownlinkControl("relay", DownlinkPolicy(), ignore_events,
                                        writer.send_rtp, lambda: now), lambda: now)
    streams = LayerStreams("relay", router.by_ssrc)
    primary = Consumer(producer, "relay", "1", 0xF0, 0xF1, writer)
    router.add(primary)
    producer.attach(primary)
    for extra in streams.add(producer, primary, writer):
        router.add(extra)
    consumers = streams.by_producer[producer.id]
    for consumer in consumers:
        consumer.configure(VP8_IN, 0, 0)
    return producer, streams, consumers, writer, router


def test_a_relay_gets_every_layer_as_its_own_stream() -> None:
    asked: list[int] = []
    producer, streams, consumers, writer, _router = layered(asked)
    assert [c.target_layer for c in consumers] == [0, 1, 2]
    assert [c.wanted_layer for c in consumers] == [0, 1, 2]  # the publisher keeps all on
    assert consumers[2].ssrc == 0xF0  # the top layer on the m-line's own SSRC
    ssrcs = {s for c in consumers for s in (c.ssrc, c.rtx_ssrc)}
    assert len(ssrcs) == 6
    for index, layer in enumerate(producer.layers):
        producer.receive(rtp_view(100 + index, 9000, vp8_payload(5, 1, key=True)), layer, 1.0)
        producer.receive(rtp_view(200 + index, 9000, vp8_payload(6, 1, key=False)), layer, 1.1)
    by_ssrc: dict[int, int] = {}
    for packet in writer.rtp:
        view = RtpView.parse(packet)
        by_ssrc[view.ssrc] = by_ssrc.get(view.ssrc, 0) + 1
    assert by_ssrc == {c.ssrc: 2 for c in consumers}  # each stream only its own layer
    # The track map names each layer's stream, lowest first.
    tracks = streams.describe({"1": TrackDescription("chair", "video", "s")},
                              lambda mid: consumers[2] if mid == "1" else None)
    assert tracks["1"].layers == tuple(LayerStream(rid, c.ssrc, c.rtx_ssrc)
                                       for rid, c in zip(RIDS, consumers, strict=True))


def test_a_pli_or_nack_for_a_layers_ssrc_reaches_that_layer() -> None:
    asked: list[int] = []
    producer, _streams, consumers, writer, router = layered(asked, now=10.0)
    for layer in producer.layers:
        producer.receive(rtp_view(100, 9000, vp8_payload(5, 1, key=True)), layer, 1.0)
    # Until its own keyframe came, each stream asked for it (h and f while q's came first).
    assert sorted(asked) == [1, 2]
    assert all(c.current_layer == c.target_layer for c in consumers)
    asked.clear()
    router.on_rtcp(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=consumers[1].ssrc)))
    assert asked == [1]  # the publisher is asked for h's keyframe
    sent = RtpView.parse(writer.rtp[0])  # q's keyframe
    before = len(writer.rtp)
    router.on_rtcp(bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1,
                                         media_ssrc=consumers[0].ssrc,
                                         lost=[sent.sequence_number])))
    resent = RtpView.parse(writer.rtp[before])
    assert resent.ssrc == consumers[0].rtx_ssrc  # q's retransmission stream
    assert consumers[0].retransmitted == 1 and consumers[1].retransmitted == 0


def test_a_layered_producer_that_goes_closes_its_streams() -> None:
    asked: list[int] = []
    producer, streams, consumers, _writer, _router = layered(asked)
    gone = streams.remove(producer.id)
    assert gone == consumers[:2] and all(c.closed for c in gone)
    assert producer.consumers == [consumers[2]]  # the m-line's consumer is the subscriber's


def test_last_n_pauses_and_resumes_every_layer_of_a_relayed_video() -> None:
    """A relay of a big room gets the videos last-N chooses for it, as any subscriber does."""
    from sfu.types import PauseReason

    asked: list[int] = []
    _producer, streams, consumers, _writer, _router = layered(asked)
    streams.follow(lambda owner: owner != "chair", {})
    assert {c.pause_reason for c in consumers} == {PauseReason.NOT_IN_LAST_N}
    streams.follow(lambda owner: True, {})
    assert [(c.pause_reason, c.target_layer) for c in consumers] == [
        (None, 0), (None, 1), (None, 2)]
    consumers[1].set_muted(True)  # a mute is not last-N's to lift
    streams.follow(lambda owner: True, {})
    assert consumers[1].pause_reason is PauseReason.MUTED


def test_the_relays_tile_pauses_the_layers_its_room_does_not_want() -> None:
    """The relay's tile for the chair says the far room wants h at most: f's stream pauses
    (and the publisher may stop f); a wider tile holds f again; no tile means every layer."""
    from sfu.policy.downlink import Tile
    from sfu.types import PauseReason

    asked: list[int] = []
    producer, streams, consumers, _writer, _router = layered(asked)
    streams.follow(lambda owner: True, {"chair": Tile(640, 360, True)})
    assert [c.pause_reason for c in consumers] == [None, None, PauseReason.NOT_VISIBLE]
    from sfu.policy.uplink import UplinkPolicy

    policy = UplinkPolicy()  # A's publisher: f nobody holds, off after the grace period
    policy.active_layers(producer, 0.0)
    assert policy.active_layers(producer, 6.0) == {"q": True, "h": True, "f": False}
    streams.follow(lambda owner: True, {"chair": Tile(320, 180, True)})
    assert [c.pause_reason for c in consumers] == [None] + [PauseReason.NOT_VISIBLE] * 2
    streams.follow(lambda owner: True, {"chair": Tile(1280, 720, True)})
    assert [(c.pause_reason, c.target_layer) for c in consumers] == [
        (None, 0), (None, 1), (None, 2)]
    streams.follow(lambda owner: owner != "chair", {"chair": Tile(320, 180, True)})
    assert {c.pause_reason for c in consumers} == {PauseReason.NOT_IN_LAST_N}
    streams.follow(lambda owner: True, {})
    assert [c.pause_reason for c in consumers] == [None, None, None]


def test_the_relay_asks_for_the_highest_layer_its_room_wants() -> None:
    from sfu.relay import tile_for
    from sfu.uplink_control import UplinkControl

    assert tile_for(RIDS, {"q": True, "h": True, "f": True}) == (1280, 720)
    assert tile_for(RIDS, {"q": True, "h": True, "f": False}) == (640, 360)
    assert tile_for(RIDS, {"q": True}) == (320, 180)
    assert tile_for(RIDS, {}) == (320, 180)  # the lowest always flows
    # B: the relayed participant's uplink rule reports the layers its room wants.
    events: list[object] = []
    producer = simulcast_producer([])
    consumer = Consumer(producer, "near", "1", 1, 2, ListWriter())
    consumer.configure(VP8_IN, 0, 0)
    consumer.wanted_layer = 1
    consumer.set_target(1)
    producer.attach(consumer)
    uplink = UplinkControl(events.append)
    uplink.tick_relayed([producer], 0.0)
    uplink.tick_relayed([producer], 6.0)  # f unused past the grace period
    assert [e.active for e in events] == [  # type: ignore[attr-defined]
        {"q": True, "h": True, "f": True}, {"q": True, "h": True, "f": False}]


def test_a_single_layer_or_audio_track_is_not_layered() -> None:
    streams = LayerStreams("relay", {})
    audio = Producer("a:0", "a", Kind.AUDIO, "0", lambda _p, _l: None)
    video = Producer("a:1", "a", Kind.VIDEO, "1", lambda _p, _l: None)
    for producer in (audio, video):
        consumer = Consumer(producer, "relay", "0", 1, 2, ListWriter())
        assert streams.add(producer, consumer, ListWriter()) == []
        assert not streams.held(producer.id) and streams.of(consumer) == [consumer]


# -- B: the far track with layers -------------------------------------------------------------

LAYERS = [{"rid": "q", "ssrc": 3000, "rtx_ssrc": 3001}, {"rid": "h", "ssrc": 3002,
                                                          "rtx_ssrc": 3003},
          {"rid": "f", "ssrc": 2000, "rtx_ssrc": 2001}]
OWNERS = {"0": {"participant_id": "chair", "kind": "audio"},
          "1": {"participant_id": "chair", "kind": "video", "layers": LAYERS}}


class Recorder:
    """B's relayed track stand-in: what reaches it, per layer."""

    def __init__(self) -> None:
        self.received: list[tuple[int, int]] = []  # (layer, seq)
        self.reports: list[tuple[int, int]] = []

    def receive(self, packet: RtpView, layer: int = 0) -> None:
        self.received.append((layer, packet.sequence_number))

    def set_muted(self, muted: bool) -> None:
        pass

    def request_keyframe(self, layer: int = 0) -> None:
        pass

    def sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.reports.append((layer, rtp_timestamp))


def test_the_far_layers_reach_their_layer_with_nack_and_sr_per_layer() -> None:
    sink = Recorder()
    published: list[FarTrack] = []
    nacks: list[tuple[int, list[int]]] = []

    def publish(track: FarTrack) -> TrackFeed:
        published.append(track)
        return sink

    upstream = UpstreamTracks(publish, lambda ssrc, lost: nacks.append((ssrc, lost)))
    upstream.describe(OFFER, OWNERS)
    upstream.on_rtp(rtp(10, 3000))
    upstream.on_rtp(rtp(20, 3002))
    upstream.on_rtp(rtp(30, 2000))
    upstream.on_rtp(wrap_rtx(rtp(11, 3000), 97, 7, 3001))
    upstream.on_rtp(rtp(13, 3000))  # 12 lost on q only
    assert sink.received == [(0, 10), (1, 20), (2, 30), (0, 11), (0, 13)]
    assert nacks == [(3000, [12])]
    assert [t.rids for t in published] == [["q", "h", "f"]]
    assert upstream.on_sender_report(3002, 1 << 32, 777)
    assert not upstream.on_sender_report(3003, 1 << 32, 0)  # RTX: no clock
    assert sink.reports == [(1, 777)]


def test_bad_layer_lists_from_the_far_server_fall_back_to_one_layer() -> None:
    good = far_layers({"layers": LAYERS}, 2000, 2001)
    assert [layer.ssrc for layer in good] == [3000, 3002, 2000]
    for bad in ([LAYERS[0], LAYERS[0], LAYERS[2]],  # an SSRC twice
                LAYERS[:2],  # the top is not the m-line's
                [*LAYERS, LAYERS[0]],  # more than three
                [{"ssrc": True}, LAYERS[2]], [{"ssrc": 1 << 32}, LAYERS[2]],
                [{"ssrc": 5, "rtx_ssrc": "x"}, LAYERS[2]], ["q", LAYERS[2]], "qhf", None):
        layers = far_layers({"layers": bad}, 2000, 2001)
        assert [(layer.ssrc, layer.rtx_ssrc) for layer in layers] == [(2000, 2001)], bad


def test_a_near_layer_switch_asks_the_far_server_for_that_layer() -> None:
    asked: list[int] = []
    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 5.0)
    track = publication.add_track("chair.1", Kind.VIDEO, VP8_IN, asked.append, rids=RIDS)
    assert [layer.rid for layer in track.producer.layers] == RIDS
    consumer = Consumer(track.producer, "near", "1", 0xAA, 0xAB, ListWriter())
    consumer.configure(VP8_IN, 0, 0)
    track.producer.attach(consumer)
    track.receive(rtp_view(1, 0, vp8_payload(1, 1, key=True)), 0)
    consumer.set_target(2)  # B's allocator raises this subscriber to f
    track.receive(rtp_view(2, 0, vp8_payload(2, 1, key=False)), 0)
    assert asked == [2] and track.keyframe_requests == 1
    track.receive(rtp_view(3, 0, vp8_payload(3, 1, key=True)), 7)  # no such layer
    assert track.drops[DropReason.UNKNOWN_SSRC] == 1


# -- the near side in a worker process ---------------------------------------------------------


def test_a_relays_track_crosses_into_the_worker_and_its_keyframe_requests_come_back() -> None:
    reports: list[Report] = []
    producers: list[Producer] = []

    def publish_local(room: str, participant: str, name: str, _sink: object
                      ) -> LocalPublication:
        return LocalPublication(room, participant, {}, producers.append, lambda: 5.0)

    host = RelayHost(publish_local, reports.append)  # type: ignore[arg-type]
    sent: list[RelayCall] = []
    remote = RemotePublication("room", "relay-1-1", sent.append)
    asked: list[int] = []
    host.publish(RelayPublish("room", "relay-1-1", "Chair (relay)"), lambda _event: None)
    track = remote.add_track("chair.1", Kind.VIDEO, VP8_IN, asked.append, None, RIDS)
    packet = RtpView.parse(rtp(5, 2000, payload=vp8_payload(1, 1, key=True)))
    track.receive(packet, 1)
    track.sender_report(1, 1 << 32, 99)
    track.request_keyframe(2)
    for call in sent:
        if isinstance(call, RelayRtp):
            host.rtp(call)
        elif not isinstance(call, RelayPublish):
            host.handle(call)  # type: ignore[arg-type]
    assert [type(c) for c in sent] == [RelayTrack, RelayRtp, RelaySenderReport, RelayKeyframe]
    (producer,) = producers
    assert [layer.rid for layer in producer.layers] == RIDS
    assert producer.packets_received == 1 and producer.layers[1].ssrc == 2000
    assert producer.layers[1].sender_report == (1 << 32, 99)
    assert reports == [RelayKeyframeWanted("room", "relay-1-1", "chair.1", 2)]
    remote.keyframe_wanted(reports[0])  # the pool hands it back: the relay sends a PLI
    assert asked == [2]
    host.rtp(RelayRtp("room", "relay-1-1", "chair.1", 0, b"\x80"))  # garbage from a bug
    host.rtp(RelayRtp("room", "nobody", "chair.1", 0, rtp(6, 2000)))
    assert host.drops == {DropReason.MALFORMED: 1, DropReason.NOT_CONNECTED: 1}
    host.left("room", "relay-1-1")
    assert producer.closed


def test_a_lost_worker_does_not_break_the_relay() -> None:
    def gone(_call: RelayCall) -> None:
        raise WorkerLost("media worker 0 is gone")

    remote = RemotePublication("room", "relay-1-1", gone)
    track = remote.add_track("chair.0", Kind.AUDIO, Codec("audio/opus", 48000, 111),
                             lambda _layer: None)
    track.receive(RtpView.parse(rtp(1, 1000, 111)))
    assert remote.lost == 2


def test_an_unwrapped_retransmission_is_rebuilt_for_the_worker() -> None:
    original = struct.pack("!BBHII", 0x90, 96, 11, 4242, 3000) + bytes(
        [0xBE, 0xDE, 0, 1, 0x10, 0x7F, 0, 0]) + b"payload"
    assert rtp_bytes(RtpView.parse(original)) == original  # as received: not copied
    unwrapped = RtpView.parse(wrap_rtx(original, 97, 7, 3001)).unwrap_rtx(96, 3000)
    rebuilt = RtpView.parse(rtp_bytes(unwrapped))
    assert (rebuilt.sequence_number, rebuilt.ssrc, rebuilt.payload_type, rebuilt.timestamp,
            rebuilt.payload, rebuilt.extensions) == (11, 3000, 96, 4242, b"payload", {1: b"\x7f"})


async def test_a_worker_offers_a_relay_every_layer_and_counts_its_consumers() -> None:
    """The real Worker and Subscriber (aiortc connections, nothing sent): a subscriber that
    joined with ``all_layers`` gets a consumer per layer of a simulcast track, the layers in its
    offer's track map, and the metrics count them; an ordinary subscriber gets one."""
    import asyncio

    from sfu.events import SubscribeOffer
    from sfu.worker import MediaConfig, Worker

    worker = Worker(MediaConfig(ice_addresses=("127.0.0.1",)))
    offers: dict[str, list[SubscribeOffer]] = {"relay": [], "browser": []}
    try:
        for name, all_layers in (("relay", True), ("browser", False)):
            worker.join("room", name, name, lambda event, name=name: offers[name].append(
                event) if isinstance(event, SubscribeOffer) else None, all_layers=all_layers)
        publication = worker.publish_local("room", "chair", "Chair", lambda _event: None)
        publication.add_track("chair.1", Kind.VIDEO, VP8_IN, lambda _layer: None, rids=RIDS)
        assert worker.stats().consumers == 3 + 1
        for _ in range(100):  # bounded: the offers are made by each subscriber's task
            if offers["relay"] and offers["browser"]:
                break
            await asyncio.sleep(0.05)
        (relay_track,) = offers["relay"][0].tracks.values()
        (browser_track,) = offers["browser"][0].tracks.values()
        assert [layer.rid for layer in relay_track.layers] == RIDS
        assert f"a=ssrc:{relay_track.layers[-1].ssrc} " in offers["relay"][0].sdp
        assert browser_track.layers == ()
    finally:
        await worker.close()


def test_a_relays_voices_subscriber_in_a_worker_takes_no_video() -> None:
    """With --workers N the relay's local subscriber (B's voices for A) is a stand-in in the
    worker: it consumes no video, so the room's video is not copied to signaling for nothing
    (and its consumer would keep every layer of a relayed track wanted)."""
    from sfu.local_subscriber import TrackInfo
    from sfu.plane_server import RemoteLocalSubscriber
    from sfu.plane_wire import LocalTrack

    class Channel:
        def __init__(self) -> None:
            self.sent: list[object] = []

        def send(self, message: object) -> None:
            self.sent.append(message)

    channel = Channel()
    voices = RemoteLocalSubscriber(channel, "huyen", "relay-1", 3, video=False)  # type: ignore[arg-type]
    assert voices.track_added(TrackInfo("p:1", "p", "P", Kind.VIDEO, VP8_IN)) is None
    assert voices.track_added(TrackInfo("p:0", "p", "P", Kind.AUDIO, Codec(
        "audio/opus", 48000, 111))) is not None
    assert [type(m) for m in channel.sent] == [LocalTrack]
    recorder = RemoteLocalSubscriber(channel, "huyen", "recorder")  # type: ignore[arg-type]
    assert recorder.track_added(TrackInfo("p:1", "p", "P", Kind.VIDEO, VP8_IN)) is not None
