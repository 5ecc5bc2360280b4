"""One recorded track -> one Matroska/WebM file, muxed by PyAV on a thread of its own.

No decoder and no encoder: the stream is made ``add_stream_from_template`` so that PyAV does not
open an encoder for it when the header is written (``add_stream`` would: ~8 MiB and CPU per VP8
file, see ``_template``); each encoded frame becomes an ``av.Packet`` that is muxed as is
(docs/architecture.md#the-recorder). What the measurements there asked for:
- Opus needs CodecPrivate: an ``OpusHead`` (RFC 7845 5.1) as the stream's extradata.
- H.264 needs CodecPrivate from SPS/PPS: the Annex-B parameter sets go in as extradata and
  FFmpeg's Matroska muxer turns them (and every Annex-B packet) into the avcC form.
- The muxer rewrites the stream time base to 1/1000 at the header, so every packet carries its
  own time base (the codec clock) and the muxer rescales.
- Crash safety: ``live=1`` (clusters of unknown size, no seeking back), ``cluster_time_limit=200``
  and ``flush_packets=1``. The muxer keeps the open cluster in memory, so a ``kill -9`` loses
  about one cluster: measured (tests/unit/recorder/test_kill9.py, killed at 3.0 s of media,
  3 runs each) video/audio lost 0.03-0.5/0.52 s with a 500 ms limit, 0.03-0.1/0.22 s with 200,
  0.1/0.12 s with 100. 200 ms keeps the loss far under the 2 s goal for ~5 cluster headers a
  second (a few dozen bytes).

The media path must never wait for the disk: ``submit`` only does ``put_nowait`` on a bounded
queue. A full queue or an I/O error stops the track for good (state FAILED, an ``WriterError``,
the callback, counters); the caller carries on without it.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av

MediaStream = av.VideoStream | av.AudioStream
"""The one stream of a track's file."""

__all__ = [
    "CODECS",
    "CRASH_SAFE_OPTIONS",
    "MuxPacket",
    "TrackWriter",
    "WriterError",
    "WriterState",
    "WriterStats",
    "file_suffix",
    "opus_head",
]

logger = logging.getLogger(__name__)

CRASH_SAFE_OPTIONS: dict[str, str] = {
    "live": "1",
    "cluster_time_limit": "200",
    "flush_packets": "1",
}
BATCH_S = 0.1
"""The writer thread takes what is queued every 100 ms instead of being woken for each frame:
20 writer threads woken 800 times a second (a 10-participant room) cost 7.3 % of a core, 1.9 %
batched (GIL hand-overs and wake-ups: muxing itself is 5 us a frame). 100 ms more in memory
per track (~13 KB of video) and at most 100 ms more lost in a crash (the 2 s budget)."""
QUEUE_SIZE = 512
"""Frames waiting for the disk at most: ~8 s of 30 fps video + audio. Beyond: the disk is too
slow, and the track stops rather than holding memory or the event loop."""

CODECS: dict[str, tuple[str, str, int]] = {
    # codec -> (PyAV codec name for add_stream, kind, clock rate)
    "vp8": ("vp8", "video", 90000),
    "h264": ("h264", "video", 90000),
    "opus": ("libopus", "audio", 48000),
}


def file_suffix(codec: str) -> str:
    """WebM takes VP8 and Opus; H.264 needs plain Matroska."""
    return ".mkv" if codec == "h264" else ".webm"


def opus_head(channels: int = 2, sample_rate: int = 48000, pre_skip: int = 312) -> bytes:
    """RFC 7845 5.1 identification header, mapping family 0.

    Pre-skip 312 (libopus's delay at 48 kHz): FFmpeg's Matroska muxer writes this value into
    the stored header whatever we pass (measured), so we say the same thing it will.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


@dataclass(frozen=True, slots=True)
class MuxPacket:
    data: bytes  # one encoded frame
    pts: int  # in the codec clock (90 kHz video, 48 kHz Opus), from 0 at the track start
    keyframe: bool
    size: tuple[int, int] | None = None  # video: (width, height), needed on the first packet
    parameter_sets: bytes = b""  # H.264: Annex-B SPS + PPS, needed on the first packet


class WriterState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"
    FAILED = "failed"


class WriterError(enum.Enum):
    QUEUE_FULL = "queue_full"  # the disk did not keep up
    IO_ERROR = "io_error"  # open/write failed (disk full, permissions...)
    BAD_FIRST_PACKET = "bad_first_packet"  # video must start with a sized key frame
    MUX_ERROR = "mux_error"  # anything else the muxer raised


@dataclass(slots=True)
class WriterStats:
    frames: int = 0  # muxed
    bytes_muxed: int = 0
    first_pts: int | None = None
    last_pts: int | None = None
    submitted: int = 0
    dropped: int = 0  # refused by submit (full queue, or after a failure)
    error: WriterError | None = None
    error_detail: str = ""
    clock_rate: int = 0

    @property
    def duration_s(self) -> float:
        if self.first_pts is None or self.last_pts is None:
            return 0.0
        return (self.last_pts - self.first_pts) / self.clock_rate


_CLOSE = object()


class TrackWriter:
    """Writes MuxPackets of one codec into ``path`` from a daemon thread.

    ``on_error(error, detail)`` is called once, from the thread that found the failure (the
    caller's for QUEUE_FULL, the writer's for I/O): hand it to the event loop with
    ``loop.call_soon_threadsafe`` if it must touch asyncio state.
    """

    def __init__(
        self,
        path: Path,
        codec: str,
        *,
        queue_size: int = QUEUE_SIZE,
        options: dict[str, str] | None = None,
        on_error: Callable[[WriterError, str], None] | None = None,
        on_open: Callable[[], None] | None = None,
        on_finished: Callable[[WriterStats], None] | None = None,
        channels: int = 2,
        frame_rate: int = 30,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"cannot record codec {codec!r}; known: {sorted(CODECS)}")
        self.path = path
        self.codec = codec
        self.av_name, self.kind, self.clock_rate = CODECS[codec]
        self.time_base = Fraction(1, self.clock_rate)
        self.options = dict(CRASH_SAFE_OPTIONS if options is None else options)
        self.channels = channels
        self.frame_rate = frame_rate
        self.on_error = on_error
        self.on_open = on_open
        self.on_finished = on_finished
        self.opened = False  # the file exists (the first packet came)
        self._file: BinaryIO | None = None
        self.state = WriterState.RUNNING
        self.stats = WriterStats(clock_rate=self.clock_rate)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # state transitions and the single on_error call
        self.closed = threading.Event()  # set when the thread has finished the file
        self._kick = threading.Event()  # close or failure: stop waiting for the next batch
        self._thread = threading.Thread(target=self._run, name=f"recorder:{path.name}",
                                        daemon=True)
        self._thread.start()

    # -- caller side (event loop): never blocks --------------------------------------------------

    def submit(self, packet: MuxPacket) -> bool:
        """Queue one frame; False when refused (full queue -> the track fails; or already over)."""
        if self.state is not WriterState.RUNNING:
            self.stats.dropped += 1
            return False
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self.stats.dropped += 1
            self._fail(WriterError.QUEUE_FULL, f"{self._queue.maxsize} frames waiting for disk")
            return False
        self.stats.submitted += 1
        return True

    def close(self, timeout_s: float = 10.0) -> WriterStats:
        """Finish the file (what is queued is still written); waits for the thread, bounded."""
        with self._lock:
            running = self.state is WriterState.RUNNING
            if running:
                self.state = WriterState.CLOSED
        if running:
            # Blocks only while the queue is full; bounded by the timeout.
            try:
                self._queue.put(_CLOSE, timeout=timeout_s)
            except queue.Full:
                self._fail(WriterError.QUEUE_FULL, "queue still full at close")
            self._kick.set()
        self._thread.join(timeout_s)
        return self.stats

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _fail(self, error: WriterError, detail: str) -> None:
        with self._lock:
            if self.stats.error is not None:
                return
            self.state = WriterState.FAILED
            self.stats.error = error
            self.stats.error_detail = detail
        logger.error("recording of %s stopped: %s (%s)", self.path, error.value, detail)
        # The queued frames will never be written: let them go now. A thread stuck on a stalled
        # disk would otherwise hold a full queue (~2 MiB of video) for as long as the disk
        # stalls (bench recording: RSS stayed up after the failure).
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        # Wake the thread so it closes the file with what it has.
        try:
            self._queue.put_nowait(_CLOSE)
        except queue.Full:
            pass  # the thread sees FAILED after its next packet
        self._kick.set()
        if self.on_error is not None:
            self.on_error(error, detail)

    # -- writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        container: av.container.OutputContainer | None = None
        stream: MediaStream | None = None
        try:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    # Nothing queued: look again in BATCH_S (or at once when closing or
                    # failing), never woken per frame: see BATCH_S.
                    self._kick.wait(BATCH_S)
                    continue
                if item is _CLOSE or self.stats.error is not None:
                    break
                assert isinstance(item, MuxPacket)
                if container is None or stream is None:  # set together
                    opened = self._open(item)
                    if opened is None:
                        break
                    container, stream = opened
                    self.opened = True
                    if self.on_open is not None:
                        self.on_open()
                self._mux(container, stream, item)
        except (OSError, av.FFmpegError) as exc:
            self._fail(WriterError.IO_ERROR, str(exc))
        except Exception as exc:  # a muxer surprise must still end in a failed, closed track
            logger.exception("writer of %s crashed", self.path)
            self._fail(WriterError.MUX_ERROR, repr(exc))
        finally:
            if container is not None:
                try:
                    container.close()
                except (OSError, av.FFmpegError) as exc:
                    self._fail(WriterError.IO_ERROR, f"close: {exc}")
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self._fail(WriterError.IO_ERROR, f"close: {exc}")
            if self.on_finished is not None:
                try:
                    self.on_finished(self.stats)
                except Exception:  # a failing hook must not hide the file's own outcome
                    logger.exception("on_finished hook of %s failed", self.path)
            self.closed.set()

    def _open(self, first: MuxPacket) -> tuple[av.container.OutputContainer, MediaStream] | None:
        if self.kind == "video" and (not first.keyframe or first.size is None):
            self._fail(WriterError.BAD_FIRST_PACKET, "video must start with a sized key frame")
            return None
        if self.codec == "h264" and not first.parameter_sets:
            self._fail(WriterError.BAD_FIRST_PACKET, "H.264 must start with SPS/PPS")
            return None
        fmt = "webm" if file_suffix(self.codec) == ".webm" else "matroska"
        # We open the file, not FFmpeg: given a path, PyAV opens it inside the first mux() with
        # the GIL held (measured: a writer thread stuck opening a FIFO froze every other thread
        # of the process). Python's own open() and write() release the GIL, so a stalled disk
        # stalls this thread only. (Writes inside mux() to a full pipe did not freeze others.)
        self._file = open(self.path, "wb", buffering=0)  # closed by _run
        try:
            container = av.open(self._file, "w", format=fmt, options=self.options)
        except BaseException:
            self._file.close()
            raise
        try:
            stream = container.add_stream_from_template(self._template(fmt))
            if isinstance(stream, av.VideoStream):  # self.kind == "video"
                assert first.size is not None
                stream.width, stream.height = first.size
                if self.codec == "h264":
                    stream.codec_context.extradata = first.parameter_sets
            else:
                stream.codec_context.extradata = opus_head(self.channels, self.clock_rate)
        except BaseException:
            container.close()
            raise
        return container, stream

    def _template(self, fmt: str) -> MediaStream:
        """The stream's parameters, from a stream of a container that is never started.

        Why: PyAV opens the codec context of every stream made by ``add_stream`` when the header
        is written, i.e. a libvpx (or libopus, x264) *encoder* per file, which is never used:
        measured 8 MiB of RSS per 640x480 VP8 file (20 files: 166 MiB), kept by the allocator
        after the files closed (a room recorded three times grew the server from 150 to 586 MiB;
        bench recording). A stream made ``add_stream_from_template`` is marked initialised, and
        no encoder is opened (20 files: 0.5 MiB).
        """
        holder = av.open(io.BytesIO(), "w", format=fmt)
        try:
            if self.kind == "video":
                video = holder.add_stream(self.av_name, rate=self.frame_rate)
                assert isinstance(video, av.VideoStream)  # a video codec name gives one
                return video
            audio = holder.add_stream(self.av_name, rate=self.clock_rate)
            assert isinstance(audio, av.AudioStream)
            audio.layout = "stereo" if self.channels == 2 else "mono"
            return audio
        finally:
            holder.close()  # never started: nothing is written

    def _mux(self, container: av.container.OutputContainer, stream: MediaStream,
             item: MuxPacket) -> None:
        packet = av.Packet(item.data)
        packet.stream = stream
        packet.time_base = self.time_base
        packet.pts = packet.dts = item.pts
        packet.is_keyframe = item.keyframe
        container.mux(packet)
        stats = self.stats
        stats.frames += 1
        stats.bytes_muxed += len(item.data)
        if stats.first_pts is None:
            stats.first_pts = item.pts
        stats.last_pts = item.pts
