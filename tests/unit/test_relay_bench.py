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


def test_relay_layers_bench_smoke(tmp_path: Path) -> None:
    """``python -m bench.relay_layers`` runs; direct, relay hop and worker hop each forward
    every packet their subscribers' layers carry (the same count)."""
    from bench.relay_layers import main as layers_main

    out = tmp_path / "layers.json"
    assert layers_main(["--subscribers", "4", "--seconds", "1", "--rounds", "1",
                        "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["forwarded_direct"] == row["forwarded_relay"] == row["forwarded_worker"] > 0
    assert row["relayed_packets"] == row["publisher_packets"]  # every layer crossed
    assert row["every_layer_us_per_media_s"] > 0 and row["worker_hop_us_per_media_s"] > 0
