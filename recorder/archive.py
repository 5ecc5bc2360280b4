"""Offline views of the archive under a data dir (no server needed): list and verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recorder.manifest import (
    MANIFEST_NAME,
    RECORDINGS_DIR,
    ManifestError,
    read_manifest,
    verify_recording,
)

__all__ = ["describe_recording", "list_recordings", "verify"]


def _folders(data_dir: Path) -> list[Path]:
    root = data_dir / RECORDINGS_DIR
    if not root.is_dir():
        return []
    return [folder for folder in sorted(root.iterdir()) if (folder / MANIFEST_NAME).is_file()]


def list_recordings(data_dir: Path) -> list[dict[str, Any]]:
    """Every recording, oldest first, in the JSON shape of ``diemcau archive list --json``.

    A recording whose manifest is damaged is listed with state ``failed`` and no files (never
    hidden); ``verify`` names the culprit.
    """
    return [_describe(data_dir, folder) for folder in _folders(data_dir)]


def describe_recording(data_dir: Path, recording_id: str) -> dict[str, Any] | None:
    """One recording in the shape of ``list_recordings`` (None when there is no such folder)."""
    folder = data_dir / RECORDINGS_DIR / recording_id
    if "/" in recording_id or recording_id in ("", ".", "..") \
            or not (folder / MANIFEST_NAME).is_file():
        return None
    return _describe(data_dir, folder)


def _describe(data_dir: Path, folder: Path) -> dict[str, Any]:
    try:
        manifest = read_manifest(folder / MANIFEST_NAME)
    except ManifestError:
        return {"id": folder.name, "room": None, "started_at": None, "ended_at": None,
                "state": "failed", "files": []}
    files = []
    for info in manifest.tracks.values():
        size = info.bytes
        if size is None:  # still being written: what is on disk now
            path = data_dir / info.path
            size = path.stat().st_size if path.is_file() else 0
        files.append({
            "path": info.path, "kind": info.kind, "participant": info.participant,
            "codec": info.codec, "duration_s": info.duration_s,
            "bytes": size, "sha256": info.sha256,
        })
    return {"id": manifest.id, "room": manifest.room, "started_at": manifest.started_at,
            "ended_at": manifest.ended_at, "state": manifest.state, "files": files}


def verify(data_dir: Path, recording_id: str | None = None) -> tuple[bool, str | None]:
    """(True, None) when every file and chain is intact, else (False, the culprit).

    With an id, that recording only (an unknown id is a failure naming it).
    """
    folders = _folders(data_dir)
    if recording_id is not None:
        folders = [folder for folder in folders if folder.name == recording_id]
        if not folders:
            return False, f"{RECORDINGS_DIR}/{recording_id}: no such recording"
    for folder in folders:
        culprit = verify_recording(data_dir, folder)
        if culprit is not None:
            return False, culprit
    return True, None
