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

Media moves, so it must run in a private network namespace with only loopback
(docs/architecture.md#network-namespaces)::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench forward \\
        --subscribers 1,4,16,64 --duration 10 --json /tmp/bench.json'

``python -m bench.forward`` takes the same options plus ``--workers`` and
``--profile-dir`` (py-spy samples the server during each measurement window).

Modules: ``loadtest.server`` (the server subprocess, ``/proc`` and ``/metrics``),
``bench.participants`` (publisher, counting subscribers, worker processes),
``bench.profiling`` (py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.participants import (
    JOIN_TIMEOUT_S,
    BenchPublisher,
    LocalGroup,
    LoopLag,
    RemoteGroup,
    sum_counts,
)
from bench.profiling import self_time, start_pyspy
from loadtest.media import AUDIO_LEVEL_DBOV, load_clip
from loadtest.server import (
    STOP_TIMEOUT_S,
    BenchError,
    ServerProcess,
    load_average,
    process_context_switches,
    process_cpu_s,
    process_cpu_split,
    process_rss_mib,
    require_private_namespace,
)
from sfu.native import native_enabled
from signaling.eventloop import new_event_loop

logger = logging.getLogger(__name__)

ROOM = "bench"
VIDEO_TIMEOUT_S = 30.0  # every subscriber receives video within this (keyframes every 2.5 s)
WARMUP_S = 3.0
IN_PROCESS_MAX = 64  # above this many subscribers, spread them over worker processes
# (measured: 64 subscribers + the publisher cost this process ~16% of a core, 10.5k packets/s)
DEFAULT_WORKERS = 2
SERVE_ARGS = ["--open-rooms", "--room-capacity", "1000"]

RESULT_KEYS = (
    "subscribers", "duration_s", "server_cpu_percent", "server_cpu_s", "forwarded_packets",
    "forwarded_packets_per_s", "incoming_packets_per_s", "cpu_us_per_packet",
    "subscriber_received_packets", "subscriber_received_packets_per_s",
    "publisher_video_kbps", "publisher_audio_kbps", "subscriber_video_kbps_mean",
    "server_rss_mib", "loadgen_cpu_percent", "workers",
)

NAMESPACE_HELP = (
    "diemcau bench forward moves real media and must run inside a private network namespace "
    "that has only loopback, e.g.:\n"
    "  unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench forward "
    "--subscribers 1,4,16,64 --duration 10 --json /tmp/bench.json'"
)


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
    server_cpus: set[int] | None = None,
) -> dict[str, Any]:
    """1 publisher -> ``n_subscribers`` through a fresh server; figures of the measured window."""
    require_private_namespace(NAMESPACE_HELP)
    if n_subscribers < 1 or duration <= 0:
        raise ValueError("need at least one subscriber and a positive duration")
    if workers is None:
        workers = 0 if n_subscribers <= IN_PROCESS_MAX else DEFAULT_WORKERS
    workers = max(0, min(workers, n_subscribers))
    loop = asyncio.get_running_loop()
    clip = await loop.run_in_executor(None, load_clip)
    result: dict[str, Any] = {"subscribers": n_subscribers, "workers": workers,
                              "native_fanout": native_enabled(),
                              "publisher_sends_audio_level": audio_level is not None}
    with tempfile.TemporaryDirectory(prefix="diemcau-bench-") as tmp:
        server = ServerProcess(Path(tmp), python_args=server_python_args,
                               serve_args=SERVE_ARGS, cpus=server_cpus)
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
                counts = await sum_counts(groups)
                while counts.get("receiving_video", 0) < n_subscribers:
                    if loop.time() > deadline:
                        raise BenchError(
                            f"only {counts.get('receiving_video', 0)} of {n_subscribers} "
                            f"subscribers receive video after {VIDEO_TIMEOUT_S} s\n"
                            + server.log_tail())
                    await asyncio.sleep(0.2)
                    counts = await sum_counts(groups)
                result["all_video_s"] = round(time.monotonic() - started, 2)
                await asyncio.sleep(warmup)

                # -- the measured window --
                before_metrics = await server.metrics(http)
                before_counts = await sum_counts(groups)
                before_cpu, before_own = process_cpu_s(server.pid), process_cpu_s()
                before_split = process_cpu_split(server.pid)
                before_switches = process_context_switches(server.pid)
                before_video, before_audio = (publisher.video_track.bytes,
                                              publisher.audio_track.bytes)
                lag = LoopLag()
                lag.start()
                t0 = time.monotonic()
                profiler = (start_pyspy(server.pid, duration, profile, profile_native)
                            if profile else None)
                await asyncio.sleep(duration)
                after_cpu, after_own = process_cpu_s(server.pid), process_cpu_s()
                after_split = process_cpu_split(server.pid)
                after_switches = process_context_switches(server.pid)
                elapsed = time.monotonic() - t0
                after_counts = await sum_counts(groups)
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
                    "server_user_s": round(after_split[0] - before_split[0], 3),
                    "server_sys_s": round(after_split[1] - before_split[1], 3),
                    "server_voluntary_switches_per_s": round(
                        (after_switches[0] - before_switches[0]) / elapsed, 1),
                    "server_involuntary_switches_per_s": round(
                        (after_switches[1] - before_switches[1]) / elapsed, 1),
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
        require_private_namespace(NAMESPACE_HELP)
        counts = parse_subscribers(str(args.subscribers))
    except BenchError as exc:
        print(f"diemcau bench forward: {exc}", file=sys.stderr)
        return 2
    against = getattr(args, "against", None)
    if against == "janus":
        from bench.janus_forward import compare

        return compare(counts, float(args.duration), int(getattr(args, "pairs", 3)), args.json,
                       server_cpu=getattr(args, "server_cpu", None))
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


def add_against_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", choices=["janus"], default=None,
                        help="the same load on diemcau and on Janus (apt package janus), "
                             "alternating; prints each run and the CPU-per-packet ratio")
    parser.add_argument("--pairs", type=int, default=3, help="with --against: runs per server")
    parser.add_argument("--server-cpu", type=int, default=None,
                        help="with --against: pin each server (diemcau, Janus and all their "
                             "threads) to this core and the load to the others")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forward",
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
    add_against_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
