"""Quick zero-shot check of a Moirai checkpoint on the long-horizon benchmark files.

Run ``python -m msft_forecast.pretraining.evaluate_zero_shot CHECKPOINT_DIR``.  It scores the
model on the gzip CSVs in ``../shared/data/lsf`` (from the project root), when that folder
exists, against last-value and seasonal-naive forecasts, and prints MSE and MAE.  Without the
folder it prints why it skips and exits with status 0.

Protocol (``design/BENCHMARK.md``, subsampled for speed; the settings are printed with the
numbers):

* splits: ETTh 8640 / 2880 / 2880 rows, ETTm 34560 / 11520 / 11520, Weather 70 % / 10 % / 20 %
  (the usual ``int(0.7 n)`` / rest / ``int(0.2 n)``);
* every channel z-normalised with the training split's mean and standard deviation, then
  forecast univariately (channel-independent);
* forecast origins inside the test split every ``stride`` steps; the context (512 by default)
  may reach back into the validation split; horizon 96 by default;
* MSE of the distribution mean, MAE of the median of ``num_samples`` samples (of the mean when
  ``num_samples`` is 0), averaged over windows, channels and steps, on the normalised scale;
* the patch size is chosen per dataset by the lowest MSE on validation-split windows (never the
  test split);
* baselines: last value, and seasonal naive with season 24 (hourly), 96 (15 min), 144 (10 min).

Weather's 81 values of ``-9999`` (sensor failures, kept as-is upstream) are treated as missing:
they are replaced by the previous valid value before normalisation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn


@dataclass(frozen=True)
class LsfDataset:
    """One benchmark file and its protocol.

    Attributes
    ----------
    name : str
        Dataset name.
    filename : str
        File name inside the data folder.
    freq : str
        Sampling rate (``"h"``, ``"15min"``, ``"10min"``).
    season : int
        Season of the seasonal-naive baseline.
    split : tuple of int, or None
        Fixed ``(train, val, test)`` row counts; ``None`` means 70 / 10 / 20 %.
    """

    name: str
    filename: str
    freq: str
    season: int
    split: tuple[int, int, int] | None

    def borders(self, n_rows: int) -> tuple[int, int, int]:
        """End rows (exclusive) of the train, validation and test splits."""
        if self.split is not None:
            train, val, test = self.split
        else:
            train, test = int(n_rows * 0.7), int(n_rows * 0.2)
            val = n_rows - train - test
        return train, train + val, train + val + test


DATASETS: dict[str, LsfDataset] = {
    d.name: d
    for d in (
        LsfDataset("ETTh1", "ETTh1.csv.gz", "h", 24, (8640, 2880, 2880)),
        LsfDataset("ETTh2", "ETTh2.csv.gz", "h", 24, (8640, 2880, 2880)),
        LsfDataset("ETTm1", "ETTm1.csv.gz", "15min", 96, (34560, 11520, 11520)),
        LsfDataset("ETTm2", "ETTm2.csv.gz", "15min", 96, (34560, 11520, 11520)),
        LsfDataset("Weather", "weather.csv.gz", "10min", 144, None),
    )
}


def default_data_dir() -> Path | None:
    """``../shared/data/lsf`` seen from the project root (or from the working directory)."""
    candidates = [
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lsf",
        Path.cwd().parent / "shared" / "data" / "lsf",
    ]
    return next((c for c in candidates if c.is_dir()), None)


def load_normalised(data_dir: Path, spec: LsfDataset) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Read a benchmark file and z-normalise each channel with its training-split statistics.

    Parameters
    ----------
    data_dir : pathlib.Path
        Folder holding the gzip CSVs.
    spec : LsfDataset
        Which file and split.

    Returns
    -------
    values : numpy.ndarray
        ``(rows, channels)`` float64, rows up to the end of the test split.
    borders : tuple of int
        End rows of the train, validation and test splits.
    """
    frame = pd.read_csv(data_dir / spec.filename)
    values = frame.drop(columns=frame.columns[0]).to_numpy(dtype=np.float64)
    if spec.name == "Weather":
        values[values == -9999.0] = np.nan
        values = pd.DataFrame(values).ffill().bfill().to_numpy()
    borders = spec.borders(values.shape[0])
    values = values[: borders[2]]
    train = values[: borders[0]]
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (values - mean) / np.where(std > 0, std, 1.0), borders


def make_windows(
    values: np.ndarray, start: int, end: int, context: int, horizon: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Univariate windows with forecast origins in ``[max(start, context), end - horizon]``.

    Parameters
    ----------
    values : numpy.ndarray
        ``(rows, channels)``.
    start, end : int
        Split boundaries; the horizon stays inside ``[start, end)``.
    context, horizon, stride : int
        Window geometry.

    Returns
    -------
    contexts : numpy.ndarray
        ``(windows * channels, context)`` float32.
    futures : numpy.ndarray
        ``(windows * channels, horizon)`` float32.
    """
    origins = np.arange(max(start, context), end - horizon + 1, stride)
    ctx = np.stack([values[o - context : o] for o in origins])  # (W, context, C)
    fut = np.stack([values[o : o + horizon] for o in origins])  # (W, horizon, C)
    ctx = ctx.transpose(0, 2, 1).reshape(-1, context)
    fut = fut.transpose(0, 2, 1).reshape(-1, horizon)
    return ctx.astype(np.float32), fut.astype(np.float32)


def moirai_forecast(
    module: nn.Module,
    contexts: np.ndarray,
    horizon: int,
    patch_size: int,
    *,
    num_samples: int = 0,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot forecasts in Moirai's inference layout.

    The context is left-padded (unobserved) to a whole number of patches, the horizon tokens
    are right-padded and flagged in ``prediction_mask``; time ids run over all tokens.

    Parameters
    ----------
    module : torch.nn.Module
        A ``MoiraiModule``.
    contexts : numpy.ndarray
        ``(n, context)`` float32, fully observed.
    horizon : int
        Steps to forecast.
    patch_size : int
        One of the module's patch sizes.
    num_samples : int, optional
        Samples for the median; ``0`` returns the mean as the median.
    batch_size : int, optional
        Series per forward pass.
    seed : int, optional
        Seed of the sampling.

    Returns
    -------
    mean : numpy.ndarray
        ``(n, horizon)``.
    median : numpy.ndarray
        ``(n, horizon)``.
    """
    n, context = contexts.shape
    max_patch = max(module.patch_sizes) if hasattr(module, "patch_sizes") else patch_size
    n_c, n_h = -(-context // patch_size), -(-horizon // patch_size)
    lpad = n_c * patch_size - context
    tokens = n_c + n_h
    gen = torch.Generator().manual_seed(seed)
    means, medians = [], []
    for lo in range(0, n, batch_size):
        chunk = torch.from_numpy(contexts[lo : lo + batch_size])
        b = chunk.shape[0]
        seq = torch.zeros(b, tokens * patch_size)
        obs = torch.zeros(b, tokens * patch_size, dtype=torch.bool)
        seq[:, lpad : lpad + context] = chunk
        obs[:, lpad : lpad + context] = True
        obs[:, n_c * patch_size : n_c * patch_size + horizon] = True
        target = torch.zeros(b, tokens, max_patch)
        observed = torch.zeros(b, tokens, max_patch, dtype=torch.bool)
        target[..., :patch_size] = seq.view(b, tokens, patch_size)
        observed[..., :patch_size] = obs.view(b, tokens, patch_size)
        prediction = torch.zeros(b, tokens, dtype=torch.bool)
        prediction[:, n_c:] = True
        with torch.no_grad():
            distr = module(
                target=target,
                observed_mask=observed,
                sample_id=torch.ones(b, tokens, dtype=torch.long),
                time_id=torch.arange(tokens).expand(b, tokens),
                variate_id=torch.zeros(b, tokens, dtype=torch.long),
                prediction_mask=prediction,
                patch_size=torch.full((b, tokens), patch_size, dtype=torch.long),
            )

            def horizon_part(x: torch.Tensor) -> torch.Tensor:
                x = x[..., n_c:, :patch_size]
                return x.reshape(*x.shape[:-2], -1)[..., :horizon]

            mean = horizon_part(distr.mean)
            if num_samples > 0:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                    samples = horizon_part(distr.sample(torch.Size([num_samples])))
                median = samples.median(dim=0).values
            else:
                median = mean
        means.append(mean.numpy())
        medians.append(median.numpy())
    return np.concatenate(means), np.concatenate(medians)


def _scores(pred_mean: np.ndarray, pred_median: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "mse": float(np.mean((pred_mean - truth) ** 2)),
        "mae": float(np.mean(np.abs(pred_median - truth))),
    }


def seasonal_naive(contexts: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last ``season`` steps of each context over the horizon."""
    last = contexts[:, -season:]
    reps = -(-horizon // season)
    return np.tile(last, (1, reps))[:, :horizon]


def evaluate_dataset(
    module: nn.Module,
    patch_sizes: Sequence[int],
    data_dir: Path,
    spec: LsfDataset,
    *,
    context: int = 512,
    horizon: int = 96,
    stride: int = 96,
    val_stride: int | None = None,
    num_samples: int = 100,
) -> dict[str, Any]:
    """Score one dataset: patch size by validation MSE, then test metrics and baselines.

    Parameters
    ----------
    module : torch.nn.Module
        A ``MoiraiModule`` in eval mode.
    patch_sizes : sequence of int
        Candidate patch sizes.
    data_dir : pathlib.Path
        Folder of the CSVs.
    spec : LsfDataset
        The dataset.
    context, horizon, stride : int, optional
        Window geometry on the test split.
    val_stride : int, optional
        Stride on the validation split (defaults to ``2 * stride``).
    num_samples : int, optional
        Samples for the median (MAE).

    Returns
    -------
    dict
        Settings, validation MSE per patch size, the chosen patch size and the test scores
        of the model and the baselines.
    """
    values, (train_end, val_end, test_end) = load_normalised(data_dir, spec)
    val_ctx, val_fut = make_windows(
        values, train_end, val_end, context, horizon, val_stride or 2 * stride
    )
    val_mse = {}
    for p in patch_sizes:
        mean, _ = moirai_forecast(module, val_ctx, horizon, p)
        val_mse[p] = float(np.mean((mean - val_fut) ** 2))
    best = min(val_mse, key=val_mse.__getitem__)
    test_ctx, test_fut = make_windows(values, val_end, test_end, context, horizon, stride)
    mean, median = moirai_forecast(module, test_ctx, horizon, best, num_samples=num_samples)
    last = np.repeat(test_ctx[:, -1:], horizon, axis=1)
    snaive = seasonal_naive(test_ctx, horizon, spec.season)
    return {
        "dataset": spec.name,
        "context": context,
        "horizon": horizon,
        "test_stride": stride,
        "val_stride": val_stride or 2 * stride,
        "test_series": int(test_ctx.shape[0]),
        "num_samples": num_samples,
        "val_mse_by_patch_size": val_mse,
        "patch_size": best,
        "model": _scores(mean, median, test_fut),
        "last_value": _scores(last, last, test_fut),
        "seasonal_naive": _scores(snaive, snaive, test_fut),
        "season": spec.season,
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: Path,
    datasets: Sequence[str] = tuple(DATASETS),
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Load a Moirai checkpoint folder and run :func:`evaluate_dataset` on each dataset.

    Parameters
    ----------
    checkpoint : str or pathlib.Path
        Folder with ``config.json`` and ``model.safetensors``.
    data_dir : pathlib.Path
        Folder of the CSVs; datasets whose file is missing are skipped.
    datasets : sequence of str, optional
        Names from :data:`DATASETS`.
    **kwargs
        Passed to :func:`evaluate_dataset`.

    Returns
    -------
    list of dict
        One result per dataset scored.
    """
    from msft_forecast.backbones.checkpoint import load_backbone

    backbone = load_backbone(str(Path(checkpoint).resolve()), allow_fallback=False)
    module = backbone.module.eval()
    context = kwargs.get("context", 512)
    patch_sizes = [p for p in backbone.config.patch_sizes if p <= context // 2]
    results = []
    for name in datasets:
        spec = DATASETS[name]
        if not (data_dir / spec.filename).is_file():
            print(f"{name}: {data_dir / spec.filename} not found, skipped", flush=True)
            continue
        res = evaluate_dataset(module, patch_sizes, data_dir, spec, **kwargs)
        results.append(res)
        print(format_result(res), flush=True)
    return results


def format_result(res: dict[str, Any]) -> str:
    """One human-readable block for a result of :func:`evaluate_dataset`."""
    vals = ", ".join(f"{p}: {m:.4f}" for p, m in res["val_mse_by_patch_size"].items())
    lines = [
        f"{res['dataset']}  (context {res['context']}, horizon {res['horizon']}, test stride "
        f"{res['test_stride']}, {res['test_series']} test series, {res['num_samples']} samples)",
        f"  val MSE by patch size: {vals} -> patch size {res['patch_size']}",
    ]
    for key, label in (
        ("model", "moirai (zero-shot)"),
        ("last_value", "last value"),
        ("seasonal_naive", f"seasonal naive ({res['season']})"),
    ):
        s = res[key]
        lines.append(f"  {label:24s} MSE {s['mse']:.4f}  MAE {s['mae']:.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m msft_forecast.pretraining.evaluate_zero_shot",
        description="Zero-shot MSE/MAE of a Moirai checkpoint on the long-horizon benchmark.",
    )
    p.add_argument("checkpoint", help="folder with config.json and model.safetensors")
    p.add_argument("--data-dir", default=None, help="folder of the CSVs (default ../shared/...)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--stride", type=int, default=96, help="stride of the test windows")
    p.add_argument("--val-stride", type=int, default=None, help="default: 2 x stride")
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if data_dir is None or not data_dir.is_dir():
        print(
            "zero-shot evaluation skipped: the benchmark data folder ../shared/data/lsf was not "
            "found (pass --data-dir to point at the gzip CSVs).",
            flush=True,
        )
        return 0
    torch.set_num_threads(args.threads)
    results = evaluate_checkpoint(
        args.checkpoint,
        data_dir,
        args.datasets,
        context=args.context,
        horizon=args.horizon,
        stride=args.stride,
        val_stride=args.val_stride,
        num_samples=args.num_samples,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
