"""Producer -> Consumer forwarding with synthetic packets: no sockets, time passed in."""

from __future__ import annotations

import struct

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.types import Codec, DropReason, Kind, PauseReason
from sfu.wire.rtp_packet import RtpView
from sfu.wire.vp8 import Vp8Descriptor
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload

VP8_OUT = Codec("video/VP8", 90000, 100, 101)
OPUS_IN = Codec("audio/opus", 48000, 111)
OPUS_OUT = Codec("audio/opus", 48000, 109)


def feed(producer: Producer, packet: RtpView, now: float, layer: int = 0) -> None:
    producer.receive(packet, producer.layers[layer], now)


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    return first, second & 0x7F, seq, ts, ssrc


def payload_of(packet: bytes) -> bytes:
    view = RtpView.parse(packet)
    return view.payload


def video_pair(ssrc: int = 5000) -> tuple[Producer, Consumer, ListWriter, list[Producer]]:
    requests: list[Producer] = []
    producer = Producer("alice:1", "alice", Kind.VIDEO, "1", lambda p, layer: requests.append(p))
    producer.set_codec(VP8_IN)
    writer = ListWriter()
    consumer = Consumer(producer, "bob", "0", ssrc, ssrc + 1, writer)
    consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=3)
    producer.consumers.append(consumer)
    return producer, consumer, writer, requests


def test_consumer_waits_for_keyframe_and_asks_every_second() -> None:
    producer, consumer, writer, requests = video_pair()
    for i, now in enumerate([0.0, 0.1, 0.5, 1.05, 1.2]):
        feed(producer, rtp_view(100 + i, 9000 * i, vp8_payload(10 + i, 1, key=False)), now)
    assert writer.rtp == []
    assert consumer.drops[DropReason.WAITING_FOR_KEYFRAME] == 5
    assert len(requests) == 2  # at t=0 and again after a second
    feed(producer, rtp_view(105, 45000, vp8_payload(15, 1, key=True)), 1.3)
    feed(producer, rtp_view(106, 45000, vp8_payload(15, 1, key=False, start=False)), 1.3)
    assert len(writer.rtp) == 2
    (_, pt, seq0, ts0, ssrc), (_, _, seq1, ts1, _) = map(header, writer.rtp)
    assert (pt, ssrc) == (100, 5000)
    assert seq1 == (seq0 + 1) & 0xFFFF and ts1 == ts0
    assert not consumer.waiting_keyframe


def test_extension_block_uses_the_subscribers_ids() -> None:
    producer, _consumer, writer, _ = video_pair()
    feed(producer, rtp_view(1, 0, vp8_payload(1, 1, key=True), extensions={9: b"\x01\x02\x03"}), 0)
    view = RtpView.parse(writer.rtp[0])
    assert set(view.extensions) == {3}  # abs-send-time under our id; the publisher's id 9 gone
    assert len(view.extensions[3]) == 3


def test_keyframe_requests_are_rate_limited_across_consumers() -> None:
    producer, _c1, _w1, requests = video_pair()
    second = Consumer(producer, "carol", "0", 7000, 7001, ListWriter())
    second.configure(VP8_OUT, 0, 3)
    producer.consumers.append(second)
    feed(producer, rtp_view(1, 0, vp8_payload(1, 1, key=False)), 0.0)
    assert len(requests) == 1  # two consumers asked, one PLI went upstream
    second.on_keyframe_request(0.2)
    assert len(requests) == 1
    second.on_keyframe_request(0.6)
    assert len(requests) == 2


def test_nack_is_answered_with_rtx_from_history() -> None:
    producer, consumer, writer, _ = video_pair(ssrc=5000)
    for i in range(5):
        feed(producer, rtp_view(200 + i, 3000 * i, vp8_payload(20 + i, 2, key=(i == 0))), 0.01 * i)
    lost = header(writer.rtp[2])[2]
    assert consumer.on_nack([lost, (lost + 1000) & 0xFFFF]) == 1  # the second is not in history
    rtx = writer.rtp[-1]
    _, pt, _, ts, ssrc = header(rtx)
    assert (pt, ssrc) == (101, 5001)
    assert ts == header(writer.rtp[2])[3]
    body = payload_of(rtx)
    assert struct.unpack_from("!H", body)[0] == lost
    assert body[2:] == payload_of(writer.rtp[2])


def test_sender_report_translates_publisher_time_into_consumer_timestamps() -> None:
    producer, consumer, writer, _ = video_pair()
    assert consumer.sender_report() is None  # nothing sent, nothing to report
    feed(producer, rtp_view(1, 123456, vp8_payload(1, 1, key=True)), 0.0)
    producer.layers[0].sender_report = (0xE000000000000000, 120456)
    report = consumer.sender_report()
    assert report is not None and report.ssrc == 5000
    out_ts = header(writer.rtp[0])[3]
    # The SR's RTP time is 3000 ticks before the forwarded packet, as in the publisher's SR.
    assert (out_ts - report.sender_info.rtp_timestamp) & 0xFFFFFFFF == 3000
    assert report.sender_info.ntp_timestamp == 0xE000000000000000
    assert report.sender_info.packet_count == 1


def test_mute_pauses_and_unmute_resumes_at_a_keyframe() -> None:
    producer, consumer, writer, _ = video_pair()
    feed(producer, rtp_view(1, 0, vp8_payload(1, 1, key=True)), 0.0)
    consumer.set_muted(True)
    feed(producer, rtp_view(2, 3000, vp8_payload(2, 1, key=False)), 0.1)
    assert consumer.pause_reason is PauseReason.MUTED
    assert consumer.drops[DropReason.PAUSED] == 1
    consumer.set_muted(False)
    feed(producer, rtp_view(3, 6000, vp8_payload(3, 1, key=False)), 0.2)
    feed(producer, rtp_view(4, 9000, vp8_payload(4, 1, key=True)), 0.3)
    seqs = [header(p)[2] for p in writer.rtp]
    assert len(seqs) == 2 and seqs[1] == (seqs[0] + 1) & 0xFFFF  # no gap after the pause


def test_padding_only_packets_leave_no_gap() -> None:
    producer, _consumer, writer, _ = video_pair()
    feed(producer, rtp_view(65534, 0, vp8_payload(1, 1, key=True)), 0.0)
    feed(producer, rtp_view(65535, 0, b""), 0.01)  # a probe: nothing to forward
    feed(producer, rtp_view(0, 3000, vp8_payload(2, 1, key=False)), 0.02)
    seqs = [header(p)[2] for p in writer.rtp]
    assert seqs[1] == (seqs[0] + 1) & 0xFFFF


def test_reused_mline_continues_numbering_across_publishers() -> None:
    first, old, writer, _ = video_pair(ssrc=5000)
    for i in range(3):
        payload = vp8_payload((32766 + i) % 32768, (254 + i) % 256, key=(i == 0))
        feed(first, rtp_view(60000 + i, 1000 + 3000 * i, payload), 0.033 * i)
    old.close()
    second = Producer("carol:1", "carol", Kind.VIDEO, "1", lambda p, layer: None)
    second.set_codec(VP8_IN)
    new = Consumer(second, "bob", "0", 5000, 5001, writer, continue_from=old)
    new.configure(VP8_OUT, 0, 3)
    second.consumers.append(new)
    feed(second, rtp_view(7, 777777, vp8_payload(500, 9, key=True)), 1.0)
    feed(second, rtp_view(8, 780777, vp8_payload(501, 10, key=False)), 1.033)
    outs = [header(p) for p in writer.rtp]
    seqs = [h[2] for h in outs]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), seqs
    assert 0 < (outs[3][3] - outs[2][3]) & 0xFFFFFFFF <= 90000  # about a second later, forward
    pids = [Vp8Descriptor.parse(payload_of(p)).picture_id for p in writer.rtp]
    assert pids == [32766, 32767, 0, 1, 2]  # continuous through the 15-bit wrap
    tl0s = [Vp8Descriptor.parse(payload_of(p)).tl0picidx for p in writer.rtp]
    assert tl0s == [254, 255, 0, 1, 2]


def test_audio_forwards_at_once_with_audio_level_under_subscriber_id() -> None:
    producer = Producer("alice:0", "alice", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS_IN)
    producer.audio_level_ext_id = 1
    writer = ListWriter()
    consumer = Consumer(producer, "bob", "2", 9000, 9001, writer)
    consumer.configure(OPUS_OUT, audio_level_id=2, abs_send_time_id=0)
    producer.consumers.append(consumer)
    feed(producer, rtp_view(10, 960, b"\xfc\x01\x02", pt=111, extensions={1: b"\x9e"}), 0.0)
    view = RtpView.parse(writer.rtp[0])
    assert view.payload_type == 109 and view.ssrc == 9000
    assert view.extensions == {2: b"\x9e"}
    assert view.payload == b"\xfc\x01\x02"


def test_no_matching_codec_pauses_the_consumer() -> None:
    producer, consumer, writer, _ = video_pair()
    consumer.configure(None, 0, 3)
    feed(producer, rtp_view(1, 0, vp8_payload(1, 1, key=True)), 0.0)
    assert consumer.pause_reason is PauseReason.NO_CODEC and writer.rtp == []


def test_negotiated_but_absent_extension_leaves_the_x_bit_clear() -> None:
    """Audio without an audio level (non-browser publishers): no block, so no X bit."""
    producer = Producer("alice:0", "alice", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS_IN)
    producer.audio_level_ext_id = 1
    writer = ListWriter()
    consumer = Consumer(producer, "bob", "2", 9000, 9001, writer)
    consumer.configure(OPUS_OUT, audio_level_id=2, abs_send_time_id=0)
    producer.consumers.append(consumer)
    feed(producer, rtp_view(10, 960, b"\xfc\x01", pt=111), 0.0)
    assert writer.rtp[0][0] == 0x80
    assert RtpView.parse(writer.rtp[0]).payload == b"\xfc\x01"


def test_audio_levels_are_averaged_for_speaker_detection() -> None:
    producer = Producer("alice:0", "alice", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS_IN)
    producer.audio_level_ext_id = 1
    assert producer.take_level() is None
    for seq, level in enumerate((0x80 | 30, 40, 50)):  # the V bit is not part of the level
        feed(producer, rtp_view(seq, 960 * seq, b"\xfc", pt=111, extensions={1: bytes([level])}), 0)
    assert producer.take_level() == 40.0
    assert producer.take_level() is None  # reset after reading


def test_big_rooms_forward_only_voices_with_contiguous_numbers() -> None:
    producer = Producer("alice:0", "alice", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS_IN)
    producer.audio_level_ext_id = 1
    producer.silence_gating = True
    writer = ListWriter()
    consumer = Consumer(producer, "bob", "2", 9000, 9001, writer)
    consumer.configure(OPUS_OUT, audio_level_id=2, abs_send_time_id=0)
    producer.consumers.append(consumer)
    levels = [30] * 5 + [127] * 150 + [0x80 | 90] + [40] * 3  # voice, 3 s silence, V bit, voice
    for seq, level in enumerate(levels):
        feed(producer, rtp_view(seq, 960 * seq, b"\xfc", pt=111, extensions={1: bytes([level])}),
             seq * 0.02)
    sent = [header(p)[2] for p in writer.rtp]
    # 5 voiced + 2 s of trailing silence (100 packets, held) + the V-bit one + 3 voiced.
    assert len(sent) == 5 + 100 + 1 + 3, len(sent)
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(sent, sent[1:], strict=False))
    assert consumer.drops[DropReason.SILENCE] == 150 - 100
    stamps = [header(p)[3] for p in writer.rtp]
    assert (stamps[105] - stamps[104]) & 0xFFFFFFFF > 960 * 40  # a timestamp jump, like DTX


def test_small_rooms_forward_silence_too() -> None:
    producer = Producer("alice:0", "alice", Kind.AUDIO, "0", lambda p, layer: None)
    producer.set_codec(OPUS_IN)
    producer.audio_level_ext_id = 1
    writer = ListWriter()
    consumer = Consumer(producer, "bob", "2", 9000, 9001, writer)
    consumer.configure(OPUS_OUT, audio_level_id=2, abs_send_time_id=0)
    producer.consumers.append(consumer)
    for seq in range(200):
        packet = rtp_view(seq, 960 * seq, b"\xfc", pt=111, extensions={1: b"\x7f"})
        feed(producer, packet, seq * 0.02)
    assert len(writer.rtp) == 200


def test_nack_after_a_picture_id_rewrite_resends_the_rewritten_packet() -> None:
    """The history keeps the publisher's payload (shared by every consumer) and the consumer's
    rewritten descriptor bytes; a retransmission is byte for byte what was sent."""
    first, old, writer, _ = video_pair(ssrc=5000)
    feed(first, rtp_view(100, 1000, vp8_payload(4000, 40, key=True)), 0.0)
    old.close()
    second = Producer("carol:1", "carol", Kind.VIDEO, "1", lambda p, layer: None)
    second.set_codec(VP8_IN)
    new = Consumer(second, "bob", "0", 5000, 5001, writer, continue_from=old)
    new.configure(VP8_OUT, 0, 3)
    second.consumers.append(new)
    sent_payloads = []
    for i in range(3):  # carol's picture ids are renumbered to follow alice's 4000
        payload = vp8_payload(9 + i, 3 + i, key=(i == 0))
        sent_payloads.append(payload)
        feed(second, rtp_view(7 + i, 777777 + 3000 * i, payload), 1.0 + 0.033 * i)
    sent = writer.rtp[-1]
    assert Vp8Descriptor.parse(payload_of(sent)).picture_id == 4003
    assert payload_of(sent) != sent_payloads[-1]  # rewritten
    assert new.on_nack([header(sent)[2]]) == 1
    body = payload_of(writer.rtp[-1])
    assert body[2:] == payload_of(sent)


def test_consumer_outside_last_n_holds_no_history() -> None:
    producer, consumer, writer, _ = video_pair()
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)
    for i in range(5):
        feed(producer, rtp_view(300 + i, 3000 * i, vp8_payload(30 + i, 3, key=(i == 0))), 0.01 * i)
    assert writer.rtp == [] and not consumer.history_allocated
    consumer.set_target(0)  # back in last-N: the ring comes with the first packet sent
    feed(producer, rtp_view(305, 15000, vp8_payload(35, 3, key=True)), 0.1)
    assert len(writer.rtp) == 1 and consumer.history_allocated
    consumer.set_target(None, PauseReason.NOT_IN_LAST_N)  # out again: the ring is released
    assert not consumer.history_allocated
    assert consumer.on_nack([header(writer.rtp[0])[2]]) == 0


def test_retransmission_is_rebuilt_with_a_fresh_transport_cc_number() -> None:
    """The history keeps no header: a retransmission gets the original sequence number,
    timestamp and marker, a send time of now and the next transport-wide number."""
    from sfu.wire.twcc import TransportSequencer

    producer, consumer, writer, _ = video_pair(ssrc=5000)
    sequencer = TransportSequencer(first_seq=100)
    consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=3, twcc=sequencer, twcc_id=5)
    for i in range(3):
        feed(producer, rtp_view(400 + i, 3000 * i, vp8_payload(40 + i, 4, key=(i == 0)),
                                marker=i & 1), 0.01 * i)
    original = RtpView.parse(writer.rtp[1])
    assert [RtpView.parse(p).extensions[5] for p in writer.rtp] == [
        b"\x00\x64", b"\x00\x65", b"\x00\x66"]
    assert consumer.on_nack([original.sequence_number], now=2.0) == 1
    rtx = RtpView.parse(writer.rtp[-1])
    assert (rtx.payload_type, rtx.ssrc) == (101, 5001)
    assert (rtx.timestamp, rtx.marker) == (original.timestamp, original.marker)
    assert original.marker == 1
    assert rtx.extensions[5] == b"\x00\x67"  # a new packet for transport-cc
    assert rtx.extensions[3] == (2 << 18).to_bytes(3, "big")  # abs-send-time: now
    assert struct.unpack_from("!H", rtx.payload)[0] == original.sequence_number
    assert rtx.payload[2:] == original.payload
