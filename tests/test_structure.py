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
