"""Optional profiling of the server under test for ``python -m bench.forward``:
py-spy samples it during the measurement window (raw collapsed stacks), ``self_time`` ranks the
leaf functions of such a profile.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def pyspy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


PYSPY_RATE = 1000  # samples/s; py-spy runs on the other core and (non-native) never pauses us


def start_pyspy(
    pid: int, duration: float, output: Path, native: bool = False
) -> subprocess.Popen[bytes] | None:
    """py-spy the server for ``duration`` s into a raw (collapsed stacks) file.

    ``native`` adds C frames (uvloop, libsrtp, syscalls); py-spy must then pause the process at
    each sample, which inflates its CPU time: use it for shares, not for the CPU figures.
    """
    binary = pyspy_binary()
    if binary is None:
        logger.warning("py-spy not installed: no profile")
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    mode = ["--native", "--rate", "250"] if native else ["--nonblocking", "--rate",
                                                          str(PYSPY_RATE)]
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
         *mode, "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def self_time(raw_profile: Path, top: int = 15) -> list[dict[str, Any]]:
    """Leaf functions of a py-spy raw (collapsed) profile by share of non-idle samples."""
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw_profile.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])  # per function, not per line
        leaves[leaf] += int(count)
        total += int(count)
    return [{"function": name, "samples": n, "share": round(n / total, 4)}
            for name, n in leaves.most_common(top)] if total else []
