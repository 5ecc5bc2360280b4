"""TrackRecorder (key frame requests, layer switches, SR-mapped timestamps) and recovery's
edge cases (a torn manifest line, an unreadable file, a leftover of an interrupted recovery)."""

from __future__ import annotations

from pathlib import Path

from recorder.archive import list_recordings, verify
from recorder.clock import SenderClock
from recorder.manifest import MANIFEST_NAME, ManifestWriter, read_manifest
from recorder.recovery import TMP_PREFIX, recover_all
from recorder.track import TrackRecorder
from tests.unit.recorder.media import vp8_frames, vp8_stream

T0 = 1_800_000_000.0


def test_keyframe_requests_start_at_once_and_are_rate_limited() -> None:
    core = TrackRecorder("vp8", SenderClock(), keyframe_retry_s=1.0)
    assert core.keyframe_request(T0)  # nothing recorded yet: ask for a key frame at start
    assert not core.keyframe_request(T0 + 0.5)
    assert core.keyframe_request(T0 + 1.01)
    stream = vp8_stream(vp8_frames())
    out = [m for pk in stream[:5] for p in pk for m in core.on_rtp(p, T0 + 1.1)]
    assert len(out) == 5 and out[0].keyframe and out[0].size == (320, 240)
    assert not core.keyframe_request(T0 + 5)  # a key frame came: no more requests
    core.on_layer_change()
    assert core.keyframe_request(T0 + 5.01)  # a layer switch asks again, at once


def test_layer_switch_keeps_one_monotonic_timeline_through_each_layers_sr() -> None:
    core = TrackRecorder("vp8", SenderClock())
    frames = vp8_frames()
    low = vp8_stream(frames[:30], seq0=100, ts0=5000, ssrc=1)
    high = vp8_stream(frames, seq0=9000, ts0=777_000, ssrc=2)
    core.on_sender_report(1, 50.0, 5000, T0)  # both layers: captured at the same instants
    core.on_sender_report(2, 50.0, 777_000, T0)
    # each frame arrives when it was captured (arrivals are clock samples too)
    out = [m for i, pk in enumerate(low) for p in pk for m in core.on_rtp(p, T0 + i / 30)]
    core.on_layer_change()
    out += [m for i, pk in enumerate(high[30:], start=30) for p in pk
            for m in core.on_rtp(p, T0 + i / 30)]
    pts = [m.pts for m in out]
    assert len(out) == 60 and pts == sorted(set(pts))
    assert pts[30] == 30 * 3000  # the high layer's key frame 30 lands where it was captured
    assert core.start_s == T0


def _interrupted(tmp_path: Path, content: bytes) -> tuple[Path, Path]:
    folder = tmp_path / "recordings" / "r1"
    writer = ManifestWriter.create(folder / MANIFEST_NAME, "r1", "room", T0)
    writer.track("cam", "alice", "video", "vp8", "recordings/r1/cam.webm", T0)
    (folder / "cam.webm").write_bytes(content)
    return folder, folder / MANIFEST_NAME


def test_unreadable_file_is_kept_hashed_and_noted(tmp_path: Path) -> None:
    folder, manifest_path = _interrupted(tmp_path, b"not a matroska file at all")
    (folder / (TMP_PREFIX + "cam.webm")).write_bytes(b"leftover")
    with open(manifest_path, "ab") as handle:
        handle.write(b'{"type":"file","tra')  # torn by the crash mid-append
    assert recover_all(tmp_path) == ["r1"]
    manifest = read_manifest(manifest_path)
    assert manifest.state == "recovered"
    assert manifest.tracks["cam"].error == "unreadable"
    assert manifest.tracks["cam"].frames == 0 and manifest.tracks["cam"].sha256
    assert not (folder / (TMP_PREFIX + "cam.webm")).exists()
    assert verify(tmp_path) == (True, None)
    [rec] = list_recordings(tmp_path)
    assert rec["state"] == "recovered" and rec["files"][0]["duration_s"] == 0.0


def test_missing_file_is_noted_and_verify_accepts_the_record(tmp_path: Path) -> None:
    folder, manifest_path = _interrupted(tmp_path, b"")
    (folder / "cam.webm").unlink()
    assert recover_all(tmp_path) == ["r1"]
    assert read_manifest(manifest_path).tracks["cam"].error == "file_missing"
    assert verify(tmp_path) == (True, None)


def test_a_broken_chain_is_not_recovered_but_listed_as_failed(tmp_path: Path) -> None:
    _folder, manifest_path = _interrupted(tmp_path, b"x")
    text = manifest_path.read_text().replace('"room":"room"', '"room":"other"')
    manifest_path.write_text(text)
    assert recover_all(tmp_path) == []
    [rec] = list_recordings(tmp_path)
    assert rec["state"] == "failed" and rec["files"] == []
    ok, culprit = verify(tmp_path)
    assert not ok and "hash mismatch" in culprit
