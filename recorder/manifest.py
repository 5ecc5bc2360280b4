"""The per-recording manifest: append-only JSON lines, each entry hash-chained to the previous.

Layout under the data dir::

    recordings/<recording id>/manifest.jsonl
    recordings/<recording id>/<track id>.webm   (or .mkv for H.264)

Entries (``type``): ``open`` (id, room, started_at), ``track`` (a track's file was created:
track, participant, kind, codec, path relative to the data dir, start on the common clock),
``file`` (the file was finished: bytes, sha256, duration_s, frames), ``error`` (a track stopped),
``close`` (ended_at, state ``complete`` | ``recovered`` | ``failed``).

Every entry carries ``prev`` (the previous entry's hash; 64 zeros for the first) and ``hash`` =
sha256 of the canonical JSON of the entry without ``hash``. An edited, removed or inserted line
breaks the chain; the ``file`` entries' sha256 catch a changed byte in a media file; listing the
folder against the ``track`` entries catches a missing or an added file. (Cutting the *last*
lines off cannot be seen from inside the file: that needs the head hash kept elsewhere.)
``open``, ``file`` and ``close`` entries are fsync'd; appends are thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS",
    "MANIFEST_NAME",
    "RECORDINGS_DIR",
    "Manifest",
    "ManifestError",
    "ManifestWriter",
    "TrackInfo",
    "read_manifest",
    "sha256_file",
    "track_path",
    "verify_recording",
]

MANIFEST_NAME = "manifest.jsonl"
RECORDINGS_DIR = "recordings"
GENESIS = "0" * 64
STATES = ("recording", "complete", "recovered", "failed")
_SYNCED = frozenset({"open", "file", "close"})
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Recording ids and file names: no separators, no leading dot (no '..', no hidden files)."""


def track_path(recording_id: str, file_name: str) -> str:
    """The path of a track file relative to the data dir; ValueError on an unsafe name."""
    for name in (recording_id, file_name):
        if not SAFE_NAME.fullmatch(name):
            raise ValueError(f"unsafe recording or file name {name!r}")
    return f"{RECORDINGS_DIR}/{recording_id}/{file_name}"


class ManifestError(ValueError):
    """The manifest is unreadable or its chain is broken; ``culprit`` names where."""

    def __init__(self, culprit: str) -> None:
        super().__init__(culprit)
        self.culprit = culprit


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ManifestWriter:
    """Appends chained entries to one manifest file (create a new one, or resume an old one)."""

    def __init__(self, path: Path, head: str = GENESIS) -> None:
        self.path = path
        self.head = head
        self.sealed = False  # the close entry is written: nothing may follow it
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path, recording_id: str, room: str, started_at: float) -> ManifestWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise FileExistsError(f"manifest {path} already exists")
        writer = cls(path)
        writer.append({"type": "open", "id": recording_id, "room": room,
                       "started_at": started_at})
        _fsync_dir(path.parent)
        return writer

    @classmethod
    def resume(cls, path: Path) -> ManifestWriter:
        """Continue an existing manifest (recovery); its chain must be intact."""
        return cls(path, read_manifest(path).head)

    def append(self, entry: dict[str, Any]) -> str:
        with self._lock:
            if self.sealed:
                raise ManifestError(f"{self.path.name}: closed; cannot add a {entry['type']!r}")
            entry = {**entry, "prev": self.head}
            entry["hash"] = entry_hash(entry)
            line = _canonical(entry) + b"\n"
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                if entry["type"] in _SYNCED:
                    os.fsync(handle.fileno())
            self.head = entry["hash"]
            self.sealed = entry["type"] == "close"
            return self.head

    def track(self, track_id: str, participant: str, kind: str, codec: str, path: str,
              start: float) -> None:
        self.append({"type": "track", "track": track_id, "participant": participant,
                     "kind": kind, "codec": codec, "path": path, "start": start})

    def file(self, track_id: str, path: str, size: int, sha256: str, duration_s: float,
             frames: int) -> None:
        self.append({"type": "file", "track": track_id, "path": path, "bytes": size,
                     "sha256": sha256, "duration_s": round(duration_s, 3), "frames": frames})

    def error(self, track_id: str, reason: str, detail: str) -> None:
        self.append({"type": "error", "track": track_id, "reason": reason, "detail": detail})

    def close(self, ended_at: float, state: str) -> None:
        if state not in STATES[1:]:
            raise ValueError(f"closing state must be one of {STATES[1:]}, got {state!r}")
        self.append({"type": "close", "ended_at": ended_at, "state": state})


@dataclass(slots=True)
class TrackInfo:
    track: str
    participant: str
    kind: str
    codec: str
    path: str  # relative to the data dir
    start: float  # common clock
    bytes: int | None = None  # set by the file entry
    sha256: str | None = None
    duration_s: float | None = None
    frames: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Manifest:
    id: str
    room: str
    started_at: float
    ended_at: float | None = None
    state: str = "recording"
    tracks: dict[str, TrackInfo] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (track, reason)
    head: str = GENESIS
    entries: int = 0


def _field(entry: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"{where}: field {name!r} is missing or has the wrong type")
    return value


def read_manifest(path: Path) -> Manifest:
    """Parse and check the chain; ManifestError naming the first bad line otherwise."""
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{name}: cannot read ({exc.strerror})") from None
    torn = not data.endswith(b"\n")  # a crash mid-append leaves the last line unfinished
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise ManifestError(f"{name}: empty")
    head = GENESIS
    manifest: Manifest | None = None
    number = 0
    for number, raw in enumerate(lines, start=1):
        where = f"{name} line {number}"
        try:
            entry = json.loads(raw)
        except ValueError:
            if (torn and number == len(lines) and manifest is not None
                    and manifest.state == "recording"):
                break  # a line torn by a crash mid-append: the chain up to it still holds
            raise ManifestError(f"{where}: not JSON") from None
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: not an object")
        if entry.get("prev") != head:
            raise ManifestError(f"{where}: does not follow the previous entry (chain broken)")
        if entry.get("hash") != entry_hash(entry):
            raise ManifestError(f"{where}: hash mismatch (entry edited)")
        head = entry["hash"]
        kind = entry.get("type")
        if number == 1:
            if kind != "open":
                raise ManifestError(f"{where}: the first entry must be 'open'")
            manifest = Manifest(_field(entry, "id", str, where), _field(entry, "room", str, where),
                                _field(entry, "started_at", (int, float), where))
            if not SAFE_NAME.fullmatch(manifest.id):
                raise ManifestError(f"{where}: unsafe recording id")
            continue
        assert manifest is not None
        if manifest.state != "recording":
            raise ManifestError(f"{where}: entry after the close entry")
        if kind == "track":
            track = TrackInfo(
                _field(entry, "track", str, where), _field(entry, "participant", str, where),
                _field(entry, "kind", str, where), _field(entry, "codec", str, where),
                _field(entry, "path", str, where), _field(entry, "start", (int, float), where))
            parts = track.path.split("/")
            try:
                inside = len(parts) == 3 and track_path(manifest.id, parts[2]) == track.path
            except ValueError:
                inside = False
            if not inside:
                raise ManifestError(f"{where}: path {track.path!r} is outside the recording")
            if track.track in manifest.tracks:
                raise ManifestError(f"{where}: track {track.track!r} declared twice")
            manifest.tracks[track.track] = track
        elif kind == "error":
            track_id = _field(entry, "track", str, where)
            reason = _field(entry, "reason", str, where)
            manifest.errors.append((track_id, reason))  # also before its file existed
            if track_id in manifest.tracks:
                manifest.tracks[track_id].error = reason
        elif kind == "file":
            track_id = _field(entry, "track", str, where)
            if track_id not in manifest.tracks:
                raise ManifestError(f"{where}: unknown track {track_id!r}")
            info = manifest.tracks[track_id]
            info.bytes = _field(entry, "bytes", int, where)
            info.sha256 = _field(entry, "sha256", str, where)
            info.duration_s = float(_field(entry, "duration_s", (int, float), where))
            info.frames = _field(entry, "frames", int, where)
        elif kind == "close":
            manifest.ended_at = _field(entry, "ended_at", (int, float), where)
            state = _field(entry, "state", str, where)
            if state not in STATES[1:]:
                raise ManifestError(f"{where}: unknown state {state!r}")
            manifest.state = state
        else:
            raise ManifestError(f"{where}: unknown entry type {kind!r}")
    assert manifest is not None
    manifest.head = head
    manifest.entries = number
    return manifest


def verify_recording(data_dir: Path, folder: Path) -> str | None:
    """None when the recording is intact, else the culprit (a path relative to the data dir,
    with what is wrong). A recording still being written has its chain and folder checked; its
    files are hashed only once closed."""
    rel_folder = folder.relative_to(data_dir).as_posix()
    try:
        manifest = read_manifest(folder / MANIFEST_NAME)
    except ManifestError as exc:
        return f"{rel_folder}/{exc.culprit}"
    declared = {info.path for info in manifest.tracks.values()}
    for path in sorted(folder.iterdir()):
        rel = path.relative_to(data_dir).as_posix()
        if path.name != MANIFEST_NAME and rel not in declared:
            return f"{rel}: not in the manifest (added file)"
    for info in manifest.tracks.values():
        file_path = data_dir / info.path
        if info.error == "file_missing" and info.sha256 is None:
            continue  # already gone when the crash was recovered, and recorded as such
        if not file_path.is_file():
            return f"{info.path}: missing"
        if info.sha256 is None:
            if manifest.state != "recording":
                return f"{info.path}: no hash in a closed recording"
            continue
        if file_path.stat().st_size != info.bytes:
            return f"{info.path}: size differs from the manifest"
        if sha256_file(file_path) != info.sha256:
            return f"{info.path}: sha256 differs from the manifest"
    return None
