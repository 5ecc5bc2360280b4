"""``python -m bench.store_api`` runs end to end on both stores: real server processes, a real
PostgreSQL, every join, read and write answered."""

from __future__ import annotations

import json
from pathlib import Path

from bench.store_api import PHASES, main
from tests.pgproc import PostgresServer


def test_store_api_benchmark_smoke(tmp_path: Path, postgres: PostgresServer) -> None:
    out = tmp_path / "store.json"
    assert main(["--rounds", "1", "--seconds", "0.5", "--concurrency", "2",
                 "--store", postgres.fresh_url(), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["store"] for row in rows] == ["sqlite", "postgresql"]
    for row in rows:
        for phase in PHASES:
            assert row[phase]["failures"] == 0, row
            assert row[phase]["per_s"] > 0, row
