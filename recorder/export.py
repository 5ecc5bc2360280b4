"""``diemcau archive export``: one composite MP4 from a recording's per-track files, offline.

The only place that decodes (never in the media path). Every track file is decoded as a stream
and placed on the recording's common clock by its manifest ``start``, so memory stays bounded
however long the recording: per output frame, each participant's newest picture is scaled
into its tile (aspect kept, letterboxed) and the audio of every participant for that frame's
duration is summed with numpy (int32, clipped). Layouts: ``grid`` (equal tiles) and ``speaker``
(the active speaker large, the others in a strip below), following who spoke with a hold time.
A gap in a track stays a gap: silence, and the tile goes black after ``STALE_VIDEO_S``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from recorder.manifest import MANIFEST_NAME, RECORDINGS_DIR, TrackInfo, read_manifest

__all__ = ["LAYOUTS", "SpeakerTracker", "export_recording", "grid_cells", "speaker_cells"]

RATE = 48000
STALE_VIDEO_S = 1.0
"""A participant's last picture is shown this long past its frame time, then black."""
SPEAKER_HOLD_S = 1.5
SPEAKER_MIN_RMS = 300.0  # int16 RMS under which nobody is speaking
LAYOUTS = ("grid", "speaker")

Cell = tuple[int, int, int, int]  # x, y, width, height


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def grid_cells(count: int, width: int, height: int) -> list[Cell]:
    """Equal tiles, row by row, in a near-square grid."""
    if count <= 0:
        return []
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    w, h = _even(width / columns), _even(height / rows)
    return [((i % columns) * w, (i // columns) * h, w, h) for i in range(count)]


def speaker_cells(count: int, speaker: int, width: int, height: int) -> list[Cell]:
    """The speaker's tile takes the top three quarters; the others share the bottom strip."""
    if count <= 1:
        return grid_cells(count, width, height)
    top = _even(height * 3 / 4)
    others = count - 1
    w = _even(width / others)
    cells: list[Cell] = []
    strip = 0
    for index in range(count):
        if index == speaker:
            cells.append((0, 0, _even(width), top))
        else:
            cells.append((strip * w, top, w, _even(height - top)))
            strip += 1
    return cells


class SpeakerTracker:
    """Who speaks: the loudest participant above a floor, changed only after a hold time."""

    def __init__(self, hold_s: float = SPEAKER_HOLD_S, min_rms: float = SPEAKER_MIN_RMS) -> None:
        self.hold_s = hold_s
        self.min_rms = min_rms
        self.speaker: int = 0
        self._since = -math.inf

    def update(self, levels: list[float], now_s: float) -> int:
        if levels:
            loudest = max(range(len(levels)), key=levels.__getitem__)
            if (loudest != self.speaker and levels[loudest] >= self.min_rms
                    and now_s - self._since >= self.hold_s):
                self.speaker = loudest
                self._since = now_s
        return self.speaker


class _VideoSource:
    """Decoded pictures of one file; ``at(t)`` gives the picture showing at common time t."""

    def __init__(self, path: Path, offset_s: float) -> None:
        self.container = av.open(str(path))
        self.offset_s = offset_s
        self._frames: Iterator[av.VideoFrame] = self.container.decode(video=0)
        self._current: av.VideoFrame | None = None
        self._current_t = -math.inf
        self._next: av.VideoFrame | None = None
        self._next_t = -math.inf
        self._advance()

    def _advance(self) -> None:
        for frame in self._frames:
            if frame.pts is None or frame.time_base is None:  # no time: cannot be placed
                continue
            self._next, self._next_t = frame, self.offset_s + float(frame.pts * frame.time_base)
            return
        self._next, self._next_t = None, math.inf

    def at(self, t: float) -> av.VideoFrame | None:
        while self._next is not None and self._next_t <= t:
            self._current, self._current_t = self._next, self._next_t
            self._advance()
        if self._current is None or t - self._current_t > STALE_VIDEO_S:
            return None
        return self._current

    def close(self) -> None:
        self.container.close()


class _AudioSource:
    """Decoded audio of one file as int16 stereo 48 kHz, read by common-clock sample ranges."""

    def __init__(self, path: Path, offset_s: float) -> None:
        self.container = av.open(str(path))
        self.offset = round(offset_s * RATE)
        self._frames: Iterator[av.AudioFrame] = self.container.decode(audio=0)
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._buffer = np.zeros((0, 2), np.int16)
        self._buffer_start = 0  # common sample index of _buffer[0]
        self._exhausted = False

    def _decode_more(self) -> None:
        for frame in self._frames:
            if frame.pts is None or frame.time_base is None:
                continue
            position = self.offset + round(float(frame.pts * frame.time_base) * RATE)
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1, 2)
                end = self._buffer_start + len(self._buffer)
                if not len(self._buffer):
                    self._buffer_start = end = position
                if position > end + RATE // 100:  # a gap of more than 10 ms stays a gap
                    self._buffer = np.concatenate(
                        [self._buffer, np.zeros((position - end, 2), np.int16)])
                self._buffer = np.concatenate([self._buffer, samples])
                position += len(samples)
            return
        self._exhausted = True

    def read(self, start: int, count: int) -> np.ndarray:
        while not self._exhausted and self._buffer_start + len(self._buffer) < start + count:
            self._decode_more()
        out = np.zeros((count, 2), np.int16)
        lo = max(start, self._buffer_start)
        hi = min(start + count, self._buffer_start + len(self._buffer))
        if hi > lo:
            out[lo - start:hi - start] = self._buffer[lo - self._buffer_start:
                                                      hi - self._buffer_start]
        drop = max(0, start + count - self._buffer_start)
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return out

    def close(self) -> None:
        self.container.close()


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    frames: int
    duration_s: float
    participants: list[str]


def _fit(frame: av.VideoFrame, cell_w: int, cell_h: int) -> np.ndarray:
    scale = min(cell_w / frame.width, cell_h / frame.height)
    w, h = _even(frame.width * scale), _even(frame.height * scale)
    return frame.reformat(width=min(w, cell_w), height=min(h, cell_h),
                          format="rgb24").to_ndarray()


def export_recording(data_dir: Path, recording_id: str, output: Path, *, layout: str = "grid",
                     width: int = 1280, height: int = 720, fps: int = 25,
                     progress: bool = True) -> ExportResult:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    manifest = read_manifest(data_dir / RECORDINGS_DIR / recording_id / MANIFEST_NAME)
    tracks = [t for t in manifest.tracks.values()
              if (data_dir / t.path).is_file() and t.frames != 0]
    if not tracks:
        raise ValueError(f"recording {recording_id} has no readable track")
    participants = sorted({t.participant for t in tracks})
    t0 = min(t.start for t in tracks)
    end = max(t.start + (t.duration_s or _probe_duration(data_dir / t.path)) for t in tracks)
    videos: dict[int, _VideoSource] = {}
    audios: dict[int, list[_AudioSource]] = {}
    by_participant: dict[str, list[TrackInfo]] = {}
    for track in tracks:
        by_participant.setdefault(track.participant, []).append(track)
    for index, name in enumerate(participants):
        for track in by_participant[name]:
            if track.kind == "video" and index not in videos:
                videos[index] = _VideoSource(data_dir / track.path, track.start - t0)
            elif track.kind == "audio":
                audios.setdefault(index, []).append(
                    _AudioSource(data_dir / track.path, track.start - t0))
    total = max(1, math.ceil((end - t0) * fps))
    speaker = SpeakerTracker()
    out = av.open(str(output), "w")
    try:
        vstream = out.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "veryfast", "crf": "23"}
        astream = out.add_stream("aac", rate=RATE, layout="stereo")
        samples_done = 0
        for number in tqdm(range(total), unit="frame", disable=not progress,
                           desc=f"export {recording_id}"):
            t = number / fps
            samples_end = round((number + 1) * RATE / fps)
            count = samples_end - samples_done
            mix = np.zeros((count, 2), np.int32)
            levels = [0.0] * len(participants)
            for index, sources in audios.items():
                for source in sources:
                    chunk = source.read(samples_done, count)
                    mix += chunk
                    levels[index] = max(levels[index],
                                        float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))))
            current = speaker.update(levels, t)
            if layout == "grid":
                cells = grid_cells(len(participants), width, height)
            else:
                cells = speaker_cells(len(participants), current, width, height)
            canvas = np.zeros((height, width, 3), np.uint8)
            for index, (x, y, w, h) in enumerate(cells):
                video = videos.get(index)
                picture = video.at(t) if video is not None else None
                if picture is not None:
                    tile = _fit(picture, w, h)
                    th, tw = tile.shape[:2]
                    oy, ox = y + (h - th) // 2, x + (w - tw) // 2
                    canvas[oy:oy + th, ox:ox + tw] = tile
                if layout == "grid" and index == current and levels[index] >= SPEAKER_MIN_RMS:
                    canvas[y:y + h, x:x + 4] = canvas[y:y + h, x + w - 4:x + w] = (0, 200, 0)
                    canvas[y:y + 4, x:x + w] = canvas[y + h - 4:y + h, x:x + w] = (0, 200, 0)
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(
                format="yuv420p")
            frame.pts = number
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
            audio = av.AudioFrame.from_ndarray(
                np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1),
                format="s16", layout="stereo")
            audio.sample_rate = RATE
            audio.pts = samples_done
            audio.time_base = Fraction(1, RATE)
            out.mux(astream.encode(audio))
            samples_done = samples_end
        out.mux(vstream.encode(None))
        out.mux(astream.encode(None))
    finally:
        out.close()
        for video_source in videos.values():
            video_source.close()
        for group in audios.values():
            for audio_source in group:
                audio_source.close()
    return ExportResult(output, total, total / fps, participants)


def _probe_duration(path: Path) -> float:
    """A file still being recorded has no duration entry: the last packet's time."""
    last = 0.0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams[0]):
            if packet.pts is not None:
                last = float(packet.pts * packet.time_base)
    return last
