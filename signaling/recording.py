"""Recording rooms for the archive: who starts and stops it, and the recorder in the media plane.

A recording is an in-process subscriber of the room (``MediaPlane.subscribe_local``): one
consumer per track, so it receives the best layer each publisher sends as one continuous RTP
stream, and the ``recorder`` package depacketises it into one Matroska/WebM file per track on
writer threads (never transcoding, never blocking the event loop). This module is the shell:
start/stop (REST, the room's auto-record setting, ``--record-all``), telling every participant,
the audit log, the catalogue in the store, PLIs the recorder asks for, a failed disk, and
finishing every recording on shutdown (and recovering interrupted ones at start).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.archive import describe_recording
from recorder.clock import ntp_to_seconds
from recorder.manifest import RECORDINGS_DIR
from recorder.recording import RecordedTrack, Recording
from recorder.recovery import recover_all
from recorder.track_writer import CODECS, WriterError
from sfu.consumer import PacketWriter
from sfu.local_subscriber import TrackInfo
from sfu.plane import MediaPlane
from sfu.wire.rtp_packet import RtpView
from signaling.meeting_log import MeetingLog
from signaling.store import JoinRecord, NotFound, RecordingFile, RecordingRow, Store

logger = logging.getLogger(__name__)

RECORDER_ID = "recorder"
"""The local subscriber id of the recorder in every room."""
POLL_S = 0.1
"""How often the recorder gives up holes and asks for the keyframes it needs."""
RETENTION_SWEEP_S = 3600.0
"""How often the retention policy looks for recordings past their time."""
AUTO = "auto-record"
"""``started_by`` / ``stopped_by`` of what the server does by itself."""


class RecordingConflict(Exception):
    """Start of a room already recording, or stop of one that is not."""


@dataclass(eq=False)
class _Feed:
    """One track's RTP from its consumer into the recorder (parsed once more: the consumer
    wrote fresh header bytes for this copy, and the recorder reads them)."""

    track: RecordedTrack
    participant_id: str
    wall: Callable[[], float]
    ssrc: int | None = None
    malformed: int = 0

    def send_rtp(self, packet: bytes) -> bool:
        try:
            view = RtpView.parse(packet)
        except ValueError:
            self.malformed += 1
            return False
        self.ssrc = view.ssrc
        self.track.on_rtp(view, self.wall())
        return True


class RoomRecorder:
    """The ``LocalSubscriber`` of one recording: a track file per producer."""

    def __init__(self, recording: Recording, wall: Callable[[], float] = time.time) -> None:
        self.recording = recording
        self.wall = wall
        self.feeds: dict[str, _Feed] = {}  # by producer id
        self.participants: list[str] = []  # display names, in order of appearance
        self._numbers: Counter[str] = Counter()

    def track_added(self, track: TrackInfo) -> PacketWriter | None:
        codec = track.codec.name
        if codec not in CODECS:
            logger.warning("recording %s: %s's %s track is %s, which is not recorded",
                           self.recording.id, track.participant_id, track.kind.value, codec)
            return None
        base = _safe(f"{track.participant_id}-{track.kind.value}")
        self._numbers[base] += 1
        track_id = base if self._numbers[base] == 1 else f"{base}-{self._numbers[base]}"
        name = track.participant_name or track.participant_id
        recorded = self.recording.add_track(track_id, name, codec)
        if name not in self.participants:
            self.participants.append(name)
        feed = self.feeds[track.producer_id] = _Feed(recorded, track.participant_id, self.wall)
        return feed

    def track_removed(self, producer_id: str) -> None:
        # The file stays open until the recording ends: a track that comes back (a rejoin) is
        # a new producer and a new file; this one simply has nothing more (gaps stay gaps).
        self.feeds.pop(producer_id, None)

    def sender_report(self, producer_id: str, ntp_timestamp: int, rtp_timestamp: int) -> None:
        feed = self.feeds.get(producer_id)
        if feed is not None and feed.ssrc is not None:
            feed.track.on_sender_report(feed.ssrc, ntp_to_seconds(ntp_timestamp), rtp_timestamp,
                                        self.wall())

    def keyframes_wanted(self, now_s: float) -> set[str]:
        """Participants whose video the recorder needs a keyframe of (after a loss)."""
        wanted = set(self.recording.poll(now_s))
        return {feed.participant_id for feed in self.feeds.values()
                if feed.track.track_id in wanted}


@dataclass(eq=False)
class ActiveRecording:
    recording: Recording
    recorder: RoomRecorder
    started_by: str
    failed: str | None = None
    stopping: bool = False


Notify = Callable[[str, dict[str, Any]], None]
"""(room, message) -> tell every participant in the room."""


@dataclass(eq=False)
class RecordingService:
    """Every recording of this server (one per room at a time)."""

    plane: MediaPlane
    store: Store
    data_dir: Path
    notify: Notify
    record_all: bool = False
    retention_s: float | None = None
    """Recordings older than this are deleted by the retention sweep (None: kept)."""
    active: dict[str, ActiveRecording] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)  # by WriterError value
    meetings: MeetingLog | None = None
    """The event record and audit trail (issue 13), set by the app."""
    on_event: Callable[[str, str, str, str | None], None] | None = None
    """(event, room, recording id, error): webhooks (signaling/ops.py)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # -- start and stop ---------------------------------------------------------------------------

    async def start(self, room: str, by: str, address: str = "") -> RecordingRow:
        async with self._lock:
            if room in self.active:
                raise RecordingConflict(f"room {room!r} is already being recorded")
            stored = await self.store.find_room(room)
            loop = asyncio.get_running_loop()

            def on_error(track_id: str, error: WriterError, detail: str) -> None:
                # From a writer thread: the meeting carries on; the recording stops.
                loop.call_soon_threadsafe(self._on_writer_error, room, error, detail)

            recording = await asyncio.to_thread(Recording, self.data_dir, room,
                                                on_error=on_error)
            recorder = RoomRecorder(recording)
            self.active[room] = ActiveRecording(recording, recorder, by)
            row = RecordingRow(recording.id, room, stored.org_id if stored else None, None,
                               recording.started_at, None, "recording", by)
            await self.store.add_recording(row)
            self.plane.subscribe_local(room, RECORDER_ID, recorder)
        await self._audit(room, by, address, "recording-started")
        if self.meetings is not None:
            self.meetings.recording(room, recording.id, True, by, address)
        self.notify(room, {"type": "recording", "active": True, "recording_id": recording.id})
        if self.on_event is not None:
            self.on_event("recording_started", room, recording.id, None)
        logger.info("recording %s of room %r started by %s", recording.id, room, by)
        return row

    async def stop(self, room: str, by: str, address: str = "") -> RecordingRow:
        async with self._lock:
            active = self.active.get(room)
            if active is None or active.stopping:
                raise RecordingConflict(f"room {room!r} is not being recorded")
            active.stopping = True
            self.plane.unsubscribe_local(room, RECORDER_ID)
            recording = active.recording
            try:
                state = await asyncio.to_thread(recording.close)
                described = await asyncio.to_thread(describe_recording, self.data_dir,
                                                    recording.id)
                files = tuple(_file(f) for f in (described or {}).get("files", []))
                await self.store.finish_recording(
                    recording.id, ended_at=time.time(), state=state, stopped_by=by,
                    participants=tuple(active.recorder.participants), files=files,
                    error=active.failed)
            finally:
                del self.active[room]
        await self._audit(room, by, address, "recording-stopped")
        if self.meetings is not None:
            self.meetings.recording(room, recording.id, False, by, address, state)
        message: dict[str, Any] = {"type": "recording", "active": False,
                                   "recording_id": recording.id}
        if active.failed:
            message["error"] = active.failed
        self.notify(room, message)
        if self.on_event is not None:
            self.on_event("recording_failed" if active.failed else "recording_finished", room,
                          recording.id, active.failed)
        logger.info("recording %s of room %r stopped by %s: %s", recording.id, room, by, state)
        return await self.store.get_recording(recording.id)

    def is_recording(self, room: str) -> bool:
        return room in self.active

    def _on_writer_error(self, room: str, error: WriterError, detail: str) -> None:
        active = self.active.get(room)
        if active is None or active.failed:
            return
        self.failures[error.value] += 1
        active.failed = f"{error.value}: {detail}"[:200]
        logger.error("recording of room %r fails (%s): stopping it; the meeting goes on", room,
                     active.failed)
        asyncio.ensure_future(self._stop_quietly(room, AUTO))

    async def _stop_quietly(self, room: str, by: str) -> None:
        try:
            await self.stop(room, by)
        except RecordingConflict:
            pass  # stopped meanwhile
        except Exception:
            logger.exception("stopping the recording of room %r failed", room)

    # -- automatic recording ----------------------------------------------------------------------

    async def on_joined(self, room: str) -> None:
        """Someone entered ``room``: record it if the room or the server says so."""
        if room in self.active:
            return
        if not self.record_all:
            stored = await self.store.find_room(room)
            if stored is None or not stored.auto_record:
                return
        try:
            await self.start(room, AUTO)
        except RecordingConflict:
            pass

    async def on_left(self, room: str) -> None:
        """Someone left ``room``: a recording stops when nobody is left in it."""
        state = self.plane.room_state(room)
        if room in self.active and (state is None or not state.participants):
            await self._stop_quietly(room, AUTO)

    # -- the loop and the lifecycle ---------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            now = time.time()
            for room, active in list(self.active.items()):
                try:
                    for participant_id in active.recorder.keyframes_wanted(now):
                        self.plane.request_keyframe(room, participant_id)
                except KeyError:
                    pass  # left meanwhile
                except Exception:
                    logger.exception("recorder poll of room %r failed", room)

    async def recover(self) -> list[str]:
        """At start: close recordings a crash interrupted, and catalogue them as recovered."""
        recovered = await asyncio.to_thread(recover_all, self.data_dir)
        for recording_id in recovered:
            described = await asyncio.to_thread(describe_recording, self.data_dir, recording_id)
            if described is None:
                continue
            files = tuple(_file(f) for f in described["files"])
            participants = tuple(dict.fromkeys(f.participant for f in files))
            try:
                await self.store.finish_recording(
                    recording_id, ended_at=described["ended_at"] or time.time(),
                    state=described["state"], stopped_by="recovery",
                    participants=participants, files=files)
            except NotFound:
                await self.store.add_recording(RecordingRow(
                    recording_id, described["room"] or "", None, None,
                    described["started_at"] or 0.0, described["ended_at"], described["state"],
                    "?", "recovery", participants, files))
            logger.warning("recording %s was interrupted; recovered", recording_id)
        return recovered

    # -- deletion and the retention policy --------------------------------------------------------

    async def delete(self, row: RecordingRow, by: str) -> None:
        """Remove a finished recording's files; its catalogue row stays, marked ``deleted``."""
        if row.state == "recording":
            raise RecordingConflict(f"recording {row.id} is still running")
        root = (self.data_dir / RECORDINGS_DIR).resolve()
        folder = (root / row.id).resolve()
        if folder.parent != root:  # an id is a folder name, never a path
            raise NotFound("recording", row.id)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        await self.store.finish_recording(
            row.id, ended_at=row.ended_at or time.time(), state="deleted",
            stopped_by=row.stopped_by, participants=row.participants, files=row.files)
        logger.warning("recording %s of room %r deleted by %s", row.id, row.room, by)

    async def sweep(self, now: float) -> list[str]:
        """The retention policy: delete finished recordings that started before now - retention."""
        if self.retention_s is None:
            return []
        deleted = []
        # Nodes sharing one store (--store) share the catalogue, not the files: each sweeps the
        # recordings it holds, so another node's stay listed (and on that node's disk).
        shared = getattr(self.store, "networked", False)
        root = self.data_dir / RECORDINGS_DIR
        for row in await self.store.list_recordings(until=now - self.retention_s, limit=10_000):
            if shared and not (root / row.id).is_dir():
                continue
            if row.state != "recording":
                await self.delete(row, "retention")
                deleted.append(row.id)
        return deleted

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep(time.time())
            except Exception:
                logger.exception("recording retention sweep failed")
            await asyncio.sleep(RETENTION_SWEEP_S)

    async def run(self) -> AsyncIterator[None]:
        """Lifecycle (for a ``cleanup_ctx``): recover, poll, sweep, finish every recording."""
        await self.recover()
        tasks = [asyncio.ensure_future(self._poll_forever())]
        if self.retention_s is not None:
            tasks.append(asyncio.ensure_future(self._sweep_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for room in list(self.active):
                await self._stop_quietly(room, "server-shutdown")

    async def _audit(self, room: str, by: str, address: str, outcome: str) -> None:
        try:
            await self.store.record_join(JoinRecord(time.time(), room, by, "recorder",
                                                    address or "-", outcome))
        except Exception:
            logger.exception("audit record of %s in %r failed", outcome, room)


def _file(entry: dict[str, Any]) -> RecordingFile:
    return RecordingFile(entry["path"], entry["kind"], entry["participant"], entry["codec"],
                         float(entry["duration_s"] or 0.0), int(entry["bytes"] or 0),
                         entry["sha256"] or "")


def _safe(text: str) -> str:
    """A file-name-safe track id (letters, digits, ``-_.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "track"


RECORDINGS = web.AppKey("recordings", RecordingService)
