"""``python -m bench.relay`` runs, and both paths forward every packet to every subscriber."""

from __future__ import annotations

import json
from pathlib import Path

from bench.relay import main


def test_relay_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "relay.json"
    assert main(["--subscribers", "2", "--seconds", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["subscribers"] == 2 and row["packets"] > 0
    assert row["forwarded_direct"] == row["forwarded_relay"] == 2 * row["packets"]
    assert row["relay_hop_us_per_packet"] > 0 and row["direct_us_per_packet"] > 0
