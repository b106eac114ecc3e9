"""``msft-forecast``: fine-tune and forecast a CSV or Parquet file from the shell.

Examples
--------
Forecast 24 steps of every numeric column of ``sales.csv`` (time column found automatically),
with MSFT on Moirai (offline: the bundled backbone, named in the output), writing quantiles to
``forecast.csv`` and a plot::

    msft-forecast forecast sales.csv --horizon 24 --output forecast.csv --plot forecast.png

Forecast ``sales`` with ``price`` known ahead (the file's last 24 rows hold the future prices
and leave ``sales`` empty) and ``visits`` known up to the last sale (Moirai backbones)::

    msft-forecast forecast sales.csv --horizon 24 --columns sales \
        --future-covariates price --past-covariates visits

Run the long-horizon benchmark (see ``msft-forecast benchmark --help``)::

    msft-forecast benchmark --datasets ETTh1 --strategies zero-shot msft --max-steps 100
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from msft_forecast.msft.strategies import FIT_STRATEGIES
from msft_forecast.settings import MULTIVARIATE_MODES, MSFTSettings

#: The engine's defaults: one home for every setting. Every option that is a setting takes its
#: default from here (``tests/test_architecture.py`` checks), so the shell and Python agree.
_D = MSFTSettings()

EXIT_BAD_INPUT = 2
#: Fine-tuning failed (non-finite loss).
EXIT_FAILED = 1
#: Interrupted with Ctrl+C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class InputError(ValueError):
    """Bad input: reported as one line on stderr with exit status 2."""


#: Column separators recognised in a CSV's first lines when ``--sep`` is not given.
SEPARATORS = ",;\t|"


def _read_table(path: Path, sep: str | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=sep or _sniff_separator(path))
    except Exception as err:  # pandas raises many types for unreadable files
        raise InputError(f"{path}: cannot be read as CSV/Parquet ({err})") from err


def _sniff_separator(path: Path) -> str:
    """The separator of a CSV from its first lines (``,`` when they do not tell)."""
    import csv
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            sample = "".join(fh.readline() for _ in range(20))
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except (csv.Error, OSError):
        return ","


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse unusable ``--output`` / ``--plot`` locations before any fine-tuning starts."""
    source = Path(args.input)
    targets = [(flag, value) for flag, value in (("--output", args.output), ("--plot", args.plot))]
    seen: dict[Path, str] = {}
    for flag, value in targets:
        if value is None:
            continue
        target = Path(value)
        if target.is_dir():
            raise InputError(f"{flag} {target} is a folder; give a file name inside it")
        if not target.parent.is_dir():
            raise InputError(
                f"{flag} {target}: the folder {target.parent} does not exist; create it first"
            )
        if source.exists() and target.exists() and target.resolve() == source.resolve():
            raise InputError(f"{flag} {target} is the input file; write the result elsewhere")
        if target.resolve() in seen:
            raise InputError(f"{flag} and {seen[target.resolve()]} name the same file {target}")
        seen[target.resolve()] = flag


def _time_column(frame: pd.DataFrame, name: str | None) -> str:
    if name is not None:
        if name not in frame.columns:
            raise InputError(
                f"time column {name!r} not in the file's columns {list(frame.columns)}"
            )
        return name
    for column in frame.columns:
        named_like_time = any(w in str(column).lower() for w in ("date", "time"))
        if not pd.api.types.is_numeric_dtype(frame[column]) or named_like_time:
            try:
                pd.to_datetime(frame[column].head(20))
            except (ValueError, TypeError):
                continue
            return column
    raise InputError("no time column found; name it with --time-column")


def load_series(
    path: Path,
    time_column: str | None,
    columns: list[str] | None,
    freq: str | None,
    sep: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """The file as a frame indexed by time (regular, sorted) with numeric value columns."""
    frame = _read_table(path, sep)
    if frame.empty:
        raise InputError(f"{path}: the file has no rows")
    tcol = _time_column(frame, time_column)
    try:
        index = pd.DatetimeIndex(pd.to_datetime(frame[tcol]))
    except (ValueError, TypeError) as err:
        raise InputError(f"time column {tcol!r} has values that are not dates ({err})") from err
    values = frame.drop(columns=[tcol])
    if columns:
        unknown = [c for c in columns if c not in values.columns]
        if unknown:
            raise InputError(f"columns {unknown} not in the file; it has {list(values.columns)}")
        values = values[columns]
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric and columns:
        raise InputError(f"columns {non_numeric} are not numeric")
    values = values.drop(columns=non_numeric)
    if values.shape[1] == 0:
        raise InputError("no numeric value column to forecast")
    values.index = index
    if index.has_duplicates:
        raise InputError(
            f"time column {tcol!r} has duplicated time stamps, e.g. {index[index.duplicated()][0]}"
        )
    values = values.sort_index()
    freq = freq or _infer_freq(values.index)
    if freq is None:
        raise InputError(
            "the time stamps are irregular and no frequency was given; pass --freq (e.g. 'h', 'D')"
        )
    values = values.asfreq(freq)  # gaps become missing values
    if np.isinf(values.to_numpy(dtype=float)).any():
        raise InputError("the data holds infinite values; replace them with empty cells (missing)")
    return values, freq


def _infer_freq(index: pd.DatetimeIndex) -> str | None:
    """pandas' inferred frequency, else the step between most time stamps when every step is
    a whole multiple of it (regular data with gaps: the gaps become missing values)."""
    if len(index) < 3:
        return None
    freq = pd.infer_freq(index)
    if freq is not None:
        return freq
    steps = index.to_series().diff().dropna()
    step = steps.mode().iloc[0]
    regular = (steps == step).mean() > 0.5
    if not regular or step <= pd.Timedelta(0) or ((steps % step) != pd.Timedelta(0)).any():
        return None
    return pd.tseries.frequencies.to_offset(step).freqstr


def split_covariates(
    frame: pd.DataFrame, targets: list[str] | None, past: list[str], future: list[str],
    horizon: int,
) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """The target columns (over the history) and the engine's covariate arguments.

    Covariate columns are never targets.  Past covariates are read over the history; with
    known-future covariates the file's last ``horizon`` rows are the forecast period: the
    targets are empty there and the future covariates filled.
    """
    covariates = past + future
    missing = [c for c in covariates if c not in frame.columns]
    if missing:
        raise InputError(f"covariate columns {missing} are not numeric columns of the file; it "
                         f"has {list(frame.columns)}")  # fmt: skip
    if set(past) & set(future):
        raise InputError(f"columns {sorted(set(past) & set(future))} are both past and future "
                         "covariates")  # fmt: skip
    targets = [c for c in (targets or frame.columns) if c not in covariates]
    if not targets:
        raise InputError("no value column left to forecast besides the covariates")
    history = frame
    if future:
        history, ahead = frame.iloc[:-horizon], frame.iloc[-horizon:]
        if len(ahead) < horizon or ahead[targets].notna().any().any() or history.empty:
            raise InputError(
                f"with --future-covariates the file's last {horizon} rows (--horizon) are the "
                f"forecast period: leave the target columns {targets} empty there and fill "
                f"{future} (they must also cover the history)"
            )
    arrays = [history[c].to_numpy(dtype=float) for c in targets]
    kwargs: dict = {}
    if past:
        kwargs["past_covariates"] = [history[past].to_numpy(dtype=float)] * len(targets)
    if future:
        kwargs["future_covariates"] = [frame[future].to_numpy(dtype=float)] * len(targets)
    if kwargs:
        kwargs["covariate_names"] = (past, future)
    # the targets are the channels of one series (read together by --multivariate joint)
    return history[targets], kwargs | {"series": arrays, "channels": len(targets)}


def cmd_forecast(args: argparse.Namespace) -> int:
    from msft_forecast.engine import MSFTEngine

    for flag, value in (("--horizon", args.horizon), ("--num-samples", args.num_samples)):
        if value < 1:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    check_output_paths(args)
    past, future = args.past_covariates or [], args.future_covariates or []
    wanted = args.columns + past + future if args.columns else None
    frame, freq = load_series(Path(args.input), args.time_column, wanted, args.freq, args.sep)
    quantiles = sorted(set(args.quantiles))
    if any(not 0 < q < 1 for q in quantiles):
        raise InputError("--quantiles must lie strictly between 0 and 1")
    frame, covariates = split_covariates(frame, args.columns, past, future, args.horizon)
    series = covariates.pop("series")
    # the settings' rule (random_state=None: a fresh seed) with the seed drawn here, so that
    # the output can say which one repeats the run
    seed = int(np.random.default_rng().integers(0, 2**31 - 1)) if args.seed is None else args.seed
    engine = MSFTEngine(
        backbone=args.backbone,
        allow_fallback=not args.no_fallback,
        fit_strategy=args.strategy,
        context_length=args.context,
        prediction_length=args.horizon,
        num_scales=args.num_scales,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        random_state=seed,
        num_samples=args.num_samples,
        multivariate=args.multivariate,
        verbose=not args.quiet,
    )
    engine.fit(series, freq=freq, **covariates)
    if not args.quiet:
        print(f"msft-forecast: {engine.report_.summary()}", file=sys.stderr)
    covariates.pop("covariate_names", None)
    fc = engine.forecast(series, args.horizon, seed=seed, **covariates)
    qs = fc.quantiles(quantiles)
    future = pd.date_range(frame.index[-1], periods=args.horizon + 1, freq=freq)[1:]
    rows = []
    for i, column in enumerate(frame.columns):
        out = pd.DataFrame({"time": future, "series": column, "mean": fc.mean[i]})
        for j, q in enumerate(quantiles):
            out[f"q{q:g}"] = qs[i, j]
        rows.append(out)
    result = pd.concat(rows, ignore_index=True)
    if args.output:
        result.to_csv(args.output, index=False)
        print(f"forecasts written to {args.output}")
    else:
        print(result.to_string(index=False))
    weights = ", ".join(f"{w:.3f}" for w in fc.weights)
    patch = engine.report_.patch_size
    print(f"backbone {engine.backbone_used}")
    print(f"strategy {args.strategy}, patch size {patch}, scale weights [{weights}]")
    print(f"seed {seed}" + ("" if args.seed is not None else f" (drawn; --seed {seed} repeats)"))
    for choice in engine.report_.choices:
        print(f"chose {choice}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from msft_forecast.plotting import plot_forecast

        n = len(frame.columns)
        fig, axes = plt.subplots(n, 1, figsize=(10, 4.2 * n), squeeze=False)
        tail = min(len(frame), 4 * args.horizon)
        for i, column in enumerate(frame.columns):
            plot_forecast(
                frame.index[-tail:],
                frame[column].to_numpy()[-tail:],
                future,
                fc.mean[i],
                qs[i, 0],
                qs[i, -1],
                scale_means=fc.scale_means[i],
                weights=fc.weights,
                coverage=quantiles[-1] - quantiles[0],
                title=str(column),
                ax=axes[i, 0],
            )
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msft-forecast",
        description="Fine-tune time-series foundation models with MSFT and forecast.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser(
        "forecast",
        help="fine-tune on a CSV/Parquet file and forecast every value column",
        description="Fine-tune on a CSV or Parquet file (a time column and one or more value "
        "columns; each column is forecast as its own series) and write the forecasts with "
        "quantiles. Missing cells and gaps in the time stamps are handled as missing values.",
        epilog="example: msft-forecast forecast sales.csv --horizon 24 --output forecast.csv "
        "--plot forecast.png  (bad input: exit status 2 and one line on stderr)",
    )
    f.add_argument("input", help="CSV or Parquet file")
    f.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    f.add_argument("--time-column", default=None, help="default: the first column of dates")
    f.add_argument(
        "--columns", nargs="+", default=None, help="value columns (default: all numeric)"
    )
    f.add_argument(
        "--past-covariates", nargs="+", default=None, metavar="COLUMN",
        help="columns read as covariates known up to the last observation (Moirai backbones; "
        "never forecast)",
    )  # fmt: skip
    f.add_argument(
        "--future-covariates", nargs="+", default=None, metavar="COLUMN",
        help="columns read as covariates known ahead (Moirai backbones): the file's last "
        "--horizon rows hold their future values, with the forecast columns left empty",
    )  # fmt: skip
    f.add_argument("--freq", default=None, help="pandas frequency (default: inferred)")
    f.add_argument(
        "--sep",
        default=None,
        help="CSV column separator (default: recognised from the first lines among , ; tab |)",
    )
    f.add_argument(
        "--backbone",
        default=_D.backbone,
        help="short name ('moirai', 'moirai-base', 'moment-small', 'moirai-tiny' bundled and "
        "offline, ...), Hugging Face hub id or local folder (a folder with one released UniTS "
        ".pth, optionally units.json, is UniTS; default: %(default)s; offline, "
        "'moirai' falls back to the bundled moirai-tiny with one warning, and the output "
        "names the checkpoint used)",
    )
    f.add_argument(
        "--no-fallback",
        action="store_true",
        help="with --backbone moirai: fail when the hub cannot be reached, instead of using "
        "the bundled moirai-tiny (which the output then names)",
    )
    f.add_argument(
        "--strategy",
        default=_D.fit_strategy,
        choices=FIT_STRATEGIES,
        help="fine-tuning strategy (default: %(default)s)",
    )
    f.add_argument(
        "--multivariate",
        default=_D.multivariate,
        choices=MULTIVARIATE_MODES,
        help="several value columns: forecast each from its own history, or each from the "
        "history of all of them through Moirai's any-variate attention (default: "
        "%(default)s)",
    )
    f.add_argument(
        "--context",
        type=int,
        default=_D.context_length,
        help="context length in steps (default: %(default)s)",
    )
    f.add_argument(
        "--num-scales",
        type=int,
        default=_D.num_scales,
        help="MSFT scales including the original resolution (default: %(default)s)",
    )
    f.add_argument(
        "--max-steps",
        type=int,
        default=_D.max_steps,
        help="training steps at most (default: %(default)s)",
    )
    f.add_argument(
        "--batch-size",
        type=int,
        default=_D.batch_size,
        help="windows per step (default: %(default)s)",
    )
    f.add_argument(
        "--learning-rate",
        type=float,
        default=_D.learning_rate,
        help="default: the strategy's (1e-3; 1e-2 for 'prompt-tuning', 1e-5 for 'full')",
    )
    f.add_argument(
        "--num-samples",
        type=int,
        default=_D.num_samples,
        help="sample paths the quantiles come from (default: %(default)s)",
    )
    f.add_argument(
        "--quantiles",
        type=float,
        nargs="+",
        default=[0.1, 0.5, 0.9],
        help="quantile levels written as columns q<level> (default: 0.1 0.5 0.9)",
    )
    f.add_argument(
        "--seed",
        type=int,
        default=_D.random_state,
        help="seed of training and sampling (default: a fresh seed per run, printed with the "
        "results so that --seed repeats the run)",
    )
    f.add_argument("--output", default=None, help="CSV to write (default: print)")
    f.add_argument(
        "--plot",
        default=None,
        help="PNG to write: history, mean, the band between the outer quantiles and every "
        "scale's forecast with its weight",
    )
    f.add_argument(
        "--quiet",
        "--no-verbose",
        action="store_true",
        help="no training progress on stderr (default: a progress bar when stderr is a "
        "terminal, else a plain line every tenth of the steps and at every validation, then "
        "a one-line summary of the fit)",
    )
    # the former switch; progress is now on by default, so --verbose changes nothing
    f.add_argument("--verbose", dest="quiet", action="store_false", help=argparse.SUPPRESS)
    f.set_defaults(func=cmd_forecast)

    b = sub.add_parser(
        "benchmark",
        help="benchmark the strategies, peers and classical baselines on the long-horizon sets "
        "or your own file with --data (python -m msft_forecast.benchmarks.lsf)",
        add_help=False,
    )
    b.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["benchmark"]:
        from msft_forecast.benchmarks.lsf import main as benchmark_main

        try:
            benchmark_main(argv[1:], prog="msft-forecast benchmark")
        except (FileNotFoundError, ValueError) as err:  # e.g. the data folder lacks a dataset
            print(f"msft-forecast: error: {' '.join(str(err).split())}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0
    args = build_parser().parse_args(argv)
    from msft_forecast.memory import InsufficientMemoryError
    from msft_forecast.training.lightning import NonFiniteLossError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return args.func(args)
            finally:
                _report_warnings(caught)
    except (InputError, ValueError, InsufficientMemoryError) as err:
        print(f"msft-forecast: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as err:
        print(f"msft-forecast: error: fine-tuning failed: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("msft-forecast: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _report_warnings(caught: list) -> None:
    """Each distinct warning once, as one line on stderr (not Python's file:line form)."""
    seen = set()
    for item in caught:
        text = _one_line(item.message)
        if text and text not in seen:
            seen.add(text)
            print(f"msft-forecast: warning: {text}", file=sys.stderr)


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (pandas and Lightning messages may span several)."""
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
