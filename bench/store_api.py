"""``python -m bench.store_api``: the REST API over each store, SQLite against PostgreSQL
(issue 14).

One ``diemcau serve`` process at a time, alternating the backends round by round so both see
the same machine: its data directory's SQLite file, then ``--store`` PostgreSQL (a server given
with ``--store URL``, else a throw-away PostgreSQL 15 started as the tests start one,
tests/pgproc.py, but with fsync and synchronous commits on, as SQLite's ``synchronous=FULL``).
The CPU column is the diemcau process's; PostgreSQL's own server processes are not in it. In
each, ``--concurrency`` clients call for ``--seconds`` each:

- ``join``: a WebSocket ``join`` with a join token (from the API beforehand; four identities
  per client, each joining again with ``take_over``), answered ``joined``, then closed:
  admission reads the room, its removals and voids, writes the join record and the audit
  trail. (Logins are argon2-bound and rate-limited per account and address: they would
  measure neither store.)
- ``read``: GET /api/rooms with a bearer token (the session looked up, the rooms listed);
- ``write``: PATCH /api/rooms/bench (a room updated, an audit row chained).

Printed: requests per second and the server's CPU per request, per backend and round, and the
load average before and after::

    python -m bench.store_api --rounds 2 --seconds 3 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from loadtest.server import BenchError, ServerProcess, process_cpu_s

PHASES = ("join", "read", "write")
IDENTITIES = 4
"""Per client: each joins as one of its own four identities in turn."""
ADDRESSES = 200
"""Joins come from 127.0.1.1-200 in turn (the per-address join bucket holds 30 at once)."""
MARKER = "Operator account 'admin', password "


PASSWORDS: dict[str, str] = {}
"""Store URL -> the operator's password its first server printed (later rounds reuse it)."""


async def _password(server: ServerProcess, store_url: str | None) -> str:
    if store_url in PASSWORDS:
        return PASSWORDS[store_url]
    for _ in range(100):
        text = server.log_path.read_text(errors="replace")
        if MARKER in text:
            password = text.split(MARKER, 1)[1].split()[0]
            if store_url is not None:
                PASSWORDS[store_url] = password
            return password
        await asyncio.sleep(0.1)
    raise BenchError("no operator password in the server's log (not a fresh store?)")


async def _run_phase(call: Callable[[int], Awaitable[int]], seconds: float,
                     concurrency: int) -> tuple[int, int]:
    """(requests answered 2xx, others) in ``seconds``, ``concurrency`` at a time."""
    done = [0, 0]
    statuses: Counter[int] = Counter()
    stop_at = time.monotonic() + seconds

    async def worker(index: int) -> None:
        while time.monotonic() < stop_at:
            status = await call(index)
            done[0 if 200 <= status < 300 else 1] += 1
            statuses[status] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    if done[1]:
        print(f"    (statuses {dict(statuses)})", flush=True)
    return done[0], done[1]


async def measure(workdir: Path, store_url: str | None, seconds: float,
                  concurrency: int) -> dict[str, tuple[float, float, int]]:
    """phase -> (requests/s, server CPU ms per request, failures)."""
    # Seats freed at once on close (no reconnect grace), so the room never fills.
    serve_args = ["--reconnect-grace", "0", *(["--store", store_url] if store_url else [])]
    server = ServerProcess(workdir, serve_args=serve_args)
    results: dict[str, tuple[float, float, int]] = {}
    async with aiohttp.ClientSession() as http:
        await server.start(http)
        try:
            password = await _password(server, store_url)
            login_body = {"username": "admin", "password": password}
            async with http.post(server.url + "/api/login", json=login_body) as response:
                token = (await response.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(server.url + "/api/organisations", headers=auth) as response:
                org_id = (await response.json())[0]["id"]
            async with http.post(server.url + "/api/rooms", headers=auth,
                                 json={"name": "bench", "org_id": org_id}) as response:
                if response.status not in (201, 409):  # 409: made by an earlier round
                    raise BenchError(f"room not created: {await response.text()}")
            flip = [False]
            tokens = []
            for i in range(IDENTITIES * concurrency):
                async with http.post(server.url + "/api/rooms/bench/tokens", headers=auth,
                                     json={"name": f"P{i}", "identity": f"bench-{i}"}) as response:
                    tokens.append((await response.json())["token"])
            turn = [0]
            ws_url = server.url.replace("http", "ws", 1) + "/ws"

            async def join(worker: int) -> int:
                # Each worker its own identities: no two joins in flight take one seat over.
                turn[0] += 1
                token = tokens[worker * IDENTITIES + turn[0] % IDENTITIES]
                source = f"127.0.1.{turn[0] % ADDRESSES + 1}"
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                        local_addr=(source, 0))) as own, own.ws_connect(ws_url) as ws:
                    await ws.send_json({"type": "join", "room": "bench", "name": "P",
                                        "token": token,
                                        "take_over": True})
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        kind = message.json().get("type")
                        if kind == "joined":
                            return 200
                        if kind == "error":
                            return 409
                    return 499  # closed before an answer (taken over by a later join)

            async def read(_worker: int) -> int:
                async with http.get(server.url + "/api/rooms", headers=auth) as response:
                    await response.read()
                    return response.status

            async def write(_worker: int) -> int:
                flip[0] = not flip[0]
                async with http.patch(server.url + "/api/rooms/bench", headers=auth,
                                      json={"locked": flip[0]}) as response:
                    await response.read()
                    return response.status

            for name, call in (("join", join), ("read", read), ("write", write)):
                cpu = process_cpu_s(server.pid)
                ok, failed = await _run_phase(call, seconds, concurrency)
                cpu_ms = (process_cpu_s(server.pid) - cpu) * 1000
                results[name] = (ok / seconds, cpu_ms / max(ok, 1), failed)
        finally:
            await server.stop()
    return results


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    started = None
    report: list[dict[str, object]] = []
    url = args.store
    if url is None:
        from tests.pgproc import start_postgres  # a checkout's test helper (see the docstring)

        started = start_postgres(durable=True)  # fsync on: as durable as SQLite's FULL
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'round':>5} {'store':<10} " + " ".join(
        f"{phase + ' req/s':>11} {'ms CPU':>7}" for phase in PHASES) + "  failures")
    try:
        with tempfile.TemporaryDirectory(prefix="diemcau-bench-store-") as tmp:
            for round_no in range(args.rounds):
                order = ("sqlite", "postgresql") if round_no % 2 == 0 else ("postgresql",
                                                                             "sqlite")
                for backend in order:
                    workdir = Path(tmp) / f"{backend}-{round_no}"
                    workdir.mkdir()
                    store_url = None
                    if backend == "postgresql":
                        store_url = started.fresh_url() if started else url
                    got = await measure(workdir, store_url, args.seconds, args.concurrency)
                    report.append({"round": round_no, "store": backend, **{
                        phase: {"per_s": got[phase][0], "cpu_ms": got[phase][1],
                                "failures": got[phase][2]} for phase in PHASES}})
                    print(f"{round_no:>5} {backend:<10} " + " ".join(
                        f"{got[p][0]:>11.1f} {got[p][1]:>7.2f}" for p in PHASES)
                        + "  " + " ".join(f"{p}:{got[p][2]}" for p in PHASES), flush=True)
    finally:
        if started is not None:
            from tests.pgproc import stop_postgres

            stop_postgres(started)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", default=None, metavar="URL",
                        help="an existing PostgreSQL database, emptied by nobody: give a fresh "
                             "one per run (default: start a throw-away one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
