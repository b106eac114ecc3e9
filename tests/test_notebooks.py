"""The notebooks in notebooks/ are stored with the outputs of a full run of their current code
(what the docs show; ``python scripts/run_notebooks.py`` makes them), and every one still runs
top to bottom.

The kernel gets what ``scripts/run_notebooks.py`` gives it: one OpenMP thread, the hub offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
RERUN = "rerun `python scripts/run_notebooks.py {}` and commit the notebook"


def _runner():
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", REPO / "scripts" / "run_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _errors(book) -> list:
    return [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.get("output_type") == "error"
    ]


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 4, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_with_the_outputs_of_a_full_run_of_the_current_code(path: Path) -> None:
    import nbformat

    runner = _runner()
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    record = book.metadata.get(runner.RUN_KEY)
    assert record is not None, f"{path.name} has no run record: " + RERUN.format(path.stem)
    assert record["code_sha256"] == runner.code_digest(book), (
        f"{path.name}: its code changed since its outputs were made; " + RERUN.format(path.stem)
    )
    code = [c for c in book.cells if c.cell_type == "code"]
    # one run, top to bottom, every cell
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), path.name
    assert not _errors(book), path.name
    outputs = [o for c in code for o in c.outputs]
    assert outputs, path.name
    if any("plot" in c.source or "plt." in c.source for c in code):  # its figures are shown
        assert any("image/png" in o.get("data", {}) for o in outputs), path.name
    # streams as a terminal shows them (scripts/run_notebooks.py::coalesce_streams)
    assert not any("\r" in o.get("text", "") for o in outputs), path.name
    assert record["seconds"] > 0 and record["machine"] and record["commit"]


def test_streams_are_stored_as_a_terminal_shows_them() -> None:
    runner = _runner()
    bar = "Epoch 0:   0%| | 0/3\rEpoch 0:  33%| | 1/3\rEpoch 0: 100%| | 3/3, loss=0.1\n"
    validation = "Validation DataLoader 0: 100%| | 4/4\n\x1b[A\r          \n"
    assert runner.terminal_text(bar + validation + "\n\ndone\n") == (
        "Epoch 0: 100%| | 3/3, loss=0.1\ndone\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_top_to_bottom(path: Path) -> None:
    book, seconds = _runner().execute(path)  # CellExecutionError names the failing cell
    print(f"{path.name}: {seconds:.1f} s")
    assert not _errors(book)
