"""Sphinx configuration: Markdown pages and notebooks (MyST-NB) and an API reference from numpydoc
docstrings.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``tests/test_docs.py``
runs exactly this). The notebooks in ``notebooks/`` (linked as ``docs/notebooks``) are stored
with the outputs of a full run (``python scripts/run_notebooks.py``) and rendered as stored,
figures and tables included, without executing them again: ``tests/test_notebooks.py`` checks
that the stored outputs come from the current code and executes every notebook.
"""

from __future__ import annotations

import msft_forecast

project = "msft_forecast"
author = "msft_forecast developers"
release = version = msft_forecast.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "figures/*.py", "notebooks/.ipynb_checkpoints"]
nb_execution_mode = "off"
myst_heading_anchors = 3
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings: list[str] = []


def _results_are_orphans(app, docname: str, source: list[str]) -> None:
    """``results/*.md`` are tables the benchmark runner writes (linked from benchmarks.md, not
    listed in a toctree): mark them orphan so Sphinx does not warn, without editing them."""
    if docname.startswith("results/") and not source[0].startswith("---"):
        source[0] = "---\norphan: true\n---\n" + source[0]


def setup(app):
    app.connect("source-read", _results_are_orphans)
