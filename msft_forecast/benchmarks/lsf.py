"""Long-horizon benchmark runner: fine-tune each strategy, score it on rolling test windows.

Protocol (BENCHMARK.md): every channel is its own series (channel-independent), z-normalised
with the training split's statistics; validation windows (for early stopping and the patch-size
choice) come from the validation split; test windows roll over the test split with a stride
(1 in the literature; larger here to fit a CPU budget), their contexts reaching back into the
earlier splits.  Metrics on the normalised scale: MSE of the mean forecast, MAE of the median,
CRPS (mean weighted quantile loss over 0.1..0.9) and the coverage of the 80% interval.

Every number this module prints comes with the settings that produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msft_forecast.data.lsf import LSFDataset, load_lsf
from msft_forecast.engine import MSFTEngine, MSFTSettings

QUANTILES = np.round(np.arange(0.1, 1.0, 0.1), 2)


@dataclass
class RunResult:
    """Scores of one fitted model on one dataset and horizon."""

    dataset: str
    strategy: str
    horizon: int
    seed: int
    settings: dict[str, Any]
    mse: float
    mae: float
    crps: float | None
    coverage80: float | None
    val_loss: float | None
    initial_val_loss: float | None
    steps: int
    trainable_parameters: int
    patch_size: int
    scale_weights: list[float]
    fit_seconds: float
    windows: int
    extra: dict[str, Any] = field(default_factory=dict)


def test_origins(ds: LSFDataset, horizon: int, stride: int) -> np.ndarray:
    """Forecast origins of the rolling test windows (every ``stride``-th)."""
    return np.arange(ds.val_end, ds.test_end - horizon + 1, stride)


def score(samples: np.ndarray, mean: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE (mean), MAE (median), CRPS over deciles and 80% coverage, averaged over all."""
    q = np.quantile(samples, QUANTILES, axis=1)  # (Q, n, H)
    median = np.quantile(samples, 0.5, axis=1)
    diff = truth[None] - q
    pinball = np.maximum(QUANTILES[:, None, None] * diff, (QUANTILES[:, None, None] - 1) * diff)
    crps = 2 * pinball.mean(0).sum() / np.abs(truth).sum()
    inside = (truth >= q[0]) & (truth <= q[-1])
    return {
        "mse": float(np.mean((mean - truth) ** 2)),
        "mae": float(np.mean(np.abs(median - truth))),
        "crps": float(crps),
        "coverage80": float(inside.mean()),
    }


#: Classical baselines scored on the same windows (point forecasts only).
BASELINES = ("last-value", "seasonal-naive", "theta")


def baseline_forecast(name: str, contexts: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``(n, H)`` point forecasts of a classical baseline from ``(n, C)`` contexts.

    ``"last-value"`` repeats the last observation, ``"seasonal-naive"`` the last season
    (one day), ``"theta"`` is sktime's ``ThetaForecaster`` with multiplicative-free
    deseasonalisation at that season, refitted on every window's context.
    """
    if name == "last-value":
        return np.repeat(contexts[:, -1:], horizon, axis=1)
    if name == "seasonal-naive":
        reps = -(-horizon // season)
        return np.tile(contexts[:, -season:], (1, reps))[:, :horizon]
    if name == "theta":
        import warnings

        import pandas as pd
        from sktime.forecasting.theta import ThetaForecaster

        out = np.empty((contexts.shape[0], horizon))
        fh = np.arange(1, horizon + 1)
        for i, ctx in enumerate(contexts):
            y = pd.Series(ctx + 10.0)  # positive shift: the default decomposition is multiplicative
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = ThetaForecaster(sp=season, deseasonalize=True)
                out[i] = f.fit(y).predict(fh).to_numpy() - 10.0
        return out
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


def run_baseline(
    ds: LSFDataset,
    name: str,
    *,
    context: int,
    horizon: int,
    channels: list[str] | None = None,
    stride: int = 96,
) -> RunResult:
    """Score a classical baseline on the same test windows as :func:`run_one`."""
    values = ds.normalised()
    names = list(ds.frame.columns)
    picked = [names.index(c) for c in channels] if channels else list(range(len(names)))
    origins = test_origins(ds, horizon, stride)
    start = time.perf_counter()
    preds, truths = [], []
    for j in picked:
        series = pd_ffill(values[:, j])
        contexts = np.stack([series[t - context : t] for t in origins])
        preds.append(baseline_forecast(name, contexts, horizon, ds.season))
        truths.append(np.stack([values[t : t + horizon, j] for t in origins]))
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    ok = np.isfinite(truth).all(axis=1)
    return RunResult(
        dataset=ds.name,
        strategy=name,
        horizon=horizon,
        seed=0,
        settings={"context_length": context, "season": ds.season},
        mse=float(np.mean((pred[ok] - truth[ok]) ** 2)),
        mae=float(np.mean(np.abs(pred[ok] - truth[ok]))),
        crps=None,
        coverage80=None,
        val_loss=None,
        initial_val_loss=None,
        steps=0,
        trainable_parameters=0,
        patch_size=0,
        scale_weights=[],
        fit_seconds=time.perf_counter() - start,
        windows=int(ok.sum()),
    )


def pd_ffill(values: np.ndarray) -> np.ndarray:
    """Fill missing values forward (then backward) for baselines that cannot skip them."""
    import pandas as pd

    return pd.Series(values).ffill().bfill().to_numpy()


def run_one(
    ds: LSFDataset,
    settings: MSFTSettings,
    *,
    channels: list[str] | None = None,
    stride: int = 96,
    num_samples: int = 100,
) -> RunResult:
    """Fine-tune with ``settings`` on the train+validation splits and score on the test split."""
    values = ds.normalised()
    names = list(ds.frame.columns)
    picked = [names.index(c) for c in channels] if channels else list(range(len(names)))
    horizon = int(settings.prediction_length)
    history = [values[: ds.val_end, j] for j in picked]
    settings.validation = ds.val_end - ds.train_end
    engine = MSFTEngine(settings)
    start = time.perf_counter()
    engine.fit(history, freq=ds.freq)
    fit_seconds = time.perf_counter() - start
    origins = test_origins(ds, horizon, stride)
    means, samples, truths = [], [], []
    for j in picked:
        contexts = [values[:t, j] for t in origins]
        fc = engine.forecast(contexts, horizon, num_samples, seed=settings.random_state or 0)
        means.append(fc.mean)
        samples.append(fc.samples)
        truths.append(np.stack([values[t : t + horizon, j] for t in origins]))
    mean, samp, truth = np.concatenate(means), np.concatenate(samples), np.concatenate(truths)
    ok = np.isfinite(truth).all(axis=1)
    metrics = score(samp[ok], mean[ok], truth[ok])
    report = engine.report_
    return RunResult(
        dataset=ds.name,
        strategy=settings.fit_strategy,
        horizon=horizon,
        seed=int(settings.random_state or 0),
        settings=settings.to_json(),
        val_loss=report.best_val_loss,
        initial_val_loss=report.initial_val_loss,
        steps=report.steps,
        trainable_parameters=report.trainable_parameters,
        patch_size=report.patch_size,
        scale_weights=[float(w) for w in fc.weights],
        fit_seconds=fit_seconds,
        windows=int(ok.sum()),
        **metrics,
    )


def environment() -> dict[str, str]:
    """Machine, versions and commit, printed next to every table."""
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "unknown", ""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
    }


def markdown_table(results: list[RunResult]) -> str:
    cols = [
        "dataset",
        "strategy",
        "horizon",
        "seed",
        "mse",
        "mae",
        "crps",
        "coverage80",
        "val_loss",
        "initial_val_loss",
        "steps",
        "patch_size",
        "trainable_parameters",
        "fit_seconds",
        "windows",
    ]
    lines = ["| " + " | ".join(cols) + " | scale weights |", "|" + "---|" * (len(cols) + 1)]
    for r in results:
        row = asdict(r)
        cells = []
        for c in cols:
            v = row[c]
            cells.append("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        weights = ", ".join(f"{w:.2f}" for w in r.scale_weights)
        lines.append("| " + " | ".join(cells) + f" | {weights} |")
    return "\n".join(lines)


def save(results: list[RunResult], path: str | Path, header: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"environment": header, "results": [asdict(r) for r in results]}, fh, indent=1)


def main(argv: list[str] | None = None) -> list[RunResult]:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m msft_forecast.benchmarks.lsf",
        description="Fine-tune strategies on LSF datasets; score them on rolling test windows.",
    )
    parser.add_argument("--root", default="../shared/data/lsf", help="folder with the CSV files")
    parser.add_argument("--datasets", nargs="+", default=["ETTh1"])
    parser.add_argument("--channels", nargs="*", default=None, help="default: all channels")
    parser.add_argument(
        "--strategies", nargs="+", default=["zero-shot", "linear-probe", "lora", "full", "msft"]
    )
    parser.add_argument("--backbone", default="moirai-tiny")
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--patch-size", default="auto")
    parser.add_argument("--num-scales", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--val-check-interval", type=int, default=25)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra engine settings, e.g. aggregator=false mixing=mixture",
    )
    parser.add_argument("--json", default=None, help="write every result and setting here")
    parser.add_argument(
        "--markdown", default=None, help="write the settings header and the table here"
    )
    args = parser.parse_args(argv)

    extra = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        extra[key] = json.loads(raw) if raw not in ("", None) else None
    env = environment()
    header = (
        f"# machine: {env['cpu']} | torch {env['torch']} | threads {env['threads']} | commit "
        f"{env['commit']}\n# backbone {args.backbone} | context {args.context} | horizon "
        f"{args.horizon} | max_steps {args.max_steps} | batch {args.batch_size} | test stride "
        f"{args.stride} | samples {args.num_samples} | seeds {args.seeds} | extra {extra}"
    )
    print(header)
    results = []
    for name in args.datasets:
        ds = load_lsf(name, args.root)
        for strategy in args.strategies:
            if strategy in BASELINES:
                result = run_baseline(
                    ds,
                    strategy,
                    context=args.context,
                    horizon=args.horizon,
                    channels=args.channels,
                    stride=args.stride,
                )
                results.append(result)
                print(markdown_table([result]).splitlines()[-1], flush=True)
                continue
            for seed in args.seeds:
                settings = MSFTSettings(
                    backbone=args.backbone,
                    fit_strategy=strategy,
                    context_length=args.context,
                    prediction_length=args.horizon,
                    num_scales=args.num_scales,
                    patch_size=args.patch_size
                    if args.patch_size == "auto"
                    else int(args.patch_size),
                    max_steps=args.max_steps,
                    batch_size=args.batch_size,
                    val_check_interval=args.val_check_interval,
                    learning_rate=args.learning_rate,
                    precision=args.precision,
                    random_state=seed,
                    num_samples=args.num_samples,
                    **extra,
                )
                result = run_one(
                    ds,
                    settings,
                    channels=args.channels,
                    stride=args.stride,
                    num_samples=args.num_samples,
                )
                results.append(result)
                print(markdown_table([result]).splitlines()[-1], flush=True)
    print()
    print(markdown_table(results))
    if args.json:
        save(results, args.json, {**env, "argv": vars(args)})
    if args.markdown:
        command = "python -m msft_forecast.benchmarks.lsf " + " ".join(argv or sys.argv[1:])
        text = f"{header}\n# command: {command}\n\n{markdown_table(results)}\n"
        Path(args.markdown).write_text(text.replace("# ", "- ", 3), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
