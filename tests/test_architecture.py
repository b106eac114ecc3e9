"""The layering the architecture page describes (docs/architecture.md), kept true by tests.

Every forecasting rule lives in the engine and the models; the front ends convert formats;
backbones are reached through one interface; the settings have one home.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from msft_forecast.msft.base import MultiScaleModel
from msft_forecast.msft.registry import model_classes
from msft_forecast.settings import MSFTSettings

PACKAGE = Path(__file__).resolve().parents[1] / "msft_forecast"

#: Most lines of code (not blank, not docstrings, not comments) of the modules that must stay thin.
LINE_BUDGETS = {"sktime.py": 255, "darts.py": 355, "engine.py": 460}


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not a comment, not part of a docstring."""
    source = path.read_text(encoding="utf-8")
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def test_code_lines_counts_code_only(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Doc\n\nmore."""\n\n# comment\nx = 1  # why\n\n\ndef f():\n    """D."""\n'
                    "    return (\n        x\n    )\n")  # fmt: skip
    assert code_lines(path) == 5  # x = 1, def, return ( , x, )


@pytest.mark.parametrize("module, budget", sorted(LINE_BUDGETS.items()))
def test_front_ends_and_engine_stay_within_their_line_budgets(module, budget):
    lines = code_lines(PACKAGE / module)
    assert lines <= budget, f"{module} has {lines} lines of code, more than its budget {budget}"


def test_no_backbone_kind_branches_outside_backbones_and_models():
    """Adding a backbone touches ``backbones/`` and ``msft/`` only: the engine, the front ends,
    the command line and the training code never ask which backbone they hold."""
    paths = [*PACKAGE.glob("*.py"), *(PACKAGE / "training").glob("*.py"),
             *(PACKAGE / "data").glob("*.py")]  # fmt: skip
    pattern = re.compile(r"\bkind\s*==|isinstance\([^)]*MultiScale(Moirai|Moment)")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in paths
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("kind, cls", sorted(model_classes().items()))
def test_every_multi_scale_model_implements_the_interface(kind, cls):
    assert issubclass(cls, MultiScaleModel) and cls.kind == kind
    required = ["build", "candidate_patch_sizes", "token_layout", "msft_modules", "set_trainable",
                "loss", "validation_scores", "forecast"]  # fmt: skip
    missing = [name for name in required if getattr(cls, name) is getattr(MultiScaleModel, name)]
    assert not missing, f"{cls.__name__} does not implement {missing}"


def test_every_setting_is_documented_where_the_settings_live():
    doc = inspect.getdoc(MSFTSettings)
    undocumented = [f.name for f in fields(MSFTSettings) if f"\n{f.name} : " not in f"\n{doc}"]
    assert not undocumented, f"MSFTSettings' docstring does not document {undocumented}"


def _defaults(func) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize("front_end", ["sktime", "darts"])
def test_front_end_defaults_are_the_settings_defaults(front_end):
    if front_end == "sktime":
        from msft_forecast.sktime import MSFTForecaster as cls
    else:
        from msft_forecast.darts import MSFTModel as cls
    defaults = _defaults(cls.__init__)
    settings = {f.name: f.default for f in fields(MSFTSettings) if f.default is not MISSING}
    shared = set(defaults) & set(settings)
    assert len(shared) > 25  # the front end exposes the settings under their own names
    differing = {name: (defaults[name], settings[name]) for name in shared
                 if defaults[name] != settings[name]}  # fmt: skip
    assert not differing, differing


#: Command-line options (argparse ``dest``) that are settings, and the setting each one sets.
CLI_SETTINGS = {
    "backbone": "backbone",
    "strategy": "fit_strategy",
    "context": "context_length",
    "num_scales": "num_scales",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "num_samples": "num_samples",
    "seed": "random_state",
}


def test_cli_defaults_are_the_settings_defaults():
    from msft_forecast.cli import build_parser

    defaults = vars(build_parser().parse_args(["forecast", "data.csv", "--horizon", "3"]))
    d = MSFTSettings()
    differing = {option: (defaults[option], getattr(d, name))
                 for option, name in CLI_SETTINGS.items()
                 if defaults[option] != getattr(d, name)}  # fmt: skip
    assert not differing, differing
    assert (not defaults["no_fallback"]) == d.allow_fallback


def test_not_fitted_is_one_error_type_on_every_front_end(tiny_moirai_dir):
    import numpy as np
    from sktime.exceptions import NotFittedError as SktimeNotFitted

    from msft_forecast.darts import MSFTModel
    from msft_forecast.engine import MSFTEngine
    from msft_forecast.errors import NotFittedError
    from msft_forecast.sktime import MSFTForecaster

    with pytest.raises(NotFittedError, match="not fitted yet"):
        MSFTEngine(backbone=str(tiny_moirai_dir)).forecast([np.ones(10)], 2)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        MSFTModel(backbone=str(tiny_moirai_dir)).engine  # noqa: B018 - the access raises
    with pytest.raises(SktimeNotFitted):  # sktime's own, raised by its base class
        MSFTForecaster(backbone=str(tiny_moirai_dir)).predict(fh=[1])
    # the same bases as sklearn's and sktime's NotFittedError
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
