"""TrackWriter on real encoded VP8/Opus/H.264: mux without encoding, demux and decode back;
a writer that cannot keep up or cannot write fails the track without blocking the caller."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest

from recorder.depacketize import H264Depacketizer
from recorder.track_writer import MuxPacket, TrackWriter, WriterError, WriterState, opus_head
from tests.unit.recorder.media import h264_payloads, opus_frames, rtp, vp8_frames

DEADLINE_S = 20.0


def demux(path: Path) -> tuple[av.stream.Stream, list[av.Packet]]:
    container = av.open(str(path))
    stream = container.streams[0]
    packets = [p for p in container.demux(stream) if p.pts is not None]
    return stream, packets


def decode_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams[0]))


def write_vp8(path: Path, step: int = 3000, skip: range = range(0)) -> TrackWriter:
    writer = TrackWriter(path, "vp8")
    for i, frame in enumerate(vp8_frames()):
        if i in skip:
            continue
        writer.submit(MuxPacket(frame.data, i * step, frame.keyframe,
                                (320, 240) if frame.keyframe else None))
    return writer


def test_vp8_frames_are_muxed_as_is_with_their_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "v.webm"
    stats = write_vp8(path).close(DEADLINE_S)
    assert stats.error is None and stats.frames == 60
    assert stats.duration_s == pytest.approx(59 / 30)
    stream, packets = demux(path)
    assert stream.codec_context.name == "vp8"
    assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert len(packets) == 60
    assert [bytes(p) for p in packets] == [f.data for f in vp8_frames()]
    assert [round(float(p.pts * p.time_base), 3) for p in packets] == [
        round(i / 30, 3) for i in range(60)]
    assert [p.is_keyframe for p in packets] == [f.keyframe for f in vp8_frames()]
    assert decode_count(path) == 60


def test_a_gap_stays_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "gap.webm"
    # frames 10-29 never arrive (the depacketizer dropped them): 1 s of nothing, not stretched
    write_vp8(path, skip=range(10, 30)).close(DEADLINE_S)
    _stream, packets = demux(path)
    times = [float(p.pts * p.time_base) for p in packets]
    assert len(times) == 40
    assert times[10] - times[9] == pytest.approx(21 / 30, abs=0.002)


def test_opus_needs_opushead_and_keeps_20ms_steps(tmp_path: Path) -> None:
    path = tmp_path / "a.webm"
    writer = TrackWriter(path, "opus")
    frames = opus_frames()
    for i, data in enumerate(frames):
        assert writer.submit(MuxPacket(data, i * 960, True))
    stats = writer.close(DEADLINE_S)
    assert stats.frames == len(frames)
    stream, packets = demux(path)
    assert stream.codec_context.name == "opus"
    assert bytes(stream.codec_context.extradata) == opus_head()
    assert len(packets) == len(frames)
    assert float(packets[-1].pts * packets[-1].time_base) == pytest.approx(
        (len(frames) - 1) * 0.02, abs=0.001)
    assert decode_count(path) == len(frames)


def test_h264_from_rtp_to_a_decodable_mkv(tmp_path: Path) -> None:
    dep = H264Depacketizer()
    seq = 0
    frames = []
    for index, (payloads, _key) in enumerate(h264_payloads()):
        for i, payload in enumerate(payloads):
            frames += dep.push(rtp(payload, seq, index * 3000, marker=i == len(payloads) - 1),
                               0.0)
            seq += 1
    path = tmp_path / "h.mkv"
    writer = TrackWriter(path, "h264")
    for frame in frames:
        writer.submit(MuxPacket(frame.data, frame.timestamp, frame.keyframe, frame.size,
                                frame.parameter_sets))
    assert writer.close(DEADLINE_S).frames == 20
    stream, packets = demux(path)
    assert stream.codec_context.name == "h264"
    assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert len(packets) == 20 and packets[10].is_keyframe
    with av.open(str(path)) as container:
        decoded = list(container.decode(container.streams[0]))
    assert len(decoded) == 20
    assert (decoded[0].width, decoded[0].height) == (320, 240)


def test_full_queue_fails_the_track_and_never_blocks(tmp_path: Path) -> None:
    """The "disk" is a FIFO nobody reads: the writer thread blocks opening it, for real, and
    this (the caller's) thread runs on: the GIL is not held by the stuck writer."""
    fifo = tmp_path / "stuck.webm"
    os.mkfifo(fifo)
    errors: list[WriterError] = []
    seen = threading.Event()

    def on_error(error: WriterError, detail: str) -> None:
        errors.append(error)
        seen.set()

    writer = TrackWriter(fifo, "opus", queue_size=8, on_error=on_error)
    frames = opus_frames()
    assert writer.submit(MuxPacket(frames[0], 0, True))
    for _ in range(2000):  # the thread takes it and blocks opening the FIFO
        if writer.queued == 0:
            break
        writer.closed.wait(0.005)
    assert writer.queued == 0
    results = [writer.submit(MuxPacket(data, i * 960, True))
               for i, data in enumerate(frames[1:30], start=1)]
    assert seen.wait(DEADLINE_S)
    assert errors == [WriterError.QUEUE_FULL]
    assert writer.state is WriterState.FAILED
    assert results.count(True) == 8 and results.count(False) == 29 - 8
    assert writer.stats.dropped == results.count(False)
    assert writer.queued <= 1  # the frames that will never be written are let go (the close mark)
    # unblock the thread: a reader appears and drains the pipe; the thread finishes the file
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        drained = b""
        for _ in range(2000):
            finished = writer.closed.is_set()
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                drained += chunk
            elif finished:
                break
            else:
                writer.closed.wait(0.01)
        assert writer.closed.is_set()
        assert drained.startswith(b"\x1a\x45\xdf\xa3")  # what got written is a Matroska file
    finally:
        os.close(reader)
    writer.close(DEADLINE_S)
    assert writer.stats.error is WriterError.QUEUE_FULL


def test_disk_full_fails_the_track_with_io_error(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    done = threading.Event()
    writer = TrackWriter(Path("/dev/full"), "opus", on_error=lambda e, d: done.set())
    for i, data in enumerate(opus_frames()):
        if not writer.submit(MuxPacket(data, i * 960, True)):
            break
    assert done.wait(DEADLINE_S)
    assert writer.stats.error is WriterError.IO_ERROR
    assert writer.state is WriterState.FAILED
    assert not writer.submit(MuxPacket(b"x", 10**6, True))


def test_unwritable_folder_is_an_io_error(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "missing" / "a.webm", "opus")
    writer.submit(MuxPacket(opus_frames()[0], 0, True))
    stats = writer.close(DEADLINE_S)
    assert stats.error is WriterError.IO_ERROR


def test_video_must_start_with_a_sized_keyframe(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "v.webm", "vp8")
    delta = vp8_frames()[1]
    writer.submit(MuxPacket(delta.data, 0, False))
    assert writer.close(DEADLINE_S).error is WriterError.BAD_FIRST_PACKET
    assert not (tmp_path / "v.webm").exists()


def test_per_packet_time_base_survives_the_muxer_rewrite(tmp_path: Path) -> None:
    """The Matroska time-base trap: 90 kHz stamps read as ms would make 2 s into ~30 min."""
    path = tmp_path / "v.webm"
    write_vp8(path).close(DEADLINE_S)
    stream, packets = demux(path)
    assert stream.time_base == Fraction(1, 1000)
    assert float(packets[-1].pts * packets[-1].time_base) < 2.5
