"""Do covariates help? The ETT sets' oil temperature (OT) with and without its six load columns.

    python benchmarks/covariates_ett.py [--datasets ETTh1 ETTh2 ETTm1 ETTm2]
        [--strategies zero-shot msft] [--max-steps 100] [--stride 96] [--markdown FILE]

The target is ``OT``; the covariates are the six load columns (``HUFL HULL MUFL MULL LUFL
LULL``) as **past** covariates (their future is not known when OT is forecast), read by Moirai's
any-variate attention (issue 19). Every model forecasts OT 96 steps ahead from a 512-step
context on the test split (origins every ``--stride`` steps), all series standardised with the
training split's statistics; a fine-tuned model trains on the training split (validation split
held out for early stopping and the scale weights), with and without the covariates, with the
same seed and settings. Nothing is chosen on these windows: this is a measurement.

Reported per dataset and strategy: MSE and MAE of the mean forecast without and with the
covariates, the paired change of the per-window MSE (mean, its standard error over windows)
and the share of windows where the covariates helped.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from msft_forecast.benchmarks.lsf import environment
from msft_forecast.data.lsf import load_lsf
from msft_forecast.engine import MSFTEngine

TARGET = "OT"
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
HORIZON, CONTEXT = 96, 512


def window_errors(
    name: str, root: str, strategy: str, with_covariates: bool, max_steps: int, stride: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Per-window MSE and MAE of OT on the test split, and the fit's seconds."""
    ds = load_lsf(name, root)
    values = ds.normalised()
    columns = list(ds.frame.columns)
    y = values[:, columns.index(TARGET)]
    x = values[:, [columns.index(c) for c in LOADS]]
    covariates = {"past_covariates": [x[: ds.val_end]]} if with_covariates else {}
    engine = MSFTEngine(
        backbone="moirai-tiny",
        fit_strategy=strategy,
        context_length=CONTEXT,
        prediction_length=HORIZON,
        validation=ds.val_end - ds.train_end,
        max_steps=max_steps,
        random_state=seed,
        verbose=False,
    )
    start = time.perf_counter()
    # the model sees the training split; the validation split is held out inside the fit
    engine.fit([y[: ds.val_end]], freq=ds.freq, **covariates)
    seconds = time.perf_counter() - start
    origins = np.arange(ds.val_end, ds.test_end - HORIZON + 1, stride)
    contexts = [y[:t] for t in origins]
    past = {"past_covariates": [x[:t] for t in origins]} if with_covariates else {}
    mean = engine.forecast(contexts, HORIZON, 0, **past).mean
    truth = np.stack([y[t : t + HORIZON] for t in origins])
    err = mean - truth
    return (err**2).mean(1), np.abs(err).mean(1), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/lsf")
    parser.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTh2", "ETTm1", "ETTm2"])
    parser.add_argument("--strategies", nargs="+", default=["zero-shot", "msft"])
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--stride", type=int, default=96, help="steps between test origins")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    env = environment()
    shown = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--markdown" in shown:
        del shown[shown.index("--markdown") : shown.index("--markdown") + 2]
    lines = [
        f"- {env['cpu']} | torch {env['torch']} | load {env['load']} | commit {env['commit']}; "
        f"bundled moirai-tiny; target {TARGET}, past covariates {' '.join(LOADS)}; horizon "
        f"{HORIZON}, context {CONTEXT}, test origins every {args.stride} steps; fine-tuned: "
        f"{args.max_steps} steps at most, seed {args.seed}; command: python "
        f"benchmarks/covariates_ett.py {' '.join(shown)}",
        "",
        "| dataset | strategy | windows | MSE without | MSE with | MAE without | MAE with | "
        "MSE change (paired) | windows helped | fit s without / with |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.datasets:
        for strategy in args.strategies:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = dict(
                    name=name, root=args.root, strategy=strategy, max_steps=args.max_steps,
                    stride=args.stride, seed=args.seed,
                )  # fmt: skip
                mse0, mae0, s0 = window_errors(with_covariates=False, **run)
                mse1, mae1, s1 = window_errors(with_covariates=True, **run)
            diff = mse1 - mse0
            se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else float("nan")
            line = (
                f"| {name} | {strategy} | {diff.size} | {mse0.mean():.4f} | {mse1.mean():.4f} | "
                f"{mae0.mean():.4f} | {mae1.mean():.4f} | {diff.mean():+.4f} ± {se:.4f} | "
                f"{(diff < 0).mean():.0%} | {s0:.0f} / {s1:.0f} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
