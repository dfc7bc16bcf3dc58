"""Layering: the batch engine talks to the client through its public API only (no private
attributes, no appending to its history, no reading its mutable rate-limit state) and never
imports the package above it."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import claude_magic

BATCH = sorted((Path(claude_magic.__file__).parent / "batch").glob("*.py"))
# Client state a layer above must not read or change: results come back as return values.
FORBIDDEN = {"history", "ratelimit"}


def _is_client(node: ast.expr) -> bool:
    """``client``, ``self.client``, ``self._client`` …: an expression naming a Client."""
    if isinstance(node, ast.Name):
        return node.id.lstrip("_") == "client"
    return isinstance(node, ast.Attribute) and node.attr.lstrip("_") == "client"


def client_misuses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_client(node.value):
            if node.attr.startswith("_") or node.attr in FORBIDDEN:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def upward_imports(source: str) -> list[str]:
    """``from .. import name`` where ``name`` is not a module of the package (so it comes from
    ``claude_magic/__init__.py``, the layer above)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module is None:
            for alias in node.names:
                if importlib.util.find_spec(f"claude_magic.{alias.name}") is None:
                    found.append(f"line {node.lineno}: from .. import {alias.name}")
    return found


def test_the_scan_sees_what_it_must_refuse() -> None:
    bad = ("client._lookup(p)\nself.client.history.append(r)\nx = self.client.ratelimit\n"
           "client._cache.get(k)\nfrom .. import _kernel_client\n")
    assert len(client_misuses(bad)) == 4 and len(upward_imports(bad)) == 1
    good = "client.lookup(k)\nself.client.record(r, k)\nreply.ratelimit\nfrom .. import pricing\n"
    assert client_misuses(good) == [] and upward_imports(good) == []


@pytest.mark.parametrize("path", BATCH, ids=lambda p: p.name)
def test_batch_uses_only_the_clients_public_api(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert client_misuses(source) == [], f"{path.name} reaches into the client"
    assert upward_imports(source) == [], f"{path.name} imports the package above it"


# -- the package's shape ---------------------------------------------------------------------------

PACKAGE = Path(claude_magic.__file__).parent
# A module past this wants splitting (the emulator is a program of its own, outside the budget).
LINE_BUDGET = 700
# The client's layers, top down (as httpx's ``send`` goes down one concern per layer): each imports
# only the layers below it, so each can be used and tested without the ones above.
CLIENT_LAYERS = ["client", "_driver", "_attempt"]


def module_sizes() -> dict[str, int]:
    """Lines of each module of the package outside ``emulator/``, by path inside the package."""
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "emulator"
    }


def package_imports(source: str) -> set[str]:
    """The modules of the package a module's ``source`` imports (``from . import x`` and
    ``from .x import y``), by name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
    return found


def test_no_module_outside_the_emulator_passes_the_line_budget() -> None:
    sizes = module_sizes()
    assert "client.py" in sizes and not any(name.startswith("emulator/") for name in sizes)
    largest = max(sizes, key=lambda name: sizes[name])
    print(f"largest module outside emulator/: {largest}, {sizes[largest]} lines (budget {LINE_BUDGET})")
    over = sorted((n for n in sizes.items() if n[1] > LINE_BUDGET), key=lambda n: -n[1])
    assert not over, f"modules over {LINE_BUDGET} lines, largest first: {over}"


def test_the_import_scan_sees_both_forms() -> None:
    source = "from . import _http, _wire\nfrom ._call import Call\nfrom .. import batch\nimport httpx\n"
    assert package_imports(source) == {"_http", "_wire", "_call"}


def test_the_clients_layers_import_only_the_layers_below() -> None:
    imports = {layer: package_imports((PACKAGE / f"{layer}.py").read_text(encoding="utf-8"))
               for layer in CLIENT_LAYERS}
    assert "_attempt" in imports["_driver"] and {"_driver", "_attempt"} <= imports["client"]
    for i, layer in enumerate(CLIENT_LAYERS):
        assert not imports[layer] & set(CLIENT_LAYERS[:i]), f"{layer} imports a layer above it"
    # One attempt neither retries nor waits for admission: that is what the layers above are for.
    assert not imports["_attempt"] & {"retry", "_scheduler"}
