"""Fixtures of the fuzz targets. Public fuzz corpora are never committed: they are replayed only
when DIEMCAU_PUBLIC_CORPORA names a directory holding them (Janus' ``fuzzers/corpora`` and
mediasoup's ``worker/fuzzer/reports``); every target also runs on material it makes itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPORA_ENV = "DIEMCAU_PUBLIC_CORPORA"


@pytest.fixture
def public_corpora() -> Path:
    """The public corpora directory; skips the test when the variable is unset."""
    value = os.environ.get(CORPORA_ENV)
    if not value:
        pytest.skip(f"{CORPORA_ENV} is not set (public corpora are not in the repository)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{CORPORA_ENV}={value} is not a directory")
    return path
