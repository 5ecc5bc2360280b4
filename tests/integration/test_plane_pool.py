"""The media plane over real worker processes (sfu/plane_pool.py), without media: placement of
rooms, the pool's own view of each room, and what a dead or hung worker does to signaling
(nothing blocks; only its rooms end, with ``media-worker-lost``; bounded restarts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from loadtest.client import wait_until
from sfu import native, plane_pool, plane_process
from sfu.events import LeaveReason, MediaEvent, Pinned, Removed, TrackMuted
from sfu.plane import UnknownParticipant
from sfu.plane_pool import MediaUnavailable, WorkerPool
from sfu.plane_process import WorkerLost, WorkerProcess
from sfu.plane_wire import MAX_FRAME, Join, Ready, Reply, frame
from sfu.types import Kind
from sfu.worker import MediaConfig

Heard = defaultdict[str, list[MediaEvent]]


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(MediaConfig(ice_addresses=("127.0.0.1",)), 2)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


def sink(heard: Heard, participant: str) -> object:
    return heard[participant].append


def removed(heard: Heard, participant: str) -> bool:
    return Removed(LeaveReason.MEDIA_WORKER_LOST) in heard[participant]


async def test_rooms_go_to_the_least_loaded_worker_and_stay_there(pool: WorkerPool) -> None:
    heard: Heard = defaultdict(list)
    pool.join("a", "a1", "An", sink(heard, "a1"))  # type: ignore[arg-type]
    pool.join("b", "b1", "Binh", sink(heard, "b1"))  # type: ignore[arg-type]
    pool.join("a", "a2", "Chi", sink(heard, "a2"))  # type: ignore[arg-type]
    pool.join("a", "a3", "Dung", sink(heard, "a3"))  # type: ignore[arg-type]
    pool.join("c", "c1", "Em", sink(heard, "c1"))  # type: ignore[arg-type]
    where = {name: room.slot.index for name, room in pool.rooms.items()}
    assert where == {"a": 0, "b": 1, "c": 1}  # c: worker 1 has 1 participant, worker 0 has 3
    assert pool.pids()[0] != pool.pids()[1]


async def test_the_pools_view_answers_at_once_and_events_come_from_the_worker(
        pool: WorkerPool) -> None:
    heard: Heard = defaultdict(list)
    assert pool.join("a", "a1", "An", sink(heard, "a1")).participants == ()  # type: ignore[arg-type]
    before = pool.join("a", "a2", "Binh", sink(heard, "a2"))  # type: ignore[arg-type]
    assert [p.id for p in before.participants] == ["a1"]
    pool.set_muted("a", "a1", Kind.AUDIO, True)
    pool.pin("a", "a2")
    state = pool.room_state("a")
    assert state is not None and state.pinned == "a2"
    assert [(p.id, p.audio_muted) for p in state.participants] == [("a1", True), ("a2", False)]
    with pytest.raises(UnknownParticipant):
        pool.set_muted("a", "nobody", Kind.AUDIO, True)
    with pytest.raises(UnknownParticipant):
        pool.pin("a", "nobody")
    assert await wait_until(lambda: Pinned("a2") in heard["a1"], 10), heard
    assert TrackMuted("a1", Kind.AUDIO, True) in heard["a2"]
    assert await wait_until(lambda: pool.stats().participants == 2, 10)
    await pool.leave("a", "a1")
    await pool.leave("a", "a2")
    assert pool.room_state("a") is None
    assert await wait_until(lambda: pool.stats().participants == 0, 10)


async def test_each_worker_says_how_it_forwards(capfd: pytest.CaptureFixture[str]) -> None:
    # Same source tree and environment as this process: the same fan-out path (compiled or
    # not, io_uring or not), said by each worker itself, not assumed from signaling's.
    expected = native.describe()
    pool = WorkerPool(MediaConfig(ice_addresses=("127.0.0.1",)), 2)
    await pool.open()
    try:
        for slot in pool.slots:
            assert slot.process is not None and slot.process.fanout == expected
    finally:
        await pool.close()
    err = capfd.readouterr().err
    for index in range(2):
        assert f"worker{index} sfu.plane_server: media fan-out: {expected}" in err, err[-2000:]


async def test_a_killed_worker_ends_only_its_rooms_and_comes_back(pool: WorkerPool) -> None:
    heard: Heard = defaultdict(list)
    pool.join("a", "a1", "An", sink(heard, "a1"))  # type: ignore[arg-type]
    pool.join("b", "b1", "Binh", sink(heard, "b1"))  # type: ignore[arg-type]
    lost: list[str] = []
    pool.on_room_lost.append(lost.append)
    old = pool.pids()
    assert old[0] is not None
    os.kill(old[0], signal.SIGKILL)
    assert await wait_until(lambda: removed(heard, "a1"), 10), heard
    assert lost == ["a"]
    assert not removed(heard, "b1")
    assert pool.room_state("a") is None and pool.room_state("b") is not None
    assert await wait_until(lambda: pool.pids()[0] not in (None, old[0]), 30), pool.pids()
    assert pool.pids()[1] == old[1]
    assert pool.stats().totals["workers_lost"] == 1
    pool.join("c", "c1", "Chi", sink(heard, "c1"))  # type: ignore[arg-type]
    assert pool.rooms["c"].slot.index == 0  # the fresh, empty worker
    pool.pin("c", "c1")
    assert await wait_until(lambda: Pinned("c1") in heard["c1"], 10)


async def test_a_hung_worker_blocks_nothing_and_is_replaced(
        pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plane_process, "HUNG_S", 1.5)
    heard: Heard = defaultdict(list)
    pool.join("a", "a1", "An", sink(heard, "a1"))  # type: ignore[arg-type]
    pool.join("b", "b1", "Binh", sink(heard, "b1"))  # type: ignore[arg-type]
    hung = pool.pids()[0]
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    try:
        started = time.monotonic()
        pool.set_muted("a", "a1", Kind.VIDEO, True)  # one-way: returns at once
        publish = asyncio.ensure_future(pool.publish("a", "a1", "v=0\r\n"))
        with pytest.raises(WorkerLost):
            await asyncio.wait_for(publish, 20)
        assert time.monotonic() - started < 20
        assert removed(heard, "a1") and not removed(heard, "b1")
        pool.pin("b", "b1")  # the other worker still answers
        assert await wait_until(lambda: Pinned("b1") in heard["b1"], 10)
        assert await wait_until(lambda: pool.pids()[0] not in (None, hung), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # normally killed by the pool already
            os.kill(hung, signal.SIGCONT)


async def test_restarts_are_bounded_then_rooms_go_to_the_others(
        pool: WorkerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plane_pool, "MAX_RESTARTS", 1)
    heard: Heard = defaultdict(list)
    first = pool.pids()[0]
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert await wait_until(lambda: pool.pids()[0] not in (None, first), 30)
    second = pool.pids()[0]
    assert second is not None
    os.kill(second, signal.SIGKILL)
    assert await wait_until(lambda: pool.stats().totals["workers_lost"] == 2, 10)
    await asyncio.sleep(plane_pool.RESTART_DELAY_S * 4)  # it would have restarted by now
    assert pool.pids()[0] is None
    pool.join("a", "a1", "An", sink(heard, "a1"))  # type: ignore[arg-type]
    assert pool.rooms["a"].slot.index == 1
    other = pool.pids()[1]
    assert other is not None
    monkeypatch.setattr(plane_pool, "MAX_RESTARTS", 0)
    os.kill(other, signal.SIGKILL)
    assert await wait_until(lambda: removed(heard, "a1"), 10)
    with pytest.raises(MediaUnavailable):
        pool.join("b", "b1", "Binh", sink(heard, "b1"))  # type: ignore[arg-type]


async def test_a_worker_that_sends_garbage_is_refused_frame_by_frame_then_cut_off() -> None:
    """Signaling's side of the socket against a worker gone wrong (a stand-in process):
    a frame that is not a known report is counted and dropped, a report about a room or a
    call nobody asked for changes nothing, and a broken length ends the worker (killed)."""
    ours, theirs = socket.socketpair()
    proc = await asyncio.create_subprocess_exec("sleep", "60")
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    reports: list[object] = []
    lost: list[str] = []
    worker = WorkerProcess(0, proc, reader, writer, lambda _w, r: reports.append(r),
                           lambda _w, why: lost.append(why))
    worker.start_reading()
    try:
        theirs.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # not msgpack
        theirs.sendall(frame(Reply(99, value="nobody asked")))  # no such call
        theirs.sendall(frame(Ready(1)))  # a real report: handed on
        assert await wait_until(lambda: reports == [Ready(1)], 5), reports
        assert worker.bad_reports == 1 and not lost
        theirs.sendall(struct.pack(">I", MAX_FRAME + 1))
        assert await wait_until(lambda: bool(lost), 5)
        assert lost[0].startswith("broken stream")
        assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGKILL
        with pytest.raises(WorkerLost):
            worker.send(Join("r", "p", "n"))
    finally:
        theirs.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_worker_drops_a_call_it_cannot_read_and_serves_the_next(pool: WorkerPool) -> None:
    heard: Heard = defaultdict(list)
    pool.join("a", "a1", "An", sink(heard, "a1"))  # type: ignore[arg-type]
    process = pool.rooms["a"].slot.process
    assert process is not None
    process.writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    process.writer.write(frame(Ready(5)))  # a report is not a call
    pool.pin("a", "a1")
    assert await wait_until(lambda: Pinned("a1") in heard["a1"], 10), heard
    assert process.alive and pool.pids()[0] == process.pid
