"""Issue 12: a participant's `quality` report reaches the room with the server's own figures of
the same link (loss, the layer it forwards, its estimate), from real aiortc peers through the
real server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.client import SyntheticParticipant
from tests.conftest import base_url

pytestmark = pytest.mark.media


async def test_quality_reports_carry_what_the_server_measures(server) -> None:
    url = base_url(server)
    an = SyntheticParticipant(url, "chat-luong", "An")
    binh = SyntheticParticipant(url, "chat-luong", "Binh")
    try:
        await an.join()
        await binh.join()
        assert await binh.wait_for(
            lambda: binh.received.get(an.participant_id, {}).get("video", 0) >= 3, 30
        ), dict(binh.received)
        seen = an.expect("quality")
        await binh.send({"type": "quality", "loss": 0.0, "rtt_ms": 12, "layer": 0})
        report = await asyncio.wait_for(seen, 10)
        assert report["participant_id"] == binh.participant_id
        server = report["server"]
        assert server["layer"] >= 0, report  # the server forwards An's video to Binh
        assert server["loss"] is None or 0.0 <= server["loss"] <= 1.0
        assert report["level"] in ("good", "fair", "poor")
        assert not an.errors and not binh.errors
    finally:
        await asyncio.gather(an.leave(), binh.leave(), return_exceptions=True)
