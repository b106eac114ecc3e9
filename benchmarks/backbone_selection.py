"""Zero-shot quality of bundled-backbone candidates on data that is not a test set.

    python benchmarks/backbone_selection.py --backbones moirai-tiny-v1 moirai-tiny
    python benchmarks/backbone_selection.py --backbones moirai-tiny-v1 runs/v2/state.pt
    python benchmarks/backbone_selection.py --backbones moirai-tiny-v1 moirai-tiny --split test

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

Beside quality, the cost of a candidate: its parameters, the size of its weights file (what the
wheel carries) and the CPU-seconds of one zero-shot forecast of a fixed batch
(:func:`inference_cost`: one thread, process CPU time, the fastest of several repeats, so that
other work on the machine disturbs it little; the ratio to the first candidate is the number to
compare across machines).

``--split test`` scores the same candidates on the test splits and test windows instead: the
final check, run once a choice has been made, never to make one.

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
from msft_forecast.benchmarks.short_series import SHORT_SERIES
from msft_forecast.data.lsf import DATASETS, load_lsf
from msft_forecast.engine import MSFTEngine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the pre-training code (tools/pretrain/) is not installed
    sys.path.insert(0, str(ROOT))

#: Seed of the held-out synthetic series (pre-training runs use small seeds).
HELD_OUT_SEED = 20261202
HORIZON = 96
CONTEXT = 512
SHORT = len(SHORT_SERIES)


def export_state(state: Path, folder: Path) -> Path:
    """Write the weights held by a pre-training ``state.pt`` as a checkpoint in ``folder``."""
    import torch

    from msft_forecast.backbones.checkpoint import save_checkpoint
    from tools.pretrain.pretrain import PretrainConfig, build_model

    payload = torch.load(state, map_location="cpu", weights_only=True)
    cfg = PretrainConfig.from_dict(payload["config"])
    moirai_config, module = build_model(cfg)
    module.load_state_dict(payload["model"])
    steps = json.loads(payload["train_state"])["step"]
    save_checkpoint(folder, moirai_config.to_dict(), module.float().eval())
    print(f"# {state}: step {steps}", flush=True)
    return folder


def lsf_zero_shot(
    backbone: str,
    root: str,
    split: str = "validation",
    datasets: list[str] | None = None,
    verify: bool = True,
) -> dict[str, float]:
    """Zero-shot MSE on each LSF set's validation split, or (``split="test"``, the final check
    only) on its test split with the patch size chosen on the validation split, as the
    benchmark runner does."""
    out = {}
    for name in datasets or list(DATASETS):
        ds = load_lsf(name, root, verify=verify)
        values = ds.normalised()
        if split == "validation":  # the model sees the training split only
            end, validation = ds.train_end, None
        else:  # as the runner: the patch size is chosen on the validation split
            end, validation = ds.val_end, ds.val_end - ds.train_end
        history = [values[:end, j] for j in range(values.shape[1])]
        engine = MSFTEngine(
            backbone=backbone,
            fit_strategy="zero-shot",
            context_length=CONTEXT,
            prediction_length=HORIZON,
            validation=validation,
            random_state=0,
        ).fit(history, freq=ds.freq)
        stop = ds.val_end if split == "validation" else ds.test_end
        origins = np.arange(end, stop - HORIZON + 1, HORIZON)
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
    from tools.pretrain.synthetic import generate_sample, generate_sample_v2

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


def short_series(backbone: str, split: str = "validation", windows: int = 5) -> float:
    from msft_forecast import MSFTForecaster
    from msft_forecast.benchmarks.short_series import (
        evaluate,
        geometric_mean_relative,
        load_short_series,
    )

    scores = evaluate(
        load_short_series(),
        lambda: MSFTForecaster(backbone=backbone, fit_strategy="zero-shot"),
        split=split,
        windows=windows,
    )
    return geometric_mean_relative(scores)


def inference_cost(backbone: str, repeats: int = 5, batch: int = 32) -> dict[str, float]:
    """Parameters, weights-file megabytes and CPU-seconds of one zero-shot forecast of ``batch``
    series (context 512, patch size 32, horizon 96, the default 100 sample paths; and of the
    mean alone, the encoder's share) on one thread."""
    import torch

    rng = np.random.default_rng(0)
    t = np.arange(CONTEXT + 4 * HORIZON)
    series = [
        np.sin(2 * np.pi * t / 24 + k) + 0.1 * rng.standard_normal(t.size) for k in range(batch)
    ]
    engine = MSFTEngine(
        backbone=backbone,
        fit_strategy="zero-shot",
        context_length=CONTEXT,
        patch_size=32,  # the same number of tokens for every candidate
        validation=None,
    ).fit(series, freq="h")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine.forecast(series, HORIZON)  # warm-up
        times, mean_times = [], []
        for _ in range(repeats):
            start = time.process_time()
            engine.forecast(series, HORIZON)
            times.append(time.process_time() - start)
            start = time.process_time()
            engine.forecast(series, HORIZON, 0)
            mean_times.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    from safetensors import safe_open

    from msft_forecast.backbones.checkpoint import WEIGHTS_FILE, resolve_checkpoint

    weights_file = Path(resolve_checkpoint(backbone).folder) / WEIGHTS_FILE
    with safe_open(weights_file, "pt") as weights:
        parameters = sum(int(np.prod(weights.get_slice(k).get_shape())) for k in weights.keys())
    return {
        "parameters": float(parameters),
        "MB": weights_file.stat().st_size / 1e6,
        "CPU s": min(times),
        "CPU s (mean only)": min(mean_times),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", required=True)
    parser.add_argument("--root", default="../shared/data/lsf")
    parser.add_argument("--skip-lsf", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--no-verify", action="store_true", help="skip dataset checksums")
    parser.add_argument(
        "--split",
        choices=["validation", "test"],
        default="validation",
        help="validation: what choices are made on; test: the final check only",
    )
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--synthetic-count", type=int, default=300, help="held-out series")
    parser.add_argument("--short-windows", type=int, default=5, help="windows per short series")
    parser.add_argument("--cost-repeats", type=int, default=5, help="timed forecasts per cost")
    args = parser.parse_args(argv)
    env = environment()
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--markdown" in shown:
        del shown[shown.index("--markdown") : shown.index("--markdown") + 2]
    lines = [
        f"- {env['cpu']} | torch {env['torch']} | load {env['load']} | commit {env['commit']}; "
        f"{args.split} split; LSF: zero-shot MSE, horizon {HORIZON}, context {CONTEXT}, "
        f"windows every {HORIZON} steps; short series: geometric mean relative MAE over "
        f"{SHORT} series, {args.short_windows} windows each; {args.synthetic_count} held-out "
        f"synthetic series; cost: CPU-seconds of one zero-shot forecast of 32 series (one "
        f"thread, fastest of {args.cost_repeats}; 100 sample paths, ratio to the first row, and "
        f"the mean alone); "
        f"quality ratio: geometric mean over the quality columns of the ratio to the first row "
        f"(below 1: better); "
        f"command: python "
        f"benchmarks/backbone_selection.py {' '.join(shown)}",
        "",
    ]
    short_col = f"short series ({args.split})"
    cols = ([] if args.skip_lsf else list(args.datasets)) + ["synthetic held-out", short_col]
    costs = ["quality ratio", "parameters", "MB", "CPU s", "CPU s ratio", "CPU s (mean only)"]
    lines.append("| backbone | " + " | ".join(cols + costs) + " | seconds |")
    lines.append("|---|" + "---|" * (len(cols) + len(costs) + 1))
    print("\n".join(lines), flush=True)
    first_cpu, first_row = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(args.backbones):
            backbone = name
            if name.endswith(".pt"):
                backbone = str(export_state(Path(name), Path(tmp) / f"candidate{k}"))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = {}
                if not args.skip_lsf:
                    row = lsf_zero_shot(
                        backbone, args.root, args.split, args.datasets, not args.no_verify
                    )
                row["synthetic held-out"] = synthetic_held_out(backbone, args.synthetic_count)
                row[short_col] = short_series(backbone, args.split, args.short_windows)
            cost = inference_cost(backbone, repeats=args.cost_repeats)
            first_cpu, first_row = first_cpu or cost["CPU s"], first_row or row
            # every quality column is lower-is-better: one summary against the first candidate
            ratio = float(np.exp(np.mean([np.log(row[c] / first_row[c]) for c in cols])))
            cells = " | ".join(f"{row[c]:.4f}" for c in cols) + f" | {ratio:.3f}"
            cells += (
                f" | {cost['parameters'] / 1e6:.2f}M | {cost['MB']:.1f} | {cost['CPU s']:.2f} | "
                f"{cost['CPU s'] / first_cpu:.2f} | {cost['CPU s (mean only)']:.3f}"
            )
            line = f"| {name} | {cells} | {time.perf_counter() - start:.0f} |"
            lines.append(line)
            print(line, flush=True)
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
