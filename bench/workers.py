"""``diemcau bench workers``: many meetings at once, one media process vs worker processes.

For each ``--server-workers`` value (default ``1,2``: ``serve --workers 1`` is today's single
process, ``--workers 2`` two SFU worker processes behind signaling) and each ``--rooms`` count,
a fresh ``diemcau serve`` gets R rooms of ``--room-size`` load-test participants at once
(``loadtest``'s generator: pre-encoded simulcast VP8 + Opus, gallery tiles, REMB; spread over
``--generators`` processes), settles, and measures ``--duration`` seconds: total forwarded
packets per second (``/metrics``), loss and delay at the receivers, CPU of the server's
processes (signaling plus every worker, utime + stime from ``/proc``) and of the generator.

The comparison is at equal loss: for each server configuration, the highest forwarded
packets/s among the steps whose loss and delay stayed within the load test's objectives (loss
<= 1 %, delay p95 <= 150 ms, every video arriving); a configuration stops growing at its first
step that breaks one. On a machine with few cores the generator competes with the server:
its CPU is printed with every step.

``--pairs K`` repeats every step K times, alternating the configurations step by step (the
order reversed every other pair), and prints each one's CPU per forwarded packet per pair with
its median, for the whole server and for the media processes alone (every worker; with
``--workers 1`` the one process, signaling's own work included), with the load average of each
step: the machine's other work moves these figures by 10-20 % from minute to minute.

Media moves, so it runs in a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau bench workers \\
        --rooms 2,4,6 --room-size 10 --duration 15 --json /tmp/workers.json'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from loadtest import report
from loadtest.media import load_clip, load_simulcast_clips
from loadtest.run import DiemcauTarget, run_fixed
from loadtest.server import BenchError, process_cpu_s, process_rss_mib, require_private_namespace
from signaling.eventloop import new_event_loop

logger = logging.getLogger(__name__)

NAMESPACE_HELP = ("Run it in a private network namespace:\n  unshare -n sh -c 'ip link set lo up; "
                  "exec .venv/bin/diemcau bench workers'")


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2 not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-workers", type=int_list, default=[1, 2], metavar="LIST",
                        help="serve --workers values to compare (default 1,2)")
    parser.add_argument("--rooms", type=int_list, default=[2, 4], metavar="LIST",
                        help="room counts, grown in this order (default 2,4)")
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per step")
    parser.add_argument("--generators", type=int, default=2,
                        help="load generator processes (default 2)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="repeat every step this many times, alternating the --server-workers"
                             " values step by step (the order reversed every other pair), so "
                             "each configuration sees the same load from the rest of the machine;"
                             " prints each configuration's figures per pair and their medians")
    parser.add_argument("--downlink-kbps", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")


class ServerWithWorkers(DiemcauTarget):
    """The server under test, its CPU and memory summed over signaling and every worker process
    (``/metrics`` describes the signaling process only)."""

    def __init__(self, workers: int, room_size: int) -> None:
        super().__init__(None, ["--open-rooms", "--workers", str(workers),
                                "--room-capacity", str(room_size + 1)])
        self.worker_pids: list[int] = []
        self.samples: list[tuple[float, dict[str, float]]] = []  # (at, CPU s by process)

    async def sample(self) -> dict[str, float]:
        sample = await super().sample()
        assert self.server is not None and self.http is not None
        async with self.http.get(self.base_url + "/healthz") as response:
            health = await response.json()
        self.worker_pids = [pid for pid in health.get("media_workers", []) if pid]
        named = [("signaling", self.server.pid)] + [
            (f"worker{index}", pid) for index, pid in enumerate(health.get("media_workers", []))
            if pid]
        cpu = rss = 0.0
        by_process: dict[str, float] = {}
        for name, pid in named:
            try:
                by_process[name] = process_cpu_s(pid)
                rss += process_rss_mib(pid) * 1.048576  # MiB -> MB, as the load test prints
            except OSError:  # a worker that died meanwhile: its CPU is gone with it
                continue
            cpu += by_process[name]
        sample.update(cpu_s=cpu, rss_mb=rss)
        self.samples.append((sample["at"], by_process))
        return sample

    def cpu_pct_by_process(self) -> dict[str, float]:
        """% of a core per server process over the measured window (first to last sample):
        how the rooms spread over the cores."""
        if len(self.samples) < 2:
            return {}
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        elapsed = max(1e-6, end - start)
        return {name: round(100 * (last[name] - first.get(name, 0.0)) / elapsed, 1)
                for name in last if name in first}


def step_args(args: argparse.Namespace, rooms: int) -> argparse.Namespace:
    """What ``loadtest.run.run_fixed`` reads, for one step."""
    return argparse.Namespace(
        rooms=rooms, participants=rooms * args.room_size, workers=args.generators,
        downlink_kbps=args.downlink_kbps, uplink_kbps=20_000, added_delay_ms=0.0,
        duration=args.duration, quiet=args.quiet, server_cores=1.0,
        # the load generator's gallery page and voices; objectives as this benchmark states them
        last_n=9, speakers=3, lose_every=0, max_loss_pct=1.0, max_delay_ms=150.0)


def within_objectives(row: dict[str, Any]) -> bool:
    """The load test's quality objectives, without its one-core CPU rule (that is the point)."""
    return not [b for b in row.get("breaches", []) if not b.startswith("server CPU")]


def media_us_per_packet(row: dict[str, Any]) -> float | None:
    """CPU of the processes that forward (every worker; the one process with ``--workers 1``,
    signaling included there) per forwarded packet: signaling's own share is left out where it
    is a process of its own, so a worker is compared with the media work it took over."""
    by_process: dict[str, float] = row.get("server_cpu_pct_by_process") or {}
    forwarded = row["server"].get("forwarded_packets_per_s") or 0.0
    media = [pct for name, pct in by_process.items() if name.startswith("worker")] or [
        by_process.get("signaling", 0.0)]
    if not forwarded or not by_process:
        return None
    return round(sum(media) / 100 * 1e6 / forwarded, 2)


def step_order(server_workers: list[int], rooms: list[int], pairs: int) -> list[tuple[int, int]]:
    """(workers, rooms) for every step: each room count's configurations side by side, the
    order reversed every other pair (1,2 then 2,1) so a machine's load drifting during the run
    falls on both sides alike."""
    order: list[tuple[int, int]] = []
    for pair in range(pairs):
        configs = server_workers if pair % 2 == 0 else server_workers[::-1]
        order += [(workers, count) for count in rooms for workers in configs]
    return order


async def run(args: argparse.Namespace) -> dict[str, Any]:
    require_private_namespace(NAMESPACE_HELP)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, load_clip)
    await loop.run_in_executor(None, load_simulcast_clips)
    document: dict[str, Any] = {"tool": "diemcau bench workers", "room_size": args.room_size,
                                "duration_s": args.duration, "generators": args.generators,
                                "pairs": getattr(args, "pairs", 1), "runs": {}, "best": {}}
    runs: dict[int, list[dict[str, Any]]] = {workers: [] for workers in args.server_workers}
    broke: dict[int, int] = {}  # a configuration grows no further than the rooms it broke at
    for pair_index, (workers, rooms) in enumerate(
            step_order(args.server_workers, args.rooms, document["pairs"])):
        if rooms > broke.get(workers, rooms):
            continue
        target = ServerWithWorkers(workers, args.room_size)
        await target.start()
        try:
            row = await run_fixed(target, step_args(args, rooms), send_tiles=True)
        finally:
            await target.stop()
        row.update(server_workers=workers, rooms=rooms,
                   pair=pair_index // (len(args.server_workers) * len(args.rooms)),
                   server_cpu_pct_by_process=target.cpu_pct_by_process(),
                   server_log_problems=target.problems()[:5])
        row["media_us_per_forwarded_packet"] = media_us_per_packet(row)
        runs[workers].append(row)
        print(summary_line(row), flush=True)
        if not within_objectives(row):
            broke[workers] = min(broke.get(workers, rooms), rooms)
    for workers, steps in runs.items():
        document["runs"][str(workers)] = steps
        good = [s for s in steps if within_objectives(s)]
        best = max(good, key=lambda s: s["server"]["forwarded_packets_per_s"] or 0.0,
                   default=None)
        document["best"][str(workers)] = None if best is None else {
            "rooms": best["rooms"], "participants": best["participants"],
            "forwarded_packets_per_s": best["server"]["forwarded_packets_per_s"],
            "loss_pct": best["loss_pct"], "server_cpu_pct": best["server"]["cpu_pct"],
            "loadgen_cpu_pct": best["loadgen_cpu_pct"]}
    document["compared"] = compare(runs)
    return document


def compare(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per room count and configuration: us per forwarded packet (whole server; media processes
    only) and the load average of each pair, and their medians."""
    table: list[dict[str, Any]] = []
    for workers, steps in runs.items():
        for rooms in sorted({s["rooms"] for s in steps}):
            mine = [s for s in steps if s["rooms"] == rooms]
            server = [s["server"]["cpu_us_per_forwarded_packet"] for s in mine]
            media = [s["media_us_per_forwarded_packet"] for s in mine]
            table.append({
                "workers": workers, "rooms": rooms,
                "us_per_forwarded_packet": server, "median": _median(server),
                "media_us_per_forwarded_packet": media, "media_median": _median(media),
                "load_average_1m": [s.get("load_average_1m") for s in mine]})
    return table


def _median(values: list[Any]) -> float | None:
    numbers = sorted(v for v in values if v is not None)
    if not numbers:
        return None
    middle = len(numbers) // 2
    return numbers[middle] if len(numbers) % 2 else round((numbers[middle - 1] +
                                                          numbers[middle]) / 2, 2)


def summary_line(row: dict[str, Any]) -> str:
    server = row["server"]
    loss = row["loss_pct"]
    return (f"workers={row['server_workers']} rooms={row['rooms']} "
            f"participants={row['participants']}: forwarded "
            f"{server['forwarded_packets_per_s']} pkt/s, loss p50/p95/overall "
            f"{loss.get('p50')}/{loss.get('p95')}/{loss.get('overall')} %, delay p95 "
            f"{row['delay_ms'].get('p95')} ms, server CPU {server['cpu_pct']} % "
            f"({server['cpu_us_per_forwarded_packet']} us/fwd pkt, media processes "
            f"{row.get('media_us_per_forwarded_packet')}; by process "
            f"{row.get('server_cpu_pct_by_process')}), RSS {server['rss_mb']} MB, "
            f"generator CPU {row['loadgen_cpu_pct']} %, machine {row['machine_cpu_pct']} %, "
            f"load {row.get('load_average_1m')}"
            + (f"  SLO broken: {'; '.join(row['breaches'])}" if row.get("breaches") else ""))


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            document = runner.run(run(args))
    except BenchError as exc:
        print(f"diemcau bench workers: {exc}", file=sys.stderr)
        return 2
    for workers, steps in document["runs"].items():
        print(f"serve --workers {workers}:")
        print(report.format_rows(steps))
    for workers, best in document["best"].items():
        if best is None:
            print(f"--workers {workers}: no step within the objectives")
        else:
            print(f"--workers {workers}: best within objectives {best['forwarded_packets_per_s']}"
                  f" forwarded pkt/s ({best['rooms']} rooms, {best['participants']} participants,"
                  f" loss {best['loss_pct'].get('overall')} %, server CPU "
                  f"{best['server_cpu_pct']} %, generator CPU {best['loadgen_cpu_pct']} %)")
    for line in document["compared"]:
        print(f"--workers {line['workers']}, {line['rooms']} rooms: us per forwarded packet "
              f"{line['us_per_forwarded_packet']} (median {line['median']}), media processes "
              f"{line['media_us_per_forwarded_packet']} (median {line['media_median']}); "
              f"load {line['load_average_1m']}")
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0
