"""Pre-encoded media for load generators: encode once, replay forever with fresh timestamps.

A load generator must cost far less than the server it loads, so it never runs an encoder per
participant. A few seconds of VP8 (640x480, 30 fps, ~1 Mbps, a keyframe every 2.5 s) and Opus
(48 kHz stereo, 20 ms frames) are encoded once per machine with PyAV, cached in memory and in a
file under the temp directory, and replayed by ``MediaStreamTrack`` subclasses whose ``recv()``
returns ``av.Packet`` objects. aiortc's ``RTCRtpSender`` then only packetizes them
(``Encoder.pack``: VP8 payload descriptor / Opus as-is) and never encodes.

What aiortc expects from a packet (``RTCRtpSender._next_encoded_frame`` -> ``encoder.pack``):
``bytes(packet)`` is one encoded frame; ``pts`` in ``time_base`` is converted to the codec clock
(90 kHz video, 48 kHz Opus) and added to the sender's random timestamp origin, so pts must grow
monotonically from one packet to the next (a jump backwards kills the sender's loop). We use the
codec clock as time base directly: no conversion and no rounding.

The content is a moving diagonal gradient with a moving block of fresh noise, so the encoder
really spends its bitrate (a static picture would encode to a few kbit/s). The clip length is a
whole number of keyframe intervals and starts with a keyframe, so looping is a valid stream.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import hashlib
import json
import logging
import math
import os
import random
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

logger = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_BITRATE = 1_000_000
KEYFRAME_INTERVAL = 75  # frames: 2.5 s
CLIP_SECONDS = 5  # two keyframe intervals
AUDIO_RATE = 48000
AUDIO_FRAME_SAMPLES = 960  # 20 ms
AUDIO_BITRATE = 32_000
AUDIO_LEVEL_DBOV = 18
"""The level our Opus clip would report (a tone at -15 dBFS peak), sent in the ssrc-audio-level
extension as browsers send it (``aiortc_hooks.send_audio_level``)."""

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
VIDEO_PTS_STEP = VIDEO_CLOCK // FPS  # 3000
MAX_LAG_S = 0.2
"""A track more than this late (a starved event loop) skips ahead instead of bursting."""

_MAGIC = b"DIEMCAU-MEDIA-1\n"


@dataclass(frozen=True)
class Clip:
    video: tuple[bytes, ...]  # one encoded VP8 frame each, 1/FPS apart
    video_keyframes: tuple[bool, ...]
    audio: tuple[bytes, ...]  # one Opus packet each, 20 ms apart

    @property
    def video_bitrate(self) -> float:
        """Average bits per second of the video loop (what the publisher sends)."""
        return sum(map(len, self.video)) * 8 * FPS / len(self.video)

    @property
    def audio_bitrate(self) -> float:
        return sum(map(len, self.audio)) * 8 * AUDIO_RATE / AUDIO_FRAME_SAMPLES / len(self.audio)

    def describe(self) -> dict[str, object]:
        return {
            "video_frames": len(self.video),
            "video_keyframes": sum(self.video_keyframes),
            "video_kbps": round(self.video_bitrate / 1000, 1),
            "largest_video_frame_bytes": max(map(len, self.video)),
            "audio_packets": len(self.audio),
            "audio_kbps": round(self.audio_bitrate / 1000, 1),
        }


# -- encoding (once) ------------------------------------------------------------------------------


def _video_planes(width: int = WIDTH, height: int = HEIGHT) -> tuple[bytes, bytes]:
    """A diagonal luma gradient (twice over: a shifted window is one slice), grey chroma."""
    row = bytes(x * 255 // width for x in range(width))
    luma = b"".join(bytes((v + y) & 255 for v in row) for y in range(height))
    return luma + luma, bytes([128]) * (width * height // 4)


def _vp8_encoder(width: int, height: int, bitrate: int, keyframe_interval: int,
                 **options: str) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.VideoCodecContext)  # an encoder's name: no literal type for it
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = bitrate
    codec.gop_size = keyframe_interval
    codec.thread_count = 2
    codec.options = {
        "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
        "error-resilient": "1", "kf_max_dist": str(keyframe_interval), **options,
    }
    return codec


def _encode_frames(codec: av.VideoCodecContext, frames: int, keyframe_interval: int,
                   noise_w: int, noise_h: int) -> tuple[list[bytes], list[bool]]:
    """The moving gradient with a moving block of noise, encoded: (frames, keyframe flags).

    The motion scales with the picture (at WIDTH x HEIGHT: 7, 5 and 3 pixels a frame).
    """
    width, height = codec.width, codec.height
    luma2, chroma = _video_planes(width, height)
    plane = width * height
    rng = random.Random(1)
    out: list[bytes] = []
    keys: list[bool] = []
    for index in range(frames):
        shift = (index * 7 * width // WIDTH) % plane
        luma = bytearray(luma2[shift:shift + plane])
        bx = (index * 5 * width // WIDTH) % (width - noise_w)
        by = (index * 3 * height // HEIGHT) % (height - noise_h)
        noise = rng.randbytes(noise_w * noise_h)
        for r in range(noise_h):
            start = (by + r) * width + bx
            luma[start:start + noise_w] = noise[r * noise_w:(r + 1) * noise_w]
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index
        if index % keyframe_interval == 0:
            frame.pict_type = av.video.frame.PictureType.I
        for packet in codec.encode(frame):
            out.append(bytes(packet))
            keys.append(bool(packet.is_keyframe))
    for packet in codec.encode(None):
        out.append(bytes(packet))
        keys.append(bool(packet.is_keyframe))
    if not out or not keys[0]:
        raise RuntimeError("VP8 encoder produced no leading keyframe")
    return out, keys


def encode_video(frames: int = CLIP_SECONDS * FPS) -> tuple[list[bytes], list[bool]]:
    codec = _vp8_encoder(WIDTH, HEIGHT, VIDEO_BITRATE, KEYFRAME_INTERVAL)
    return _encode_frames(codec, frames, KEYFRAME_INTERVAL, 160, 120)


def encode_audio(seconds: int = CLIP_SECONDS) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = AUDIO_BITRATE
    codec.time_base = AUDIO_TIME_BASE
    codec.options = {"frame_duration": "20", "application": "audio"}
    rng = random.Random(2)
    out: list[bytes] = []
    frames = seconds * AUDIO_RATE // AUDIO_FRAME_SAMPLES
    for index in range(frames):
        samples = array.array("h")
        for i in range(AUDIO_FRAME_SAMPLES):
            t = (index * AUDIO_FRAME_SAMPLES + i) / AUDIO_RATE
            # a 440 Hz tone warbling at 3 Hz, plus some noise: a realistic Opus bitrate
            value = 6000 * math.sin(2 * math.pi * (440 + 40 * math.sin(6 * math.pi * t)) * t)
            value += rng.uniform(-1500, 1500)
            samples.append(int(value))
            samples.append(int(value))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    if not out:
        raise RuntimeError("Opus encoder produced nothing")
    return out


# -- cache ----------------------------------------------------------------------------------------


def _parameters_key() -> str:
    params = [WIDTH, HEIGHT, FPS, VIDEO_BITRATE, KEYFRAME_INTERVAL, CLIP_SECONDS, AUDIO_RATE,
              AUDIO_FRAME_SAMPLES, AUDIO_BITRATE, av.__version__, 2]
    return hashlib.sha256(json.dumps(params).encode()).hexdigest()[:16]


def cache_path() -> Path:
    return Path(tempfile.gettempdir()) / f"diemcau-bench-media-{_parameters_key()}.bin"


def _dump(clip: Clip) -> bytes:
    header = json.dumps({
        "video": [len(f) for f in clip.video], "keys": list(clip.video_keyframes),
        "audio": [len(a) for a in clip.audio],
    }).encode()
    return b"".join([_MAGIC, struct.pack("!I", len(header)), header, *clip.video, *clip.audio])


def _load(data: bytes) -> Clip:
    if not data.startswith(_MAGIC):
        raise ValueError("not a media cache file")
    pos = len(_MAGIC)
    (size,) = struct.unpack_from("!I", data, pos)
    pos += 4
    header = json.loads(data[pos:pos + size])
    pos += size
    chunks: dict[str, list[bytes]] = {"video": [], "audio": []}
    for name in ("video", "audio"):
        for length in header[name]:
            chunks[name].append(data[pos:pos + length])
            pos += length
    if pos != len(data) or len(header["keys"]) != len(chunks["video"]):
        raise ValueError("truncated media cache file")
    return Clip(tuple(chunks["video"]), tuple(bool(k) for k in header["keys"]),
                tuple(chunks["audio"]))


def _read_cache(path: Path) -> Clip | None:
    try:
        return _load(path.read_bytes())
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, clip: Clip, what: str) -> None:
    try:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_dump(clip))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not cache %s in %s: %s", what, path, exc)


_clip: Clip | None = None
_clip_lock = threading.Lock()


def load_clip(use_file_cache: bool = True) -> Clip:
    """The shared clip: from memory, else the file cache, else encoded now (~10 s here)."""
    global _clip
    with _clip_lock:
        if _clip is not None:
            return _clip
        path = cache_path()
        if use_file_cache:
            _clip = _read_cache(path)
            if _clip is not None:
                return _clip
        started = time.monotonic()
        video, keys = encode_video()
        clip = Clip(tuple(video), tuple(keys), tuple(encode_audio()))
        logger.info("encoded the benchmark clip in %.1f s: %s", time.monotonic() - started,
                    clip.describe())
        if use_file_cache:
            _write_cache(path, clip, "the clip")
        _clip = clip
        return clip


# -- tracks ---------------------------------------------------------------------------------------


class _ReplayTrack(MediaStreamTrack):
    """Replays a list of encoded frames forever, paced in real time, as ``av.Packet``."""

    _period: float
    _pts_step: int
    _time_base: fractions.Fraction

    def __init__(self, frames: tuple[bytes, ...]) -> None:
        super().__init__()
        self._frames = frames
        self._index = 0  # frames sent so far: pts = index * step, never reset
        self._start: float | None = None
        self._base_index = 0
        self.packets = 0
        self.bytes = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + (self._index - self._base_index) * self._period
        if now - due > MAX_LAG_S:
            # The loop was starved: carry on from now instead of bursting to catch up.
            self._start, self._base_index = now, self._index
        elif due > now:
            await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        data = self._frames[self._index % len(self._frames)]
        packet = av.Packet(data)
        packet.pts = self._index * self._pts_step
        packet.time_base = self._time_base
        self._index += 1
        self.packets += 1
        self.bytes += len(data)
        return packet


class PreEncodedVideoTrack(_ReplayTrack):
    """VP8 640x480 30 fps ~1 Mbps, pre-encoded; a keyframe every 2.5 s (loop starts with one)."""

    kind = "video"
    _period = 1 / FPS
    _pts_step = VIDEO_PTS_STEP
    _time_base = VIDEO_TIME_BASE

    def __init__(self, clip: Clip | None = None) -> None:
        super().__init__((clip or load_clip()).video)


class PreEncodedAudioTrack(_ReplayTrack):
    """Opus 48 kHz stereo, 20 ms packets, pre-encoded."""

    kind = "audio"
    _period = AUDIO_FRAME_SAMPLES / AUDIO_RATE
    _pts_step = AUDIO_FRAME_SAMPLES
    _time_base = AUDIO_TIME_BASE

    def __init__(self, clip: Clip | None = None) -> None:
        super().__init__((clip or load_clip()).audio)



# -- simulcast: the same kind of content at three resolutions ------------------------------------
# A synthetic simulcast publisher (loadtest/simulcast.py) replays these as q/h/f encodings, like
# Chrome's three rid-tagged layers. Every layer has a keyframe each second, so a PLI is answered
# by jumping to the next keyframe of that layer's loop.

SIMULCAST_LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("q", 320, 180, 150_000),
    ("h", 640, 360, 500_000),
    ("f", 1280, 720, 1_300_000),
)
"""(rid, width, height, target bits/s), lowest first, as protocol.md asks of the web client."""
SIMULCAST_KEYFRAME_INTERVAL = FPS  # 1 s
SIMULCAST_CLIP_SECONDS = 4


@dataclass(frozen=True)
class LayerClip:
    """One simulcast layer's loop: VP8 frames 1/FPS apart, starting with a keyframe."""

    rid: str
    width: int
    height: int
    frames: tuple[bytes, ...]
    keyframes: tuple[bool, ...]

    @property
    def bitrate(self) -> float:
        return sum(map(len, self.frames)) * 8 * FPS / len(self.frames)

    def next_keyframe(self, index: int) -> int:
        """The loop index of the first keyframe at or after ``index`` (mod the loop)."""
        n = len(self.frames)
        for step in range(n):
            if self.keyframes[(index + step) % n]:
                return (index + step) % n
        return 0

    def describe(self) -> dict[str, object]:
        return {
            "rid": self.rid, "size": f"{self.width}x{self.height}", "frames": len(self.frames),
            "keyframes": sum(self.keyframes), "kbps": round(self.bitrate / 1000, 1),
            "largest_frame_bytes": max(map(len, self.frames)),
        }


def encode_video_sized(
    width: int, height: int, bitrate: int, frames: int, keyframe_interval: int,
) -> tuple[list[bytes], list[bool]]:
    """VP8 of the benchmark's kind of content (moving gradient + a block of noise) at any size."""
    codec = _vp8_encoder(width, height, bitrate, keyframe_interval,
                         kf_min_dist=str(keyframe_interval))
    # A noise block of 1/64 of the picture: the encoder then lands near its target bitrate
    # (152 / 504 / 1353 kbit/s for q / h / f here); more noise overshoots it threefold.
    return _encode_frames(codec, frames, keyframe_interval, width // 8, height // 8)


def simulcast_cache_path(rid: str, width: int, height: int, bitrate: int) -> Path:
    params = [rid, width, height, bitrate, FPS, SIMULCAST_KEYFRAME_INTERVAL,
              SIMULCAST_CLIP_SECONDS, av.__version__, 2]
    key = hashlib.sha256(json.dumps(params).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"diemcau-simulcast-{rid}-{key}.bin"


_simulcast: tuple[LayerClip, ...] | None = None
_simulcast_lock = threading.Lock()


def load_simulcast_clips(use_file_cache: bool = True) -> tuple[LayerClip, ...]:
    """The three layers q/h/f: from memory, else the file cache, else encoded now (~5 s)."""
    global _simulcast
    with _simulcast_lock:
        if _simulcast is not None:
            return _simulcast
        layers = []
        for rid, width, height, bitrate in SIMULCAST_LAYERS:
            path = simulcast_cache_path(rid, width, height, bitrate)
            clip = _read_cache(path) if use_file_cache else None
            if clip is None:
                started = time.monotonic()
                video, keys = encode_video_sized(
                    width, height, bitrate, SIMULCAST_CLIP_SECONDS * FPS,
                    SIMULCAST_KEYFRAME_INTERVAL,
                )
                clip = Clip(tuple(video), tuple(keys), ())
                logger.info("encoded simulcast layer %s (%dx%d) in %.1f s", rid, width, height,
                            time.monotonic() - started)
                if use_file_cache:
                    _write_cache(path, clip, f"layer {rid}")
            layers.append(LayerClip(rid, width, height, clip.video, clip.video_keyframes))
        _simulcast = tuple(layers)
        return _simulcast

if __name__ == "__main__":  # python -m loadtest.media: encode (or load) and describe the clip
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(load_clip().describe(), indent=1))
