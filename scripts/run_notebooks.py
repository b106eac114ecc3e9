"""Execute the notebooks in ``notebooks/`` and store them with their outputs (what the docs show).

    python scripts/run_notebooks.py                         # every notebook, written in place
    python scripts/run_notebooks.py 01_quickstart_sktime    # one (or several) by name
    python scripts/run_notebooks.py --check                 # execute, write nothing

Each notebook runs as a reader runs it: a fresh kernel of this interpreter, figures inline
(``image/png`` outputs), one OpenMP thread, the model hub offline, the notebook's folder as the
working directory. Streams are stored as a terminal shows them (a progress bar's last state, not
every update). The run is recorded in the notebook's metadata (``msft_forecast_run``: wall
seconds, the digest of the code cells, machine, load average, torch version, commit), and a
table of times is printed: the README's and the docs' notebook times come from it. The docs
render the stored outputs (``nb_execution_mode = "off"`` in ``docs/conf.py``), so building them
stays quick;
``tests/test_notebooks.py`` checks the stored outputs (complete, error-free, from the current
code) and executes every notebook again.

Needs the ``notebooks`` extra (``pip install -e ".[notebooks]"``: both front ends, nbclient,
nbformat, ipykernel; not the benchmark peers).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
#: Key of the run record in a stored notebook's metadata.
RUN_KEY = "msft_forecast_run"
#: Per-cell limit (seconds): a cell that runs longer is a notebook to shrink, not to wait for.
CELL_TIMEOUT = 600


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def kernel_environment() -> dict[str, str]:
    """The environment a notebook's kernel gets: this interpreter first on ``PATH`` (so the
    ``python3`` kernel spec is this venv's), one OpenMP thread and the hub offline."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("MPLBACKEND", None)  # the kernel's inline backend turns figures into outputs
    return env


def execute(path: Path) -> tuple[Any, float]:
    """Run one notebook top to bottom in a fresh kernel; return it (with outputs) and seconds.

    Raises ``nbclient.exceptions.CellExecutionError`` naming the failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(kernel_environment())  # the kernel inherits os.environ
    try:
        client = NotebookClient(
            book,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            record_timing=False,  # no per-cell timestamps: stored notebooks diff cleanly
            resources={"metadata": {"path": str(path.parent)}},
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return book, seconds


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: tqdm's hint, in a kernel without ipywidgets, that its bars fall back to text.
_TQDM_HINT = re.compile(
    r"^.*TqdmWarning: IProgress not found.*\n(?:\s+from \.autonotebook.*\n)?", re.M
)


#: Lightning's validation and sanity-check bars, which a terminal clears when they finish.
_TRANSIENT_BAR = re.compile(r"^(Validation|Sanity Checking)( DataLoader \d+)?:")


def terminal_text(text: str) -> str:
    """What a terminal would show for a stream: each line after its last carriage return (a
    progress bar's final state), cursor movements, cleared bars and blank lines removed."""
    text = _TQDM_HINT.sub("", _ANSI.sub("", text))
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return "".join(f"{ln}\n" for ln in lines if ln and not _TRANSIENT_BAR.match(ln))


def coalesce_streams(book: Any) -> None:
    """Merge each cell's consecutive stream outputs of one kind into one, as a terminal would
    show them (a progress bar leaves one line per bar, not one per update)."""
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        merged: list[Any] = []
        for out in cell.outputs:
            last = merged[-1] if merged else None
            if (
                out.output_type == "stream"
                and last is not None
                and (last.output_type == "stream" and last.name == out.name)
            ):
                last.text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = terminal_text(out.text)
        cell.outputs = [o for o in merged if o.output_type != "stream" or o.text]


def code_digest(book: Any) -> str:
    """SHA-256 of a notebook's code cells: a stored run whose digest differs is stale."""
    code = "\n\x00".join(c.source for c in book.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def run_record(book: Any, seconds: float) -> dict[str, Any]:
    """How a stored notebook's outputs were made."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "seconds": round(seconds, 1),
        "code_sha256": code_digest(book),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "commit": _commit(),
        "command": "python scripts/run_notebooks.py",
    }


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--check", action="store_true", help="execute but write nothing")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        wanted = {n.removesuffix(".ipynb") for n in args.names}
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            known = [p.stem for p in paths]
            parser.error(f"no such notebook(s): {sorted(unknown)}; known: {known}")
        paths = [p for p in paths if p.stem in wanted]
    rows = []
    for path in paths:
        book, seconds = execute(path)
        record = run_record(book, seconds)
        rows.append((path.name, seconds, record["load_average"][0]))
        print(f"{path.name}: {seconds:.1f} s (load {record['load_average'][0]})", flush=True)
        if not args.check:
            coalesce_streams(book)
            book.metadata[RUN_KEY] = record
            nbformat.write(book, path)
    print("\n| notebook | seconds | load (1 min) |\n|---|---|---|")
    for name, seconds, load in rows:
        print(f"| {name} | {seconds:.0f} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
