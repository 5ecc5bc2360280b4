"""A server process with a probe script inside, asked for a JSON report with SIGUSR1
(``bench.memory`` and ``bench.gc_churn`` share it), the load generator's view of it, and
their command line's run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loadtest.media import load_clip, load_simulcast_clips
from loadtest.server import HOST, BenchError, ServerProcess, require_private_namespace
from signaling.eventloop import new_event_loop

Rows = list[dict[str, Any]]


class ReportingServer(ServerProcess):
    """``diemcau serve`` whose probe writes ``report_path`` at each SIGUSR1 (aside, renamed)."""

    report_path: Path
    report_name = "report"
    probe_timeout_s = 30.0

    async def probe(self) -> dict[str, Any]:
        """Ask the probe for a report and wait for it (bounded)."""
        with contextlib.suppress(FileNotFoundError):
            self.report_path.unlink()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.probe_timeout_s
        while not self.report_path.exists():
            if loop.time() > deadline or self.proc.poll() is not None:
                raise BenchError(f"no {self.report_name} from the server:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        report: dict[str, Any] = json.loads(self.report_path.read_text())
        return report


class Target:
    """What ``loadtest.run.Load`` needs to know of the server."""

    name = "diemcau"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def worker_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "target": "diemcau", "ice_addresses": [HOST]}


def bench_main(prog: str, description: str | None,
               add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], Awaitable[Rows]], argv: list[str] | None,
               document: Callable[[Rows], object] = lambda rows: rows) -> int:
    """``python -m bench.<prog>``: parse, ``run(args)`` on a new event loop (a ``BenchError``
    said on stderr, exit 1), and ``document(rows)`` to ``--json`` if given."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    loop = new_event_loop()
    try:
        rows = loop.run_until_complete(run(args))
    except BenchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    if args.json is not None:
        args.json.write_text(json.dumps(document(rows), indent=1))
    return 0


async def prepare_load(namespace_help: str) -> None:
    """Before a probed server meets the load generator: in a private network namespace, and
    the pre-encoded clips read (off the event loop)."""
    require_private_namespace(namespace_help)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, load_clip)
    await loop.run_in_executor(None, load_simulcast_clips)
