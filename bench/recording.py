"""``diemcau bench recording``: what recording a room costs the server, and the recorder's memory
when the disk is too slow.

1. **CPU, recorded vs not, side by side in one run.** One server process (``diemcau serve
   --open-rooms``) and one room of N load-test participants (``loadtest.quality.LoadParticipant``:
   pre-encoded simulcast VP8 q/h/f + Opus like a browser, subscribing to everyone through hooked
   receivers that never decode). Once every consumer exists, windows alternate *not recorded* /
   *recorded* (the operator starts and stops the room's recording over REST; each recording writes
   the best layer of every publisher: N video + N audio files), ``pairs`` times, the order
   flipped every other pair so a drift of the machine cancels out. Each window settles ``settle``
   seconds, then measures ``window`` seconds of server CPU (utime + stime from ``/proc``) and of
   forwarded packets (``/metrics``: the load must be the same in both). Printed: both, and the
   ratio (the target is < 15 % extra).
2. **Memory under a slow disk.** In this process, a ``TrackWriter`` per track (the recorder's
   only buffer: its queue) fed in real time with the pre-encoded ~1 Mbit/s VP8 + Opus, each file a
   FIFO that a thread drains at ``disk_kbps`` (a disk far slower than the media). The queue grows
   to its bound (``QUEUE_SIZE`` frames), the track fails with ``queue_full`` and refuses the rest:
   RSS growth is bounded by the queue. Printed: RSS and queued frames over time, when it failed.

Media moves, so it runs in a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench recording \\
        --participants 10 --pairs 3 --window 10'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.server import (
    BenchError,
    ServerProcess,
    process_cpu_s,
    process_rss_mib,
    require_private_namespace,
)

logger = logging.getLogger(__name__)

ROOM = "bench-rec"
JOIN_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
NAMESPACE_HELP = ("Run it in a private network namespace:\n  unshare -n sh -c 'ip link set lo up; "
                  "exec .venv/bin/diemcau bench recording'")


# -- 1. CPU -------------------------------------------------------------------------------------


class Operator:
    """REST calls as the bootstrap operator (its password is in the server's first-start line)."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        text = self.server.log_path.read_text(errors="replace")
        password = text.split("Operator account 'admin', password ", 1)[1].split()[0]
        answer = await self.call("POST", "/api/login",
                                 {"username": "admin", "password": password})
        self.headers = {"Authorization": f"Bearer {answer['token']}"}

    async def call(self, method: str, path: str, body: object = None) -> Any:
        async with self.session.request(method, self.server.url + path, json=body,
                                        headers=self.headers) as response:
            answer = await response.json()
            if response.status >= 300:
                raise BenchError(f"{method} {path}: {response.status} {answer}")
            return answer


async def _ready(server: ServerProcess, session: aiohttp.ClientSession, consumers: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while True:
        metrics = await server.metrics(session)
        if metrics.get("diemcau_consumers", 0) >= consumers:
            return
        if loop.time() > deadline:
            raise BenchError(f"only {metrics.get('diemcau_consumers')} of {consumers} consumers")
        await asyncio.sleep(0.5)


async def _window(server: ServerProcess, session: aiohttp.ClientSession,
                  seconds: float) -> dict[str, float]:
    before = await server.metrics(session)
    main = f"{server.pid}/task/{server.pid}"  # the event loop's thread
    cpu0, loop0, t0 = process_cpu_s(server.pid), process_cpu_s(main), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, loop1, t1 = process_cpu_s(server.pid), process_cpu_s(main), time.monotonic()
    after = await server.metrics(session)
    elapsed = t1 - t0
    forwarded = after["diemcau_rtp_forwarded_packets"] - before["diemcau_rtp_forwarded_packets"]
    received = after["diemcau_rtp_received_packets"] - before["diemcau_rtp_received_packets"]
    return {"cpu_pct": round((cpu1 - cpu0) / elapsed * 100, 1),
            "loop_cpu_pct": round((loop1 - loop0) / elapsed * 100, 1),
            "forwarded_pps": round(forwarded / elapsed),
            "received_pps": round(received / elapsed),
            "rss_mib": round(process_rss_mib(server.pid), 1)}


async def cpu_comparison(participants: int, pairs: int, window: float,
                         settle: float, tiles: bool = True) -> dict[str, Any]:
    from loadtest.quality import LoadParticipant, content_index

    require_private_namespace(NAMESPACE_HELP)
    workdir = Path(tempfile.mkdtemp(prefix="diemcau-bench-rec-"))
    server = ServerProcess(workdir, serve_args=["--open-rooms", "--room-capacity", "100"])
    people: list[Any] = []
    windows: list[dict[str, Any]] = []
    recordings: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        await server.start(session)
        try:
            operator = Operator(server, session)
            await operator.login()
            await operator.call("POST", "/api/rooms", {"name": ROOM, "org_id": 1,
                                                       "capacity": participants + 5})
            markers = content_index()
            people = [LoadParticipant(server.url, ROOM, f"p{i}", marker_index=markers,
                                      send_tiles=tiles)
                      for i in range(participants)]
            for person in people:
                await person.join(JOIN_TIMEOUT_S)
            await _ready(server, session, participants * (participants - 1) * 2)
            await asyncio.sleep(settle)
            for pair in range(pairs):
                order = (False, True) if pair % 2 == 0 else (True, False)
                for recorded in order:
                    if recorded:
                        await operator.call("POST", f"/api/rooms/{ROOM}/recording")
                    await asyncio.sleep(settle)
                    figures = await _window(server, session, window)
                    figures.update(pair=pair, recorded=recorded)
                    windows.append(figures)
                    print(f"  pair {pair + 1} {'recorded    ' if recorded else 'not recorded'}"
                          f": server CPU {figures['cpu_pct']:5.1f} % (event loop "
                          f"{figures['loop_cpu_pct']:4.1f} %)  forwarded "
                          f"{figures['forwarded_pps']} pkt/s  received "
                          f"{figures['received_pps']} pkt/s  RSS {figures['rss_mib']} MiB",
                          flush=True)
                    if recorded:
                        row = await operator.call("DELETE", f"/api/rooms/{ROOM}/recording")
                        recordings.append({
                            "state": row["state"], "files": len(row["files"]),
                            "mib": round(sum(f["bytes"] for f in row["files"]) / 2**20, 1)})
        finally:
            for person in people:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(person.close(), 5)
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                with contextlib.suppress(Exception):
                    server.proc.wait(10)
    ratios = []
    for pair in range(pairs):
        on = next(w for w in windows if w["pair"] == pair and w["recorded"])
        off = next(w for w in windows if w["pair"] == pair and not w["recorded"])
        ratios.append(on["cpu_pct"] / off["cpu_pct"])
    off_cpu = statistics.median(w["cpu_pct"] for w in windows if not w["recorded"])
    on_cpu = statistics.median(w["cpu_pct"] for w in windows if w["recorded"])
    return {"participants": participants, "windows": windows, "recordings": recordings,
            "ratios": [round(r, 3) for r in ratios],
            "median_not_recorded_cpu_pct": off_cpu, "median_recorded_cpu_pct": on_cpu,
            "median_ratio": round(statistics.median(ratios), 3)}


# -- 2. memory under a slow disk --------------------------------------------------------------


def _drain(path: Path, rate_bps: float, stop: threading.Event) -> None:
    """A slow disk: read the FIFO at ``rate_bps`` bytes per second until EOF."""
    chunk = max(1, int(rate_bps / 20))
    with open(path, "rb", buffering=0) as fifo:
        while not stop.is_set():
            if not fifo.read(chunk):
                return
            time.sleep(0.05)


def slow_disk_memory(seconds: float, disk_kbps: float | None) -> dict[str, Any]:
    """``disk_kbps`` None: plain files on the temp dir's disk (the comparison run)."""
    from loadtest.media import AUDIO_FRAME_SAMPLES, FPS, HEIGHT, WIDTH, load_clip
    from recorder.track_writer import QUEUE_SIZE, MuxPacket, TrackWriter, WriterError

    clip = load_clip()
    folder = Path(tempfile.mkdtemp(prefix="diemcau-bench-slowdisk-"))
    stop = threading.Event()
    failures: dict[str, str] = {}
    writers: dict[str, TrackWriter] = {}
    drains = []
    for name in ("video", "audio"):
        path = folder / f"{name}.webm"
        if disk_kbps is not None:  # the two files share the disk's speed
            os.mkfifo(path)
            drain = threading.Thread(target=_drain, args=(path, disk_kbps * 125 / 2, stop),
                                     daemon=True)
            drain.start()
            drains.append(drain)

        def on_error(error: WriterError, detail: str, name: str = name) -> None:
            failures.setdefault(name, f"{error.value} after {time.monotonic() - started:.1f} s")

        writers[name] = TrackWriter(path, "vp8" if name == "video" else "opus", on_error=on_error)
    baseline = process_rss_mib()
    # RSS moves with the libraries' own allocations (the muxer, the allocator's arenas); the
    # Python heap traced from here on is what the recorder holds: the frames in its queues.
    tracemalloc.start()
    started = time.monotonic()
    samples: list[dict[str, float]] = []
    video_i = audio_i = 0
    peak = baseline
    next_sample = started
    while time.monotonic() - started < seconds:
        now = time.monotonic() - started
        while video_i / FPS <= now:
            # a fresh copy, as each depacketised frame is in the server
            frame = bytes(bytearray(clip.video[video_i % len(clip.video)]))
            writers["video"].submit(MuxPacket(frame, video_i * 3000,
                                              clip.video_keyframes[video_i % len(clip.video)],
                                              (WIDTH, HEIGHT)))
            video_i += 1
        while audio_i * AUDIO_FRAME_SAMPLES / 48000 <= now:
            writers["audio"].submit(MuxPacket(bytes(bytearray(clip.audio[audio_i
                                                                         % len(clip.audio)])),
                                              audio_i * AUDIO_FRAME_SAMPLES, True))
            audio_i += 1
        rss = process_rss_mib()
        peak = max(peak, rss)
        if time.monotonic() >= next_sample:
            next_sample += 2.0
            heap = tracemalloc.get_traced_memory()[0] / 2**20
            samples.append({"t_s": round(now, 1), "rss_mib": round(rss, 1),
                            "heap_mib": round(heap, 2),
                            "queued_video": writers["video"].queued,
                            "queued_audio": writers["audio"].queued})
            print(f"  t={now:5.1f} s  RSS {rss:6.1f} MiB  heap {heap:5.2f} MiB  queued video "
                  f"{writers['video'].queued:3d} audio {writers['audio'].queued:3d}  "
                  f"{', '.join(f'{k} failed ({v})' for k, v in failures.items())}", flush=True)
        time.sleep(0.01)
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    stop.set()
    for writer in writers.values():
        writer.close(5.0)
    for drain in drains:
        drain.join(5.0)
    frame_bytes = sum(map(len, clip.video)) / len(clip.video)
    return {"disk_kbps": disk_kbps, "queue_size": QUEUE_SIZE, "baseline_rss_mib": baseline,
            "peak_rss_mib": peak, "growth_mib": round(peak - baseline, 1),
            "end_rss_mib": samples[-1]["rss_mib"] if samples else None,
            "heap_peak_mib": round(heap_peak, 2),
            "heap_end_mib": samples[-1]["heap_mib"] if samples else None,
            "queue_bound_video_mib": round(QUEUE_SIZE * frame_bytes / 2**20, 1),
            "failures": failures, "samples": samples}


# -- the command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--slow-disk-kbps", type=float, default=128.0,
                        help="the slow disk's speed (the media is ~1.1 Mbit/s)")
    parser.add_argument("--slow-disk-seconds", type=float, default=30.0)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--no-tiles", action="store_true",
                        help="subscribers report no tiles: every one takes the top layer, so "
                             "publishers send it whether recorded or not (isolates the recorder)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", type=Path, default=None)


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("recorder").setLevel(logging.CRITICAL)  # the failure is expected here
    from signaling.eventloop import new_event_loop

    result: dict[str, Any] = {}
    try:
        if not args.skip_cpu:
            print(f"CPU: a room of {args.participants} participants, recorded vs not "
                  f"({args.pairs} pairs of {args.window:g} s windows)", flush=True)
            loop = new_event_loop()
            try:
                result["cpu"] = loop.run_until_complete(cpu_comparison(
                    args.participants, args.pairs, args.window, args.settle,
                    tiles=not args.no_tiles))
            finally:
                loop.close()
            cpu = result["cpu"]
            extra = (cpu["median_ratio"] - 1) * 100
            print(f"server CPU, median: not recorded {cpu['median_not_recorded_cpu_pct']} %, "
                  f"recorded {cpu['median_recorded_cpu_pct']} %; ratio per pair "
                  f"{cpu['ratios']} -> median {cpu['median_ratio']} ({extra:+.1f} %, target "
                  f"< +15 %); recordings {cpu['recordings']}")
        runs = [("slow_disk", args.slow_disk_kbps, f"a slow disk ({args.slow_disk_kbps:g} kbit/s)"),
                ("plain_disk", None, "plain files (for comparison)")]
        for key, kbps, label in [] if args.skip_memory else runs:
            print(f"Memory: ~1.1 Mbit/s of VP8 + Opus written to {label}", flush=True)
            result[key] = slow_disk_memory(args.slow_disk_seconds, kbps)
            disk = result[key]
            print(f"recorder heap peak {disk['heap_peak_mib']} MiB, at the end "
                  f"{disk['heap_end_mib']} MiB; RSS {disk['baseline_rss_mib']:.1f} -> peak "
                  f"{disk['peak_rss_mib']:.1f} MiB (+{disk['growth_mib']} MiB), at the end "
                  f"{disk['end_rss_mib']} MiB; queue bound {disk['queue_size']} frames ~ "
                  f"{disk['queue_bound_video_mib']} MiB of video; failures {disk['failures']}")
    except BenchError as exc:
        print(f"diemcau bench recording: {exc}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recording",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
