"""Last-N video slots: the pure assignment (``sfu/policy/video_slots.py``) and a slot's stream
switched between producers by its shell (``sfu/video_slots.py``) with synthetic packets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sfu.consumer import Consumer
from sfu.events import MediaEvent, SlotShown
from sfu.policy.video_slots import SlotMove, VideoSlotAssignment
from sfu.producer import Producer
from sfu.subscriber_negotiator import Slot
from sfu.types import Codec, DropReason, Kind
from sfu.video_slots import VideoSlots, pooled
from sfu.wire.rtp_packet import RtpView
from sfu.wire.vp8 import Vp8Descriptor
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload

VP8_OUT = Codec("video/VP8", 90000, 100, 101)

# -- the pure assignment ----------------------------------------------------------------------


def test_every_camera_gets_its_own_slot_up_to_n_then_waits() -> None:
    pool = VideoSlotAssignment(2)
    assert pool.admit("a", 0.0) == SlotMove(0, None, "a", grow=True)
    assert pool.admit("b", 0.0) == SlotMove(1, None, "b", grow=True)
    assert pool.admit("c", 0.0) is None  # no third m-line
    assert pool.admit("a", 0.0) is None  # already has one
    assert pool.slots == ["a", "b"]


def test_a_producer_that_stays_wanted_keeps_its_slot() -> None:
    pool = VideoSlotAssignment(3)
    for source in "abc":
        pool.admit(source, 0.0)
    moves = pool.place(["c", "d", "a"], {"a", "b", "c", "d"}, 1.0)
    assert moves == [SlotMove(1, "b", "d")]  # d takes b's slot; a and c stay where they were
    assert pool.slots == ["a", "d", "c"]
    assert pool.place(["a", "c", "d"], {"a", "b", "c", "d"}, 2.0) == []  # order alone: nothing


def test_churn_evicts_the_slot_unwanted_longest() -> None:
    pool = VideoSlotAssignment(2)
    pool.admit("a", 0.0)
    pool.admit("b", 0.0)
    available = {"a", "b", "c", "d"}
    pool.place(["b"], available, 1.0)  # a unwanted since 1.0
    pool.place(["a"], available, 2.0)  # a back (sticky, no move); b unwanted since 2.0
    assert pool.slots == ["a", "b"]
    moves = pool.place(["c"], available, 3.0)
    assert moves == [SlotMove(1, "b", "c")]  # b has been unwanted longest (since 2.0, a: 3.0)
    moves = pool.place(["d", "c"], available, 4.0)
    assert moves == [SlotMove(0, "a", "d")]
    assert pool.slots == ["d", "c"]


def test_a_pin_wins_a_slot_when_more_are_wanted_than_there_are_slots() -> None:
    pool = VideoSlotAssignment(2)
    pool.admit("a", 0.0)
    pool.admit("b", 0.0)
    # last-N puts the pinned participant first; capacity shrank to 1 meanwhile
    pool.resize(1)
    moves = pool.place(["p", "a", "b"], {"a", "b", "p"}, 1.0)
    assert [m.new for m in moves] == ["p"]
    assert "p" in pool.slots and len(pool.slots) == 2  # the m-lines made stay


def test_a_producer_leaving_frees_its_slot_for_the_next_without_a_new_mline() -> None:
    pool = VideoSlotAssignment(2)
    pool.admit("a", 0.0)
    pool.admit("b", 0.0)
    assert pool.leave("a") == 0
    assert pool.leave("zz") is None
    assert pool.admit("c", 1.0) == SlotMove(0, None, "c")  # reused, not grown
    pool.leave("b")
    assert pool.place(["d"], {"c", "d"}, 2.0) == [SlotMove(1, None, "d")]
    assert pool.place(["gone"], {"c", "d"}, 3.0) == []  # not available: ignored


def test_n_growing_adds_slots_and_shrinking_keeps_them() -> None:
    pool = VideoSlotAssignment(1)
    pool.admit("a", 0.0)
    assert pool.place(["a", "b"], {"a", "b"}, 1.0) == []
    pool.resize(2)
    assert pool.place(["a", "b"], {"a", "b"}, 2.0) == [SlotMove(1, None, "b", grow=True)]
    pool.resize(1)
    assert pool.place(["b"], {"a", "b", "c"}, 3.0) == []
    assert pool.slots == ["a", "b"]


# -- a slot switched between producers (the shell, synthetic packets) --------------------------


class Harness:
    """The subscriber's side of ``VideoSlots``: consumers on fake m-lines, one writer."""

    def __init__(self, n: int) -> None:
        self.writer = ListWriter()
        self.events: list[MediaEvent] = []
        self.now = 0.0
        self.lines: list[Slot] = []
        self.slots = VideoSlots(VideoSlotAssignment(n), self.consume, self.drop,
                                self.events.append, lambda: self.now)

    def consume(self, producer: Producer, line: Slot | None) -> Slot:
        if line is None:
            fake: Any = SimpleNamespace(mid=str(len(self.lines)))
            line = Slot(fake, "video")
            self.lines.append(line)
        ssrc = 7000 + 2 * self.lines.index(line)
        consumer = Consumer(producer, "sub", line.transceiver.mid or "", ssrc, ssrc + 1,
                            self.writer, continue_from=line.previous)
        consumer.configure(VP8_OUT, 0, 0)
        producer.attach(consumer)
        line.consumer = consumer
        return line

    def drop(self, consumer: Consumer) -> None:
        consumer.close()


def camera(owner: str, requests: list[str]) -> Producer:
    producer = Producer(f"{owner}:v", owner, Kind.VIDEO, "1",
                        lambda p, layer: requests.append(p.participant_id))
    producer.set_codec(VP8_IN)
    return producer


def out_fields(packet: bytes) -> tuple[int, int, int, int, int]:
    view = RtpView.parse(packet)
    descriptor = Vp8Descriptor.parse(view.payload)
    assert descriptor.picture_id is not None
    return (view.sequence_number, view.timestamp, view.ssrc, descriptor.picture_id,
            view.payload[descriptor.size] & 1)  # VP8 P bit: 0 = keyframe


def test_a_switched_slot_stays_one_stream_and_starts_at_the_new_keyframe() -> None:
    requests: list[str] = []
    h = Harness(1)
    alice, carol = camera("alice", requests), camera("carol", requests)
    h.slots.add(alice)
    h.slots.add(carol)  # no room: waits
    assert h.slots.waiting == ["carol:v"]
    for i in range(4):
        h.now = 0.033 * i
        alice.receive(rtp_view(60000 + i, 1000 + 3000 * i, vp8_payload(32766 + i, 250, i == 0)),
                      alice.layers[0], h.now)
    sent_by_alice = len(h.writer.rtp)
    h.now = 1.0
    h.slots.follow(["carol"])  # last-N now wants carol: alice's slot switches to her
    assert h.slots.waiting == ["alice:v"] and h.slots.switches == 1
    assert not [e for e in h.events if isinstance(e, SlotShown)]  # not before her keyframe
    # alice's packets no longer go out; carol's delta frames wait for her keyframe
    alice.receive(rtp_view(60004, 13000, vp8_payload(2, 251, False)), alice.layers[0], 1.0)
    carol.receive(rtp_view(500, 90, vp8_payload(40, 7, False)), carol.layers[0], 1.01)
    assert len(h.writer.rtp) == sent_by_alice
    assert "carol" in requests  # a PLI to the new producer
    new = h.lines[0].consumer
    assert new is not None and new.drops[DropReason.WAITING_FOR_KEYFRAME] == 1
    carol.receive(rtp_view(501, 3090, vp8_payload(41, 7, True)), carol.layers[0], 1.05)
    assert h.events == [SlotShown("0", "carol", "camera")]
    carol.receive(rtp_view(502, 6090, vp8_payload(42, 8, False)), carol.layers[0], 1.08)
    outs = [out_fields(p) for p in h.writer.rtp]
    seqs = [o[0] for o in outs]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    stamps = [o[1] for o in outs]
    assert all(0 <= (b - a) & 0xFFFFFFFF < 0x80000000 for a, b in zip(stamps, stamps[1:],
                                                                         strict=False))
    assert (stamps[4] - stamps[3]) & 0xFFFFFFFF > 0
    assert {o[2] for o in outs} == {7000}  # the slot's own SSRC throughout
    assert [o[3] for o in outs] == [32766, 32767, 0, 1, 2, 3]  # picture ids continue
    assert outs[4][4] == 0  # the first of carol's is her keyframe
    # a NACK for a packet alice sent before the switch is still answered on the slot
    assert new.on_nack([seqs[1]], 1.1) == 1


def test_a_leaving_producer_frees_its_slot_for_a_waiting_one_without_renegotiating() -> None:
    requests: list[str] = []
    h = Harness(2)
    a, b, c = (camera(x, requests) for x in ("a", "b", "c"))
    for producer in (a, b, c):
        h.slots.add(producer)
    h.slots.follow(["a", "b", "c"])  # c wanted but both slots are taken by wanted ones
    assert len(h.lines) == 2 and h.slots.waiting == ["c:v"]
    h.slots.remove("a:v")
    assert len(h.lines) == 2  # no new m-line
    assert h.lines[0].consumer is not None and h.lines[0].consumer.producer is c
    assert h.lines[0].stream_id == "c"  # nothing of a was shown: named at once
    assert a.consumers == []


def test_only_vp8_cameras_share_the_pool() -> None:
    vp8 = camera("a", [])
    assert pooled(vp8)
    h264 = Producer("b:v", "b", Kind.VIDEO, "1", lambda p, layer: None)
    h264.set_codec(Codec("video/H264", 90000, 102, 103))
    assert not pooled(h264)  # its own m-line: a VP8 slot could not carry it
    screen = camera("c", [])
    screen.source = "screen"
    assert not pooled(screen)
    voice = Producer("d:a", "d", Kind.AUDIO, "0", lambda p, layer: None)
    voice.set_codec(Codec("audio/opus", 48000, 111))
    assert not pooled(voice)
