"""A whole recording from RTP to archive: two participants, SR-mapped clocks, manifest, list,
verify, and every kind of tampering that verify must name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recorder.archive import list_recordings, verify
from recorder.cli import main as archive_main
from recorder.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestWriter,
    read_manifest,
    sha256_file,
)
from recorder.recording import Recording
from tests.unit.recorder.media import T0, feed_participant, vp8_frames, vp8_stream


@pytest.fixture
def finished(tmp_path: Path) -> tuple[Path, str]:
    recording = Recording(tmp_path, "board", now_s=T0)
    feed_participant(recording, "alice", ntp_offset=-3.2e9, seq0=65000, ts0=2**32 - 30000,
                     delay_s=0.010)
    feed_participant(recording, "bob", ntp_offset=+17.5, seq0=10, ts0=77, delay_s=0.030)
    assert recording.poll(T0 + 5) == []  # nothing waits for a key frame any more
    assert recording.close(now_s=T0 + 2.5) == "complete"
    return tmp_path, recording.id


def test_list_has_the_exact_shape_and_files_are_intact(finished: tuple[Path, str]) -> None:
    data_dir, rec_id = finished
    [rec] = list_recordings(data_dir)
    assert set(rec) == {"id", "room", "started_at", "ended_at", "state", "files"}
    assert rec["id"] == rec_id and rec["room"] == "board" and rec["state"] == "complete"
    assert rec["started_at"] == T0 and rec["ended_at"] == T0 + 2.5
    assert len(rec["files"]) == 4
    for f in rec["files"]:
        assert set(f) == {"path", "kind", "participant", "codec", "duration_s", "bytes",
                          "sha256"}
        path = data_dir / f["path"]
        assert f["path"].startswith(f"recordings/{rec_id}/")
        assert path.stat().st_size == f["bytes"] and sha256_file(path) == f["sha256"]
        assert f["duration_s"] == pytest.approx(2.0, abs=0.05)
        assert f["codec"] in ("vp8", "opus")
        assert f["kind"] == ("video" if f["codec"] == "vp8" else "audio")
    assert verify(data_dir) == (True, None)


def test_tracks_of_different_participants_line_up_within_40ms(
        finished: tuple[Path, str]) -> None:
    data_dir, rec_id = finished
    manifest = read_manifest(data_dir / "recordings" / rec_id / MANIFEST_NAME)
    starts = {t.track: t.start for t in manifest.tracks.values()}
    # everything was captured at T0; each publisher's clock is mapped through its SRs
    assert max(starts.values()) - min(starts.values()) < 0.040
    assert starts["alice-video"] == pytest.approx(T0 + 0.010, abs=0.002)
    assert starts["bob-audio"] == pytest.approx(T0 + 0.030, abs=0.002)


def test_verify_names_a_flipped_byte(finished: tuple[Path, str]) -> None:
    data_dir, rec_id = finished
    target = next((data_dir / "recordings" / rec_id).glob("bob-video.webm"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    ok, culprit = verify(data_dir, rec_id)
    assert not ok and "bob-video.webm" in culprit and "sha256" in culprit


def test_verify_names_a_deleted_file(finished: tuple[Path, str]) -> None:
    data_dir, rec_id = finished
    (data_dir / "recordings" / rec_id / "alice-audio.webm").unlink()
    ok, culprit = verify(data_dir)
    assert not ok and culprit.endswith("alice-audio.webm: missing")


def test_verify_names_an_added_file(finished: tuple[Path, str]) -> None:
    data_dir, rec_id = finished
    (data_dir / "recordings" / rec_id / "mallory-video.webm").write_bytes(b"\x1a\x45\xdf\xa3")
    ok, culprit = verify(data_dir)
    assert not ok and "mallory-video.webm" in culprit and "added" in culprit


@pytest.mark.parametrize("edit", ["field", "drop_line", "swap_lines"])
def test_verify_names_an_edited_manifest(finished: tuple[Path, str], edit: str) -> None:
    data_dir, rec_id = finished
    path = data_dir / "recordings" / rec_id / MANIFEST_NAME
    lines = path.read_text().splitlines(keepends=True)
    if edit == "field":
        i = next(i for i, line in enumerate(lines) if '"participant":"alice"' in line)
        lines[i] = lines[i].replace('"participant":"alice"', '"participant":"eve"')
    elif edit == "drop_line":
        del lines[3]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    path.write_text("".join(lines))
    ok, culprit = verify(data_dir, rec_id)
    assert not ok and f"{MANIFEST_NAME} line" in culprit
    assert ("hash mismatch" in culprit) if edit == "field" else ("chain broken" in culprit)


def test_a_forged_path_outside_the_recording_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "recordings" / "r1"
    writer = ManifestWriter.create(folder / MANIFEST_NAME, "r1", "room", T0)
    writer.track("t", "p", "video", "vp8", "recordings/r1/../../../etc/passwd", T0)
    with pytest.raises(ManifestError, match="outside the recording"):
        read_manifest(folder / MANIFEST_NAME)
    ok, culprit = verify(tmp_path)
    assert not ok and "outside the recording" in culprit


def test_cli_list_json_and_verify_exit_codes(finished: tuple[Path, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, rec_id = finished
    assert archive_main(["archive", "list", "--json", "--data-dir", str(data_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [rec_id]
    assert archive_main(["archive", "verify", rec_id, "--data-dir", str(data_dir)]) == 0
    (data_dir / "recordings" / rec_id / "bob-audio.webm").unlink()
    assert archive_main(["archive", "verify", "--data-dir", str(data_dir)]) == 1
    assert "bob-audio.webm: missing" in capsys.readouterr().err
    assert archive_main(["archive", "verify", "nope", "--data-dir", str(data_dir)]) == 1


def test_a_writer_failure_stops_the_recording_and_marks_it_failed(tmp_path: Path) -> None:
    errors = []
    recording = Recording(tmp_path, "room", now_s=T0, queue_size=1,
                          on_error=lambda track, error, detail: errors.append((track, error)))
    video = recording.add_track("v", "p", "vp8")
    other = recording.add_track("a", "p", "opus")
    for packets in vp8_stream(vp8_frames()):
        for packet in packets:
            video.on_rtp(packet, T0)  # the whole clip at once: a queue of one cannot hold it
    assert errors and errors[0][0] == "v"
    assert not other.active  # the whole recording stopped; the caller was never blocked
    assert recording.close(now_s=T0 + 1) == "failed"
    [rec] = list_recordings(tmp_path)
    assert rec["state"] == "failed"
    assert verify(tmp_path) == (True, None)  # what was written is accounted for


@pytest.mark.parametrize("seed", range(8))
def test_mangled_manifests_only_ever_give_a_culprit(finished: tuple[Path, str],
                                                     seed: int) -> None:
    """Random byte damage to the manifest: read_manifest raises ManifestError (nothing else),
    verify names a culprit, list still lists the recording."""
    import random

    data_dir, rec_id = finished
    path = data_dir / "recordings" / rec_id / MANIFEST_NAME
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    for _ in range(rng.randrange(1, 6)):
        choice = rng.random()
        pos = rng.randrange(len(data))
        if choice < 0.5:
            data[pos] = rng.randrange(256)
        elif choice < 0.75:
            del data[pos:pos + rng.randrange(1, 50)]
        else:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 20))
    path.write_bytes(bytes(data))
    try:
        read_manifest(path)
    except ManifestError:
        pass
    ok, culprit = verify(data_dir)
    assert ok is False and culprit
    assert [r["id"] for r in list_recordings(data_dir)] == [rec_id]
