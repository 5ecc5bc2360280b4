"""``diemcau loadtest`` kept working: tiny runs (a few participants, a few seconds).

The big runs (10+ participants, the ramp, Janus side by side) are benchmarks: README, not here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import report
from loadtest.run import add_arguments, capacity_option, print_summary, run

pytestmark = pytest.mark.media


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--workers", "0", "--quiet", *argv])


@pytest.mark.timeout(60)
async def test_fixed_run_reports_every_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           ) -> None:
    document = await run(parse("--participants", "3", "--rooms", "1", "--duration", "4"))
    missing = [key for key in report.REPORT_KEYS if key not in document]
    assert not missing, f"missing {missing}"
    assert document["joined"] == 3, document["refused"]
    assert document["refused"] == {}
    for key in ("join_ms", "first_frame_ms", "loss_pct", "delay_ms", "recv_kbps"):
        assert {"p50", "p95", "max"} <= set(document[key]), key
    assert document["first_frame_ms"]["n"] == 6, document["first_frame_ms"]  # 3 x 2 pairs
    assert document["first_frame_ms"]["max"] is not None
    assert document["loss_pct"]["overall"] < 1.0, document["loss_pct"]
    assert document["delay_ms"]["p95"] is not None and document["delay_ms"]["p95"] < 150
    assert document["video_tracks_missing"] == 0, document
    # two others each: a gallery of two 640 px tiles asks for the h layer
    assert set(document["layers"]["tracks"]) == {"h"}, document["layers"]
    assert document["content_marker"]["bad"] == 0 and document["content_marker"]["ok"] > 200
    assert document["recv_kbps"]["p50"] > 500  # two h layers (~500 kbit/s each) + Opus
    assert document["server"]["cpu_pct"] > 0 and document["server"]["rss_mb"] > 10
    assert document["audio_only"]["participants"] == 0
    assert not document["server_log_problems"], document["server_log_problems"]
    json.dumps(document)  # the --json report is plain JSON
    print_summary(document)
    assert "delay ms" in capsys.readouterr().out
    report.plot([document], tmp_path / "plot.png", "smoke")
    assert (tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.timeout(60)
async def test_added_delay_is_measured() -> None:
    """The delay figure is real: frames stamped 60 ms early arrive ~60 ms 'late'."""
    document = await run(parse("--participants", "2", "--duration", "3",
                               "--added-delay-ms", "60"))
    assert document["delay_ms"]["p50"] is not None, document
    assert 55 <= document["delay_ms"]["p50"] <= 90, document["delay_ms"]


def test_cli_refuses_unbounded_runs() -> None:
    """``diemcau loadtest`` exists; bad bounds are refused before anything starts."""
    done = subprocess.run([sys.executable, "-m", "diemcau", "loadtest", "--participants",
                           "500"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "participants" in done.stderr


@pytest.mark.timeout(60)
async def test_room_limit_refuses_the_extra_and_keeps_quality() -> None:
    if capacity_option() is None:
        pytest.skip("diemcau serve has no room capacity option yet (the room-full issue): "
                    "the room-limit mode cannot start a server with a limit")
    document = await run(parse("--room-capacity", "2", "--participants", "4",
                               "--duration", "4"))
    assert document["joined"] == 2, document
    assert document["refused"] == {"room-full": 2}, document["refused"]
    assert document["limit_held"], document
