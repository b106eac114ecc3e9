"""Zero-shot quality of bundled-backbone candidates on data that is not a test set.

    python benchmarks/backbone_selection.py --backbones moirai-tiny-v1 moirai-tiny
    python benchmarks/backbone_selection.py --backbones moirai-tiny-v1 runs/v2/state.pt

How the bundled backbone's corpus, size and steps are chosen (issue 16): never on test windows.
Three columns per candidate:

* **LSF validation**: zero-shot MSE (on the training split's standardisation, as the benchmark
  page reports) of the five long-horizon sets' *validation* splits, horizon 96, windows every
  96 steps, context 512, ``patch_size="auto"`` (chosen on the training data, as a fit does);
* **synthetic held-out**: MSE, in units of each context's spread, on series drawn from both
  synthetic corpora with a seed no pre-training run uses (:data:`HELD_OUT_SEED`), lengths 64 to
  1,200 and horizons of a fifth of the series;
* **short series validation**: the geometric mean relative MAE of
  :mod:`msft_forecast.benchmarks.short_series` on its validation origins.

A candidate is a backbone name or folder, or a pre-training ``state.pt`` (its weights are
exported to a temporary folder first), so a run can be watched while it trains.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from msft_forecast.benchmarks.lsf import environment
from msft_forecast.data.lsf import DATASETS, load_lsf
from msft_forecast.engine import MSFTEngine

#: Seed of the held-out synthetic series (pre-training runs use small seeds).
HELD_OUT_SEED = 20261202
HORIZON = 96
CONTEXT = 512


def export_state(state: Path, folder: Path) -> Path:
    """Write the weights held by a pre-training ``state.pt`` as a checkpoint in ``folder``."""
    import torch

    from msft_forecast.backbones.checkpoint import save_checkpoint
    from msft_forecast.pretraining.pretrain import PretrainConfig, build_model

    payload = torch.load(state, map_location="cpu", weights_only=True)
    cfg = PretrainConfig.from_dict(payload["config"])
    moirai_config, module = build_model(cfg)
    module.load_state_dict(payload["model"])
    steps = json.loads(payload["train_state"])["step"]
    save_checkpoint(folder, moirai_config.to_dict(), module.float().eval())
    print(f"# {state}: step {steps}", flush=True)
    return folder


def lsf_validation(backbone: str, root: str) -> dict[str, float]:
    """Zero-shot MSE on each LSF set's validation split."""
    out = {}
    for name in DATASETS:
        ds = load_lsf(name, root)
        values = ds.normalised()
        train = [values[: ds.train_end, j] for j in range(values.shape[1])]
        engine = MSFTEngine(
            backbone=backbone,
            fit_strategy="zero-shot",
            context_length=CONTEXT,
            prediction_length=HORIZON,
            validation=None,
            random_state=0,
        ).fit(train, freq=ds.freq)
        origins = np.arange(ds.train_end, ds.val_end - HORIZON + 1, HORIZON)
        errors = []
        for j in range(values.shape[1]):
            contexts = [values[:t, j] for t in origins]
            mean = engine.forecast(contexts, HORIZON, 0).mean
            truth = np.stack([values[t : t + HORIZON, j] for t in origins])
            errors.append((mean - truth) ** 2)
        out[name] = float(np.nanmean(np.concatenate(errors)))
    return out


def synthetic_held_out(backbone: str, count: int = 300) -> float:
    """Mean squared error in units of each context's spread on held-out synthetic series."""
    from msft_forecast.pretraining.synthetic import generate_sample, generate_sample_v2

    rng = np.random.default_rng(HELD_OUT_SEED)
    engine = MSFTEngine(
        backbone=backbone, fit_strategy="zero-shot", context_length=CONTEXT, validation=None
    )
    errors = []
    for i in range(count):
        length = int(np.exp(rng.uniform(np.log(64), np.log(1200))))
        make = generate_sample if i % 2 else generate_sample_v2
        y = make(rng, length).values
        horizon = max(1, length // 5)
        context, truth = y[:-horizon], y[-horizon:]
        engine.fit([context])  # zero-shot: only the patch size and lengths are chosen
        mean = engine.forecast([context], horizon, 0).mean[0]
        spread = max(float(np.std(context[-CONTEXT:])), 1e-8)
        errors.append(float(np.mean(((mean - truth) / spread) ** 2)))
    # the median: a few near-constant contexts would otherwise dominate
    return float(np.median(errors))


def short_validation(backbone: str) -> float:
    from msft_forecast import MSFTForecaster
    from msft_forecast.benchmarks.short_series import (
        evaluate,
        geometric_mean_relative,
        load_short_series,
    )

    scores = evaluate(
        load_short_series(),
        lambda: MSFTForecaster(backbone=backbone, fit_strategy="zero-shot"),
        split="validation",
    )
    return geometric_mean_relative(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", required=True)
    parser.add_argument("--root", default="../shared/data/lsf")
    parser.add_argument("--skip-lsf", action="store_true")
    args = parser.parse_args(argv)
    env = environment()
    print(
        f"# {env['cpu']} | torch {env['torch']} | load {env['load']} | commit {env['commit']}\n"
        f"# command: python benchmarks/backbone_selection.py {' '.join(argv or sys.argv[1:])}"
    )
    cols = ([] if args.skip_lsf else list(DATASETS)) + ["synthetic held-out", "short val"]
    print("| backbone | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(args.backbones):
            backbone = name
            if name.endswith(".pt"):
                backbone = str(export_state(Path(name), Path(tmp) / f"candidate{k}"))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = {} if args.skip_lsf else lsf_validation(backbone, args.root)
                row["synthetic held-out"] = synthetic_held_out(backbone)
                row["short val"] = short_validation(backbone)
            cells = " | ".join(f"{row[c]:.4f}" for c in cols)
            print(f"| {name} | {cells} |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
