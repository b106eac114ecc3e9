"""Sphinx configuration: Markdown pages (MyST) and an API reference from numpydoc docstrings."""

from __future__ import annotations

import msft_forecast

project = "msft_forecast"
author = "msft_forecast developers"
release = version = msft_forecast.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings = ["myst.xref_missing"]
