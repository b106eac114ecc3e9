"""Soft dependencies: the core install (the engine and the command line) works without sktime and
Darts, and importing a front end without its library raises an ImportError naming its extra.

Each check runs in a subprocess whose import system cannot see the hidden libraries (``find_spec``
returns None for them, as when they are not installed), so this process's ``sys.modules`` is
left alone. The fresh-environment version of the same check is ``pip install .`` then
``python -c "import msft_forecast.engine"``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from msft_forecast._extras import missing, requiring

ROOT = Path(__file__).resolve().parents[1]

#: What the extras bring and the core install lacks (Darts brings statsmodels; the bench extra
#: pmdarima and neuralforecast). Checked against a fresh ``pip install .``.
NOT_IN_CORE = ("sktime", "skpro", "darts", "statsmodels", "pmdarima", "neuralforecast")

_HIDE = """
import sys
from importlib.machinery import PathFinder

HIDDEN = {hidden!r}


class NotInstalled:
    # the path finder, blind to the hidden libraries (modules and installed metadata)
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):  # importlib.metadata: no hidden ones either
        for dist in PathFinder.find_distributions(*args, **kwargs):
            if (dist.metadata["Name"] or "").lower().replace("-", "_") not in HIDDEN:
                yield dist

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [NotInstalled if f is PathFinder else f for f in sys.meta_path]


def loaded(roots):
    return sorted(m for m in sys.modules if m.partition(".")[0] in roots)


def raises_naming(statement, library, extra):
    try:
        exec(statement, {{}})
    except ImportError as err:
        text = str(err)
        assert not isinstance(err, AttributeError), (statement, err)
        assert err.name == library, (statement, err.name)
        assert f'pip install "msft-forecast[{{extra}}]"' in text, (statement, text)
        assert '"msft-forecast[all]"' in text, (statement, text)
        return text
    raise AssertionError(f"{{statement!r}} did not raise")
"""


def run_without(hidden: tuple[str, ...], code: str, timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter that cannot see ``hidden``; return its stdout."""
    script = textwrap.dedent(_HIDE).format(hidden=tuple(hidden)) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,  # this checkout's msft_forecast first on the path
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    assert result.returncode == 0, output
    return result.stdout


def test_engine_and_cli_do_not_import_the_front_ends_libraries():
    """Even where sktime and Darts are installed, the core modules leave them alone."""
    run_without(
        (),
        """
        import msft_forecast
        import msft_forecast.cli
        import msft_forecast.engine
        import msft_forecast.plotting
        from msft_forecast.engine import MSFTEngine

        assert not loaded({"sktime", "skpro", "darts"}), loaded({"sktime", "skpro", "darts"})
        """,
    )


@pytest.mark.slow
def test_engine_and_command_line_work_without_sktime_and_darts(tmp_path):
    csv, out = tmp_path / "y.csv", tmp_path / "forecast.csv"
    run_without(
        NOT_IN_CORE,
        f"""
        import numpy as np
        import pandas as pd

        import msft_forecast
        from msft_forecast.cli import main
        from msft_forecast.engine import MSFTEngine

        y = 10 + np.sin(np.arange(80) * 2 * np.pi / 8)
        engine = MSFTEngine(
            backbone="moirai-tiny", fit_strategy="zero-shot", context_length=32,
            prediction_length=4, num_samples=10,
        )
        fc = engine.fit([y]).forecast([y], 4)
        assert fc.mean.shape == (1, 4) and np.isfinite(fc.mean).all(), fc.mean

        index = pd.date_range("2024-01-01", periods=len(y), freq="D")
        pd.DataFrame({{"date": index, "y": y}}).to_csv({str(csv)!r}, index=False)
        code = main([
            "forecast", {str(csv)!r}, "--horizon", "4", "--strategy", "zero-shot",
            "--context", "32", "--num-samples", "10", "--output", {str(out)!r},
        ])
        assert code == 0, code
        assert len(pd.read_csv({str(out)!r})) == 4
        assert not loaded(HIDDEN), loaded(HIDDEN)
        """,
    )


def test_command_line_help_without_sktime_and_darts():
    stdout = run_without(
        NOT_IN_CORE,
        """
        import contextlib
        import io

        from msft_forecast.cli import main

        for argv in (["--help"], ["forecast", "--help"], ["benchmark", "--help"]):
            try:
                main(argv)
            except SystemExit as stop:
                assert stop.code == 0, (argv, stop.code)
            else:
                raise AssertionError(f"{argv}: no exit")
        # a benchmark model that needs an extra says which, before any data is read
        for model in ("theta", "autoets", "dlinear"):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    main(["benchmark", "--data", "absent.csv", "--strategies", model])
                except SystemExit as stop:
                    assert stop.code == 2, (model, stop.code)
            assert 'pip install "msft-forecast[bench]"' in err.getvalue(), err.getvalue()
            print(model, err.getvalue().strip().splitlines()[-1])
        assert not loaded(HIDDEN), loaded(HIDDEN)
        """,
    )
    assert "theta needs sktime and statsmodels" in stdout, stdout
    assert "peer 'dlinear' needs the darts package" in stdout, stdout


@pytest.mark.slow
def test_sktime_front_end_names_its_extra_and_darts_still_imports():
    run_without(
        ("sktime", "skpro"),
        """
        import msft_forecast

        raises_naming("import msft_forecast.sktime", "sktime", "sktime")
        text = raises_naming("from msft_forecast import MSFTForecaster", "sktime", "sktime")
        assert "msft_forecast.sktime" in text, text
        raises_naming("import msft_forecast; msft_forecast.MSFTForecaster", "sktime", "sktime")

        from msft_forecast import MSFTModel  # the other front end does not need sktime
        """,
    )


@pytest.mark.slow
def test_darts_front_end_names_its_extra_and_sktime_still_imports():
    run_without(
        ("darts",),
        """
        raises_naming("import msft_forecast.darts", "darts", "darts")
        text = raises_naming("from msft_forecast import MSFTModel", "darts", "darts")
        assert "msft_forecast.darts" in text, text
        raises_naming("from msft_forecast.darts import MSFTModel", "darts", "darts")

        from msft_forecast import MSFTForecaster  # the other front end does not need Darts
        """,
    )


def test_only_the_missing_library_itself_is_translated():
    err = missing("sktime", "msft_forecast.sktime")
    assert isinstance(err, ImportError) and err.name == "sktime"
    assert 'pip install "msft-forecast[sktime]"' in str(err)
    # another module missing (e.g. a dependency of the library) propagates unchanged
    with pytest.raises(ModuleNotFoundError) as info:
        with requiring("sktime", "msft_forecast.sktime"):
            import msft_forecast_no_such_module  # noqa: F401
    assert info.value.name == "msft_forecast_no_such_module"
    assert "msft-forecast[" not in str(info.value)
    # so does a part an installed library lacks (a version mismatch, not a missing extra)
    with pytest.raises(ModuleNotFoundError) as info:
        with requiring("json", "something"):
            import json.no_such_part  # noqa: F401
    assert info.value.name == "json.no_such_part"
