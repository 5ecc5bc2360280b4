"""``diemcau bench forward``: server CPU per forwarded RTP packet, 1 publisher -> N subscribers.

For each N the real server runs as a subprocess on 127.0.0.1 (``diemcau serve``). This process is
the load generator: one publisher replays pre-encoded VP8 (~1 Mbps, 640x480, 30 fps) + Opus
(``loadtest.media``: no encoder runs here), and N subscribers receive without decoding: their
subscriber connection's DTLS transport is hooked (``aiortc_hooks.hook_transport``) so decrypted
RTP is only counted, and their receivers' decoder threads are stopped. For large N the
subscribers are spread over worker processes so the load generator never becomes the bottleneck.

Once every subscriber receives video, a warm-up, then a measurement window of ``duration`` s:

- server CPU: utime + stime from ``/proc/<pid>/stat`` (percent of one core);
- forwarded / received packets: deltas of ``diemcau_rtp_forwarded_packets`` /
  ``diemcau_rtp_received_packets`` from ``/metrics``, cross-checked with what subscribers counted;
- CPU microseconds per forwarded packet = server CPU seconds / forwarded packets * 1e6;
- publisher bitrate (what the replay tracks yielded), server RSS, load-generator CPU, load average.

Media moves, so it must run in a private network namespace with only loopback (TESTING.md)::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench forward \\
        --subscribers 1,4,16,64 --duration 10 --json /tmp/bench.json'

``python -m loadtest.bench_forward`` takes the same options plus ``--workers`` and
``--profile-dir`` (py-spy samples the server during each measurement window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from loadtest.client import SyntheticParticipant
from loadtest.media import Clip, PreEncodedAudioTrack, PreEncodedVideoTrack, load_clip
from sfu import aiortc_hooks

logger = logging.getLogger(__name__)

ROOM = "bench"
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
JOIN_CONCURRENCY = 8
JOIN_TIMEOUT_S = 20.0
VIDEO_TIMEOUT_S = 30.0  # every subscriber receives video within this (keyframes every 2.5 s)
WARMUP_S = 3.0
STOP_TIMEOUT_S = 15.0
CHILD_LIFETIME_S = 1800.0  # a worker process never outlives this, whatever happens to us
IN_PROCESS_MAX = 64  # above this many subscribers, spread them over worker processes
# (measured: 64 subscribers + the publisher cost this process ~16% of a core, 10.5k packets/s)
DEFAULT_WORKERS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")

RESULT_KEYS = (
    "subscribers", "duration_s", "server_cpu_percent", "server_cpu_s", "forwarded_packets",
    "forwarded_packets_per_s", "incoming_packets_per_s", "cpu_us_per_packet",
    "subscriber_received_packets", "subscriber_received_packets_per_s",
    "publisher_video_kbps", "publisher_audio_kbps", "subscriber_video_kbps_mean",
    "server_rss_mib", "loadgen_cpu_percent", "workers",
)


class BenchError(RuntimeError):
    pass


# -- environment ----------------------------------------------------------------------------------


def only_loopback() -> bool:
    return {name for _index, name in socket.if_nameindex()} <= {"lo"}


NAMESPACE_HELP = (
    "diemcau bench forward moves real media and must run inside a private network namespace "
    "that has only loopback, e.g.:\n"
    "  unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench forward "
    "--subscribers 1,4,16,64 --duration 10 --json /tmp/bench.json'"
)


def require_private_namespace() -> None:
    if not only_loopback():
        names = sorted(name for _index, name in socket.if_nameindex())
        raise BenchError(f"network interfaces other than lo exist ({', '.join(names)}).\n"
                         + NAMESPACE_HELP)


def process_cpu_s(pid: int | str = "self") -> float:
    """utime + stime of a process, in seconds (children not included)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> float:
    with open("/proc/loadavg") as file:
        return float(file.read().split()[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}; a ``_total`` suffix is dropped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if "{" not in name and name.endswith("_total"):
            name = name[: -len("_total")]
        name = name.replace("_total{", "{")
        with contextlib.suppress(ValueError):
            values[name] = float(value)
    return values


# -- the server under test ------------------------------------------------------------------------


class ServerProcess:
    """``diemcau serve`` as a subprocess on 127.0.0.1, with its log in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None,
                 python_args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.python_args = python_args or []  # e.g. ["-m", "cProfile", "-o", FILE]
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, session: aiohttp.ClientSession) -> None:
        command = [
            sys.executable, *self.python_args, "-m", "signaling.cli", "serve", "--open-rooms",
            "--room-capacity", "1000", "--host", HOST, "--port", str(self.port),
            "--data-dir", str(self.workdir / "data"),
            "--ice-address", HOST, "--log-level", "warning",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEALTH_TIMEOUT_S
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(self.url + "/healthz",
                                       timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise BenchError(f"server not healthy within {HEALTH_TIMEOUT_S} s (is lo up?):\n"
                         + self.log_tail())

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(self.url + "/metrics",
                               timeout=aiohttp.ClientTimeout(total=5)) as response:
            return parse_metrics(await response.text())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        lines = text.splitlines()
        problems = [line for line in lines if (" ERROR " in line or " CRITICAL " in line
                    or " WARNING " in line) and "--open-rooms" not in line]
        if "Traceback (most recent call last):" in lines:  # the first one in full
            start = lines.index("Traceback (most recent call last):")
            end = start + 1
            while end < len(lines) and end - start < 60 and not lines[end][:4].isdigit():
                end += 1
            problems = [f"{len(problems)} error/warning lines; first traceback:",
                        *lines[start:end], *problems[:10]]
        return problems

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        while proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            logger.warning("server did not stop within %s s: killed", STOP_TIMEOUT_S)
            proc.kill()
            proc.wait(5)


# -- the participants -----------------------------------------------------------------------------


AUDIO_LEVEL_DBOV = 18
"""The level our Opus clip would report (a tone at -15 dBFS peak), as browsers send it."""


def send_audio_level(sender: Any, level_dbov: int) -> bool:
    """Make an aiortc sender of pre-encoded audio send the ssrc-audio-level extension.

    aiortc computes the level only for frames it encodes; for ``av.Packet`` input it sends no
    audio-level extension at all, unlike browsers (Chrome and Firefox send it on every packet).
    The encoded frame's ``audio_level`` is set on the way out of ``_next_encoded_frame``
    (a private aiortc name, used by the load generator only). Returns False if it is gone.
    """
    original = getattr(sender, "_next_encoded_frame", None)
    if original is None:
        logger.warning("aiortc has no RTCRtpSender._next_encoded_frame: no audio level sent")
        return False

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None and frame.audio_level is None:
            frame.audio_level = -level_dbov
        return frame

    sender._next_encoded_frame = next_encoded_frame
    return True


class BenchPublisher(SyntheticParticipant):
    """Publishes the pre-encoded clip: aiortc's senders only packetize, never encode.

    ``audio_level`` (dBov, like browsers) adds the ssrc-audio-level extension to audio packets;
    None sends audio without it, as aiortc does for pre-encoded packets.
    """

    def __init__(self, base_url: str, room: str, clip: Clip,
                 audio_level: int | None = AUDIO_LEVEL_DBOV) -> None:
        super().__init__(base_url, room, "publisher", decode=False,
                         video_track_factory=lambda: PreEncodedVideoTrack(clip))
        self.audio_level = audio_level
        self.video_track = PreEncodedVideoTrack(clip)
        self.audio_track = PreEncodedAudioTrack(clip)

    async def publish(self, timeout: float = 10.0) -> None:
        # SyntheticParticipant.publish would add aiortc's AudioStreamTrack (an Opus encoder).
        audio = self.publisher.addTransceiver(self.audio_track, direction="sendonly")
        self.publisher.addTransceiver(self.video_track, direction="sendonly")
        if self.audio_level is not None:
            send_audio_level(audio.sender, self.audio_level)
        aiortc_hooks.configure_ice(self.publisher, self.ice_addresses, None)
        offer = await self.publisher.createOffer()
        await self.publisher.setLocalDescription(offer)
        answer = await self.request(
            {"type": "publish", "sdp": self.publisher.localDescription.sdp},
            "publish_answer", timeout,
        )
        await self.publisher.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type="answer")
        )

    async def close(self) -> None:
        self.video_track.stop()
        self.audio_track.stop()
        await super().close()


class CountingSubscriber(SyntheticParticipant):
    """Receives without decoding: its subscriber transport's decrypted RTP is only counted."""

    def __init__(self, base_url: str, room: str, name: str) -> None:
        super().__init__(base_url, room, name, audio=False, video=False, decode=False)
        self.packets: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._kind_by_pt: dict[int, str] = {}
        self._hooked: set[int] = set()
        self._disabled: set[int] = set()

    def _on_rtp(self, data: bytes, _arrival_ms: int) -> None:
        kind = self._kind_by_pt.get(data[1] & 0x7F, "other")
        self.packets[kind] += 1
        self.bytes[kind] += len(data)

    def _learn_payload_types(self, sdp: str) -> None:
        for media in SessionDescription.parse(sdp).media:
            for codec in media.rtp.codecs:
                self._kind_by_pt[codec.payloadType] = media.kind

    async def _answer(self, message: dict[str, Any]) -> None:
        # SyntheticParticipant._answer, minus the decoding consumers: once the offer is applied
        # the transceivers and their (bundled) DTLS transport exist; hook them before the answer
        # starts the connection (receivers' receive() runs only after setLocalDescription).
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            self._learn_payload_types(message["sdp"])
            for transceiver in pc.getTransceivers():
                receiver = transceiver.receiver
                if id(receiver) not in self._disabled:
                    self._disabled.add(id(receiver))
                    aiortc_hooks.disable_decoding(receiver, lambda _parameters: None)
                transport = receiver.transport
                if id(transport) not in self._hooked:
                    self._hooked.add(id(transport))
                    aiortc_hooks.hook_transport(transport, self._on_rtp, lambda _data: None)
            aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await self.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})


# -- subscriber groups: in this process or in a worker process ------------------------------------


def _counts_of(subscribers: list[CountingSubscriber]) -> dict[str, Any]:
    packets: Counter[str] = Counter()
    octets: Counter[str] = Counter()
    receiving = 0
    for sub in subscribers:
        packets.update(sub.packets)
        octets.update(sub.bytes)
        receiving += sub.packets["video"] > 0
    return {"subscribers": len(subscribers), "receiving_video": receiving,
            "packets": sum(packets.values()), "video_packets": packets["video"],
            "audio_packets": packets["audio"], "bytes": sum(octets.values()),
            "video_bytes": octets["video"], "errors": sum(len(s.errors) for s in subscribers)}


class LocalGroup:
    """Subscribers in this process."""

    def __init__(self, base_url: str, room: str, names: list[str]) -> None:
        self.subscribers = [CountingSubscriber(base_url, room, name) for name in names]

    async def start(self) -> None:
        semaphore = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def join(sub: CountingSubscriber) -> None:
            async with semaphore:
                await sub.join(JOIN_TIMEOUT_S)

        await asyncio.gather(*(join(sub) for sub in self.subscribers))

    async def counts(self) -> dict[str, Any]:
        return {**_counts_of(self.subscribers), "cpu_s": 0.0}  # our CPU is counted by the caller

    async def stop(self) -> None:
        await asyncio.gather(*(sub.leave() for sub in self.subscribers), return_exceptions=True)


def _child_main(conn: Any, base_url: str, room: str, names: list[str]) -> None:
    """Entry point of a worker process (spawned): hosts a LocalGroup, obeys the parent."""
    logging.basicConfig(level=logging.WARNING)
    from signaling.cli import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_child(conn, base_url, room, names))


async def _child(conn: Any, base_url: str, room: str, names: list[str]) -> None:
    loop = asyncio.get_running_loop()
    group = LocalGroup(base_url, room, names)
    deadline = loop.time() + CHILD_LIFETIME_S
    try:
        try:
            await group.start()
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("started", None))
        while loop.time() < deadline:
            if not await loop.run_in_executor(None, conn.poll, 0.5):
                continue
            command = conn.recv()
            if command == "counts":
                conn.send(("counts", {**_counts_of(group.subscribers),
                                      "cpu_s": process_cpu_s()}))
            elif command == "stop":
                break
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(group.stop(), STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            conn.send(("stopped", None))


class RemoteGroup:
    """Subscribers in a worker process (its own event loop and core)."""

    def __init__(self, base_url: str, room: str, names: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_child_main, args=(child_conn, base_url, room, names), daemon=True,
            name="diemcau-bench-subscribers",
        )
        self.names = names

    async def _reply(self, timeout: float) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await loop.run_in_executor(None, self._conn.poll, 0.2):
                return self._conn.recv()
            if not self.process.is_alive():
                raise BenchError(f"worker process exited ({self.process.exitcode})")
        raise BenchError(f"worker process did not answer within {timeout} s")

    async def start(self) -> None:
        self.process.start()
        kind, value = await self._reply(JOIN_TIMEOUT_S * (1 + len(self.names) / JOIN_CONCURRENCY)
                                        + 10)
        if kind != "started":
            raise BenchError(f"worker process failed to join: {value}")

    async def counts(self) -> dict[str, Any]:
        self._conn.send("counts")
        kind, value = await self._reply(10)
        assert kind == "counts", kind
        return value

    async def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self._conn.send("stop")
                await self._reply(STOP_TIMEOUT_S + 5)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.process.join, 5)
        if self.process.is_alive():
            self.process.terminate()
            await loop.run_in_executor(None, self.process.join, 5)
        self._conn.close()


async def _sum_counts(groups: list[LocalGroup | RemoteGroup]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for counts in await asyncio.gather(*(group.counts() for group in groups)):
        total.update(counts)
    return dict(total)


class LoopLag:
    """How late this event loop wakes up (a starved load generator would distort the pacing)."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.max_lag = max(self.max_lag, loop.time() - due)

    def start(self) -> None:
        self.max_lag = 0.0
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
        return self.max_lag


# -- profiling (optional) -------------------------------------------------------------------------


def pyspy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


PYSPY_RATE = 1000  # samples/s; py-spy runs on the other core and (non-native) never pauses us


def start_pyspy(
    pid: int, duration: float, output: Path, native: bool = False
) -> subprocess.Popen[bytes] | None:
    """py-spy the server for ``duration`` s into a raw (collapsed stacks) file.

    ``native`` adds C frames (uvloop, libsrtp, syscalls); py-spy must then pause the process at
    each sample, which inflates its CPU time: use it for shares, not for the CPU figures.
    """
    binary = pyspy_binary()
    if binary is None:
        logger.warning("py-spy not installed: no profile")
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    mode = ["--native", "--rate", "250"] if native else ["--nonblocking", "--rate",
                                                          str(PYSPY_RATE)]
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
         *mode, "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def self_time(raw_profile: Path, top: int = 15) -> list[dict[str, Any]]:
    """Leaf functions of a py-spy raw (collapsed) profile by share of non-idle samples."""
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw_profile.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])  # per function, not per line
        leaves[leaf] += int(count)
        total += int(count)
    return [{"function": name, "samples": n, "share": round(n / total, 4)}
            for name, n in leaves.most_common(top)] if total else []


# -- one benchmark run ----------------------------------------------------------------------------


async def bench(
    n_subscribers: int,
    duration: float,
    *,
    workers: int | None = None,
    warmup: float = WARMUP_S,
    profile: Path | None = None,
    profile_native: bool = False,
    server_python_args: list[str] | None = None,
    audio_level: int | None = AUDIO_LEVEL_DBOV,
) -> dict[str, Any]:
    """1 publisher -> ``n_subscribers`` through a fresh server; figures of the measured window."""
    require_private_namespace()
    if n_subscribers < 1 or duration <= 0:
        raise ValueError("need at least one subscriber and a positive duration")
    if workers is None:
        workers = 0 if n_subscribers <= IN_PROCESS_MAX else DEFAULT_WORKERS
    workers = max(0, min(workers, n_subscribers))
    loop = asyncio.get_running_loop()
    clip = await loop.run_in_executor(None, load_clip)
    result: dict[str, Any] = {"subscribers": n_subscribers, "workers": workers,
                              "publisher_sends_audio_level": audio_level is not None}
    with tempfile.TemporaryDirectory(prefix="diemcau-bench-") as tmp:
        server = ServerProcess(Path(tmp), python_args=server_python_args)
        async with aiohttp.ClientSession() as http:
            publisher: BenchPublisher | None = None
            groups: list[LocalGroup | RemoteGroup] = []
            try:
                started = time.monotonic()
                await server.start(http)
                publisher = BenchPublisher(server.url, ROOM, clip, audio_level)
                await publisher.join(JOIN_TIMEOUT_S)
                names = [f"sub-{i}" for i in range(n_subscribers)]
                if workers == 0:
                    groups = [LocalGroup(server.url, ROOM, names)]
                else:
                    groups = [RemoteGroup(server.url, ROOM, names[i::workers])
                              for i in range(workers)]
                await asyncio.gather(*(group.start() for group in groups))
                result["join_s"] = round(time.monotonic() - started, 2)
                deadline = loop.time() + VIDEO_TIMEOUT_S
                counts = await _sum_counts(groups)
                while counts.get("receiving_video", 0) < n_subscribers:
                    if loop.time() > deadline:
                        raise BenchError(
                            f"only {counts.get('receiving_video', 0)} of {n_subscribers} "
                            f"subscribers receive video after {VIDEO_TIMEOUT_S} s\n"
                            + server.log_tail())
                    await asyncio.sleep(0.2)
                    counts = await _sum_counts(groups)
                result["all_video_s"] = round(time.monotonic() - started, 2)
                await asyncio.sleep(warmup)

                # -- the measured window --
                before_metrics = await server.metrics(http)
                before_counts = await _sum_counts(groups)
                before_cpu, before_own = process_cpu_s(server.pid), process_cpu_s()
                before_video, before_audio = (publisher.video_track.bytes,
                                              publisher.audio_track.bytes)
                lag = LoopLag()
                lag.start()
                t0 = time.monotonic()
                profiler = (start_pyspy(server.pid, duration, profile, profile_native)
                            if profile else None)
                await asyncio.sleep(duration)
                after_cpu, after_own = process_cpu_s(server.pid), process_cpu_s()
                elapsed = time.monotonic() - t0
                after_counts = await _sum_counts(groups)
                after_metrics = await server.metrics(http)
                after_video, after_audio = (publisher.video_track.bytes,
                                            publisher.audio_track.bytes)
                rss = process_rss_mib(server.pid)
                max_lag = lag.stop()
                if profiler is not None:
                    try:
                        await loop.run_in_executor(None, profiler.wait, duration + 20)
                    except subprocess.TimeoutExpired:
                        profiler.kill()
                    if profile is not None and profile.exists():
                        result["profile"] = str(profile)
                        result["profile_top"] = self_time(profile)

                def delta(name: str) -> float:
                    return after_metrics.get(name, 0.0) - before_metrics.get(name, 0.0)

                cpu_s = after_cpu - before_cpu
                forwarded = delta("diemcau_rtp_forwarded_packets")
                received = delta("diemcau_rtp_received_packets")
                sub_packets = after_counts["packets"] - before_counts["packets"]
                sub_video_bytes = after_counts["video_bytes"] - before_counts["video_bytes"]
                loadgen_cpu = (after_own - before_own
                               + after_counts["cpu_s"] - before_counts["cpu_s"])
                drops = {key.split('"')[1]: delta(key) for key in after_metrics
                         if key.startswith("diemcau_rtp_dropped_packets{") and delta(key)}
                result.update({
                    "duration_s": round(elapsed, 3),
                    "server_cpu_s": round(cpu_s, 3),
                    "server_cpu_percent": round(100 * cpu_s / elapsed, 1),
                    "forwarded_packets": int(forwarded),
                    "forwarded_packets_per_s": round(forwarded / elapsed, 1),
                    "incoming_packets": int(received),
                    "incoming_packets_per_s": round(received / elapsed, 1),
                    "cpu_us_per_packet": round(cpu_s / forwarded * 1e6, 2) if forwarded else None,
                    "subscriber_received_packets": int(sub_packets),
                    "subscriber_received_packets_per_s": round(sub_packets / elapsed, 1),
                    "subscriber_vs_forwarded": round(sub_packets / forwarded, 4)
                    if forwarded else None,
                    "publisher_video_kbps": round((after_video - before_video) * 8 / elapsed
                                                  / 1000, 1),
                    "publisher_audio_kbps": round((after_audio - before_audio) * 8 / elapsed
                                                  / 1000, 1),
                    "subscriber_video_kbps_mean": round(sub_video_bytes * 8 / elapsed / 1000
                                                        / n_subscribers, 1),
                    "server_rss_mib": round(rss, 1),
                    "loadgen_cpu_percent": round(100 * loadgen_cpu / elapsed, 1),
                    "loadgen_max_loop_lag_ms": round(max_lag * 1000, 1),
                    "server_cpu_s_from_metrics": round(delta("process_cpu_seconds"), 3),
                    "load_average_1m": load_average(),
                    "dropped_packets": drops,
                    "keyframe_requests": int(delta("diemcau_keyframe_requests")),
                    "retransmitted_packets": int(delta("diemcau_rtp_retransmitted_packets")),
                    "subscriber_errors": after_counts.get("errors", 0),
                })
            finally:
                await asyncio.gather(*(group.stop() for group in groups), return_exceptions=True)
                if publisher is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(publisher.leave(), STOP_TIMEOUT_S)
                await server.stop()
                problems = server.log_problems()
                if problems:
                    kept = (Path(tempfile.gettempdir())
                            / f"diemcau-bench-server-n{n_subscribers}.log")
                    with contextlib.suppress(OSError):
                        shutil.copyfile(server.log_path, kept)
                        result["server_log"] = str(kept)
                result["server_log_problems"] = problems[:40]
    return result


# -- command line ---------------------------------------------------------------------------------


COLUMNS = [
    ("N", "subscribers", "{:>4}"),
    ("srv CPU %", "server_cpu_percent", "{:>9.1f}"),
    ("us/pkt", "cpu_us_per_packet", "{:>7.1f}"),
    ("in pkt/s", "incoming_packets_per_s", "{:>8.0f}"),
    ("fwd pkt/s", "forwarded_packets_per_s", "{:>9.0f}"),
    ("marg us/pkt", "marginal_us_per_packet", "{:>11.1f}"),
    ("sub rx/fwd", "subscriber_vs_forwarded", "{:>10.3f}"),
    ("pub kbps", "publisher_video_kbps", "{:>8.0f}"),
    ("RSS MiB", "server_rss_mib", "{:>7.1f}"),
    ("gen CPU %", "loadgen_cpu_percent", "{:>9.1f}"),
    ("load1", "load_average_1m", "{:>5.1f}"),
]


def format_table(results: list[dict[str, Any]]) -> str:
    lines = ["  ".join(f"{title:>{len(fmt.format(0)) if key != 'subscribers' else 4}}"
                       for title, key, fmt in COLUMNS)]
    for result in results:
        if "error" in result:
            lines.append(f"{result['subscribers']:>4}  failed: {result['error']}")
            continue
        cells = []
        for _title, key, fmt in COLUMNS:
            value = result.get(key)
            width = len(fmt.format(0))
            cells.append(fmt.format(value) if value is not None else f"{'-':>{width}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def add_marginal_costs(results: list[dict[str, Any]]) -> None:
    """CPU per extra forwarded packet between consecutive N: the fixed costs (receiving, RTCP,
    timers) cancel out, leaving what one more subscriber's packets cost."""
    ok = [r for r in results if "error" not in r and r.get("server_cpu_s") is not None]
    for previous, current in zip(ok, ok[1:], strict=False):
        extra = current["forwarded_packets_per_s"] - previous["forwarded_packets_per_s"]
        if extra > 0:
            cpu = (current["server_cpu_percent"] - previous["server_cpu_percent"]) / 100
            current["marginal_us_per_packet"] = round(cpu / extra * 1e6, 2)


def parse_subscribers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"--subscribers expects numbers like 1,4,16,64, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise BenchError(f"--subscribers expects positive numbers, got {text!r}")
    return values


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        require_private_namespace()
        counts = parse_subscribers(str(args.subscribers))
    except BenchError as exc:
        print(f"diemcau bench forward: {exc}", file=sys.stderr)
        return 2
    from signaling.cli import new_event_loop

    workers = getattr(args, "workers", None)
    profile_dir: Path | None = getattr(args, "profile_dir", None)
    profile_native = bool(getattr(args, "profile_native", False))
    cprofile_dir: Path | None = getattr(args, "cprofile_dir", None)
    audio_level = None if getattr(args, "no_audio_level", False) else AUDIO_LEVEL_DBOV
    clip = load_clip()
    print(f"clip: {json.dumps(clip.describe())}", flush=True)
    results: list[dict[str, Any]] = []
    failed = False
    for n in counts:
        suffix = "-native" if profile_native else ""
        profile = profile_dir / f"forward-n{n}{suffix}.txt" if profile_dir else None
        print(f"N={n}: running ({args.duration:g} s measured) ...", flush=True)
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                python_args = (["-m", "cProfile", "-o", str(cprofile_dir / f"server-n{n}.prof")]
                               if cprofile_dir else None)
                if cprofile_dir:
                    cprofile_dir.mkdir(parents=True, exist_ok=True)
                result = runner.run(bench(n, float(args.duration), workers=workers,
                                          profile=profile, profile_native=profile_native,
                                          server_python_args=python_args,
                                          audio_level=audio_level))
        except Exception as exc:  # noqa: BLE001 - reported per row, the next N still runs
            logger.debug("N=%d failed", n, exc_info=True)
            result = {"subscribers": n, "error": f"{type(exc).__name__}: {exc}"}
            failed = True
        results.append(result)
        if result.get("server_log_problems"):
            print(f"N={n}: server log problems: {result['server_log_problems'][:3]}",
                  file=sys.stderr)
    add_marginal_costs(results)
    print(format_table(results), flush=True)
    for result in results:
        for entry in result.get("profile_top", [])[:10]:
            print(f"  N={result['subscribers']} {entry['share']:6.1%}  {entry['function']}")
    if args.json is not None:
        document = {
            "benchmark": "forward",
            "description": "1 publisher (pre-encoded VP8 640x480 30 fps ~1 Mbps + Opus) -> N "
                           "subscribers through diemcau serve on 127.0.0.1",
            "clip": clip.describe(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "results": results,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_forward",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None,
                        help="subscriber worker processes (default: 0 up to "
                             f"{IN_PROCESS_MAX} subscribers, else {DEFAULT_WORKERS})")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="py-spy the server during each window (raw collapsed stacks)")
    parser.add_argument("--profile-native", action="store_true",
                        help="with C frames (py-spy pauses the server: CPU figures inflate)")
    parser.add_argument("--cprofile-dir", type=Path, default=None,
                        help="run the server under cProfile (whole run; CPU figures inflate)")
    parser.add_argument("--no-audio-level", action="store_true",
                        help="publish audio without the ssrc-audio-level extension")
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
