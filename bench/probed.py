"""A server process with a probe script inside, asked for a JSON report with SIGUSR1
(``bench.memory`` and ``bench.gc_churn`` share it), and the load generator's view of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from loadtest.server import HOST, BenchError, ServerProcess


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
