"""Memory is bounded by the batch, not by the data: peak RSS of fine-tuning on 10^4 vs 10^6
points, and resident memory fold by fold over a 20-fold expanding-window sktime backtest.

    python benchmarks/memory.py [--backbone moirai-tiny] [--folds 20]

Each fine-tune runs in a fresh subprocess so its peak resident set is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _rss_mb() -> float:
    from msft_forecast.benchmarks.resources import current_rss_bytes

    return current_rss_bytes() / 2**20


def fit_child(points: int, backbone: str) -> dict:
    import numpy as np

    from msft_forecast.engine import MSFTEngine

    rng = np.random.default_rng(0)
    t = np.arange(points, dtype=np.float64)
    y = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(points)
    data_mb = y.nbytes / 2**20
    before = _rss_mb()
    engine = MSFTEngine(
        backbone=backbone,
        context_length=128,
        prediction_length=24,
        max_steps=20,
        batch_size=16,
        patch_size=16,
        random_state=0,
        val_check_interval=10,
        num_samples=10,
    )
    engine.fit([y])
    engine.forecast([y], 24)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"points": points, "data_mb": data_mb, "rss_before_fit_mb": before, "peak_rss_mb": peak}


def backtest(folds: int, backbone: str) -> list[float]:
    import gc

    import numpy as np
    import pandas as pd
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.split import ExpandingWindowSplitter

    from msft_forecast import MSFTForecaster

    rng = np.random.default_rng(0)
    n = 600
    y = pd.Series(
        np.sin(2 * np.pi * np.arange(n) / 24) + 0.1 * rng.standard_normal(n),
        index=pd.period_range("2020-01-01", periods=n, freq="h"),
    )
    rss = []
    forecaster = MSFTForecaster(
        backbone=backbone,
        context_length=96,
        prediction_length=12,
        max_steps=3,
        batch_size=8,
        random_state=0,
        num_samples=10,
        validation=None,
    )
    cv = ExpandingWindowSplitter(
        fh=list(range(1, 13)), initial_window=n - 12 * folds, step_length=12
    )
    for i, (train, _) in enumerate(cv.split(y)):
        if i >= folds:
            break
        # one fold at a time, as evaluate(strategy="refit") does, so RSS can be read between folds
        evaluate(
            forecaster,
            ExpandingWindowSplitter(
                fh=list(range(1, 13)), initial_window=len(train), step_length=12
            ),
            y.iloc[: len(train) + 12],
            strategy="refit",
        )
        gc.collect()
        rss.append(_rss_mb())
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="moirai-tiny")
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(fit_child(args.child, args.backbone)))
        return
    from msft_forecast.benchmarks.lsf import environment

    env = environment()
    print(
        f"# machine: {env['cpu']} | torch {env['torch']} | commit {env['commit']} | backbone "
        f"{args.backbone}\n# fine-tune: context 128, horizon 24, batch 16, 20 steps"
    )
    print("| series length | data (MB) | RSS before fit (MB) | peak RSS (MB) |\n|---|---|---|---|")
    for points in (10_000, 1_000_000):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(points), "--backbone", args.backbone],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['points']:,} | {r['data_mb']:.1f} | {r['rss_before_fit_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    rss = backtest(args.folds, args.backbone)
    print(
        f"\n# {len(rss)}-fold expanding-window evaluate(strategy='refit'): RSS after each fold (MB)"
    )
    print(" ".join(f"{v:.0f}" for v in rss))
    half = len(rss) // 2
    print(f"growth from fold {half + 1} to fold {len(rss)}: {rss[-1] - rss[half]:+.1f} MB")


if __name__ == "__main__":
    main()
