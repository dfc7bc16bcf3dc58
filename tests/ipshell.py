"""Helpers for tests that drive a real IPython InteractiveShell."""

from __future__ import annotations

from typing import Any


def run(ip: Any, code: str) -> Any:
    """Run ``code`` in the shell; any error is raised here."""
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def fails(ip: Any, code: str) -> BaseException:
    """Run ``code``, which must fail; return the error the shell caught."""
    result = ip.run_cell(code)
    assert result.error_in_exec is not None, f"{code!r} should have failed"
    return result.error_in_exec
