"""``diemcau loadtest --ramp``: one room grows until an objective breaks; its capacity on one core.

The capacity of a room is only meaningful for the server's cores, so ``--server-cpu N`` pins the
server (and every process it starts) to core N and the load generator (this process and its
worker processes) to the other cores (``os.sched_setaffinity``, inherited by children). Each
step adds ``--step`` participants, waits until every one receives the videos of its gallery page
(``--last-n``, a 3x3 page by default; passed to the server as ``--last-n`` when it has the
option), and measures a window. The objectives (``loadtest.report``): loss, delay p95, every
shown video arriving, server CPU.

A capacity is called only when the load generator was not the bottleneck: when it used more than
``GENERATOR_BOTTLENECK_SHARE`` of its cores in the step that broke (or in any step), the ramp
stops and says so instead of naming a capacity, since the objectives may have broken in the
generator rather than in the server. Memory per participant is the server's RSS growth over its
RSS before anybody joined, divided by the participants.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from typing import Any

from tqdm import tqdm

from loadtest import report
from loadtest.server import BenchError

GENERATOR_BOTTLENECK_SHARE = 0.8
STARVED_SHARE = 0.25
"""A process that waited for a CPU this share of the time it wanted one (run delay from
``/proc/PID/task/*/schedstat``) was held back by other work on the machine: a step that broke
then says nothing about the server's capacity."""
RECOMMEND_SHARE = 0.8
RETRIES_WHEN_STARVED = 1
"""A step that broke while other work starved the server or the generator is measured again
(a neighbour's burst passes; a real limit stays)."""


def cpu_split(server_cpu: int | None, cpus: set[int]) -> tuple[set[int] | None, set[int]]:
    """(the server's cores or None: not pinned, the load generator's cores)."""
    if server_cpu is None:
        return None, set(cpus)
    if server_cpu not in cpus:
        raise BenchError(f"--server-cpu {server_cpu}: this process may use cores {sorted(cpus)}")
    rest = set(cpus) - {server_cpu}
    if not rest:
        raise BenchError("--server-cpu needs at least two cores: one for the server, the rest "
                         "for the load generator")
    return {server_cpu}, rest


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin a process (0: this one) to ``cpus``; its future children inherit it."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def generator_bound(loadgen_cpu_pct: float | None, generator_cores: int) -> bool:
    """Did the load generator use more than its share of its cores (then it, not the server,
    may be what broke)?"""
    return loadgen_cpu_pct is not None and \
        loadgen_cpu_pct > 100 * GENERATOR_BOTTLENECK_SHARE * generator_cores


def starved(run_delay_share: float | None) -> bool:
    return run_delay_share is not None and run_delay_share > STARVED_SHARE


def rss_per_participant(rss_mb: float | None, base_mb: float | None,
                        participants: int) -> float | None:
    """Server memory per participant in MiB: RSS growth since nobody was in, per participant."""
    if rss_mb is None or base_mb is None or participants <= 0:
        return None
    return round((rss_mb - base_mb) * 1e6 / 2**20 / participants, 2)


def verdict(steps: list[dict[str, Any]], stopped_by: str) -> dict[str, Any]:
    """The capacity from the steps (pure): the last step that kept every objective, unless the
    load generator was the bottleneck."""
    capacity = 0
    at: dict[str, Any] = {}
    generator_limited = machine_limited = False
    for step in steps:
        if step.get("generator_bound"):
            generator_limited = True
            break
        if step["breaches"]:
            # broken because other work starved the server or the generator: no verdict
            machine_limited = bool(step.get("server_starved") or step.get("generator_starved"))
            break
        capacity, at = step["participants"], step
    limited = generator_limited or machine_limited
    lower_bound = limited or stopped_by in ("max participants", "time limit")
    called = bool(capacity) and not limited
    return {
        "capacity": capacity,
        "capacity_is_lower_bound": lower_bound,
        "capacity_called": called,
        "generator_limited": generator_limited,
        "machine_limited": machine_limited,
        "recommended_room_limit": max(1, int(capacity * RECOMMEND_SHARE)) if called else None,
        "at_capacity": {key: at.get(key) for key in (
            "participants", "loadgen_cpu_pct", "loadgen_cpu_pct_of_its_cores",
            "rss_per_participant_mib", "machine_cpu_pct", "load_average_1m",
            "loadgen_run_delay_share")}
        | {"server_cpu_pct": at.get("server", {}).get("cpu_pct"),
           "server_rss_mb": at.get("server", {}).get("rss_mb"),
           "server_run_delay_share": at.get("server", {}).get("run_delay_share")},
    }


def judge(row: dict[str, Any], args: argparse.Namespace, load: Any, generator_cores: int,
          base_rss: float | None) -> None:
    """Objectives, bottlenecks and memory of one measured step (in place)."""
    row["cpu_slo_pct"] = report.CPU_SLO_PCT * args.server_cores
    row["breaches"] = report.slo_breaches(row, row["server"]["cpu_pct"], args.server_cores,
                                          args.max_loss_pct, args.max_delay_ms)
    if load.refused:
        row["breaches"].append(f"{len(load.refused)} refused")
    row["generator_cores"] = generator_cores
    row["loadgen_cpu_pct_of_its_cores"] = round(row["loadgen_cpu_pct"] / generator_cores, 1)
    row["generator_bound"] = generator_bound(row["loadgen_cpu_pct"], generator_cores)
    row["server_starved"] = starved(row["server"].get("run_delay_share"))
    row["generator_starved"] = starved(row.get("loadgen_run_delay_share"))
    row["server_rss_base_mb"] = base_rss
    row["rss_per_participant_mib"] = rss_per_participant(
        row["server"]["rss_mb"], base_rss, row["participants"])


async def run_ramp(load: Any, args: argparse.Namespace, generator_cores: int,
                   measure: Any, settle_timeout: float, warmup_s: float) -> dict[str, Any]:
    """Grow one room on ``load`` (a ``loadtest.run.Load``) step by step; the steps and verdict."""
    steps: list[dict[str, Any]] = []
    started = time.monotonic()
    stopped_by = "max participants"
    broken = ""  # why the first step that broke did (--keep-going carries on for the figures)
    base = await load.target.sample()
    base_rss = base.get("rss_mb")
    try:
        await load.start()
        while load.count < args.max_participants:
            if time.monotonic() - started > args.max_time:
                stopped_by = broken or "time limit"
                break
            add = min(args.step if load.count else max(2, args.step),
                      args.max_participants - load.count)
            await load.add(["load-0"], add)
            await load.settle(settle_timeout)
            await asyncio.sleep(warmup_s)
            again = 0  # times it broke while starved and was measured again
            while True:
                row = await measure(load, args.step_duration, f"ramp N={len(load.joined)}",
                                    args.quiet)
                judge(row, args, load, generator_cores, base_rss)
                starved_now = row["server_starved"] or row["generator_starved"]
                if not (row["breaches"] and starved_now) or again >= RETRIES_WHEN_STARVED:
                    break
                again += 1
            row["measured_again"] = again
            steps.append(row)
            if not args.quiet:
                lines = report.format_rows([row]).splitlines()
                tqdm.write("\n".join(lines[1:]) + f"\n     load generator "
                           f"{row['loadgen_cpu_pct_of_its_cores']}% of its {generator_cores} "
                           f"core(s); server {row['rss_per_participant_mib']} MiB per "
                           f"participant; waited for a CPU: server "
                           f"{row['server'].get('run_delay_share')}, generator "
                           f"{row.get('loadgen_run_delay_share')}; repairs {row.get('repair')}")
            reason = (f"the load generator was the bottleneck: {row['loadgen_cpu_pct']:.0f}% "
                      f"of its {generator_cores} core(s)") if row["generator_bound"] \
                else "; ".join(row["breaches"])
            if reason and not broken:
                broken = stopped_by = reason
            if broken and not args.keep_going:
                break
    finally:
        await load.stop()
    last = steps[-1] if steps else {}
    refused = dict(Counter(str(r.get("code")) for r in load.refused))
    return {**last, "joined": len(load.joined), "refused": refused, "steps": steps,
            "stopped_by": stopped_by,
            "server_rss_base_mb": base_rss, **verdict(steps, stopped_by)}
