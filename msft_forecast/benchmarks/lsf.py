"""Long-horizon benchmark runner: fine-tune each strategy, score it on rolling test windows.

Protocol (BENCHMARK.md): every channel is its own series (channel-independent), z-normalised
with the training split's statistics; validation windows (for early stopping and the patch-size
choice) come from the validation split; test windows roll over the test split with a stride
(1 in the literature; larger here to fit a CPU budget), their contexts reaching back into the
earlier splits.  Metrics on the normalised scale: MSE of the mean forecast, MAE of the median,
CRPS (mean weighted quantile loss over 0.1..0.9) and the coverage of the 80% interval.

What can be run, on the same windows (``--strategies``, any mix):

* fine-tuning strategies of the engine: ``zero-shot``, ``linear-probe``, ``lora``,
  ``adalora``, ``prompt-tuning``, ``full``, ``msft``;
* the paper's ablations of MSFT (:data:`VARIANTS`): ``msft-no-aggregator``,
  ``msft-shared-lora``, ``msft-no-mixing`` (scale 0 only), ``msft-k0`` (no extra scales), and
  the other scale weightings: ``msft-paper`` (the paper's in-loss weights),
  ``msft-learned``, ``msft-uniform``;
* models trained from scratch (:mod:`msft_forecast.benchmarks.peers`): ``dlinear``,
  ``nlinear``, ``patchtst``, ``timemixer``, ``itransformer``;
* classical baselines: ``last-value``, ``seasonal-naive``, ``theta``.

``--sampling blend mixture`` scores every fitted MSFT model under both ways of combining the
scales' forecasts (the fit is the same; only sampling differs).

Every number this module prints comes with the settings that produced it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msft_forecast.backbones.cache import source_label
from msft_forecast.benchmarks import classical, peers
from msft_forecast.benchmarks.classical import BASELINES
from msft_forecast.benchmarks.resources import PeakMemory
from msft_forecast.data.lsf import DATASETS, LSFDataset, load_lsf
from msft_forecast.engine import MSFTEngine, MSFTSettings
from msft_forecast.msft.strategies import FIT_STRATEGIES

_D = MSFTSettings()  # the engine's defaults: one home for every setting

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
    fit_memory_mb: float | None = None
    sampling: str = "-"
    coverage50: float | None = None
    coverage95: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The checkpoint a fine-tuned model ran on (``MSFTEngine.backbone_used``; names the
    #: offline fallback), "-" for peers and baselines.
    backbone: str = "-"


def test_origins(ds: LSFDataset, horizon: int, stride: int) -> np.ndarray:
    """Forecast origins of the rolling test windows (every ``stride``-th)."""
    return np.arange(ds.val_end, ds.test_end - horizon + 1, stride)


def score(samples: np.ndarray, mean: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE (mean), MAE (median), CRPS over deciles and the coverage of the central 50%, 80%
    and 95% intervals, averaged over all, from ``(n, S, H)`` samples."""
    levels = np.asarray(classical.LEVELS)
    q = np.moveaxis(np.quantile(samples, levels, axis=1), 0, 1)  # (n, L, H)
    return quantile_score(q, mean, truth)


def quantile_score(quantiles: np.ndarray, mean: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """:func:`score` from ``(n, L, H)`` quantiles at :data:`classical.LEVELS`."""
    at = {round(level, 3): quantiles[:, i] for i, level in enumerate(classical.LEVELS)}
    deciles = np.stack([at[round(float(level), 3)] for level in QUANTILES])  # (9, n, H)
    diff = truth[None] - deciles
    pinball = np.maximum(QUANTILES[:, None, None] * diff, (QUANTILES[:, None, None] - 1) * diff)
    out = {
        "mse": float(np.mean((mean - truth) ** 2)),
        "mae": float(np.mean(np.abs(at[0.5] - truth))),
        "crps": float(2 * pinball.mean(0).sum() / np.abs(truth).sum()),
    }
    for level in (50, 80, 95):
        low = at[round(0.5 - level / 200, 3)]
        high = at[round(0.5 + level / 200, 3)]
        out[f"coverage{level}"] = float(((truth >= low) & (truth <= high)).mean())
    return out


def window_errors(mean: np.ndarray, windows: ScoringWindows) -> dict[str, list]:
    """Squared error of the mean forecast per scored window (averaged over the horizon) and the
    window's origin index: what :func:`bootstrap_table` resamples.  Stored with each result."""
    ok = windows.ok
    se = np.mean((mean[ok] - windows.truth[ok]) ** 2, axis=1)
    origin = np.tile(np.arange(len(windows.origins)), len(windows.picked))[ok]
    return {
        "window_se": [float(f"{v:.6g}") for v in se],
        "window_origin": [int(v) for v in origin],
    }


#: The paper's ablations of MSFT: name -> engine settings that differ from plain ``msft``.
VARIANTS: dict[str, dict[str, Any]] = {
    "msft-no-aggregator": {"aggregator": False},
    "msft-shared-lora": {"shared_lora": True},
    "msft-no-mixing": {"scale_weighting": "finest"},
    "msft-k0": {"num_scales": 1},
    "msft-paper": {"scale_weighting": "paper"},
    "msft-learned": {"scale_weighting": "learned"},
    "msft-uniform": {"scale_weighting": "uniform"},
}

#: Validations without improvement before early stopping, per budget (see ``main``).
PATIENCE_TIME_BUDGET = 20
PATIENCE_STEP_BUDGET = 3

#: Everything ``--strategies`` accepts.
ALL_MODELS: tuple[str, ...] = (*FIT_STRATEGIES, *VARIANTS, *peers.PEERS, *BASELINES)


def resolve_model(name: str) -> tuple[str, str, dict[str, Any]]:
    """``(kind, fit_strategy, overrides)`` for a ``--strategies`` entry.

    ``kind`` is ``"engine"`` (a fine-tuning strategy or an MSFT ablation), ``"peer"`` or
    ``"baseline"``.
    """
    if name in FIT_STRATEGIES:
        return "engine", name, {}
    if name in VARIANTS:
        return "engine", "msft", dict(VARIANTS[name])
    if name in peers.PEERS:
        return "peer", name, {}
    if name in BASELINES:
        return "baseline", name, {}
    raise ValueError(f"unknown strategy or model {name!r}; choose from {list(ALL_MODELS)}")


@dataclass(frozen=True)
class ScoringWindows:
    """The normalised data, the chosen channels and the rolling test windows every model is
    scored on; rows of ``truth`` run over channels, then origins (the order all models use)."""

    values: np.ndarray  # (T, C) normalised
    picked: list[int]  # channel columns
    origins: np.ndarray  # forecast origins (rows)
    truth: np.ndarray  # (len(picked) * len(origins), horizon)
    ok: np.ndarray  # rows whose truth has no missing value (the scored ones)


def scoring_windows(
    ds: LSFDataset, horizon: int, stride: int, channels: list[str] | None
) -> ScoringWindows:
    """Test windows of ``ds`` for ``horizon`` with ``stride``, over ``channels`` (default all)."""
    values = ds.normalised()
    names = list(ds.frame.columns)
    picked = [names.index(c) for c in channels] if channels else list(range(len(names)))
    origins = test_origins(ds, horizon, stride)
    truth = np.concatenate(
        [np.stack([values[t : t + horizon, j] for t in origins]) for j in picked]
    )
    return ScoringWindows(values, picked, origins, truth, np.isfinite(truth).all(axis=1))


def point_result(
    ds: LSFDataset,
    name: str,
    windows: ScoringWindows,
    pred: np.ndarray,
    *,
    seed: int,
    settings: dict[str, Any],
    fit_seconds: float,
    steps: int = 0,
    trainable_parameters: int = 0,
    fit_memory_mb: float | None = None,
    quantiles: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Score forecasts ``pred`` (rows as ``windows.truth``): MSE and MAE, and with ``(n, L, H)``
    ``quantiles`` at :data:`classical.LEVELS` also CRPS and coverage (MAE then of the median)."""
    ok, truth = windows.ok, windows.truth
    if quantiles is not None:
        metrics = quantile_score(quantiles[ok], pred[ok], truth[ok])
    else:
        metrics = {
            "mse": float(np.mean((pred[ok] - truth[ok]) ** 2)),
            "mae": float(np.mean(np.abs(pred[ok] - truth[ok]))),
            "crps": None,
            "coverage80": None,
        }
    return RunResult(
        dataset=ds.name,
        strategy=name,
        horizon=int(truth.shape[1]),
        seed=seed,
        settings=settings,
        val_loss=None,
        initial_val_loss=None,
        steps=steps,
        trainable_parameters=trainable_parameters,
        patch_size=0,
        scale_weights=[],
        fit_seconds=fit_seconds,
        windows=int(ok.sum()),
        fit_memory_mb=fit_memory_mb,
        extra={**(extra or {}), **window_errors(pred, windows)},
        **metrics,
    )


def run_baseline(
    ds: LSFDataset,
    name: str,
    *,
    context: int,
    horizon: int,
    channels: list[str] | None = None,
    stride: int = 96,
    jobs: int = 1,
) -> RunResult:
    """Score a classical baseline (:mod:`msft_forecast.benchmarks.classical`), refitted on every
    test window's context on the data's own scale, on the same windows as :func:`run_one`."""
    w = scoring_windows(ds, horizon, stride, channels)
    mean, std = ds.normalisation()
    filled = peers.fill_missing(w.values[:, w.picked])
    start = time.perf_counter()
    points, quantiles, fallbacks = [], [], 0
    for k, j in enumerate(w.picked):
        raw = [filled[max(0, t - context) : t, k] * std[j] + mean[j] for t in w.origins]
        fc = classical.forecast(name, raw, horizon, ds.season, jobs=jobs)
        points.append((fc.point - mean[j]) / std[j])
        if fc.quantiles is not None:
            quantiles.append((fc.quantiles - mean[j]) / std[j])
        fallbacks += fc.fallbacks
    return point_result(
        ds,
        name,
        w,
        np.concatenate(points),
        seed=0,
        settings={"context_length": context, "season": ds.season},
        fit_seconds=time.perf_counter() - start,
        quantiles=np.concatenate(quantiles) if quantiles else None,
        extra={"fallbacks": fallbacks},
    )


def run_one(
    ds: LSFDataset,
    settings: MSFTSettings,
    *,
    channels: list[str] | None = None,
    stride: int = 96,
    num_samples: int = 100,
    label: str | None = None,
    sampling: tuple[str, ...] = ("mixture",),
    rescore_weights: tuple[str, ...] = (),
    rescore_models: tuple[str, ...] | None = None,
) -> list[RunResult]:
    """Fine-tune with ``settings`` on the train+validation splits and score on the test split.

    Returns one result per entry of ``sampling`` (the same fitted model, its scales' forecasts
    combined by each mode) for a multi-scale model, else one result; plus, for a multi-scale
    model, one result per entry of ``rescore_weights`` (``"uniform"``, ``"finest"``, ...): the
    same fit forecasting with those inference weights instead of its own (first sampling
    mode), labelled ``"<label>@<weighting>"``, for the models named in ``rescore_models``
    (default: every one).
    """
    horizon = int(settings.prediction_length)
    w = scoring_windows(ds, horizon, stride, channels)
    history = [w.values[: ds.val_end, j] for j in w.picked]
    settings.validation = ds.val_end - ds.train_end
    engine = MSFTEngine(settings)
    start = time.perf_counter()
    with PeakMemory() as memory:
        engine.fit(history, freq=ds.freq)
    fit_seconds = time.perf_counter() - start
    model = engine.model_
    spec = getattr(model, "spec", None)
    multi_scale = spec is not None and spec.num_scales > 1 and spec.scale_weighting != "finest"
    modes: list[tuple[str | None, str | None]] = [(None, None)]
    if multi_scale and hasattr(model, "mixing_weights"):
        modes = [(m, None) for m in sampling]
        if rescore_models is None or (label or settings.fit_strategy) in rescore_models:
            modes += [(sampling[0], wt) for wt in rescore_weights if wt != spec.scale_weighting]
    report = engine.report_
    results = []
    for mode, weighting in modes:
        if mode is not None:
            model.spec = dataclasses.replace(
                spec, mixing=mode, scale_weighting=weighting or spec.scale_weighting
            )
        try:
            means, samples = [], []
            for j in w.picked:
                contexts = [w.values[:t, j] for t in w.origins]
                fc = engine.forecast(
                    contexts, horizon, num_samples, seed=settings.random_state or 0
                )
                means.append(fc.mean)
                samples.append(fc.samples)
        finally:
            if mode is not None:
                model.spec = spec
        mean, samp = np.concatenate(means), np.concatenate(samples)
        metrics = score(samp[w.ok], mean[w.ok], w.truth[w.ok])
        name = label or settings.fit_strategy
        results.append(
            RunResult(
                dataset=ds.name,
                strategy=name if weighting is None else f"{name}@{weighting}",
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
                windows=int(w.ok.sum()),
                fit_memory_mb=memory.peak_mb,
                sampling=mode or "-",
                extra=window_errors(mean, w),
                backbone=source_label(engine.backbone_source_, detail=False),
                **metrics,
            )
        )
    return results


def run_peer(
    ds: LSFDataset,
    name: str,
    budget: peers.PeerBudget,
    *,
    context: int,
    horizon: int,
    channels: list[str] | None = None,
    stride: int = 96,
) -> RunResult:
    """Train a from-scratch peer (:mod:`msft_forecast.benchmarks.peers`) and score it."""
    w = scoring_windows(ds, horizon, stride, channels)
    with PeakMemory() as memory:
        out = peers.fit_predict(
            name,
            w.values[:, w.picked],
            train_end=ds.train_end,
            val_end=ds.val_end,
            origins=w.origins,
            context=context,
            horizon=horizon,
            budget=budget,
        )
    return point_result(
        ds,
        name,
        w,
        out.predictions.reshape(-1, horizon),
        seed=budget.seed,
        settings={"context_length": context, **dataclasses.asdict(budget)},
        fit_seconds=out.fit_seconds,
        steps=int(out.steps or 0),
        trainable_parameters=out.trainable_parameters,
        fit_memory_mb=memory.peak_mb,
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
    try:
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "cpu": cpu,
        "load": load,
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit + ("+dirty" if dirty else ""),
    }


TABLE_COLUMNS = (
    "dataset",
    "strategy",
    "sampling",
    "horizon",
    "seed",
    "mse",
    "mae",
    "crps",
    "coverage50",
    "coverage80",
    "coverage95",
    "steps",
    "patch_size",
    "trainable_parameters",
    "fit_seconds",
    "fit_memory_mb",
    "windows",
    "backbone",
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def markdown_table(results: list[RunResult]) -> str:
    """One row per result: every metric and cost, and MSFT's learned scale weights."""
    cols = list(TABLE_COLUMNS)
    lines = ["| " + " | ".join(cols) + " | scale weights |", "|" + "---|" * (len(cols) + 1)]
    for r in results:
        row = asdict(r)
        weights = ", ".join(f"{w:.2f}" for w in r.scale_weights)
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + f" | {weights} |")
    return "\n".join(lines)


def model_label(r: RunResult) -> str:
    """Column name of a result in :func:`summary_table`."""
    return r.strategy if r.sampling in ("-", "mixture") else f"{r.strategy} ({r.sampling})"


def summary_table(results: list[RunResult], metric: str = "mse") -> str:
    """Datasets in rows, models in columns, ``metric`` averaged over seeds (± std if several).

    The best value of each row is in bold.  For MSE, rows scored with ``blend`` sampling are
    left out: the mean forecast, and so the MSE, does not depend on the sampling.
    """
    if metric == "mse":
        results = [r for r in results if r.sampling != "blend"]
    models = list(dict.fromkeys(model_label(r) for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        value = getattr(r, metric)
        if value is not None:
            cells.setdefault((r.dataset, model_label(r)), []).append(float(value))
    models = [m for m in models if any((d, m) in cells for d in datasets)]
    lines = ["| dataset | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for d in datasets:
        means = {m: float(np.mean(cells[d, m])) for m in models if (d, m) in cells}
        best = min(means.values()) if not metric.startswith("coverage") and means else None
        row = []
        for m in models:
            if m not in means:
                row.append("-")
                continue
            text = f"{means[m]:.4f}"
            if len(cells[d, m]) > 1:
                text += f" ± {float(np.std(cells[d, m])):.4f}"
            row.append(f"**{text}**" if best is not None and means[m] == best else text)
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def sampling_table(results: list[RunResult]) -> str:
    """Blend vs mixture sampling of the same fitted models: CRPS and 80% coverage side by side."""
    pairs: dict[tuple[str, str, int], dict[str, RunResult]] = {}
    for r in results:
        if r.sampling in ("blend", "mixture"):
            pairs.setdefault((r.dataset, r.strategy, r.seed), {})[r.sampling] = r
    lines = [
        "| dataset | strategy | seed | MSE | CRPS blend | CRPS mixture | coverage80 blend | "
        "coverage80 mixture |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, strategy, seed), both in pairs.items():
        if len(both) < 2:
            continue
        b, m = both["blend"], both["mixture"]
        lines.append(
            f"| {dataset} | {strategy} | {seed} | {b.mse:.4f} | {b.crps:.4f} | {m.crps:.4f} | "
            f"{b.coverage80:.3f} | {m.coverage80:.3f} |"
        )
    return "\n".join(lines)


def weights_table(results: list[RunResult], strategies: tuple[str, ...]) -> str:
    """Inference weights of the scales (finest first), mean ± std over seeds, per dataset."""
    lines = ["| dataset | model | weights (finest first) | seeds |", "|---|---|---|---|"]
    for dataset in dict.fromkeys(r.dataset for r in results):
        for name in strategies:
            rows = [
                r.scale_weights
                for r in results
                if r.dataset == dataset and r.strategy == name and r.sampling != "blend"
            ]
            if not rows:
                continue
            w = np.asarray(rows)
            cells = ", ".join(
                f"{m:.2f} ± {d:.2f}" for m, d in zip(w.mean(0), w.std(0), strict=True)
            )
            lines.append(f"| {dataset} | {name} | {cells} | {len(rows)} |")
    return "\n".join(lines)


def paired_table(results: list[RunResult], model: str, others: tuple[str, ...]) -> str:
    """``model`` against each of ``others`` seed by seed (same seed, same windows): the mean
    relative MSE difference, its spread over seeds, and whether it lies within that spread."""
    mse = {(r.dataset, r.strategy, r.seed): r.mse for r in results if r.sampling != "blend"}
    lines = [
        "| dataset | vs | MSE change (mean ± std over seeds) | seeds | better in | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(r.dataset for r in results):
        for other in others:
            seeds = sorted(
                sd
                for (d, m, sd) in mse
                if d == dataset and m == model
                if (dataset, other, sd) in mse
            )
            if not seeds:
                continue
            rel = np.array([mse[dataset, model, sd] / mse[dataset, other, sd] - 1 for sd in seeds])
            mean, std = float(rel.mean()), float(rel.std(ddof=1)) if len(rel) > 1 else 0.0
            wins = int((rel < 0).sum())
            if len(rel) < 2:
                verdict = "one seed: no spread"
            elif abs(mean) <= std:
                verdict = "within noise"
            else:
                verdict = "better" if mean < 0 else "worse"
            lines.append(
                f"| {dataset} | {other} | {100 * mean:+.1f}% ± {100 * std:.1f}% | {len(seeds)} | "
                f"{wins}/{len(seeds)} seeds | {verdict} |"
            )
    return "\n".join(lines)


def bootstrap_table(
    results: list[RunResult], model: str = "msft", *, draws: int = 2000, seed: int = 0
) -> str:
    """``model`` against the best other model of each dataset, paired over the same test windows.

    Per window, the squared errors are averaged over seeds; the relative MSE change is
    ``sum(model) / sum(other) - 1`` and its 95% interval comes from a bootstrap that resamples
    forecast origins (all channels of an origin together, since their errors are correlated).
    "Better" / "worse" when the interval excludes 0, else "within noise".  The best other model
    is the one with the lowest MSE that is not ``model``, one of its variants (``msft-*``) or a
    rescoring of it (``msft@...``).
    """
    per: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        if r.sampling != "blend" and "window_se" in r.extra:
            per.setdefault((r.dataset, r.strategy), []).append(r)
    rng = np.random.default_rng(seed)
    lines = [
        f"| dataset | best other | MSE {model} | MSE other | change | 95% interval | windows | "
        "verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    family = model.split("-")[0]
    for dataset in dict.fromkeys(r.dataset for r in results):
        if (dataset, model) not in per:
            continue
        others = {
            m: float(np.mean([r.mse for r in rs]))
            for (d, m), rs in per.items()
            if d == dataset and m != model and not m.startswith(family) and "@" not in m
        }
        if not others:
            continue
        other = min(others, key=others.get)
        a = np.mean([r.extra["window_se"] for r in per[dataset, model]], axis=0)
        b = np.mean([r.extra["window_se"] for r in per[dataset, other]], axis=0)
        origin = np.asarray(per[dataset, model][0].extra["window_origin"])
        if a.shape != b.shape or origin.tolist() != per[dataset, other][0].extra["window_origin"]:
            lines.append(f"| {dataset} | {other} | - | - | - | different windows | - | - |")
            continue
        ids, inverse = np.unique(origin, return_inverse=True)
        sa, sb = np.bincount(inverse, a), np.bincount(inverse, b)
        picks = rng.integers(0, len(ids), size=(draws, len(ids)))
        boot = sa[picks].sum(1) / sb[picks].sum(1) - 1
        low, high = np.quantile(boot, [0.025, 0.975])
        change = a.sum() / b.sum() - 1
        verdict = "better" if high < 0 else "worse" if low > 0 else "within noise"
        lines.append(
            f"| {dataset} | {other} | {a.mean():.4f} | {b.mean():.4f} | {100 * change:+.1f}% | "
            f"{100 * low:+.1f}% .. {100 * high:+.1f}% | {len(a)} | {verdict} |"
        )
    return "\n".join(lines)


def load_results(path: str | Path) -> list[RunResult]:
    """Results written by ``--json``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [RunResult(**r) for r in data["results"]]


def save(results: list[RunResult], path: str | Path, header: dict[str, Any]) -> None:
    """Write the results as JSON, one result per line (their per-window errors make a result
    long; one line each keeps the file small and its diffs readable)."""
    rows = ",\n".join(json.dumps(asdict(r), separators=(",", ":")) for r in results)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"environment": ' + json.dumps(header, indent=1) + ',\n"results": [\n')
        fh.write(rows + "\n]}\n")


def per_dataset(values: list[str], dataset: str) -> str:
    """The value of a ``[DATASET=]VALUE`` list for ``dataset`` (a bare value is the default).

    >>> per_dataset(["512", "ETTm1=1024"], "ETTm1"), per_dataset(["512", "ETTm1=1024"], "ETTh1")
    ('1024', '512')
    """
    default = None
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            default = key
        elif key.lower() == dataset.lower():
            return value
    if default is None:
        raise ValueError(f"no value for {dataset} in {values}; add a default like 512")
    return default


def build_parser(prog: str = "python -m msft_forecast.benchmarks.lsf"):
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fine-tune strategies, MSFT ablations, from-scratch peers and classical baselines on "
            "LSF datasets; score them all on the same rolling test windows."
        ),
    )
    parser.add_argument("--root", default="../shared/data/lsf", help="folder with the CSV files")
    parser.add_argument(
        "--download", action="store_true", help="fetch missing ETT files (checksum-verified)"
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the SHA-256 check (for files that are not the published benchmark versions)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help=f"built-in datasets with their standard splits: {', '.join(DATASETS)} (default "
        "ETTh1 unless --data is given)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="PATH",
        help="your own CSV or Parquet file(s): a date column and one column per channel, or a "
        "long table with columns unique_id, ds, y",
    )
    parser.add_argument(
        "--freq", default=None, help="pandas frequency of --data (default: inferred from dates)"
    )
    parser.add_argument(
        "--split",
        default="auto",
        help="--data split into train/validation/test: fractions 0.7/0.1/0.2, percentages "
        "70/10/20, row counts 500,100,200, or last-h[:N] (the last-horizon holdout with N "
        "rolling origins, for short series); auto: 70/10/20 if its validation and test parts "
        "hold a horizon each, else last-h",
    )
    parser.add_argument(
        "--season",
        type=int,
        default=None,
        help="season length of --data for the seasonal baselines (default: from the frequency, "
        "e.g. 24 for hourly, 7 daily, 52 weekly, 12 monthly)",
    )
    parser.add_argument("--date-column", default=None, help="date column of a wide --data file")
    parser.add_argument("--channels", nargs="*", default=None, help="default: all channels")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["zero-shot", "linear-probe", "lora", "adalora", "prompt-tuning", "full", "msft"],
        metavar="NAME",
        help=f"any of: {', '.join(ALL_MODELS)}",
    )
    parser.add_argument(
        "--backbone",
        default="moirai-tiny",
        help="short name, hub id or local folder (a folder with one released UniTS .pth, "
        "optionally units.json, is UniTS, which runs zero-shot, linear-probe, lora, full and "
        "msft; default: %(default)s)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        nargs="+",
        default=[96],
        help="one or more horizons (the literature averages 96 192 336 720)",
    )
    parser.add_argument(
        "--context",
        nargs="+",
        default=["512"],
        metavar="[DATASET=]N",
        help="context length, for all datasets or per dataset, e.g. 512 ETTm1=1024",
    )
    parser.add_argument(
        "--patch-size",
        nargs="+",
        default=["auto"],
        metavar="[DATASET=]P",
        help='"auto" (chosen on validation windows) or a size, for all or per dataset',
    )
    parser.add_argument("--num-scales", type=int, default=_D.num_scales)
    parser.add_argument(
        "--budget",
        choices=["time", "steps"],
        default="time",
        help="time: every trained model (fine-tuned and peer) trains until early stopping on "
        "the validation split or --time-budget seconds, best weights restored; steps: at most "
        "--max-steps steps each (the earlier 200-step protocol)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="wall-clock cap per trained model under --budget time",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=_D.max_steps,
        help="step cap per trained model under --budget steps",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes for the classical baselines' refits"
    )
    parser.add_argument("--batch-size", type=int, default=_D.batch_size, help="windows per step")
    parser.add_argument(
        "--val-check-interval", type=int, default=25, help="steps between validations"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="validations without improvement before stopping (default: 20 under --budget "
        "time, 3 under --budget steps)",
    )
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--precision", default=None, help="e.g. 32-true, bf16-mixed, 16-mixed")
    parser.add_argument(
        "--accelerator", default=_D.accelerator, help="cpu, gpu, auto (every model)"
    )
    parser.add_argument("--devices", default="1", help="devices per fit (engine models)")
    parser.add_argument(
        "--stride",
        nargs="+",
        default=["auto"],
        metavar="[DATASET=]N",
        help="steps between test windows, for all datasets or per dataset, e.g. 24 ETTm1=96; "
        "auto: 96 for the built-in sets, 1 for last-h, else at most 64 origins per series",
    )
    parser.add_argument("--num-samples", type=int, default=_D.num_samples)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--sampling",
        nargs="+",
        default=["mixture"],
        choices=["blend", "mixture"],
        help="how MSFT combines its scales' samples; several: scored on the same fit",
    )
    parser.add_argument(
        "--rescore-weights",
        nargs="*",
        default=[],
        choices=["validation", "learned", "paper", "uniform", "finest"],
        help="also score each multi-scale fit with these inference weights instead of its own "
        "(same fit; labelled MODEL@WEIGHTING)",
    )
    parser.add_argument(
        "--rescore-models",
        nargs="*",
        default=None,
        metavar="NAME",
        help="only these models get --rescore-weights (default: every multi-scale model)",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra engine settings as KEY=JSON, e.g. aggregator=false",
    )
    parser.add_argument("--json", default=None, help="write every result and setting here")
    parser.add_argument(
        "--markdown", default=None, help="write the settings header and the tables here"
    )
    return parser


@dataclass(frozen=True)
class BenchmarkData:
    """A dataset with what the runner uses of it: context, test stride and how it was split."""

    dataset: LSFDataset
    context: int
    stride: int
    description: str


def auto_stride(ds: LSFDataset, horizon: int, split: Any | None) -> int:
    """Test stride when none is given: 96 for a built-in set, 1 for the last-h holdout, else the
    smallest stride with at most 64 origins per series."""
    if split is None:
        return 96
    if split.protocol == "last-h":
        return 1
    return max(1, -(-(ds.test_end - ds.val_end - horizon + 1) // 64))


def prepare_data(args, horizon: int) -> list[BenchmarkData]:
    """The datasets of a run (built-in and ``--data``) with their context, stride and split.

    The context is cut to what the training split allows (training part minus one horizon):
    every model sees the same inputs, and the from-scratch peers need whole training windows.
    """
    out = []
    names = args.datasets if args.datasets is not None else ([] if args.data else ["ETTh1"])
    sources = [(name, None) for name in names] + [(None, path) for path in args.data]
    for name, path in sources:
        if path is None:
            ds = load_lsf(name, args.root, download=args.download, verify=not args.no_verify)
            split = None
        else:
            from msft_forecast.data.tables import load_table

            ds, split = load_table(
                path,
                horizon=horizon,
                freq=args.freq,
                split=args.split,
                season=args.season,
                date_column=args.date_column,
            )
        asked = int(per_dataset(args.context, ds.name))
        context = min(asked, ds.train_end - horizon)
        stride_text = per_dataset(args.stride, ds.name)
        stride = auto_stride(ds, horizon, split) if stride_text == "auto" else int(stride_text)
        origins = len(test_origins(ds, horizon, stride))
        if origins == 0:
            raise ValueError(
                f"{ds.name}: no test window of horizon {horizon} with stride {stride}: the test "
                f"split has {ds.test_end - ds.val_end} rows"
            )
        parts = (
            split.describe()
            if split is not None
            else f"{ds.train_end} / {ds.val_end - ds.train_end} / {ds.test_end - ds.val_end} rows "
            "(standard split)"
        )
        cut = f" (cut from {asked}: the training split is short)" if context < asked else ""
        description = (
            f"{ds.name}: {len(ds.frame.columns)} series x {len(ds.frame)} steps at frequency "
            f"{ds.freq}, season {ds.season}; split {parts}; context {context}{cut}; test stride "
            f"{stride}, {origins} origins per series"
        )
        out.append(BenchmarkData(ds, context, stride, description))
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> list[RunResult]:
    """Run the benchmark from command-line arguments (see ``--help``)."""
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    for name in args.strategies:
        try:
            kind, _, _ = resolve_model(name)
            if kind == "peer":
                peers.require(name)
            elif kind == "baseline":
                classical.require(name)
        except (ValueError, ModuleNotFoundError) as err:
            parser.error(str(err))

    extra = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        extra[key] = json.loads(raw) if raw not in ("", None) else None
    # bad data (a missing file, a split too short) propagates as ValueError / FileNotFoundError:
    # the command lines report it in one line with exit status 2
    data = prepare_data(args, max(args.horizon))
    try:
        patches = {d.dataset.name: per_dataset(args.patch_size, d.dataset.name) for d in data}
        patches = {k: v if v == "auto" else int(v) for k, v in patches.items()}
    except ValueError as err:
        parser.error(f"--patch-size: {err}")
    devices: int | str = int(args.devices) if args.devices.isdigit() else args.devices
    timed = args.budget == "time"
    if args.patience is None:
        # time budget: 20 checks (500 steps at the default cadence). Measured on ETTh1 and ETTm2
        # (DLinear, NLinear, 60 s cap): patience 3 stopped DLinear after 125-250 steps, 0.7-3%
        # above its converged MSE; 20 and 40 restored the same best weights in 3 of 4 fits
        args.patience = PATIENCE_TIME_BUDGET if timed else PATIENCE_STEP_BUDGET
    max_steps = peers.UNLIMITED_STEPS if timed else args.max_steps
    budget_text = (
        f"time budget {args.time_budget:g} s per trained model (early stopping, best weights "
        "restored)"
        if timed
        else f"step budget {args.max_steps} steps per trained model"
    )
    env = environment()
    header = (
        f"# machine: {env['cpu']} | torch {env['torch']} | threads {env['threads']} | load "
        f"{env['load']} | commit {env['commit']}\n# backbone {args.backbone} | context "
        f"{' '.join(args.context)} | patch size {' '.join(args.patch_size)} | horizons "
        f"{args.horizon} | {budget_text} | batch {args.batch_size} | validation "
        f"every {args.val_check_interval} steps, patience {args.patience} | test stride "
        f"{' '.join(args.stride)} | samples {args.num_samples} | seeds {args.seeds} | accelerator "
        f"{args.accelerator} | extra {extra}"
    )
    print(header, flush=True)
    for d in data:
        print(f"# {d.description}", flush=True)
    if any(resolve_model(m)[0] == "engine" for m in args.strategies):
        from msft_forecast.backbones.cache import get_backbone

        # load once up front: fit memory excludes the frozen weights; and say what was loaded,
        # so that an offline fallback is never read as the backbone asked for
        source = dataclasses.asdict(get_backbone(args.backbone).source)
        print(f"# backbone used: {source_label(source, detail=False)}", flush=True)
    results: list[RunResult] = []

    def report(new: list[RunResult]) -> None:
        results.extend(new)
        for line in markdown_table(new).splitlines()[2:]:
            print(line, flush=True)
        if args.json:  # after every fit: an interrupted run keeps what it measured
            save(results, args.json, {**env, "argv": vars(args), "complete": False})

    for d in data:
        ds, context = d.dataset, d.context
        for horizon, strategy in itertools.product(args.horizon, args.strategies):
            kind, fit_strategy, overrides = resolve_model(strategy)
            where = dict(horizon=horizon, channels=args.channels, stride=d.stride)
            if kind == "baseline":
                report([run_baseline(ds, strategy, context=context, jobs=args.jobs, **where)])
                continue
            for seed in args.seeds:
                if kind == "peer":
                    budget = peers.PeerBudget(
                        max_steps=args.max_steps,
                        batch_size=args.batch_size,
                        val_check_interval=args.val_check_interval,
                        patience=args.patience,
                        seed=seed,
                        accelerator=args.accelerator,
                        max_time=args.time_budget if timed else None,
                    )
                    report([run_peer(ds, strategy, budget, context=context, **where)])
                    continue
                options = {
                    "num_scales": args.num_scales,
                    "patch_size": patches[ds.name],
                    **extra,
                    **overrides,
                }
                settings = MSFTSettings(
                    backbone=args.backbone,
                    fit_strategy=fit_strategy,
                    context_length=context,
                    prediction_length=horizon,
                    max_steps=max_steps,
                    max_time=args.time_budget if timed else None,
                    batch_size=args.batch_size,
                    val_check_interval=args.val_check_interval,
                    early_stopping_patience=args.patience,
                    learning_rate=args.learning_rate,
                    precision=args.precision,
                    accelerator=args.accelerator,
                    devices=devices,
                    random_state=seed,
                    num_samples=args.num_samples,
                    verbose=False,  # parallel jobs share one log: the headers say what runs
                    **options,
                )
                report(
                    run_one(
                        ds,
                        settings,
                        channels=args.channels,
                        stride=d.stride,
                        num_samples=args.num_samples,
                        label=strategy,
                        sampling=tuple(args.sampling),
                        rescore_weights=tuple(args.rescore_weights),
                        rescore_models=(
                            None if args.rescore_models is None else tuple(args.rescore_models)
                        ),
                    )
                )
    print()
    print(markdown_table(results))
    comparison = bootstrap_table(results) if "msft" in args.strategies else ""
    if comparison.count("\n") > 1:
        print("\nMSFT against the best other model, paired over the test windows:\n")
        print(comparison)
    if args.json:
        save(results, args.json, {**env, "argv": vars(args), "complete": True})
    if args.markdown:
        command = "python -m msft_forecast.benchmarks.lsf " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        datasets = "\n".join(f"# {d.description}" for d in data)
        text = (
            f"{header}\n{datasets}\n# command: {command}\n\nMSE (mean ± std over seeds; best "
            f"in bold):\n\n{summary_table(results, 'mse')}\n"
        )
        if any(r.crps is not None for r in results):
            text += f"\nCRPS:\n\n{summary_table(results, 'crps')}\n"
            text += (
                "\nCoverage of the 80% interval (target 0.80):\n\n"
                f"{summary_table(results, 'coverage80')}\n"
            )
        if comparison.count("\n") > 1:
            text += (
                "\nMSFT against the best other model, paired over the same test windows "
                f"(bootstrap over forecast origins):\n\n{comparison}\n"
            )
        text += f"\nEvery run:\n\n{markdown_table(results)}\n"
        lines = text.splitlines()
        n_head = 2 + len(data) + 1  # header, data descriptions, command: list items
        lines[:n_head] = [line.replace("# ", "- ", 1) for line in lines[:n_head]]
        Path(args.markdown).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)
