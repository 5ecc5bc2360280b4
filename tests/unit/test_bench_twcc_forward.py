"""``python -m bench.twcc_forward`` in miniature: every mode's copies reach their sockets."""

from __future__ import annotations

import pytest

from bench import twcc_forward
from sfu import native

pytestmark = [pytest.mark.media,
              pytest.mark.skipif(not native.forward_ready(),
                                 reason="no native forward (sfu._fanout not built, or "
                                        "DIEMCAU_NO_NATIVE=1)")]


async def test_twcc_forward_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    [row] = await twcc_forward.run([2], packets=80, rounds=2)
    assert row["subscribers"] == 2 and row["packets_per_mode"] == 80
    for mode in twcc_forward.MODES:
        figures = row[mode]
        assert figures["copies_sent"] == figures["copies_received"] == 160, mode
        assert figures["us_per_copy"] > 0 and len(figures["us_per_copy_rounds"]) == 2, mode
    twcc_forward.print_table([row])
    assert "transport-cc in C saves" in capsys.readouterr().out


async def test_twcc_forward_bench_without_io() -> None:
    """``--no-io``: the copies are made and counted, none is sent; the real send is back after."""
    from sfu import producer as producer_module

    [row] = await twcc_forward.run([2], packets=40, rounds=1, no_io=True)
    for mode in twcc_forward.MODES:
        assert row[mode]["copies_sent"] == 80 and row[mode]["copies_received"] == 0, mode
    assert producer_module.send_batch is native.send_batch
