"""A recorded meeting in the real app (aiortc participant, real recorder, SQLite file) leaves
the event record and the audit trail issue 13 asks for: the meeting, the participant with
minutes, the recording started and finished, the token issued, the downloads (Range requests
merged into one row), the deletion; and the day's report counts the recording."""

from __future__ import annotations

import datetime as dt

import pytest

from signaling.journal import verify_audit
from signaling.report import daily_report
from tests.api.test_recording_api import World, record_once, world  # noqa: F401 (fixture)

pytestmark = pytest.mark.media


async def test_a_recorded_meeting_is_on_the_record(world: World) -> None:  # noqa: F811
    await world.call("GET", "/api/me", "root", expect=200)
    async with world.http.post(world.url + "/api/rooms", json={"name": "hop-b"},  # type: ignore
                               headers={"Authorization": f"Bearer {world.tokens['host-a']}"}) \
            as response:
        assert response.status == 201, await response.text()
    recording, person = await record_once(world, "hop-b", "Cô Mai")
    video = next(f for f in recording["files"] if f["kind"] == "video")
    for _ in range(3):  # a player's Range requests: one audit row
        await world.call("GET", video["url"], "host-a", expect=206,
                         headers={"Range": "bytes=0-99"})
    await person.leave()
    await world.call("DELETE", f"/api/recordings/{recording['id']}", "root", expect=204)
    journal = world.control.journal
    assert journal is not None
    await journal.flush()
    store = world.control.store
    events = [e for e in await store.list_events(0.0, 1e12) if e.room == "hop-b"]
    kinds = [e.kind for e in events]
    for kind in ("room-started", "participant-joined", "recording-started",
                 "recording-finished", "participant-left", "room-finished"):
        assert kind in kinds, kinds
    assert kinds.index("recording-started") < kinds.index("recording-finished")
    left = next(e for e in events if e.kind == "participant-left")
    assert left.detail["reason"] == "requested" and float(left.detail["minutes"] or 0) > 0
    ids = {}
    for name in ("host-a", "root"):
        account = await store.find_account(name)
        assert account is not None
        ids[name] = f"account:{account.id}"
    host_a, root = ids["host-a"], ids["root"]
    rows = await store.list_audit(room="hop-b")
    acts = {(r.actor, r.action, r.outcome) for r in rows}
    assert {(host_a, "api.create_token", "ok"),
            (host_a, "api.start_recording", "ok"),
            (root, "api.start_recording", "409"),
            (host_a, "api.stop_recording", "ok"),
            (host_a, "recording.started", "ok"),
            (host_a, "recording.finished", "ok")} <= acts, acts
    assert {r.action for r in rows} >= {"room.join", "room.leave"}
    everything = await store.list_audit()
    downloads = [r for r in everything if r.action == "api.download_file"]
    assert len(downloads) == 1 and downloads[0].actor == host_a
    assert any(r.action == "api.delete_recording" and r.actor == root
               for r in everything)
    assert not (await verify_audit(store)).problems
    today = dt.datetime.fromtimestamp(events[0].at, dt.timezone(dt.timedelta(hours=7))).date()
    report = await daily_report(store, today, events[-1].at + 1)
    room = next(r for r in report.rooms if r.room == "hop-b")
    # Deleted since, but made that day: the event record keeps it in the report.
    assert [(r.id, r.state) for r in room.recordings] == [
        (recording["id"], "complete, no longer in the archive")]
    assert [a.name for a in room.participants] == ["Cô Mai"]
