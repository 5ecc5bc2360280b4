"""The thin shell of one recording: a manifest and, per track, a TrackRecorder + TrackWriter.

What the media plane calls (all non-blocking, from the event loop):
``add_track``, ``RecordedTrack.on_rtp`` / ``on_sender_report`` / ``on_layer_change``, and every
~100 ms ``poll(now_s)`` (returns the tracks that want a key frame: send them a PLI). Disk work
runs on the writer threads: a track's ``track`` manifest entry is written when its file is
created, its ``file`` entry (size, sha256, duration) when the file is finished.

``close()`` blocks until the files are finished (bounded): call it with ``asyncio.to_thread``.
A writer failure (disk full or too slow) stops the whole recording: ``on_error`` is called
(from the thread that saw it), every track stops taking packets, and ``close()`` then marks the
recording ``failed``. The meeting never waits for any of it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from recorder.clock import SenderClock
from recorder.manifest import MANIFEST_NAME, ManifestWriter, sha256_file, track_path
from recorder.track import TrackRecorder
from recorder.track_writer import (
    QUEUE_SIZE,
    TrackWriter,
    WriterError,
    WriterState,
    WriterStats,
    file_suffix,
)
from sfu.wire.rtp_packet import RtpView

__all__ = ["RecordedTrack", "Recording", "new_recording_id"]

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[str, WriterError, str], None]
"""on_error(track_id, error, detail)."""


def new_recording_id(now_s: float) -> str:
    """Sortable by start time, unique: 20261204T191342Z-1a2b3c4d."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s)) + "-" + secrets.token_hex(4)


class RecordedTrack:
    """One published track being recorded (the best layer of a video, or an audio track)."""

    def __init__(self, recording: Recording, track_id: str, participant: str, codec: str,
                 sender: SenderClock) -> None:
        self.recording = recording
        self.track_id = track_id
        self.participant = participant
        self.core = TrackRecorder(codec, sender)
        self.codec = self.core.codec
        self.kind = self.core.kind
        self.path = track_path(recording.id, f"{track_id}{file_suffix(self.codec)}")
        self.writer = TrackWriter(
            recording.data_dir / self.path, self.codec,
            queue_size=recording.queue_size, options=recording.options,
            on_error=self._on_error, on_open=self._on_open, on_finished=self._on_finished,
        )

    @property
    def active(self) -> bool:
        recording = self.recording
        return (self.writer.state is WriterState.RUNNING and not recording.failed
                and not recording.closed)

    def on_rtp(self, packet: RtpView, arrival_s: float) -> None:
        if self.active:
            self._submit(self.core.on_rtp(packet, arrival_s))

    def on_sender_report(self, ssrc: int, ntp_s: float, rtp_timestamp: int,
                         arrival_s: float) -> None:
        self.core.on_sender_report(ssrc, ntp_s, rtp_timestamp, arrival_s)

    def on_layer_change(self) -> None:
        self.core.on_layer_change()

    def poll(self, now_s: float) -> bool:
        """Flush timed-out holes; True when a key frame should be requested now."""
        if not self.active:
            return False
        self._submit(self.core.poll(now_s))
        return self.core.keyframe_request(now_s)

    def _submit(self, packets: list) -> None:
        for packet in packets:
            if not self.writer.submit(packet):
                return

    # -- writer thread hooks --------------------------------------------------------------------

    def _on_error(self, error: WriterError, detail: str) -> None:
        self.recording._track_failed(self.track_id, error, detail)

    def _on_open(self) -> None:
        start = self.core.start_s
        assert start is not None  # the first packet exists, so its timeline has started
        self.recording.manifest.track(self.track_id, self.participant, self.kind, self.codec,
                                      self.path, round(start, 6))

    def _on_finished(self, stats: WriterStats) -> None:
        manifest = self.recording.manifest
        if stats.error is not None:
            manifest.error(self.track_id, stats.error.value, stats.error_detail)
        if not self.writer.opened:
            return
        path = self.recording.data_dir / self.path
        manifest.file(self.track_id, self.path, path.stat().st_size, sha256_file(path),
                      stats.duration_s, stats.frames)


class Recording:
    def __init__(self, data_dir: Path, room: str, *, now_s: float | None = None,
                 recording_id: str | None = None, queue_size: int = QUEUE_SIZE,
                 options: dict[str, str] | None = None,
                 on_error: ErrorCallback | None = None) -> None:
        """Creates ``recordings/<id>/manifest.jsonl`` (small, fsync'd: a few ms of disk)."""
        self.data_dir = data_dir
        self.room = room
        self.started_at = time.time() if now_s is None else now_s
        self.id = recording_id or new_recording_id(self.started_at)
        self.folder = data_dir / track_path(self.id, MANIFEST_NAME).rsplit("/", 1)[0]
        self.queue_size = queue_size
        self.options = options
        self.on_error = on_error
        self.failed = False
        self.errors: Counter[WriterError] = Counter()
        self.tracks: dict[str, RecordedTrack] = {}
        self._senders: dict[str, SenderClock] = {}
        self._lock = threading.Lock()
        self.manifest = ManifestWriter.create(self.folder / MANIFEST_NAME, self.id, room,
                                              self.started_at)
        self.closed = False

    def sender_clock(self, participant: str) -> SenderClock:
        """One clock offset per publisher, shared by its tracks (keeps its lip sync)."""
        clock = self._senders.get(participant)
        if clock is None:
            clock = self._senders[participant] = SenderClock()
        return clock

    def add_track(self, track_id: str, participant: str, codec: str) -> RecordedTrack:
        """A track to record; ``track_id`` names its file (letters, digits, ``-_.``)."""
        if self.closed:
            raise RuntimeError(f"recording {self.id} is closed")
        if track_id in self.tracks:
            raise ValueError(f"track {track_id!r} is already recorded")
        track = RecordedTrack(self, track_id, participant, codec, self.sender_clock(participant))
        self.tracks[track_id] = track
        return track

    def poll(self, now_s: float) -> list[str]:
        """Every ~100 ms: the ids of the tracks to send a key frame request (PLI) for."""
        return [track_id for track_id, track in self.tracks.items() if track.poll(now_s)]

    def _track_failed(self, track_id: str, error: WriterError, detail: str) -> None:
        with self._lock:
            self.errors[error] += 1
            self.failed = True
        logger.error("recording %s (room %s) stops: track %s %s", self.id, self.room, track_id,
                     error.value)
        if self.on_error is not None:
            self.on_error(track_id, error, detail)

    def close(self, now_s: float | None = None, timeout_s: float = 10.0) -> str:
        """Finish every file and write the close entry. Blocking: run it off the event loop
        (``await asyncio.to_thread(recording.close)``); packets arriving meanwhile are ignored."""
        if self.closed:
            raise RuntimeError(f"recording {self.id} is already closed")
        self.closed = True
        deadline = time.monotonic() + timeout_s
        for track in self.tracks.values():
            track.core.depacketizer.flush()
            track.writer.close(max(0.1, deadline - time.monotonic()))
        state = "failed" if self.failed else "complete"
        self.manifest.close(time.time() if now_s is None else now_s, state)
        return state
