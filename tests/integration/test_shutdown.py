"""Graceful shutdown: SIGTERM drains the rooms (everyone is told), then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from loadtest.client import SyntheticParticipant
from tests.serverproc import running_server

pytestmark = pytest.mark.media


async def test_sigterm_tells_everyone_and_exits_cleanly(tmp_path: Path) -> None:
    with running_server(tmp_path, print_log=False) as server:
        people = [SyntheticParticipant(server.base_url, "tat-may", name) for name in ("An", "Binh")]
        try:
            for person in people:
                await person.join()
            a, b = people
            assert await a.wait_for(lambda: a.received[b.participant_id]["video"] >= 3, 20)
            server.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(server.proc.wait, 15)
            assert returncode == 0, server.log_text()[-2000:]
            for person in people:  # each was told why before the socket closed
                assert await person.wait_for(lambda p=person: any(
                    e.get("type") == "left" for e in p.events), 5), person.events[-3:]
            told = [e for p in people for e in p.events if e.get("type") == "left"]
            assert [e["reason"] for e in told] == ["server-shutdown"] * 2, told
            log = server.log_text()
            assert "Traceback" not in log, log[-3000:]
        finally:
            await asyncio.gather(*(p.close() for p in people), return_exceptions=True)
