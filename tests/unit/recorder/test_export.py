"""Offline export: a recording of two participants -> one MP4 with tiles and mixed audio."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from recorder.cli import main as archive_main
from recorder.export import SpeakerTracker, export_recording, grid_cells, speaker_cells
from recorder.recording import Recording
from tests.unit.recorder.media import T0, feed_participant


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, str]:
    rec = Recording(tmp_path, "board", now_s=T0)
    feed_participant(rec, "alice", ntp_offset=-3.2e9, seq0=1, ts0=5, delay_s=0.0)
    feed_participant(rec, "bob", ntp_offset=12.0, seq0=40000, ts0=2**32 - 9000, delay_s=0.02)
    rec.close(now_s=T0 + 2.1)
    return tmp_path, rec.id


def test_grid_export_has_both_tiles_and_the_mixed_audio(recording: tuple[Path, str]) -> None:
    data_dir, rec_id = recording
    out = data_dir / "out.mp4"
    result = export_recording(data_dir, rec_id, out, width=640, height=240, fps=10,
                              progress=False)
    assert result.participants == ["alice", "bob"]
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        frames = list(container.decode(video=0))
    assert len(frames) == result.frames and 19 <= len(frames) <= 22
    picture = frames[10].to_ndarray(format="rgb24")
    assert picture.shape == (240, 640, 3)
    left, right = picture[:, :320], picture[:, 320:]
    assert left.mean() > 20 and right.mean() > 20  # both participants' video is shown
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.01  # the tones, not silence


def test_cli_export_speaker_layout(recording: tuple[Path, str]) -> None:
    data_dir, rec_id = recording
    out = data_dir / "speaker.mp4"
    assert archive_main(["archive", "export", rec_id, "--layout", "speaker", "-o", str(out),
                         "--size", "320x240", "--fps", "5", "--data-dir", str(data_dir)]) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.width == 320
    assert archive_main(["archive", "export", "nope", "-o", str(out),
                         "--data-dir", str(data_dir)]) == 1


def test_layouts_tile_the_canvas() -> None:
    assert grid_cells(4, 1280, 720) == [(0, 0, 640, 360), (640, 0, 640, 360),
                                        (0, 360, 640, 360), (640, 360, 640, 360)]
    assert len(grid_cells(5, 1280, 720)) == 5
    cells = speaker_cells(3, 1, 1280, 720)
    assert cells[1] == (0, 0, 1280, 540)
    assert cells[0] == (0, 540, 640, 180) and cells[2] == (640, 540, 640, 180)


def test_speaker_follows_the_loudest_with_a_hold() -> None:
    tracker = SpeakerTracker(hold_s=1.5, min_rms=300)
    assert tracker.update([0, 1000], 0.0) == 1
    assert tracker.update([2000, 100], 0.5) == 1  # held
    assert tracker.update([2000, 100], 1.6) == 0
    assert tracker.update([10, 20], 5.0) == 0  # silence: nobody takes over
