"""The layers of sfu/: wire formats and policies stay pure (no asyncio, no aiortc, no shells).

sfu/wire/ may import only itself, sfu.types and sfu.negotiation (the extension URIs);
sfu/policy/ only itself, sfu.wire, sfu.types and sfu.events (plain dataclasses). Shell types a
policy reads are imported under TYPE_CHECKING only. sfu/negotiation.py imports only sfu.types.
"""

import ast
from pathlib import Path

import pytest

SFU = Path(__file__).resolve().parents[2] / "sfu"
ALLOWED = {
    "wire": ("sfu.wire", "sfu.types", "sfu.negotiation"),
    "policy": ("sfu.policy", "sfu.wire", "sfu.types", "sfu.events"),
}
IO = ("asyncio", "aiortc", "aioice", "socket")
PURE_LIBRARY_PARSERS = ("aioice",)  # `from aioice import stun`: the STUN codec, no I/O


def runtime_imports(path: Path) -> list[str]:
    """Modules imported at run time (top level, not under ``if TYPE_CHECKING:``)."""
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def modules(package: str) -> list[Path]:
    return sorted((SFU / package).glob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_pure_packages_import_no_shells_and_no_io(package: str) -> None:
    assert modules(package), f"sfu/{package}/ is empty"
    for path in modules(package):
        for name in runtime_imports(path):
            if name not in PURE_LIBRARY_PARSERS:
                assert not name.startswith(IO), f"{path.name} imports {name}"
            if name.startswith("sfu"):
                assert name.startswith(ALLOWED[package]), f"{path.name} imports {name}"


def test_negotiation_is_pure() -> None:
    for name in runtime_imports(SFU / "negotiation.py"):
        assert not name.startswith(IO)
        assert not name.startswith("sfu") or name == "sfu.types", name
