"""A tiny forwarding benchmark: the real server as a subprocess, 1 publisher -> 2 subscribers."""

from __future__ import annotations

import argparse

import pytest

from bench.forward import RESULT_KEYS, bench, format_table

pytestmark = pytest.mark.media


@pytest.mark.timeout(60)
async def test_bench_forward_smoke() -> None:
    result = await bench(2, 2.0, warmup=0.5)
    missing = [key for key in RESULT_KEYS if key not in result]
    assert not missing, f"missing keys {missing} in {result}"
    assert result["forwarded_packets"] > 0, result
    assert result["cpu_us_per_packet"] is not None and result["cpu_us_per_packet"] > 0, result
    assert result["incoming_packets_per_s"] > 0, result
    # Subscribers counted what the server says it forwarded (a few packets in flight aside).
    assert 0.9 < result["subscriber_vs_forwarded"] < 1.1, result
    assert 700 < result["publisher_video_kbps"] < 1500, result  # ~1 Mbps replayed VP8
    assert not result["server_log_problems"], result["server_log_problems"]
    assert "srv CPU %" in format_table([result])


@pytest.mark.timeout(120)
async def test_bench_workers_smoke() -> None:
    """`diemcau bench workers` in miniature: one room of 3 on `serve --workers 2`; the server's
    CPU is read from every one of its processes."""
    from bench.workers import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--server-workers", "2", "--rooms", "1", "--room-size", "3",
                              "--duration", "2", "--generators", "0", "--quiet"])
    document = await run(args)
    [step] = document["runs"]["2"]
    assert step["participants"] == 3 and step["server_workers"] == 2
    assert step["server"]["forwarded_packets_per_s"], step["server"]
    assert step["server"]["cpu_pct"] > 0, step["server"]
    assert set(step["server_cpu_pct_by_process"]) == {"signaling", "worker0", "worker1"}
    assert step["server_cpu_pct_by_process"]["worker0"] > 0, step  # the room's worker
    assert not step["server_log_problems"], step["server_log_problems"]
    assert set(document["best"]) == {"2"}


@pytest.mark.timeout(180)
async def test_bench_memory_smoke() -> None:
    """`python -m bench.memory` in miniature: a room of 3, traced; the probe inside the server
    answers twice and what it counts is the participants' (consumers, slimmed receivers)."""
    from bench.memory import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--participants", "3", "--hold", "2", "--workers", "0",
                              "--top", "5"])
    [row] = await run(args)
    assert row["joined"] == 3 and row["flowing"], row
    assert row["rss_growth_mib"] > 0 and row["traced_per_participant_mib"] > 0, row
    assert row["by_line"] and row["by_file"] and row["types"], row
    watched = {name.rsplit(".", 1)[-1]: count for name, count in row["watched"].items()}
    assert watched["Consumer"] == 3 * 2 * 2, watched  # audio + video from each of the others
    # no receiver keeps aiortc's REMB estimator (3 video receivers, 6 sendonly ones); only a
    # publisher without transport-cc has one of its own
    assert watched.get("RemoteBitrateEstimator", 0) <= 3, watched
    assert watched["JitterBuffer"] == watched["RTCRtpReceiver"] == 3 * 2 + 3 * 4, watched
    # where the RSS is (glibc, pymalloc, the kernel) and the worker's trims after the joins
    # (sfu/memtune.py: at least one, each timed; the 2 s held span a 1 s check)
    alloc = row["allocator"]
    assert alloc["glibc_arena_count"] >= 1 and alloc["kernel_rss"] > 0, alloc
    assert alloc["glibc_in_use"] > 0 and row["threads"], row
    assert alloc["pymalloc_blocks"] is None, alloc  # traced: tracemalloc hides pymalloc's stats
    [trims] = row["trims"]
    assert trims["count"] >= 1 and trims["total_s"] > 0, trims
