"""Finish the recordings a crash interrupted (run once at server start, before recording again).

A recording whose manifest has no ``close`` entry was cut off (``kill -9``, power loss). Its track
files written in live mode end in an open cluster and have no duration and no cues, but every
complete block is readable (docs/architecture.md#the-recorder). Each file that has no ``file``
entry is remuxed
(stream copy: no decoding) into a finished file that replaces it, then hashed; the recording is
closed as ``recovered``. A file that cannot be read at all is kept as it is, hashed, and noted
with an ``error`` entry, so the archive still accounts for every byte.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av

from recorder.manifest import (
    MANIFEST_NAME,
    RECORDINGS_DIR,
    ManifestError,
    ManifestWriter,
    read_manifest,
    sha256_file,
)

__all__ = ["RemuxResult", "find_interrupted", "recover_all", "recover_recording", "remux"]

logger = logging.getLogger(__name__)

TMP_PREFIX = ".recovering-"


@dataclass(frozen=True, slots=True)
class RemuxResult:
    frames: int
    duration_s: float
    truncated: bool  # the source ended in a torn block (expected after a crash)


def remux(source: Path, target: Path) -> RemuxResult:
    """Stream-copy every intact packet of ``source``'s first stream into ``target``."""
    fmt = "matroska" if source.suffix == ".mkv" else "webm"
    first = last = None
    frames = 0
    truncated = False
    with av.open(str(source)) as reader:
        if not reader.streams:
            raise ValueError(f"{source.name} has no stream")
        in_stream = reader.streams[0]
        with av.open(str(target), "w", format=fmt) as writer:
            out_stream = writer.add_stream_from_template(in_stream)
            try:
                for packet in reader.demux(in_stream):
                    if packet.pts is None or packet.is_corrupt:
                        truncated = truncated or packet.is_corrupt
                        continue
                    seconds = float(packet.pts * packet.time_base)
                    first = seconds if first is None else first
                    last = seconds
                    packet.stream = out_stream
                    writer.mux(packet)
                    frames += 1
            except (av.InvalidDataError, EOFError):
                truncated = True
    if frames == 0:
        raise ValueError(f"{source.name} holds no readable frame")
    assert first is not None and last is not None
    return RemuxResult(frames, last - first, truncated)


def find_interrupted(data_dir: Path) -> list[Path]:
    """Folders of recordings whose manifest has no close entry (chain intact)."""
    root = data_dir / RECORDINGS_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            continue
        try:
            manifest = read_manifest(manifest_path)
        except ManifestError as exc:
            logger.error("recording %s cannot be recovered: %s", folder.name, exc.culprit)
            continue
        if manifest.state == "recording":
            found.append(folder)
    return found


def recover_recording(data_dir: Path, folder: Path) -> str:
    """Finish one interrupted recording; returns its new state ("recovered")."""
    manifest_path = folder / MANIFEST_NAME
    _drop_torn_line(manifest_path)
    manifest = read_manifest(manifest_path)
    if manifest.state != "recording":
        return manifest.state
    writer = ManifestWriter.resume(manifest_path)
    for leftover in folder.glob(TMP_PREFIX + "*"):
        leftover.unlink()  # a recovery that was itself interrupted
    ended_at = manifest.started_at
    for info in manifest.tracks.values():
        if info.sha256 is not None:
            ended_at = max(ended_at, info.start + (info.duration_s or 0.0))
            continue
        path = data_dir / info.path
        if not path.is_file():
            writer.error(info.track, "file_missing", "no file at recovery")
            continue
        temporary = folder / (TMP_PREFIX + path.name)
        try:
            result = remux(path, temporary)
        except (ValueError, OSError, av.FFmpegError) as exc:
            temporary.unlink(missing_ok=True)
            writer.error(info.track, "unreadable", str(exc))
            frames, duration = 0, 0.0
        else:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            frames, duration = result.frames, result.duration_s
        writer.file(info.track, info.path, path.stat().st_size, sha256_file(path), duration,
                    frames)
        ended_at = max(ended_at, info.start + duration)
    writer.close(round(ended_at, 6), "recovered")
    logger.warning("recording %s (room %s) was interrupted: recovered", manifest.id,
                   manifest.room)
    return "recovered"


def recover_all(data_dir: Path) -> list[str]:
    """At start: recover every interrupted recording; returns their ids."""
    recovered = []
    for folder in find_interrupted(data_dir):
        try:
            recover_recording(data_dir, folder)
        except (ManifestError, OSError) as exc:
            logger.error("recovery of %s failed: %s", folder.name, exc)
            continue
        recovered.append(folder.name)
    return recovered


def _drop_torn_line(path: Path) -> None:
    """A crash in the middle of an append leaves a last line without its newline: cut it, so
    the entries that follow chain onto the last complete one."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "rb+") as handle:
            handle.truncate(cut)
            os.fsync(handle.fileno())
