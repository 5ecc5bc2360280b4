"""``diemcau loadtest``: synthetic meetings against the real server; quality, capacity, limit.

Synthetic participants (``loadtest.quality.LoadParticipant``, spread over worker processes) join
real rooms through the real signaling, publish simulcast VP8 q/h/f + Opus replayed from
pre-encoded clips (no encoder runs), subscribe as a browser does (tiles of a gallery layout,
REMB for a fixed downlink) and measure what arrives without decoding.

Modes (each bounded in participants and time; it stops by itself):

- fixed: ``--participants N --rooms R --duration S``;
- ramp: ``--ramp [--max-participants M] [--step K]``: one room grows by K until an objective
  breaks (loss > 1 %, delay p95 > 150 ms, server CPU > 85 % of its cores, or video missing);
  prints the capacity for this machine and a recommended room limit (80 % of it);
- room limit: ``--room-capacity K --participants K+M``: K join, then M at once must get
  ``room-full``; the K's quality before and after is compared;
- ``--target janus``: the same load (gallery tiles off: both servers forward the top layer)
  first against diemcau, then against Janus 1.1.2; prints the CPU-per-packet ratio.

Media moves, so it runs only in a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau loadtest --participants 10 \\
        --duration 20 --json /tmp/load.json --plot /tmp/load.png'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from loadtest import report
from loadtest.media import load_clip, load_simulcast_clips
from loadtest.ramp import STARVED_SHARE, cpu_split, pin, run_ramp
from loadtest.report import RAMP_MAX_TIME_S, RAMP_STEP_S, add_arguments  # noqa: F401
from loadtest.server import (
    HOST,
    BenchError,
    ServerProcess,
    fetch_metrics,
    load_average,
    process_cpu_s,
    process_wait_s,
    require_private_namespace,
    tree_usage,
)
from loadtest.workers import LocalWorker, RemoteWorker
from signaling.eventloop import new_event_loop

logger = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 20.0
WARMUP_S = 2.0
NAMESPACE_HELP = (
    "diemcau loadtest moves real media and must run inside a private network namespace that "
    "has only loopback, e.g.:\n  unshare -n sh -c 'ip link set lo up; exec .venv/bin/diemcau "
    "loadtest --participants 10 --duration 20'"
)


# -- the server under test ------------------------------------------------------------------------


def serve_help() -> str:
    return subprocess.run([sys.executable, "-m", "diemcau", "serve", "--help"],
                          capture_output=True, text=True, timeout=60).stdout


def capacity_option(text: str | None = None) -> str | None:
    """The ``diemcau serve`` option that sets the room capacity, if this server has one."""
    options = re.findall(r"--[\w-]*capacity[\w-]*", serve_help() if text is None else text)
    preferred = [o for o in options if "room" in o]
    return (preferred or options or [None])[0]


class DiemcauTarget:
    """Our server: started here (or ``--url``); CPU and memory from its /metrics."""

    name = "diemcau"

    def __init__(self, url: str | None, extra_args: list[str],
                 cpus: set[int] | None = None) -> None:
        self.url = url
        self.extra_args = extra_args
        self.cpus = cpus
        self.server: ServerProcess | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.http: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self.url or (self.server.url if self.server else "")

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        if self.url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="diemcau-load-")
            self.server = ServerProcess(Path(self._tmp.name), serve_args=self.extra_args,
                                        cpus=self.cpus)
            await self.server.start(self.http)

    def worker_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "target": "diemcau", "ice_addresses": [HOST]}

    async def sample(self) -> dict[str, float]:
        assert self.http is not None
        metrics = await fetch_metrics(self.http, self.base_url, timeout=10)
        sample = {"cpu_s": metrics.get("process_cpu_seconds", 0.0),
                  "rss_mb": metrics.get("process_resident_memory_bytes", 0.0) / 1e6}
        if self.server is not None:  # ours: the whole process tree (SFU worker processes too)
            sample = tree_usage(self.server.pid)
        return {**sample,
                "forwarded": metrics.get("diemcau_rtp_forwarded_packets", 0.0),
                "incoming": metrics.get("diemcau_rtp_received_packets", 0.0),
                "participants": metrics.get("diemcau_participants", 0.0),
                "at": time.monotonic()}

    def problems(self) -> list[str]:
        return self.server.log_problems()[:20] if self.server else []

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.http is not None:
            await self.http.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as file:
        values = [int(v) for v in file.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def udp_errors() -> int:
    """Datagrams this network namespace dropped for full receive buffers (a slow reader)."""
    with open("/proc/net/snmp") as file:
        rows = [line.split() for line in file if line.startswith("Udp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:], strict=True)).get("RcvbufErrors", 0))


def server_window(before: dict[str, float], after: dict[str, float],
                  received_packets: int) -> dict[str, Any]:
    elapsed = max(1e-6, after["at"] - before["at"])
    cpu_s = after["cpu_s"] - before["cpu_s"]
    forwarded = after.get("forwarded", 0.0) - before.get("forwarded", 0.0)
    incoming = after.get("incoming", 0.0) - before.get("incoming", 0.0)
    waited = after["wait_s"] - before["wait_s"] if "wait_s" in after and "wait_s" in before \
        else None
    return {
        # of the time it wanted a CPU, the share it waited for one (other work held it back)
        "run_delay_share": run_delay_share(cpu_s, waited),
        "incoming_packets_per_s": round(incoming / elapsed, 1),  # what the publishers sent
        "cpu_pct": round(100 * cpu_s / elapsed, 1),
        "rss_mb": round(after["rss_mb"], 1),
        "cpu_us_per_packet": round(cpu_s / received_packets * 1e6, 2) if received_packets else None,
        "cpu_us_per_forwarded_packet": round(cpu_s / forwarded * 1e6, 2) if forwarded else None,
        "forwarded_packets_per_s": round(forwarded / elapsed, 1) if forwarded else None,
        "received_by_participants_per_s": round(received_packets / elapsed, 1),
    }


# -- one load -------------------------------------------------------------------------------------


class Load:
    """Workers, the participants spread over them, and windows of figures."""

    def __init__(self, target: Any, workers: int, downlink_bps: int, send_tiles: bool,
                 added_delay_ms: float = 0.0, uplink_bps: int = 20_000_000,
                 gallery_page: int | None = None, speakers: int = 0,
                 lose_every: int = 0) -> None:
        options = {**target.worker_options(), "downlink_bps": downlink_bps,
                   "send_tiles": send_tiles, "added_delay_ms": added_delay_ms,
                   "uplink_bps": uplink_bps, "gallery_page": gallery_page,
                   "lose_every": lose_every}
        self.target = target
        self.workers: list[LocalWorker | RemoteWorker] = (
            [LocalWorker(options)] if workers == 0
            else [RemoteWorker(options) for _ in range(workers)])
        self.joined: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.published_at: dict[str, float] = {}
        self.count = 0
        self.wait_s = 0.0  # run delay of the generator's processes at the last window
        self.receive: dict[str, Any] = {}  # the generator's receive hubs, totals so far
        self.speakers = speakers  # the first ones speak, the others are muted (0: everyone)
        self._own_cpu = process_cpu_s()

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.workers))

    async def add(self, rooms: list[str], count: int) -> list[dict[str, Any]]:
        specs: list[list[dict[str, Any]]] = [[] for _ in self.workers]
        for i in range(count):
            index = self.count + i
            specs[index % len(self.workers)].append(
                {"name": f"p{index}", "room": rooms[index % len(rooms)],
                 "speaking": not self.speakers or index < self.speakers})
        self.count += count
        results = [r for rs in await asyncio.gather(*(w.join(s) for w, s in
                                                      zip(self.workers, specs, strict=True)))
                   for r in rs]
        for result in results:
            (self.joined if result["ok"] else self.refused).append(result)
            if result["ok"]:
                self.published_at[result["name"]] = result["published_at"]
        return results

    async def subscribe(self) -> None:
        """Janus: subscribers only once every publisher is connected (see loadtest/janus.py)."""
        if self.target.name == "janus":
            await asyncio.gather(*(w.published() for w in self.workers))
            await asyncio.gather(*(w.subscribe() for w in self.workers))

    async def window(self, reset: bool = True) -> tuple[list[dict[str, Any]], float]:
        parts = await asyncio.gather(*(w.window(reset, self.published_at) for w in self.workers))
        self.wait_s = sum(part.get("wait_s", 0.0) for part in parts) + process_wait_s()
        self.receive = receive_totals([part.get("receive", {}) for part in parts])
        return [p for part in parts for p in part["participants"]], \
            sum(part["cpu_s"] for part in parts) + process_cpu_s()

    async def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> bool:
        """Until every participant receives the video of every tile on its page (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            windows, _ = await self.window(reset=False)
            if windows and all(w["video_from"] >= w["video_expected"]
                               and not w.get("tiles_without_video") for w in windows):
                return True
            await asyncio.sleep(0.5)
        return False

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)


async def measure(load: Load, duration: float, label: str, quiet: bool) -> dict[str, Any]:
    """One window of ``duration`` s: quality of every participant, server and load generator."""
    await load.window(reset=True)
    _, gen_before = await load.window(reset=False)
    gen_wait_before = load.wait_s
    receive_before = load.receive
    before = await load.target.sample()
    busy_before = machine_busy()
    udp_before = udp_errors()
    steps = max(1, int(round(duration)))
    with tqdm(total=steps, desc=label, unit="s", disable=quiet, leave=False) as bar:
        for _ in range(steps):
            await asyncio.sleep(duration / steps)
            bar.update(1)
            with contextlib.suppress(Exception):
                now = await load.target.sample()
                cpu = 100 * (now["cpu_s"] - before["cpu_s"]) / max(1e-6, now["at"] - before["at"])
                bar.set_postfix(server_cpu=f"{cpu:.0f}%")
    windows, gen_after = await load.window(reset=True)
    after = await load.target.sample()
    busy_after = machine_busy()
    udp_after = udp_errors()
    quality = report.aggregate(windows)
    first = [ms for w in windows for ms in w["first_frame_ms"]]
    elapsed = max(1e-6, after["at"] - before["at"])
    return {
        "participants": len(windows),
        "join_ms": report.stats([j["join_ms"] for j in load.joined]),
        "first_frame_ms": report.stats(first),
        **quality,
        "reconnects": sum(w["reconnects"] for w in windows),
        "server": server_window(before, after, quality["received_packets"]),
        "loadgen_cpu_pct": round(100 * (gen_after - gen_before) / elapsed, 1),
        "loadgen_run_delay_share": run_delay_share(gen_after - gen_before,
                                                   load.wait_s - gen_wait_before),
        # the generator's CPU per packet it handled (received by its subscribers + sent by its
        # publishers), next to the server's per packet received by participants
        "loadgen_cpu_us_per_packet": loadgen_us_per_packet(
            gen_after - gen_before, quality["received_packets"],
            after.get("incoming", 0.0) - before.get("incoming", 0.0)),
        # how the generator read: recvmmsg (native) or recvmsg, datagrams per read call
        "loadgen_receive": receive_window(receive_before, load.receive, elapsed),
        "duration_s": round(elapsed, 2),
        "load_average_1m": load_average(),  # other work on this machine skews every figure
        "udp_rcvbuf_drops": udp_after - udp_before,  # kernel drops: somebody read too slowly
        "machine_cpu_pct": round(100 * (busy_after[0] - busy_before[0])
                                 / max(1, busy_after[1] - busy_before[1]), 1),  # of all cores
    }


def receive_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The generator processes' receive-hub counters, summed (``native``: all read natively)."""
    keys = ("datagrams", "reads", "srtp_direct", "beats")
    totals: dict[str, Any] = {key: sum(part.get(key, 0) for part in parts) for key in keys}
    totals["native"] = bool(parts) and all(part.get("native") for part in parts)
    return totals


def receive_window(before: dict[str, Any], after: dict[str, Any],
                   elapsed: float) -> dict[str, Any]:
    datagrams = after.get("datagrams", 0) - before.get("datagrams", 0)
    reads = after.get("reads", 0) - before.get("reads", 0)
    return {"path": "recvmmsg" if after.get("native") else "recvmsg",
            "datagrams_per_s": round(datagrams / elapsed, 1),
            "datagrams_per_read": round(datagrams / reads, 1) if reads else None,
            "beats_per_s": round((after.get("beats", 0) - before.get("beats", 0)) / elapsed, 1)}


def run_delay_share(cpu_s: float, waited_s: float | None) -> float | None:
    if waited_s is None or cpu_s + waited_s <= 0:
        return None
    return round(waited_s / (cpu_s + waited_s), 3)


def loadgen_us_per_packet(cpu_s: float, received: float, sent: float) -> float | None:
    return round(cpu_s / (received + sent) * 1e6, 2) if received + sent > 0 else None


def refused_by_code(refused: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(r.get("code")) for r in refused))


# -- modes ----------------------------------------------------------------------------------------


async def run_fixed(target: Any, args: argparse.Namespace, send_tiles: bool) -> dict[str, Any]:
    rooms = [f"load-{i}" for i in range(args.rooms)]
    load = make_load(target, args, send_tiles)
    try:
        await load.start()
        await load.add(rooms, args.participants)
        await load.subscribe()
        settled = await load.settle()
        await asyncio.sleep(WARMUP_S)
        row = await measure(load, args.duration, f"{target.name} N={len(load.joined)}",
                            args.quiet)
        row.update(joined=len(load.joined), refused=refused_by_code(load.refused),
                   settled=settled, rooms=args.rooms)
        row["breaches"] = report.slo_breaches(row, row["server"]["cpu_pct"], args.server_cores,
                                              args.max_loss_pct, args.max_delay_ms)
        return row
    finally:
        await load.stop()


def make_load(target: Any, args: argparse.Namespace, send_tiles: bool) -> Load:
    page = args.last_n if args.last_n > 0 and send_tiles else None
    return Load(target, args.workers, args.downlink_kbps * 1000, send_tiles,
                args.added_delay_ms, args.uplink_kbps * 1000, page, args.speakers,
                args.lose_every)


async def run_room_limit(target: Any, args: argparse.Namespace) -> dict[str, Any]:
    k = args.room_capacity
    extra = args.participants - k
    load = make_load(target, args, not args.no_tiles)
    try:
        await load.start()
        await load.add(["load-0"], k)
        await load.settle()
        await asyncio.sleep(WARMUP_S)
        before = await measure(load, args.duration / 2, f"{k} in the room", args.quiet)
        first_refused = len(load.refused)
        attempts = await load.add(["load-0"], extra) if extra > 0 else []
        late = [a for a in attempts if not a["ok"]]
        after = await measure(load, args.duration / 2, f"after {extra} more tried",
                              args.quiet)
        sample = await target.sample()
    finally:
        await load.stop()
    after["breaches"] = report.slo_breaches(after, after["server"]["cpu_pct"], args.server_cores,
                                            args.max_loss_pct, args.max_delay_ms)
    codes = refused_by_code(late)
    ok = (codes.get("room-full", 0) == extra and len(load.joined) == k
          and first_refused == 0 and not after["breaches"])
    return {**after, "joined": len(load.joined), "refused": refused_by_code(load.refused),
            "room_capacity": k, "attempted_extra": extra,
            "refused_ms": report.stats([a.get("ms", 0.0) for a in late]),
            "server_participants": sample.get("participants"),
            "before": before, "limit_held": ok}


# -- command line ---------------------------------------------------------------------------------


def validate(args: argparse.Namespace) -> None:
    if args.url and not re.match(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$",
                                 args.url):
        raise BenchError("--url must be a loopback address")
    if not (1 <= args.participants <= 200 and 1 <= args.rooms <= args.participants):
        raise BenchError("need 1 <= rooms <= participants <= 200")
    if not (0 < args.duration <= 600 and 1 <= args.max_participants <= 200 and args.step >= 1):
        raise BenchError("duration must be in (0, 600] s, max participants in [1, 200]")
    if min(args.last_n, args.speakers, args.lose_every) < 0:
        raise BenchError("--last-n, --speakers and --lose-every must be >= 0")
    if args.room_capacity is not None and not 1 <= args.room_capacity <= args.participants:
        raise BenchError("--room-capacity K needs --participants >= K")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run as a report dict (what ``--json`` writes)."""
    require_private_namespace(NAMESPACE_HELP)
    validate(args)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, load_clip)
    await loop.run_in_executor(None, load_simulcast_clips)
    extra: list[str] = []
    if args.url is None:
        text = await loop.run_in_executor(None, serve_help)
        if "--open-rooms" in text:
            extra.append("--open-rooms")  # synthetic participants carry no credentials
        option = capacity_option(text)
        if args.room_capacity is not None:
            if option is None:
                raise BenchError("this server has no room capacity option (diemcau serve --help)")
            extra += [option, str(args.room_capacity)]
        elif option is not None:  # the room limit must not cap the load we ask for
            extra += [option, str(max(args.participants, args.max_participants) + 1)]
        if args.last_n > 0 and re.search(r"--last-n\b", text):
            extra += ["--last-n", str(args.last_n)]  # the server's own last-N, when it has it
        if args.server_cpu is not None and re.search(r"--workers\b", text):
            extra += ["--workers", "1"]  # one core: one SFU worker process on it
    if args.target == "janus":
        args.speakers = 0  # the comparison is of forwarding: every voice forwarded by both
    mine = os.sched_getaffinity(0)
    server_cpus, generator_cpus = cpu_split(args.server_cpu, mine)
    if server_cpus is not None:
        args.server_cores = len(server_cpus)
    document: dict[str, Any] = {
        "tool": "diemcau loadtest", "target": args.target, "cpu_count": os.cpu_count(),
        "load_average_1m_start": load_average(), "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("func",)}}
    document.update(server_cpus=sorted(server_cpus) if server_cpus else None,
                    generator_cpus=sorted(generator_cpus), server_args=extra)
    target = DiemcauTarget(args.url, extra, server_cpus)
    await target.start()
    pin(0, generator_cpus if server_cpus else None)  # the workers started next inherit it
    try:
        if args.ramp:
            result = await run_ramp(make_load(target, args, not args.no_tiles), args,
                                    len(generator_cpus), measure, SETTLE_TIMEOUT_S, WARMUP_S)
            document.update(mode="ramp", **result)
        elif args.room_capacity is not None:
            document.update(mode="room-capacity", **await run_room_limit(target, args))
        else:
            document.update(mode="fixed", **await run_fixed(target, args, not args.no_tiles
                                                             and args.target != "janus"))
    finally:
        pin(0, mine if server_cpus else None)
        await target.stop()
        document["server_log_problems"] = target.problems()
    if args.target == "janus":
        from loadtest.janus import JanusTarget

        janus = JanusTarget(rooms=args.rooms, participants=args.participants)
        await janus.start()
        try:
            theirs = await run_fixed(janus, args, send_tiles=False)
        finally:
            await janus.stop()
            document["janus_log_problems"] = janus.problems()
        ours_us = document["server"]["cpu_us_per_packet"]
        theirs_us = theirs["server"]["cpu_us_per_packet"]
        document["janus"] = theirs
        document["ratio_cpu_per_packet_diemcau_over_janus"] = (
            round(ours_us / theirs_us, 2) if ours_us and theirs_us else None)
    document["load_average_1m_end"] = load_average()
    return document


def print_summary(document: dict[str, Any]) -> None:
    rows = document.get("steps") or [document]
    if document.get("mode") == "room-capacity":
        rows = [document["before"], document]
    print(report.format_rows(rows))
    if document.get("janus"):
        print("Janus 1.1.2, same load:")
        print(report.format_rows([document["janus"]]))
        print(f"CPU per packet received by participants: diemcau "
              f"{document['server']['cpu_us_per_packet']} us, Janus "
              f"{document['janus']['server']['cpu_us_per_packet']} us; ratio diemcau/Janus = "
              f"{document['ratio_cpu_per_packet_diemcau_over_janus']}")
    if document.get("mode") == "ramp":
        print_ramp(document)
    if document.get("mode") == "room-capacity":
        print(f"room capacity {document['room_capacity']}: joined {document['joined']}, "
              f"refused {document['refused']} in {document['refused_ms']['max']} ms max; "
              f"limit held and quality kept: {document['limit_held']}")
    print(f"load generator CPU {document.get('loadgen_cpu_pct')}% of a core; "
          f"content markers {document.get('content_marker')}")
    for problem in document.get("server_log_problems", [])[:5]:
        print(f"server log: {problem}", file=sys.stderr)


def print_ramp(document: dict[str, Any]) -> None:
    at = document.get("at_capacity") or {}
    where = (f"server on core(s) {document['server_cpus']}, load generator on "
             f"{document['generator_cpus']}" if document.get("server_cpus")
             else "server and load generator sharing every core")
    print(f"stopped by: {document['stopped_by']} ({where})")
    if document["capacity_called"]:
        bound = " (at least: no objective broke)" if document["capacity_is_lower_bound"] else ""
        print(f"capacity: {document['capacity']} participants in one room{bound}; load "
              f"generator CPU there {at.get('loadgen_cpu_pct')}% "
              f"({at.get('loadgen_cpu_pct_of_its_cores')}% of its cores), server memory "
              f"{at.get('rss_per_participant_mib')} MiB per participant")
        print(f"recommended room limit: {document['recommended_room_limit']} "
              f"(diemcau serve --room-capacity {document['recommended_room_limit']})")
    elif document.get("machine_limited"):
        print(f"no capacity called: other work on this machine starved the server or the load "
              f"generator when the objectives broke (they waited for a CPU more than "
              f"{STARVED_SHARE:.0%} of the time); quality held up to {document['capacity']} "
              f"participants. Run it on a quiet machine")
    elif document["generator_limited"]:
        print(f"no capacity called: the load generator was the bottleneck (quality held up to "
              f"{document['capacity']} participants); give it more cores or run it elsewhere")
    else:
        print("no capacity: the objectives broke at the first step")


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            document = runner.run(run(args))
    except BenchError as exc:
        print(f"diemcau loadtest: {exc}", file=sys.stderr)
        return 2
    print_summary(document)
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        rows = document.get("steps") or [document]
        if document.get("mode") == "room-capacity":
            rows = [document["before"], document]
        report.plot(rows, args.plot, f"diemcau loadtest ({document['mode']})",
                    document.get("capacity"))
        print(f"wrote {args.plot}")
    if document.get("mode") == "room-capacity" and not document["limit_held"]:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
