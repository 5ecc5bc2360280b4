"""Depacketizers on real aiortc packetization: order, loss, reordering, wraparound, FU-A."""

from __future__ import annotations

import random

import pytest

from recorder.depacketize import (
    ANNEX_B_START,
    FrameDropReason,
    H264Depacketizer,
    OpusDepacketizer,
    Vp8Depacketizer,
    depacketizer_for,
)
from tests.unit.recorder.media import (
    h264_payloads,
    opus_frames,
    opus_stream,
    rtp,
    vp8_frames,
    vp8_stream,
)


def feed(dep, packets, t0=0.0, step=0.001):
    out = []
    for i, packet in enumerate(packets):
        out += dep.push(packet, t0 + i * step)
    return out


def test_vp8_in_order_gives_every_frame_byte_exact() -> None:
    frames = vp8_frames()
    dep = Vp8Depacketizer()
    out = feed(dep, [p for packets in vp8_stream(frames) for p in packets])
    assert [f.data for f in out] == [f.data for f in frames]
    assert [f.keyframe for f in out] == [f.keyframe for f in frames]
    assert out[0].size == (320, 240)
    assert [f.timestamp for f in out] == [i * 3000 for i in range(len(frames))]
    assert not dep.drops


@pytest.mark.parametrize("seq0, ts0", [(65530, 0), (0, 0xFFFFFFFF - 3000 * 5), (65000, 2**32 - 1)])
def test_vp8_sequence_and_timestamp_wrap(seq0: int, ts0: int) -> None:
    frames = vp8_frames()
    dep = Vp8Depacketizer()
    out = feed(dep, [p for packets in vp8_stream(frames, seq0=seq0, ts0=ts0) for p in packets])
    assert len(out) == len(frames)
    assert [f.timestamp for f in out] == [(ts0 + i * 3000) & 0xFFFFFFFF for i in range(60)]
    assert not dep.drops


def test_vp8_reordering_within_a_frame_and_across_frames_is_repaired() -> None:
    frames = vp8_frames()
    flat = [p for packets in vp8_stream(frames, seq0=65500) for p in packets]
    rng = random.Random(7)
    shuffled = list(flat)
    for i in range(0, len(shuffled) - 4, 4):  # swap neighbours within windows of 4
        window = shuffled[i:i + 4]
        rng.shuffle(window)
        shuffled[i:i + 4] = window
    dep = Vp8Depacketizer()
    out = feed(dep, shuffled)
    assert [f.data for f in out] == [f.data for f in frames]
    assert not dep.drops


def test_vp8_loss_drops_the_frame_and_waits_for_the_next_keyframe() -> None:
    frames = vp8_frames()
    stream = vp8_stream(frames)
    lost_frame = 5
    packets = [p for i, pk in enumerate(stream) for j, p in enumerate(pk)
               if not (i == lost_frame and j == 0)]
    dep = Vp8Depacketizer(max_wait_s=0.05)
    out = feed(dep, packets, step=0.034)  # real time: the hole expires within two frames
    out += dep.poll(100.0)
    timestamps = [f.timestamp // 3000 for f in out]
    # frames 0-4, then nothing until the next key frame (30), then the rest
    assert timestamps == [*range(5), *range(30, 60)]
    assert dep.drops[FrameDropReason.MISSING_PACKETS] == 1
    assert dep.drops[FrameDropReason.WAITING_FOR_KEYFRAME] == 30 - 6
    assert out[5].keyframe


def test_vp8_loss_of_a_middle_packet_and_its_late_arrival_after_giving_up() -> None:
    frames = vp8_frames()
    stream = vp8_stream(frames)
    index = next(i for i in range(1, 29) if len(stream[i]) >= 2)
    victim = stream[index][1]
    packets = [p for pk in stream for p in pk if p is not victim]
    dep = Vp8Depacketizer(max_wait_s=0.05)
    out = feed(dep, packets[:40], step=0.034)
    out += dep.push(victim, 10.0)  # arrives long after the frame was given up
    assert dep.drops[FrameDropReason.LATE] == 1
    assert dep.drops[FrameDropReason.MISSING_PACKETS] == 1
    assert index not in [f.timestamp // 3000 for f in out]
    assert [f.timestamp // 3000 for f in out] == list(range(index))


def test_vp8_stream_starting_mid_frame_waits_for_a_keyframe() -> None:
    stream = vp8_stream(vp8_frames())
    packets = [p for pk in stream[0:] for p in pk][1:]  # the key frame's first packet is missing
    dep = Vp8Depacketizer(max_wait_s=0.05)
    out = feed(dep, packets, step=0.034) + dep.poll(100.0)
    assert out[0].keyframe and out[0].timestamp == 30 * 3000
    assert sum(dep.drops.values()) >= 29


def test_stream_starting_on_a_frame_tail_drops_only_that_frame() -> None:
    """Everything after the tail is consecutive and arrives at once: only the partial frame
    is lost, and the first key frame after it (frame 30) is recorded."""
    stream = vp8_stream(vp8_frames())
    multi = next(i for i in range(1, 29) if len(stream[i]) >= 2)
    packets = [p for pk in stream[multi:] for p in pk][1:]  # starts inside frame `multi`
    dep = Vp8Depacketizer(max_wait_s=0.05)
    out = [f for p in packets for f in dep.push(p, 0.0)] + dep.poll(1.0)
    assert [f.timestamp // 3000 for f in out] == list(range(30, 60))
    assert dep.drops[FrameDropReason.MISSING_PACKETS] == 1
    assert dep.drops[FrameDropReason.WAITING_FOR_KEYFRAME] == 29 - multi


def test_vp8_ssrc_change_resets_and_waits_for_keyframe() -> None:
    frames = vp8_frames()
    dep = Vp8Depacketizer()
    first = feed(dep, [p for pk in vp8_stream(frames[:10]) for p in pk])
    assert len(first) == 10
    # another layer: other SSRC, sequence and timestamp spaces; starts on a delta frame
    layer = vp8_stream(frames, seq0=30000, ts0=123456, ssrc=999)
    out = feed(dep, [p for pk in layer[20:] for p in pk], t0=1.0)
    assert out[0].keyframe and out[0].ssrc == 999
    assert out[0].timestamp == 123456 + 30 * 3000
    assert dep.drops[FrameDropReason.WAITING_FOR_KEYFRAME] == 10


def test_opus_one_packet_one_frame_gap_stays_gap_and_duplicates_count_late() -> None:
    frames = opus_frames()
    packets = opus_stream(frames, seq0=65530, ts0=2**32 - 960 * 3)
    dep = OpusDepacketizer(max_wait_s=0.05)
    kept = [p for i, p in enumerate(packets) if i not in (10, 11)]
    kept.insert(20, kept[19])  # a duplicate
    out = feed(dep, kept, step=0.02) + dep.poll(100.0)
    assert len(out) == len(frames) - 2
    assert [f.data for f in out] == [f for i, f in enumerate(frames) if i not in (10, 11)]
    assert dep.drops[FrameDropReason.MISSING_PACKETS] == 1  # one hole (two packets)
    assert dep.drops[FrameDropReason.LATE] == 1


def test_h264_stap_a_and_fu_a_become_annex_b_access_units() -> None:
    dep = H264Depacketizer()
    seq = 65500
    out = []
    for index, (payloads, _key) in enumerate(h264_payloads()):
        for i, payload in enumerate(payloads):
            out += dep.push(rtp(payload, seq, index * 3000, marker=i == len(payloads) - 1), 0.0)
            seq += 1
    assert len(out) == 20
    assert [f.keyframe for f in out] == [i % 10 == 0 for i in range(20)]
    assert all(f.data.startswith(ANNEX_B_START) for f in out)
    key = out[0]
    assert key.parameter_sets.startswith(ANNEX_B_START + bytes([dep.sps[0]]))
    nal_types = [key.data[i + 4] & 0x1F for i in range(len(key.data) - 4)
                 if key.data[i:i + 4] == ANNEX_B_START]
    assert nal_types[:2] == [7, 8] and 5 in nal_types
    assert not dep.drops


def test_h264_fu_a_fragment_lost_drops_frame_until_idr() -> None:
    dep = H264Depacketizer(max_wait_s=0.05)
    seq = 0
    out = []
    t = 0.0
    for index, (payloads, _key) in enumerate(h264_payloads()):
        for i, payload in enumerate(payloads):
            t += 0.002
            if not (index == 2 and i == 3):
                out += dep.push(rtp(payload, seq, index * 3000,
                                    marker=i == len(payloads) - 1), t)
            seq += 1
    out += dep.poll(t + 1)
    assert [f.timestamp // 3000 for f in out] == [0, 1, *range(10, 20)]
    assert dep.drops[FrameDropReason.MISSING_PACKETS] == 1


@pytest.mark.parametrize("payload", [
    b"\x19\x00",  # STAP-B: unsupported
    b"\x18\x00\x09\x65",  # STAP-A unit overruns
    b"\x1c\x05",  # FU-A truncated
    b"\x1c\x05\x00",  # FU-A continuation without start
])
def test_h264_malformed_is_dropped_with_a_reason(payload: bytes) -> None:
    dep = H264Depacketizer()
    key, _ = h264_payloads()[0]
    primed = feed(dep, [rtp(p, i, 0, marker=i == len(key) - 1) for i, p in enumerate(key)])
    assert len(primed) == 1
    assert dep.push(rtp(payload, len(key), 3000, marker=True), 0.1) == []
    assert dep.drops[FrameDropReason.MALFORMED] == 1
    assert dep.waiting_for_keyframe


def test_vp8_malformed_descriptor_is_dropped_with_a_reason() -> None:
    dep = Vp8Depacketizer()
    key = vp8_stream(vp8_frames()[:1])[0]
    assert len(feed(dep, key)) == 1
    # X set, extension byte missing
    assert dep.push(rtp(b"\x90", len(key), 3000, marker=True), 0.1) == []
    assert dep.drops[FrameDropReason.MALFORMED] == 1


def test_buffer_is_bounded_without_time_passing() -> None:
    dep = Vp8Depacketizer(max_packets=50)
    stream = vp8_stream(vp8_frames())
    packets = [p for pk in stream for p in pk][1:]  # hole at the start, never filled
    for packet in packets:
        dep.push(packet, 0.0)  # no time passes: only the size bound can free the hole
        assert len(dep._buffer) <= 51


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="no depacketizer"):
        depacketizer_for("av1")


@pytest.mark.parametrize("seed", range(12))
def test_vp8_random_loss_reorder_duplicates_only_emit_true_frames(seed: int) -> None:
    """Whatever the network does, every emitted frame is byte-exact one that was sent, in
    order, and decodable (the first is a key frame); nothing raises."""
    rng = random.Random(seed)
    frames = vp8_frames()
    by_ts = {i * 3000: f.data for i, f in enumerate(frames)}
    flat = [p for pk in vp8_stream(frames, seq0=rng.randrange(65536)) for p in pk]
    damaged = []
    for packet in flat:
        if rng.random() < 0.05:
            continue  # lost
        damaged.append(packet)
        if rng.random() < 0.03:
            damaged.append(packet)  # duplicated
    for _ in range(len(damaged) // 5):
        i = rng.randrange(len(damaged) - 3)
        damaged[i], damaged[i + 2] = damaged[i + 2], damaged[i]
    dep = Vp8Depacketizer(max_wait_s=0.03)
    out = feed(dep, damaged, step=0.01) + dep.poll(100.0)
    assert all(f.data == by_ts[f.timestamp] for f in out)
    stamps = [f.timestamp for f in out]
    assert stamps == sorted(set(stamps))
    if out:
        assert out[0].keyframe


def test_garbage_payloads_never_raise() -> None:
    rng = random.Random(11)
    for cls in (Vp8Depacketizer, H264Depacketizer, OpusDepacketizer):
        dep = cls(max_wait_s=0.0)
        for seq in range(2000):
            payload = rng.randbytes(rng.randrange(0, 40))
            dep.push(rtp(payload, seq, seq // 3 * 3000, marker=rng.random() < 0.3), seq * 0.01)
        assert sum(dep.drops.values()) > 0
