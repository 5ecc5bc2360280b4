"""The recordings retention policy: old finished recordings lose their files, logged; the
catalogue keeps a `deleted` row; running and recent recordings stay. Real SQLite, real files."""

from __future__ import annotations

from pathlib import Path

from recorder.manifest import RECORDINGS_DIR
from signaling.recording import RecordingService
from signaling.store import RecordingRow, SqliteStore
from tests.pgproc import PostgresServer, open_store_for

DAY = 86400.0


async def test_sweep_deletes_only_finished_recordings_past_their_time(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        now = 100 * DAY
        rows = {"old": (now - 40 * DAY, "complete"), "old-running": (now - 40 * DAY, "recording"),
                "recent": (now - 2 * DAY, "complete")}
        for rid, (started, state) in rows.items():
            await store.add_recording(RecordingRow(rid, "phong", 1, None, started, None, state,
                                                   "account:1"))
            folder = tmp_path / RECORDINGS_DIR / rid
            folder.mkdir(parents=True)
            (folder / "a-audio.webm").write_bytes(b"x" * 10)
        service = RecordingService(plane=None, store=store, data_dir=tmp_path,  # type: ignore[arg-type]
                                   notify=lambda room, message: None, retention_s=30 * DAY)
        assert await service.sweep(now) == ["old"]
        assert not (tmp_path / RECORDINGS_DIR / "old").exists()
        assert (tmp_path / RECORDINGS_DIR / "old-running").is_dir()
        assert (tmp_path / RECORDINGS_DIR / "recent").is_dir()
        assert (await store.get_recording("old")).state == "deleted"
        assert {r.id for r in await store.list_recordings()} == {"old-running", "recent"}
        assert await service.sweep(now) == []  # nothing more to do
        kept = RecordingService(plane=None, store=store, data_dir=tmp_path,  # type: ignore[arg-type]
                                notify=lambda room, message: None)
        assert await kept.sweep(now + 1000 * DAY) == []  # no policy: nothing is deleted
    finally:
        await store.close()


async def test_nodes_sharing_a_store_sweep_only_the_recordings_they_hold(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.fresh_url()
    stores = [await open_store_for(tmp_path, url) for _ in range(2)]
    try:
        now = 100 * DAY
        for rid in ("on-a", "on-b"):
            await stores[0].add_recording(RecordingRow(rid, "phong", 1, None, now - 40 * DAY,
                                                       now - 39 * DAY, "complete", "account:1"))
        homes = [tmp_path / "a", tmp_path / "b"]
        for home, rid in zip(homes, ("on-a", "on-b"), strict=True):
            (home / RECORDINGS_DIR / rid).mkdir(parents=True)
        services = [RecordingService(plane=None, store=store, data_dir=home,  # type: ignore[arg-type]
                                     notify=lambda room, message: None, retention_s=30 * DAY)
                    for store, home in zip(stores, homes, strict=True)]
        assert await services[0].sweep(now) == ["on-a"]  # B's recording is not A's to delete
        assert (await stores[1].get_recording("on-b")).state == "complete"
        assert await services[1].sweep(now) == ["on-b"]
        assert not (homes[1] / RECORDINGS_DIR / "on-b").exists()
    finally:
        for store in stores:
            await store.close()
