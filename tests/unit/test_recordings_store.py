"""The archive's catalogue in a real SQLite file: add, finish, filter, survive a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.store import NotFound, RecordingFile, RecordingRow
from tests.pgproc import open_store_for

FILE = RecordingFile("recordings/r1/a-audio.webm", "audio", "Anh", "opus", 12.5, 40_000,
                     "ab" * 32)


async def test_recording_row_lifecycle_and_filters(tmp_path: Path, store_url: str | None) -> None:
    store = await open_store_for(tmp_path, store_url)
    await store.add_recording(RecordingRow("r1", "Phong-hop", 1, None, 100.0, None, "recording",
                                           "account:1"))
    await store.add_recording(RecordingRow("r2", "khac", 2, None, 200.0, None, "recording",
                                           "auto-record"))
    await store.finish_recording("r1", ended_at=160.0, state="complete", stopped_by="account:2",
                                 participants=("Anh",), files=(FILE,))
    row = await store.get_recording("r1")
    assert (row.state, row.ended_at, row.stopped_by, row.files) == (
        "complete", 160.0, "account:2", (FILE,))
    assert [r.id for r in await store.list_recordings()] == ["r2", "r1"]  # newest first
    assert [r.id for r in await store.list_recordings(room="Phong-hop")] == ["r1"]
    assert [r.id for r in await store.list_recordings(room="phong-hop")] == []  # case-sensitive
    assert [r.id for r in await store.list_recordings(org_id=2)] == ["r2"]
    assert [r.id for r in await store.list_recordings(since=150.0)] == ["r2"]
    with pytest.raises(NotFound):
        await store.finish_recording("nope", ended_at=1.0, state="failed", stopped_by=None,
                                     participants=(), files=())
    await store.close()
    reopened = await open_store_for(tmp_path, store_url)
    try:
        assert (await reopened.get_recording("r1")).files == (FILE,)
    finally:
        await reopened.close()
