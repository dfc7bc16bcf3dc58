"""``python -m claude_magic.demo``: run ``notebooks/quickstart.ipynb`` headless against the emulator.

No API key and no network are needed: the notebook starts the bundled emulator itself
(``%claude_emulator start``, which also gives it an empty temporary response cache). The
notebook runs in a real ipykernel of this Python through nbclient, and the executed copy is
written to ``artifacts/quickstart.ipynb``; a summary line follows (cells run, answers
streamed, cache hits, total cost). Any failure exits with status 1 and one line.

``python -m claude_magic.demo NOTEBOOK -o OUT`` runs another notebook the same way; with
``--display final`` it is how the committed outputs of ``notebooks/`` are regenerated for nbval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoError", "Summary", "execute_notebook", "main"]

DEFAULT_NOTEBOOK = Path("notebooks") / "quickstart.ipynb"
SANITIZER = Path(__file__).with_name("sanitize.cfg")  # nbval's --nbval-sanitize-with file, shipped
DEFAULT_OUT = Path("artifacts") / "quickstart.ipynb"
CELL_TIMEOUT = 120  # seconds; a cell against the emulator takes well under one
# Settings of the caller's shell that would change what the notebook does (the emulator
# replaces the key and the URL; offline mode would turn every fresh prompt into an error).
_SCRUBBED = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_MAGIC_OFFLINE", "CLAUDE_MAGIC_DISPLAY")
# Run in the kernel after the notebook (not saved): what the magics saw.
_PROBE = """\
import json as _json
import claude_magic as _claude_magic
_h = _claude_magic.session().history()
_hit = [r.cached or bool(r.extra.get("replayed")) for r in _h]
print(_json.dumps({"streamed": _hit.count(False), "cache_hits": _hit.count(True),
                   "cost": sum(r.cost or 0.0 for r in _h)}))
"""

class DemoError(Exception):
    """The notebook could not be run; the message is the one line to print."""


@dataclass
class Summary:
    cells_run: int
    streamed: int
    cache_hits: int
    cost: float

    def line(self) -> str:
        from .pricing import format_cost

        def n(count: int, what: str) -> str:
            return f"{count} {what}{'' if count == 1 else 's'}"

        return (f"{n(self.cells_run, 'cell')} run, {n(self.streamed, 'answer')} streamed, "
                f"{n(self.cache_hits, 'cache hit')}, total cost {format_cost(self.cost)}")


def _kernel_manager_class() -> type:
    """A kernel manager that always starts ipykernel on *this* Python (not whatever kernelspec named
    ``python3`` comes first on the Jupyter path: ``ipykernel install --user`` makes one)."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python 3 (ipykernel)", language="python")

    class ThisPythonKernel(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs()

    return ThisPythonKernel


def execute_notebook(path: Path, out: Path, *, display: str = "handle",
                     timeout: int = CELL_TIMEOUT, env: dict[str, str] | None = None) -> Summary:
    """Execute ``path`` in a fresh kernel started in its folder, write the result to ``out``.

    ``display`` is ``CLAUDE_MAGIC_DISPLAY`` for the kernel: ``handle`` streams through display
    updates (front ends and nbclient apply them), ``final`` shows each answer once (what nbval
    sees). Neither records widget state in the file. The partial notebook is written even when a
    cell fails, so the failure can be read there. ``env`` adds to the kernel's environment (which
    otherwise has no ANTHROPIC_* or CLAUDE_MAGIC_OFFLINE of the caller's). Raises DemoError.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise DemoError(f"cannot read the notebook {path}: {exc}") from exc
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra)
    env["CLAUDE_MAGIC_DISPLAY"] = display
    env["PYTHONUNBUFFERED"] = "1"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            kernel_manager_class=_kernel_manager_class(),
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    probe = nbformat.v4.new_code_cell(_PROBE)
    # the kernel's own stderr (e.g. ipykernel's warning about TCP on loopback) is kept out of the
    # summary; its last line is shown only if the kernel cannot start
    kernel_log = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
    try:
        with client.setup_kernel(env=env, stderr=kernel_log):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            cells_run = client.code_cells_executed
            nb.cells.append(probe)  # nbclient writes outputs into nb.cells[index]
            try:
                client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
            finally:
                nb.cells.pop()
    except CellExecutionError as exc:
        _write(nb, out)
        raise DemoError(f"a cell of {path} failed: {_first_error_line(exc)} (see {out})") from exc
    except (CellTimeoutError, DeadKernelError) as exc:
        _write(nb, out)
        raise DemoError(f"{path}: {' '.join(str(exc).split())[:200]} (see {out})") from exc
    except Exception as exc:  # kernel start-up: no ipykernel, no jupyter_client, ...
        raise DemoError(f"cannot run {path} in a kernel: {type(exc).__name__}: {exc}"
                        f"{_last_line(kernel_log)}") from exc
    finally:
        kernel_log.close()
    _write(nb, out)
    counts = _probe_result(probe)
    return Summary(cells_run, counts["streamed"], counts["cache_hits"], counts["cost"])


def _last_line(log: Any) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    return f" (kernel said: {lines[-1][:200]})" if lines else ""


def _write(nb: Any, out: Path) -> None:
    import nbformat

    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def _first_error_line(exc: Exception) -> str:
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    if ename or evalue:
        return f"{ename}: {' '.join(str(evalue).split())}"
    return " ".join(str(exc).split())[:200]


def _probe_result(probe: Any) -> dict[str, Any]:
    text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    try:
        return dict(json.loads(text.strip().splitlines()[-1]))
    except (ValueError, IndexError) as exc:
        raise DemoError(f"the notebook ran but its usage could not be read: {text[:200]!r}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m claude_magic.demo",
        description="Execute a notebook headless against the embedded emulator (no API key needed).")
    parser.add_argument("notebook", nargs="?", type=Path, default=DEFAULT_NOTEBOOK,
                        help=f"notebook to run (default: {DEFAULT_NOTEBOOK})")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help=f"where to write the executed notebook (default: {DEFAULT_OUT.parent}/NAME)")
    parser.add_argument("--display", choices=("handle", "final"), default="handle",
                        help="how answers are shown in the kernel (final: once, as nbval sees them)")
    parser.add_argument("--sanitizer", action="store_true",
                        help="print the path of the nbval sanitiser file shipped with the package, and exit")
    args = parser.parse_args(argv)
    if args.sanitizer:
        print(SANITIZER)
        return 0
    out = args.out if args.out is not None else DEFAULT_OUT.parent / args.notebook.name
    if not args.notebook.is_file():
        print(f"no notebook at {args.notebook}: run this from the root of a claude_magic checkout, "
              "or pass the notebook's path", file=sys.stderr)
        return 1
    try:
        summary = execute_notebook(args.notebook, out, display=args.display)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the executed notebook to {out} (ran {args.notebook} against the emulator, no API key)")
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
