"""``python -m bench.cluster_joins`` runs end to end: real redis-server and node processes, and
the exact limit holds in the benchmark too (every room fills to its capacity, no more)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.cluster_joins import main


def test_cluster_joins_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "joins.json"
    assert main(["--nodes", "0,2", "--joins", "40", "--rooms", "2", "--capacity", "10",
                 "--concurrency", "20", "--json", str(out)]) == 0
    reports = json.loads(out.read_text())
    assert [r["nodes"] for r in reports] == [0, 2]
    for report in reports:
        assert report["admitted"] == report["expected_admitted"] == 20, report
        assert report["outcomes"] == {"joined": 20, "room-full": 20}, report
        assert report["admitted_per_s"] > 0
    assert reports[1]["redirects"] > 0  # joins reached the wrong node and were sent on
