"""``python -m bench.memory``: the server's memory per participant in one room of N.

For each N (``--participants 8,24,50``) and each tree under test (``--tree after=.`` and, to
compare in the same run, e.g. ``--tree before=/work/main``), alternating trees at each N:

1. a fresh ``diemcau serve`` (one process, ``--last-n 9``) from that tree, with the probe of
   ``bench/memory_probe.py`` inside; once healthy, the probe's baseline (RSS, live objects per
   type; tracemalloc starts then, so it traces only what the participants cause);
2. N synthetic participants of the load generator (``loadtest.quality.LoadParticipant``:
   simulcast VP8 q/h/f + Opus from pre-encoded clips, gallery page of 9 tiles, REMB, 3
   speakers; in ``--workers`` processes) join one room over real UDP on loopback, ``--step``
   at a time;
3. once every participant receives every video it shows (bounded), ``--hold`` seconds more so
   that NACK histories and rate windows fill as in a long meeting, then the probe's report:
   RSS growth per participant (minus tracemalloc's own tables), traced bytes per participant,
   the top allocation sites by line and by file, and live objects per type against the baseline;
   and where the RSS is, as growth per participant: the kernel's view (RSS, PSS, USS; [heap],
   other anonymous, files), glibc's (arenas, free chunks, in use, mmapped) and pymalloc's
   (arenas, blocks in use, free blocks, free pools), the threads, and ``sfu/memtune.py``'s
   trims with their own time. The issue's figure is the RSS growth of the server process.

``--tree LABEL=PATH,VAR=VALUE`` sets environment variables for that tree's server, so one
checkout compares a switch with itself (``--tree off=.,DIEMCAU_MEMTUNE=0 --tree on=.``);
``--rounds`` repeats the alternation.

Media moves: run inside a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m bench.memory \\
        --participants 8,24,50 --tree after=. --tree before=/work/main'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.probed import ReportingServer, Target, bench_main, prepare_load
from loadtest.run import Load
from loadtest.server import (
    load_average,
    process_cpu_s,
)

PROBE = Path(__file__).with_name("memory_probe.py")
PROBE_TIMEOUT_S = 180.0
SETTLE_TIMEOUT_S = 60.0
STEP_SETTLE_TIMEOUT_S = 20.0
MIB = 2**20
WATCHED = ("Consumer", "Producer", "RTCRtpTransceiver", "RTCRtpSender", "RTCRtpReceiver",
           "JitterBuffer", "RtpHistory", "Slot", "RTCPeerConnection", "MediaDescription",
           "RemoteBitrateEstimator", "RateBucket",
           "RTCRtpCodecParameters", "RTCRtpHeaderExtensionParameters", "dict", "list", "tuple",
           "bytes")
NAMESPACE_HELP = ("bench.memory moves real media: run it inside a private network namespace, "
                  "e.g. unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m "
                  "bench.memory'")


class ProbedServer(ReportingServer):
    """``diemcau serve`` from ``tree`` with the memory probe inside."""

    report_name = "memory report"
    probe_timeout_s = PROBE_TIMEOUT_S

    def __init__(self, workdir: Path, tree: Path, frames: int, top: int,
                 serve_args: list[str], env: tuple[str, ...] = ()) -> None:
        super().__init__(workdir, serve_args=serve_args)
        self.tree = tree
        self.env = env
        self.frames = frames
        self.top = top
        self.report_path = workdir / "memory.json"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("-m")
        assert command[at + 1] == "diemcau"
        # env(1) execs the interpreter: the pid stays the server's
        return ["env", f"PYTHONPATH={self.tree}", f"DIEMCAU_MEMORY_REPORT={self.report_path}",
                f"DIEMCAU_MEMORY_TRACE={self.frames}", f"DIEMCAU_MEMORY_TOP={self.top}",
                *self.env, *command[:at], str(PROBE), *command[at + 2:]]


async def measure(label: str, tree: Path, env: tuple[str, ...], participants: int,
                  args: argparse.Namespace, http: aiohttp.ClientSession) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="diemcau-memory-") as tmp:
        server = ProbedServer(Path(tmp), tree.resolve(), args.trace_frames, args.top, [
            "--open-rooms", "--room-capacity", str(participants + 1),
            "--last-n", str(args.last_n)], env)
        await server.start(http)
        load: Load | None = None
        try:
            baseline = await server.probe()
            assert server.proc is not None
            cpu_before = process_cpu_s(server.proc.pid)
            load = Load(Target(server.url), args.workers, 20_000_000, True,
                        gallery_page=args.last_n, speakers=args.speakers)
            await load.start()
            started = time.monotonic()
            while load.count < participants:  # in steps: a storm of joins fails on 2 cores
                await load.add(["memory"], min(args.step, participants - load.count))
                await load.settle(STEP_SETTLE_TIMEOUT_S)
            flowing = await load.settle(SETTLE_TIMEOUT_S)
            joined_s = time.monotonic() - started
            await asyncio.sleep(args.hold)
            windows, _ = await load.window(reset=False)
            cpu_s = process_cpu_s(server.proc.pid) - cpu_before
            report = await server.probe()
        finally:
            if load is not None:
                await load.stop()
            await server.stop()
    joined = len(load.joined)
    overhead = report.get("tracemalloc_overhead_bytes", 0)
    rss_growth = report["rss_bytes"] - overhead - baseline["rss_before_trace_bytes"]
    per = max(1, joined)
    return {
        "tree": label, "participants": participants, "joined": joined,
        "flowing": flowing, "receiving_all": sum(
            w["video_from"] >= w["video_expected"] for w in windows),
        "join_and_settle_s": round(joined_s, 1),
        "server_cpu_s": round(cpu_s, 1), "hold_s": args.hold, "load_average_1m": load_average(),
        "rss_base_mib": round(baseline["rss_before_trace_bytes"] / MIB, 1),
        "rss_growth_mib": round(rss_growth / MIB, 1),
        "rss_per_participant_mib": round(rss_growth / MIB / per, 2),
        "rss_trimmed_per_participant_mib": None if report.get("rss_trimmed_bytes") is None
        else round((report["rss_trimmed_bytes"] - overhead - baseline["rss_before_trace_bytes"])
                   / MIB / per, 2),
        "traced_per_participant_mib": round(report.get("traced_bytes", 0) / MIB / per, 2),
        "tracemalloc_overhead_mib": round(overhead / MIB, 1),
        "traced_peak_per_participant_mib": round(
            report.get("traced_peak_bytes", 0) / MIB / per, 2),

        "allocator": allocator_growth(baseline.get("allocator"), report.get("allocator"),
                                      overhead, per),
        "threads": (report.get("allocator") or {}).get("threads", {}),
        "trims": (report.get("allocator") or {}).get("trimmers", []),
        "transient": report.get("transient"),
        "rss_growth_untrimmed_base_per_participant_mib": None
        if baseline.get("rss_untrimmed_bytes") is None else round(
            (report["rss_bytes"] - overhead - baseline["rss_untrimmed_bytes"]) / MIB / per, 2),
        "probe_s": report.get("probe_s"),
        "watched": {name: count for name, count in sorted(report["live"].items())
                    if name.rsplit(".", 1)[-1] in WATCHED},
        "types": report["types"], "by_line": report.get("by_line", []),
        "by_file": report.get("by_file", []),
    }


def _allocator_figures(state: dict[str, Any]) -> dict[str, int]:
    """The figures of bench/memory_probe.py's allocator_state worth a growth per participant."""
    smaps, info = state.get("smaps", {}), state.get("mallinfo", {})
    arenas, py = state.get("arenas", []), state.get("pymalloc", {})
    main = next((a for a in arenas if a["nr"] == 0), {"system": 0, "free": 0})
    return {
        "kernel_rss": smaps.get("rss", 0), "kernel_pss": smaps.get("pss", 0),
        "kernel_uss": smaps.get("uss", 0), "kernel_heap": smaps.get("rss_heap", 0),
        "kernel_anon": smaps.get("rss_anon_other", 0), "kernel_file": smaps.get("rss_file", 0),
        "glibc_main_arena": main["system"], "glibc_main_free": main["free"],
        "glibc_thread_arenas": sum(a["system"] for a in arenas if a["nr"] != 0),
        "glibc_thread_free": sum(a["free"] for a in arenas if a["nr"] != 0),
        "glibc_mmapped": info.get("hblkhd", 0), "glibc_in_use": info.get("uordblks", 0),
        "pymalloc_arenas": py.get("total", 0), "pymalloc_blocks": py.get("allocated", 0),
        "pymalloc_free": py.get("available", 0) + py.get("unused_pools", 0),
        "pymalloc_free_blocks": py.get("available", 0),
        "pymalloc_unused_pools": py.get("unused_pools", 0),
    }


def allocator_growth(base: dict[str, Any] | None, now: dict[str, Any] | None, overhead: int,
                     per: int) -> dict[str, Any] | None:
    """Growth per participant (MiB) of each allocator figure; tracemalloc's own tables (raw
    malloc) are taken out of glibc's in-use bytes and its main arena."""
    if not base or not now:
        return None
    before, after = _allocator_figures(base), _allocator_figures(now)
    growth = {key: (after[key] - before[key]) / MIB / per for key in after}
    for key in ("kernel_rss", "kernel_pss", "kernel_uss", "glibc_in_use"):
        growth[key] -= overhead / MIB / per
    rounded: dict[str, Any] = {key: round(value, 3) for key, value in growth.items()}
    if not now.get("pymalloc"):  # tracemalloc's hooks hide pymalloc from _debugmallocstats
        rounded.update({key: None for key in rounded if key.startswith("pymalloc")})
    rounded["glibc_arena_count"] = len(now.get("arenas", []))
    return rounded


def print_run(row: dict[str, Any], top: int) -> None:
    print(f"\n== {row['tree']} N={row['participants']}: joined {row['joined']}, media flowing "
          f"{row['flowing']} ({row['receiving_all']} receive every shown video), load average "
          f"{row['load_average_1m']}; server CPU {row['server_cpu_s']} s from the empty start "
          f"to the report ({row['join_and_settle_s']} s of joins + {row['hold_s']} s held)")
    traced = "" if not row["by_line"] else (
        f"; traced {row['traced_per_participant_mib']} MiB per participant (tracemalloc's own "
        f"{row['tracemalloc_overhead_mib']} MiB subtracted), at the peak "
        f"{row['traced_peak_per_participant_mib']}")
    print(f"   RSS {row['rss_base_mib']} MiB at start, +{row['rss_growth_mib']} MiB: "
          f"{row['rss_per_participant_mib']} MiB per participant ("
          f"{row['rss_trimmed_per_participant_mib']} once glibc returned its free memory: "
          f"malloc_trim){traced}")
    alloc = row.get("allocator")
    if alloc:
        print("   where it is, growth in MiB per participant: kernel RSS {kernel_rss} PSS "
              "{kernel_pss} USS {kernel_uss} ([heap] {kernel_heap}, other anonymous "
              "{kernel_anon}, files {kernel_file}); glibc main arena {glibc_main_arena} (free "
              "{glibc_main_free}), {glibc_arena_count} arenas in all, thread arenas "
              "{glibc_thread_arenas} (free {glibc_thread_free}), mmapped {glibc_mmapped}, "
              "in use {glibc_in_use}; pymalloc arenas {pymalloc_arenas} (blocks "
              "{pymalloc_blocks}, free {pymalloc_free}: {pymalloc_free_blocks} in used pools, "
              "{pymalloc_unused_pools} in unused pools)".format(**alloc))
        print("   threads: " + ", ".join(f"{n} x{c}" for n, c in sorted(row["threads"].items())))
        for trims in row.get("trims") or []:
            print(f"   malloc_trim by the worker (sfu/memtune.py): {trims['count']} trims, "
                  f"{trims['total_s'] * 1000:.1f} ms in all, longest "
                  f"{trims['max_s'] * 1000:.1f} ms")
    per = max(1, row["joined"])
    if row["by_line"]:
        print("   top allocation sites (KiB per participant, blocks):")
        for stat in row["by_line"][:top]:
            print(f"     {stat['bytes'] / 1024 / per:8.1f}  {stat['blocks']:>8}  {stat['site']}")
        transient = row.get("transient") or {}
        if transient.get("by_line"):
            print(f"   transient: sites holding more at the highest traced point "
                  f"({transient['peak_bytes'] / MIB / per:.2f} MiB per participant, "
                  f"{transient['snapshots']} snapshots) than at the end (KiB per participant):")
            for stat in transient["by_line"][:top]:
                print(f"     {stat['bytes'] / 1024 / per:8.1f}  {stat['blocks']:>8}  "
                      f"{stat['site']}")
        print("   by file:")
        for stat in row["by_file"][:top]:
            print(f"     {stat['bytes'] / 1024 / per:8.1f}  {stat['blocks']:>8}  {stat['site']}")
    print("   live objects by type, growth since baseline (shallow KiB per participant, count):")
    for stat in row["types"][:top]:
        print(f"     {stat['bytes'] / 1024 / per:8.1f}  {stat['count']:>8}  {stat['type']}")
    print("   watched: " + ", ".join(f"{name.rsplit('.', 1)[-1]} {count}"
                                     for name, count in row["watched"].items()))


def print_summary(rows: list[dict[str, Any]]) -> None:
    print("\nMiB per participant (RSS growth of the server process: the issue's figure; PSS and "
          "USS growth; after malloc_trim; traced), load average at each run:")
    print(f"  {'tree':<10} {'N':>4} {'RSS':>7} {'PSS':>7} {'USS':>7} {'trimmed':>8} "
          f"{'traced':>7} {'peak':>6} {'load':>6}  flowing")
    for row in rows:
        alloc = row.get("allocator") or {}
        print(f"  {row['tree']:<10} {row['participants']:>4} {row['rss_per_participant_mib']:>7} "
              f"{alloc.get('kernel_pss', '-')!s:>7} {alloc.get('kernel_uss', '-')!s:>7} "
              f"{row['rss_trimmed_per_participant_mib']!s:>8} "
              f"{row['traced_per_participant_mib']:>7} "
              f"{row['traced_peak_per_participant_mib']:>6} {row['load_average_1m']:>6}  "
              f"{row['flowing']}")


def parse_tree(text: str) -> tuple[str, Path, tuple[str, ...]]:
    """``LABEL=PATH[,VAR=VALUE...]``: a checkout, and environment variables for its server
    (e.g. ``off=.,DIEMCAU_MEMTUNE=0`` to compare a switch within one tree; sfu/memtune.py
    also reads ``DIEMCAU_MEMTUNE=trim+arenas``)."""
    text, *env = text.split(",")
    label, _, path = text.partition("=")
    if not path:
        label, path = Path(text).name or "tree", text
    if not (Path(path) / "sfu").is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a diemcau checkout (no sfu/)")
    if any("=" not in item or not item.split("=", 1)[0].isidentifier() for item in env):
        raise argparse.ArgumentTypeError(f"environment items are VAR=VALUE: {env}")
    return label, Path(path), tuple(env)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participants", default="8,24,50",
                        help="room sizes, comma-separated (default 8,24,50)")
    parser.add_argument("--tree", type=parse_tree, action="append", default=None,
                        metavar="LABEL=PATH[,VAR=VALUE...]", help="a checkout to run the server "
                        "from, with environment variables for it (repeatable; alternated at "
                        "each N; default: this one)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times each tree is measured at each N (alternating)")
    parser.add_argument("--hold", type=float, default=20.0,
                        help="seconds of media after every video arrives, before measuring")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--step", type=int, default=8,
                        help="participants joining at once (then media settles, bounded)")
    parser.add_argument("--last-n", type=int, default=9)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--trace-frames", type=int, default=1,
                        help="tracemalloc frames per allocation (0: no tracing, RSS only)")
    parser.add_argument("--top", type=int, default=15, help="rows of each listing")
    parser.add_argument("--json", type=Path, default=None)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    await prepare_load(NAMESPACE_HELP)
    trees = args.tree or [("this", Path.cwd(), ())]
    sizes = [int(n) for n in args.participants.split(",") if n.strip()]
    rows = []
    async with aiohttp.ClientSession() as http:
        for participants in sizes:
            for _ in range(args.rounds):
                for label, tree, env in trees:
                    row = await measure(label, tree, env, participants, args, http)
                    print_run(row, args.top)
                    sys.stdout.flush()
                    rows.append(row)
    print_summary(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.memory", __doc__, add_arguments, run, argv, lambda rows: {
        "tool": "bench.memory", "cpu_count": os.cpu_count(), "runs": rows})


if __name__ == "__main__":
    sys.exit(main())
