"""kill -9 while recording at real-time pace: the files keep all but the last ~2 s at most,
and the next start finds the recording, remuxes it into finished files and marks it recovered.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import av

from recorder.archive import list_recordings, verify
from recorder.recovery import find_interrupted, recover_all

KILL_AFTER_MEDIA_S = 3.0
DEADLINE_S = 60.0
MAX_LOSS_S = 2.0


def media_end(path: Path) -> tuple[float, int]:
    """(last packet time in s, packets) of whatever demuxes from a possibly torn file."""
    last, count = 0.0, 0
    with av.open(str(path)) as container:
        stream = container.streams[0]
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and not packet.is_corrupt:
                    last = float(packet.pts * packet.time_base)
                    count += 1
        except (av.InvalidDataError, EOFError):
            pass
    return last, count


def test_kill_9_loses_at_most_2s_and_recovery_finishes_the_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.recorder.killed_recorder", str(tmp_path)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    submitted = -1.0
    rec_id = None
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline and submitted < KILL_AFTER_MEDIA_S:
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if not ready:
                assert child.poll() is None, child.stderr.read()
                continue
            line = child.stdout.readline()
            assert line, child.stderr.read()
            if line.startswith("id="):
                rec_id = line.strip()[3:]
            elif line.startswith("t="):
                submitted = float(line[2:])
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(DEADLINE_S)
        child.stdout.close()
        child.stderr.close()
    assert submitted >= KILL_AFTER_MEDIA_S and rec_id is not None

    [rec] = list_recordings(tmp_path)
    assert rec["id"] == rec_id and rec["state"] == "recording"
    ends = {}
    for f in rec["files"]:
        last, count = media_end(tmp_path / f["path"])
        ends[f["kind"]] = last
        assert count > 0
    video_loss = submitted - ends["video"]
    audio_loss = submitted - ends["audio"]
    print(f"\nkill -9 after {submitted:.3f} s of media submitted: video kept up to "
          f"{ends['video']:.3f} s (lost {video_loss:.3f} s), audio up to {ends['audio']:.3f} s "
          f"(lost {audio_loss:.3f} s)")
    assert video_loss <= MAX_LOSS_S and audio_loss <= MAX_LOSS_S

    assert [p.name for p in find_interrupted(tmp_path)] == [rec_id]
    assert recover_all(tmp_path) == [rec_id]
    assert find_interrupted(tmp_path) == []
    [rec] = list_recordings(tmp_path)
    assert rec["state"] == "recovered" and rec["ended_at"] is not None
    for f in rec["files"]:
        assert f["duration_s"] >= ends[f["kind"]] - 0.1
        assert f["sha256"] and f["bytes"] == (tmp_path / f["path"]).stat().st_size
        with av.open(str(tmp_path / f["path"])) as container:
            assert container.duration is not None  # a finished file: duration and cues
            assert sum(1 for _ in container.decode(container.streams[0])) > 0
    assert verify(tmp_path, rec_id) == (True, None)
    assert recover_all(tmp_path) == []  # idempotent
