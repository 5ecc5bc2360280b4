"""``python -m bench.gc_churn``: the collector's pauses in a room with people coming and going.

For each mode (``--mode LABEL[,VAR=VALUE...]``, alternated ``--pairs`` times; default: the
start-up freeze only, ``DIEMCAU_GC_FREEZE_JOINS=0``, against freezing after joins and
reclaiming, ``sfu/gctune.py``):

1. a fresh ``diemcau serve`` (one process, ``--last-n 9``) with ``bench/gc_probe.py`` inside;
2. ``--participants`` cheap participants of the load generator (``loadtest.quality``: simulcast
   VP8 + Opus from pre-encoded clips, 3 speakers, a gallery page; in this process) join one
   room, ``--step`` at a time, each step until media settles (bounded);
3. ``--rounds`` rounds of churn: ``--churn`` participants leave (never a speaker) and as many
   new ones join, media settles;
4. everyone leaves (the room ends) and the server is left alone ``--end-wait`` seconds.

After each phase the probe reports; printed per phase and generation: collections, their total
and longest time (ms), and the permanent generation's size, the server's RSS per participant,
the keepers' freezes and reclaims, and the load average the run had. A benchmark, not a test:
it prints figures.

Media moves: run inside a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m bench.gc_churn'
"""

from __future__ import annotations

import argparse
import asyncio
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
)
from loadtest.workers import LocalWorker

PROBE = Path(__file__).with_name("gc_probe.py")
PROBE_TIMEOUT_S = 30.0
STEP_SETTLE_TIMEOUT_S = 20.0
MIB = 2**20
MODES = (("start-up freeze", ("DIEMCAU_GC_FREEZE_JOINS=0",)), ("joins frozen", ()))
NAMESPACE_HELP = ("bench.gc_churn moves real media: run it inside a private network namespace, "
                  "e.g. unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m "
                  "bench.gc_churn'")


class ProbedServer(ReportingServer):
    """``diemcau serve`` from this checkout with the collector probe inside."""

    probe_timeout_s = PROBE_TIMEOUT_S

    def __init__(self, workdir: Path, serve_args: list[str], env: tuple[str, ...]) -> None:
        super().__init__(workdir, serve_args=serve_args)
        self.env = env
        self.report_path = workdir / "gc.json"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("-m")
        # env(1) execs the interpreter: the pid stays the server's
        return ["env", f"PYTHONPATH={Path.cwd()}", f"DIEMCAU_GC_REPORT={self.report_path}",
                *self.env, *command[:at], str(PROBE), *command[at + 2:]]


def phase(before: dict[str, Any], after: dict[str, Any], base_rss: int,
          participants: int) -> dict[str, Any]:
    """What the collector did between two reports."""
    return {
        "collections": [a - b for a, b in zip(after["count"], before["count"], strict=True)],
        "total_ms": [round((a - b) * 1000, 1)
                     for a, b in zip(after["total_s"], before["total_s"], strict=True)],
        "longest_ms": [round(s * 1000, 1) for s in after["longest_s"]],
        "cpu_ms": [round((a - b) * 1000, 1)
                   for a, b in zip(after["cpu_s"], before["cpu_s"], strict=True)],
        "long": after["long"],
        "frozen": after["frozen"],
        "rss_mib": round(after["rss_bytes"] / MIB, 1),
        "rss_per_participant_mib": round((after["rss_bytes"] - base_rss) / MIB
                                         / max(1, participants), 2) if participants else None,
        "keepers": after["keepers"],
    }


async def churn_round(load: Load, worker: LocalWorker, count: int, speakers: int) -> int:
    """``count`` participants (never a speaker) leave, as many new ones join; the joined."""
    core = worker.core
    leaving = [name for name in core.participants if int(name[1:]) >= speakers][:count]
    await asyncio.gather(*(core.participants[name].leave() for name in leaving),
                         return_exceptions=True)
    for name in leaving:
        core.participants.pop(name, None)
    results = await load.add(["gc"], count)
    await load.settle(STEP_SETTLE_TIMEOUT_S)
    return sum(1 for r in results if r["ok"])


async def measure(label: str, env: tuple[str, ...], args: argparse.Namespace,
                  http: aiohttp.ClientSession) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="diemcau-gc-") as tmp:
        server = ProbedServer(Path(tmp), [
            "--open-rooms", "--room-capacity", str(args.participants + args.churn + 1),
            "--last-n", str(args.last_n)], env)
        await server.start(http)
        load: Load | None = None
        reports: dict[str, dict[str, Any]] = {}
        started = time.monotonic()
        try:
            reports["base"] = await server.probe()
            load = Load(Target(server.url), 0, 20_000_000, True, gallery_page=args.last_n,
                        speakers=args.speakers)
            await load.start()
            worker = load.workers[0]
            assert isinstance(worker, LocalWorker)
            while load.count < args.participants:
                await load.add(["gc"], min(args.step, args.participants - load.count))
                await load.settle(STEP_SETTLE_TIMEOUT_S)
            await asyncio.sleep(args.hold)
            reports["joined"] = await server.probe()
            churned = 0
            for _ in range(args.rounds):
                churned += await churn_round(load, worker, args.churn, args.speakers)
                await asyncio.sleep(args.hold)
            reports["churned"] = await server.probe()
            await load.stop()
            load = None
            await asyncio.sleep(args.end_wait)
            reports["ended"] = await server.probe()
        finally:
            if load is not None:
                await load.stop()
            await server.stop()
    base = reports["base"]
    n = args.participants
    return {
        "mode": label, "env": list(env), "participants": n, "rounds": args.rounds,
        "churned": churned, "run_s": round(time.monotonic() - started, 1),
        "load_average_1m": load_average(),
        "phases": {
            "joins": phase(base, reports["joined"], base["rss_bytes"], n),
            "churn": phase(reports["joined"], reports["churned"], base["rss_bytes"], n),
            "room end": phase(reports["churned"], reports["ended"], base["rss_bytes"], 0),
        },
    }


def print_run(row: dict[str, Any]) -> None:
    print(f"\n== {row['mode']} {' '.join(row['env'])}: {row['participants']} participants, "
          f"{row['rounds']} rounds ({row['churned']} replaced), {row['run_s']} s, "
          f"load average {row['load_average_1m']:.2f}")
    print(f"  {'phase':9} {'gen':>3} {'count':>6} {'total ms':>9} {'cpu ms':>7} "
          f"{'longest ms':>10}   "
          f"frozen   RSS MiB (per participant)  keepers")
    for name, figures in row["phases"].items():
        for generation in range(3):
            extra = ""
            if generation == 0:
                per = figures["rss_per_participant_mib"]
                keepers = ", ".join(f"{k['freezes']} freezes, {k['reclaims']} reclaims "
                                    f"(longest {k['reclaim_s'] * 1000:.0f} ms, "
                                    f"{k['reclaimed']} freed)" for k in figures["keepers"])
                extra = (f"  {figures['frozen']:>8} {figures['rss_mib']:>7}"
                         f"{f' ({per})' if per is not None else '':>12}  {keepers or '-'}")
            print(f"  {name if generation == 0 else '':9} {generation:>3} "
                  f"{figures['collections'][generation]:>6} "
                  f"{figures['total_ms'][generation]:>9} {figures['cpu_ms'][generation]:>7} "
                  f"{figures['longest_ms'][generation]:>10}{extra}")
        for long in figures["long"]:
            print(f"      >= 10 ms: generation {long['generation']}, {long['wall_ms']} ms "
                  f"({long['cpu_ms']} ms CPU), {long['collected']} freed, "
                  f"counts before {long['counts_before']}")


def parse_mode(text: str) -> tuple[str, tuple[str, ...]]:
    label, *env = text.split(",")
    if any("=" not in item for item in env):
        raise argparse.ArgumentTypeError(f"environment items are VAR=VALUE: {env}")
    return label, tuple(env)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participants", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of churn")
    parser.add_argument("--churn", type=int, default=4, help="leave and join per round")
    parser.add_argument("--step", type=int, default=6, help="participants joining at once")
    parser.add_argument("--hold", type=float, default=3.0,
                        help="seconds of media after each phase's joins settle")
    parser.add_argument("--end-wait", type=float, default=4.0,
                        help="seconds the server stays up after everyone left")
    parser.add_argument("--pairs", type=int, default=1, help="times the modes alternate")
    parser.add_argument("--mode", type=parse_mode, action="append", default=None,
                        metavar="LABEL[,VAR=VALUE...]", help="a server environment to "
                        "compare (repeatable; default: start-up freeze vs joins frozen)")
    parser.add_argument("--last-n", type=int, default=9)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    await prepare_load(NAMESPACE_HELP)
    modes = args.mode or list(MODES)
    rows = []
    async with aiohttp.ClientSession() as http:
        for _ in range(args.pairs):
            for label, env in modes:
                row = await measure(label, env, args, http)
                print_run(row)
                sys.stdout.flush()
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.gc_churn", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
