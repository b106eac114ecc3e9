"""The documentation builds without a single warning (``sphinx-build -W``), the way CI builds it.

Notebooks are rendered as stored, with their outputs (``nb_execution_mode = "off"``);
tests/test_notebooks.py checks the outputs and runs them. API pages are generated from the
docstrings, so a broken numpydoc section fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e .[docs])")
pytest.importorskip("myst_nb", reason="the docs extra is not installed (pip install -e .[docs])")
pytest.importorskip("numpydoc", reason="the docs extra is not installed (pip install -e .[docs])")


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path) -> None:
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html"]
    cmd += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-5000:]}"
    for page in ["index", "hyperparameters", "faq", "strategies", "notebooks", "api"]:
        assert (out / f"{page}.html").is_file(), page
    assert (out / "_images" / "scales_and_mixing.png").is_file()
    notebooks = sorted(p.stem for p in (DOCS.parent / "notebooks").glob("*.ipynb"))
    assert notebooks and all((out / "notebooks" / f"{n}.html").is_file() for n in notebooks)
    quickstart = (out / "notebooks" / "01_quickstart_sktime.html").read_text(encoding="utf-8")
    assert "<img" in quickstart and "<table" in quickstart  # outputs shown: figure, DataFrame
    api = (out / "generated" / "msft_forecast.plotting.plot_scales.html").read_text()
    assert "Parameters" in api and "Examples" in api


def test_files_and_tests_the_docs_cite_exist() -> None:
    """Every ``path.py`` and ``tests/x.py::test_name`` cited in the docs exists (a renamed test
    or module must not leave the FAQ pointing at nothing). ``::name`` continues the last file."""
    import re

    root = DOCS.parent
    cited = re.compile(r"`((?:[\w./-]+\.py)?)(?:::(\w+))?`")
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        last = None
        for path, name in cited.findall(page.read_text(encoding="utf-8")):
            if path:
                # repository paths, or package paths such as msft/scales.py
                found = [p for p in (root / path, root / "msft_forecast" / path) if p.is_file()]
                if not found:
                    missing.append(f"{page.name}: {path}")
                    continue
                last = found[0]
            if name and last is not None:
                source = last.read_text(encoding="utf-8")
                if not re.search(rf"^\s*def {name}\(", source, flags=re.M):
                    missing.append(f"{page.name}: {last.relative_to(root)}::{name}")
    assert not missing, missing
