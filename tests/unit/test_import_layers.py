"""Imports go one way: the CLI on top, the SFU at the bottom.

    diemcau (the CLI) -> bench -> loadtest -> signaling -> recorder -> sfu

An arrow means "may import"; the order is transitive (the CLI may import any of them, loadtest
imports sfu's hooks and ``signaling.eventloop``). Nothing imports upwards: a cycle such as the old
CLI <-> load test one (``new_event_loop``) fails here. Every import statement counts, those inside
functions too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("sfu", "recorder", "signaling", "loadtest", "bench", "diemcau")
"""Lowest first: a package may import only those before it (and itself)."""


def imported_packages(source: str, own: str) -> set[str]:
    """Top-level project packages that ``source`` imports (relative imports stay in ``own``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(own if node.level else (node.module or "").split(".")[0])
    return found & set(LAYERS)


def upward_imports(package: str) -> list[str]:
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in sorted(imported_packages(path.read_text(), package) - allowed):
            problems.append(f"{path.relative_to(ROOT)} imports {imported}")
    return problems


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    assert list((ROOT / package).rglob("*.py")), f"no modules under {package}/"
    assert upward_imports(package) == []


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "import loadtest.client\n"
        "from bench import forward\n"
        "def f():\n"
        "    from diemcau.cli import main\n"
        "from . import sibling\n"
        "import aiohttp, sfu.wire.rtp_packet\n"
    )
    assert imported_packages(source, "signaling") == {
        "loadtest", "bench", "diemcau", "signaling", "sfu"}


def test_the_cli_is_its_own_package_and_imports_the_rest() -> None:
    cli = (ROOT / "diemcau" / "cli.py").read_text()
    assert imported_packages(cli, "diemcau") >= {"signaling", "recorder", "loadtest", "bench"}
    assert not (ROOT / "signaling" / "cli.py").exists()
