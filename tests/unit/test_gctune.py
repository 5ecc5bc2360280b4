"""sfu/gctune.py: a forwarding process freezes what its set-up left alive and widens the young
generation; DIEMCAU_GC_DEFAULT=1 keeps CPython's defaults. Each case in its own interpreter
(freezing this test process would change every later test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import gc, json
from sfu.gctune import tune_for_forwarding
tuned = tune_for_forwarding()
print(json.dumps({"tuned": tuned, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(**env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **env})
    return dict(json.loads(out.stdout))


def test_a_forwarding_process_freezes_its_setup_and_widens_the_young_generation() -> None:
    from sfu.gctune import OLDER_THRESHOLDS, YOUNG_THRESHOLD

    result = _probe(DIEMCAU_GC_DEFAULT="0")
    assert result["tuned"] is True
    assert result["threshold"] == [YOUNG_THRESHOLD, *OLDER_THRESHOLDS]
    assert isinstance(result["frozen"], int) and result["frozen"] > 1000  # the imports


def test_the_environment_keeps_cpythons_defaults() -> None:
    result = _probe(DIEMCAU_GC_DEFAULT="1")
    assert result == {"tuned": False, "threshold": [700, 10, 10], "frozen": 0}
