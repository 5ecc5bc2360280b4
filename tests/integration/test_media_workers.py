"""`diemcau serve --workers 2`: two meetings on two SFU worker processes, real aiortc peers.

Killing one worker (SIGKILL) ends only its room: its participants are told why
(`left` with reason `media-worker-lost`), the other meeting's media keeps flowing, the worker is
restarted, and a new room meets afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from loadtest.client import SyntheticParticipant, wait_until
from recorder.archive import verify
from recorder.manifest import MANIFEST_NAME, RECORDINGS_DIR, Manifest, read_manifest
from tests.serverproc import running_server

pytestmark = pytest.mark.media

WORKER_TAG = "diemcau-media-worker="


def media_workers(server_pid: int) -> dict[int, int]:
    """The server's worker processes: slot index -> pid (from their command lines)."""
    children: set[int] = set()
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        try:
            children.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:
            continue
    found = {}
    for pid in children:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg.startswith(WORKER_TAG.encode()):
                found[int(arg[len(WORKER_TAG):])] = pid
    return found


def ready_workers(base_url: str) -> list[int | None]:
    """/healthz's media_workers: each slot's pid once that worker is ready, else None."""
    with urllib.request.urlopen(base_url + "/healthz", timeout=2.0) as response:
        return list(json.load(response)["media_workers"])


def meeting(people: list[SyntheticParticipant], at_least: int = 5) -> bool:
    """Everyone has received audio and video from everyone else in their room."""
    for person in people:
        for other in people:
            if other is person:
                continue
            got = person.received.get(other.participant_id or "", {})
            if got.get("video", 0) < at_least or got.get("audio", 0) < at_least:
                return False
    return True


def left_reasons(person: SyntheticParticipant) -> list[str]:
    return [event.get("reason", "") for event in person.events if event.get("type") == "left"]


async def test_killing_one_worker_ends_only_its_room(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=["--workers", "2"]) as server:
        workers = media_workers(server.proc.pid)
        assert ready_workers(server.base_url) == [workers[0], workers[1]]
        url = server.base_url
        # Rooms are placed on the least-loaded worker: the first on worker 0, the next on 1.
        room_a = [SyntheticParticipant(url, "phong-a", name) for name in ("An", "Binh")]
        room_b = [SyntheticParticipant(url, "phong-b", name) for name in ("Chi", "Dung")]
        room_c = [SyntheticParticipant(url, "phong-c", name) for name in ("Em", "Giang")]
        everyone = room_a + room_b + room_c
        try:
            await room_a[0].join()
            await room_b[0].join()
            await room_a[1].join()
            await room_b[1].join()
            both = await wait_until(lambda: meeting(room_a) and meeting(room_b), 40)
            assert both, {p.name: dict(p.received) for p in room_a + room_b}

            os.kill(workers[0], signal.SIGKILL)

            def room_a_told() -> bool:
                return all("media-worker-lost" in left_reasons(p) for p in room_a)

            assert await wait_until(room_a_told, 15), [p.events[-3:] for p in room_a]
            # The other meeting carries on: fresh media both ways after the kill.
            before = {p.name: {k: dict(v) for k, v in p.received.items()} for p in room_b}

            def room_b_flows() -> bool:
                for person in room_b:
                    for other_id, got in person.received.items():
                        old = before[person.name].get(other_id, {"audio": 0, "video": 0})
                        if got["video"] < old["video"] + 10 or got["audio"] < old["audio"] + 10:
                            return False
                return True

            assert await wait_until(room_b_flows, 20), {p.name: dict(p.received) for p in room_b}
            assert all(not left_reasons(p) for p in room_b)
            assert all(not p.errors for p in room_b), [p.errors for p in room_b]

            # Worker 0 comes back with a new process; worker 1 was never touched.
            def restarted() -> bool:
                now = ready_workers(url)
                return now[0] not in (None, workers[0]) and now[1] == workers[1]

            assert await wait_until(restarted, 30), (ready_workers(url), workers)
            assert media_workers(server.proc.pid) == dict(enumerate(ready_workers(url)))
            with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
                metrics = response.read().decode()
            assert "diemcau_media_workers_lost_total 1.0" in metrics

            # A new room meets afterwards (placed on the restarted, empty worker).
            for person in room_c:
                await person.join()
            assert await wait_until(lambda: meeting(room_c), 40), (
                {p.name: dict(p.received) for p in room_c})
            assert meeting(room_b, at_least=20)
        finally:
            await asyncio.gather(*(p.leave() for p in everyone), return_exceptions=True)
        log = server.log_text()
        assert "media worker 0" in log and "lost" in log
        assert "media worker 0 restarted" in log


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_workers_exit_with_the_server(tmp_path: Path, how: str) -> None:
    """A stopped server drains and closes its workers; a killed one leaves them an end of
    stream, on which they exit too: no orphan keeps media ports open."""
    with running_server(tmp_path, extra_args=["--workers", "2"]) as server:
        pids = list(media_workers(server.proc.pid).values())
        assert len(pids) == 2 and sorted(pids) == sorted(ready_workers(server.base_url))
        if how == "sigkill":
            server.proc.kill()
            server.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, f"worker processes {pids} outlived the server"
        await asyncio.sleep(0.1)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def manifests(data_dir: Path) -> dict[str, Manifest]:
    """Recordings by room (one each here)."""
    folder = data_dir / RECORDINGS_DIR
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if (path / MANIFEST_NAME).is_file():
                manifest = read_manifest(path / MANIFEST_NAME)
                found[manifest.room] = manifest
    return found


async def test_a_lost_worker_finishes_its_rooms_recording_cleanly(tmp_path: Path) -> None:
    """Recording runs in signaling (the worker forwards the rewritten RTP): a worker killed
    mid-meeting leaves a closed, verifiable recording, and the other room's goes on."""
    data = tmp_path / "data"
    with running_server(tmp_path, extra_args=["--workers", "2", "--record-all"]) as server:
        url = server.base_url
        room_a = [SyntheticParticipant(url, "ghi-a", name) for name in ("An", "Binh")]
        room_b = [SyntheticParticipant(url, "ghi-b", name) for name in ("Chi", "Dung")]
        try:
            for person in (room_a[0], room_b[0], room_a[1], room_b[1]):
                await person.join()
            assert await wait_until(lambda: meeting(room_a) and meeting(room_b), 40)

            def four_tracks_each() -> bool:
                found = manifests(data)
                return all(room in found and len(found[room].tracks) == 4
                           for room in ("ghi-a", "ghi-b"))

            assert await wait_until(four_tracks_each, 20), manifests(data)
            os.kill(ready_workers(url)[0] or 0, signal.SIGKILL)
            assert await wait_until(lambda: manifests(data)["ghi-a"].state != "recording", 20)
            assert manifests(data)["ghi-b"].state == "recording"
            closed = manifests(data)["ghi-a"]
            assert closed.state == "complete", closed
            assert verify(data, closed.id) == (True, None)
            assert all((track.bytes or 0) > 0 for track in closed.tracks.values()), closed.tracks
        finally:
            await asyncio.gather(*(p.leave() for p in room_a + room_b), return_exceptions=True)
        assert await wait_until(lambda: manifests(data)["ghi-b"].state != "recording", 20)


def worker_traffic(base_url: str) -> tuple[float, float]:
    """(forwarded packets, frames crossing the worker socket besides stats and media) as of
    the workers' last stats report (both from the same report: one consistent snapshot)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for name in ("rtp_forwarded_packets", "media_worker_reports", "media_worker_calls"):
        match = re.search(rf"^diemcau_{name}_total (\S+)$", text, re.M)
        assert match, name
        values[name] = float(match.group(1))
    return (values["rtp_forwarded_packets"],
            values["media_worker_reports"] + values["media_worker_calls"])


async def test_nothing_crosses_the_worker_socket_per_packet(tmp_path: Path) -> None:
    """A meeting in a worker process: what signaling and the worker exchange is per join, per
    change and per report (a few frames a second), never per forwarded packet. Counted over a
    fixed number of packets, not timed: 3,000 forwarded packets may bring ~2 frames a second of
    calls and events however long they take to flow, but not one per 20 packets."""
    with running_server(tmp_path, extra_args=["--workers", "2"]) as server:
        url = server.base_url
        people = [SyntheticParticipant(url, "phong-dem", name) for name in ("An", "Binh")]
        try:
            for person in people:
                await person.join()
            assert await wait_until(lambda: meeting(people), 40), (
                {p.name: dict(p.received) for p in people})
            # Forwarded packets are gathered every 2 s, the frame counts in every report: once
            # a report counts packets, the joins' frames are counted too.
            assert await wait_until(lambda: worker_traffic(url)[0] > 0, 20)
            forwarded0, frames0 = worker_traffic(url)
            assert frames0 > 2  # the joins crossed (besides each worker's Ready): they count

            def flowed() -> bool:
                return worker_traffic(url)[0] >= forwarded0 + 3000

            assert await wait_until(flowed, 60), (worker_traffic(url), forwarded0)
            forwarded1, frames1 = worker_traffic(url)
            assert frames1 - frames0 < (forwarded1 - forwarded0) / 20, (
                frames1 - frames0, forwarded1 - forwarded0)
        finally:
            await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
