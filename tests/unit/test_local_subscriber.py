"""In-process subscribers (the recorder's seam): a room's tracks as continuous RTP streams."""

from __future__ import annotations

from types import SimpleNamespace

from sfu.consumer import PacketWriter
from sfu.events import ignore_events
from sfu.local_subscriber import TrackInfo
from sfu.producer import Producer
from sfu.room import Participant, Room
from sfu.types import Kind
from sfu.wire.rtp_packet import RtpView
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload


class Sink:
    def __init__(self) -> None:
        self.writers: dict[str, ListWriter] = {}
        self.tracks: list[TrackInfo] = []
        self.removed: list[str] = []
        self.reports: list[tuple[str, int, int]] = []

    def track_added(self, track: TrackInfo) -> PacketWriter | None:
        self.tracks.append(track)
        writer = self.writers[track.producer_id] = ListWriter()
        return writer

    def track_removed(self, producer_id: str) -> None:
        self.removed.append(producer_id)

    def sender_report(self, producer_id: str, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.reports.append((producer_id, ntp_timestamp, rtp_timestamp))


def simulcast_producer(requests: list[int]) -> Producer:
    producer = Producer("alice:v", "alice", Kind.VIDEO, "1",
                        lambda p, layer: requests.append(layer.index), rids=["q", "h", "f"])
    producer.set_codec(VP8_IN)
    return producer


def room_with(producer: Producer) -> Room:
    room = Room("r")
    alice = room.participants["alice"] = Participant("alice", "Alice", ignore_events)
    # A stand-in for the publisher shell (a peer connection): only its producers are read.
    alice.publisher = SimpleNamespace(producers={producer.id: producer})  # type: ignore[assignment]
    return room


def test_local_subscriber_gets_the_best_flowing_layer_from_a_keyframe() -> None:
    requests: list[int] = []
    producer = simulcast_producer(requests)
    room = room_with(producer)
    sink = Sink()
    room.add_local("rec", sink)
    room.producer_ready(producer)
    assert [t.participant_name for t in sink.tracks] == ["Alice"]
    # Only q and h flow: after a tick the local consumer targets h, the best flowing layer.
    for i in range(3):
        for layer in (0, 1):
            packet = rtp_view(100 + i, 3000 * i, vp8_payload(i, 0, key=False), ssrc=10 + layer)
            producer.receive(packet, producer.layers[layer], 0.01 * i)
    room.local["rec"].tick(0.05)
    consumer = room.local["rec"].consumers["alice:v"]
    assert consumer.target_layer == 1
    producer.receive(rtp_view(103, 9000, vp8_payload(3, 0, key=False), ssrc=10), producer.layers[0],
                     0.06)
    assert requests[-1] == 1  # the next packet asks the publisher for a keyframe of h
    producer.receive(rtp_view(200, 9000, vp8_payload(5, 1, key=True), ssrc=11), producer.layers[1],
                     0.1)
    producer.receive(rtp_view(201, 9000, vp8_payload(5, 1, key=False, start=False), ssrc=11),
                     producer.layers[1], 0.1)
    packets = sink.writers["alice:v"].rtp
    assert len(packets) == 2
    first, second = (RtpView.parse(p) for p in packets)
    assert first.payload_type == VP8_IN.payload_type  # the publisher's own codec, no renumbering
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF


def test_producer_removed_with_its_participant_and_local_close() -> None:
    requests: list[int] = []
    producer = simulcast_producer(requests)
    room = room_with(producer)
    sink = Sink()
    room.producer_ready(producer)
    room.add_local("rec", sink)  # joins late: gets the ready producer at once
    assert [t.producer_id for t in sink.tracks] == ["alice:v"]
    assert producer.consumers  # the fan-out includes the local consumer
    room.remove_local("rec")
    assert sink.removed == ["alice:v"]
    assert producer.consumers == []


def test_local_subscriber_leaves_a_quiet_top_layer_at_once() -> None:
    """A browser stops its top layer: the recorder takes the layer below after QUIET_S, not after
    the plane's 2 s staleness (a hole in a file stays for good)."""
    requests: list[int] = []
    producer = simulcast_producer(requests)
    room = room_with(producer)
    sink = Sink()
    room.add_local("rec", sink)
    room.producer_ready(producer)
    for i in range(3):
        for layer in (0, 1, 2):
            producer.receive(rtp_view(100 + i, 3000 * i, vp8_payload(i, 0, key=False),
                                 ssrc=10 + layer), producer.layers[layer], 0.03 * i)
    local = room.local["rec"]
    local.tick(0.1)
    consumer = local.consumers["alice:v"]
    assert consumer.target_layer == 2
    for i in range(3, 30):  # f stops; q and h go on
        for layer in (0, 1):
            producer.receive(rtp_view(100 + i, 3000 * i, vp8_payload(i, 0, key=False),
                                 ssrc=10 + layer), producer.layers[layer], 0.03 * i)
    local.tick(0.4)  # f quiet for 0.34 s: a slow frame, not a stop
    assert consumer.target_layer == 2
    local.tick(0.9)  # quiet for 0.84 s (the plane still calls it flowing for 2 s)
    assert producer.layers[2].active(0.9)
    assert consumer.target_layer == 1
