"""Every metric the server exports is documented in docs/metrics.md and shown on the Grafana
dashboard (packaging/grafana/diemcau.json), read from a real app's /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling.app import create_app
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]


async def test_every_exported_metric_is_documented_and_on_the_dashboard(
        tmp_path: Path,
        aiohttp_client: Callable[[web.Application], Awaitable[TestClient]]) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    for line in text.splitlines():  # families with no sample yet (no refusal so far)
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name + "_total" if kind == "counter" and not name.endswith("_total")
                      else name)
    names = {name for name in names if not name.endswith("_created")}
    expected = {"diemcau_participants", "diemcau_rtp_forwarded_packets_total",
                "diemcau_webhook_deliveries_total", "diemcau_support_notices_total",
                "diemcau_recording_failures_total", "process_cpu_seconds_total"}
    assert expected <= names
    docs = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`((?:diemcau|process)_[a-z_]+)(?:\{[a-z]+\})?`", docs))
    assert names - documented == set(), "exported but not in docs/metrics.md"
    dashboard = json.loads((ROOT / "packaging" / "grafana" / "diemcau.json").read_text())
    exprs = " ".join(target["expr"] for panel in dashboard["panels"]
                     for target in panel["targets"])
    shown = set(re.findall(r"(?:diemcau|process)_[a-z_]+", exprs))
    assert names - shown == set(), "exported but not on the dashboard"
    assert shown - names == set(), "the dashboard queries a metric nobody exports"
