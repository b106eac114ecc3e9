"""Regenerate every table of ``docs/benchmarks.md`` with one command.

    python benchmarks/reproduce.py                 # everything (about 5 h on 2 CPU cores)
    python benchmarks/reproduce.py --sections ablations inference
    python benchmarks/reproduce.py --smoke --root DIR --out-dir DIR --page FILE   # CI

Old sections run under ``--budget steps`` (at most 200 steps per trained model); ``fair_h96``
under the runner's default time budget.

Each section writes ``<out-dir>/<section>.md`` (and ``.json`` for the accuracy runs), then the
Markdown is spliced into the page between ``<!-- reproduce:SECTION -->`` and
``<!-- /reproduce:SECTION -->``; prose outside the markers is left alone.  Every table carries
the machine, torch version, commit, settings and the exact command that made it.

Sections:

``scale_weighting_h96``
    the proof of issue 13 (scale weights that mean something, calibrated intervals): all five
    LSF datasets, horizon 96, three seeds, at least 500 test windows per dataset (stride 24 on
    ETTh, 96 on ETTm, 144 on Weather): zero-shot, linear-probe, LoRA, full, MSFT (default:
    weights fitted on validation windows, mixture sampling; also scored with the paper's blend
    and, same fit, with uniform and finest-only weights) and MSFT with the paper's in-loss
    weights. ``--jobs`` splits the datasets over single-threaded processes.
``training_weights_design``
    how the training weights of the default were chosen: equal training weights against the
    paper's in-loss weights on standardised losses, validation loss and test MSE, from the
    stored ``training_weights_design.json`` (an interrupted run of ``scale_weighting_h96`` at
    commit 8d29728, where ``msft`` still trained with equal weights; its header has the
    command; no new runs).
``foundation_h96``
    all five LSF datasets, horizon 96: the bundled backbone zero-shot and fine-tuned with
    linear-probe, lora, adalora, prompt-tuning, full and msft (blend and mixture sampling).
``peers_h96``
    the same windows for the from-scratch peers (DLinear, NLinear, PatchTST, TimeMixer,
    iTransformer) and the classical baselines (last value, seasonal naive, Theta).
``fair_h96``
    the headline's trained models under the fair budget: the fine-tuned strategies and the
    from-scratch peers each train until early stopping on the validation split or a 60 s
    wall-clock cap, best weights restored, two seeds, on the windows of the two sections above
    (two single-threaded jobs, ``--jobs``).
``classical_h96``
    the automatic classical baselines (AutoETS, AutoARIMA, AutoTheta) with seasonal naive,
    Theta and last value, refitted on every window of the same windows.
``headline``
    MSE, MAE and CRPS of ``fair_h96`` and ``classical_h96`` in one table per metric, MSFT
    against the best other model per dataset (paired bootstrap over test windows), and the
    200-step budget against the fair one (from the JSON; no new runs).
``own_data``
    the worked example of ``docs/benchmark_your_data.md``: the runner on a CSV it writes from a
    dataset that ships with statsmodels (weekly CO2 at Mauna Loa), spliced into that page.
``ablations``
    MSFT and its ablations (no aggregator, shared LoRA, no mixing, K=0) on ETTm1 and Weather,
    two seeds, blend and mixture sampling.
``ablations_etth1``
    the same ablations on ETTh1, where MSFT does worst, to see which part is to blame.
``sampling``
    blend vs mixture sampling of the same fitted MSFT models (CRPS, coverage), from the JSON
    of ``scale_weighting_h96`` (no new runs).
``precision``
    MSFT on ETTh1 (channel OT) in float32 and in bf16-mixed: does mixed precision change accuracy?
``training_cost``
    fine-tuning step time and peak memory per strategy, per number of scales and per context
    length (``benchmarks/training_cost.py``).
``training_cost_units``
    the same on UniTS (random weights of the released ``units_x128`` size) for every strategy
    (AdaLoRA and prompt tuning included), with trainable parameters (``training_cost.py
    --backbone units``).
``inference``
    forecast throughput of zero-shot vs MSFT by context length
    (``benchmarks/inference_throughput.py``).
``thread_policy``
    fit time on an idle machine and next to one busy process, by OpenMP wait policy and torch
    threads (``benchmarks/thread_policy.py``), spliced into ``docs/faq.md``.
``step_ratio``
    the MSFT step against a LoRA step and fused against unfused AdamW, paired in one process
    (``benchmarks/step_ratio.py``).
``import_time``
    import time of the front ends against sktime's and Darts' own imports, paired
    (``benchmarks/import_time.py``).
``historical_forecasts``
    Darts ``historical_forecasts(retrain=False)`` against a loop of ``predict`` on the 144-point
    airline series (85 windows) and a 3,000-point series (2,849 windows)
    (``benchmarks/darts_historical_forecasts.py``).
``backbone_speed``
    the native Moirai-small backbone against the uni2ts reference vendored in sktime: forward,
    training step and memory, paired, and how far their outputs are apart
    (``benchmarks/backbone_speed.py``).
``bundled_backbone``
    the bundled backbone against the previous one (``moirai-tiny-v1``), zero-shot: on the
    validation splits and held-out synthetic series (what it was chosen on), then on the test
    splits (``benchmarks/backbone_selection.py``), spliced into ``docs/backbones.md``.
``backbone_size``
    the bundled backbone's size, chosen by measurement: the stage-1 recipe pre-trained at two
    other widths (``d_model`` 64 and 192; resumable runs under ``runs/``, about 30 and 70
    minutes on one core) and compared zero-shot with the bundled stage 1 (``d_model`` 128) on
    the validation splits, with parameters, megabytes and inference CPU-seconds
    (``benchmarks/backbone_selection.py``), spliced into ``docs/backbones.md``.
``backbone_size_stage2``
    the width that passed the size rule at stage 1 (``d_model`` 192) taken through stage 2
    (corpus v2, 10,000 steps from its stage 1; resumable runs under ``runs/``, about 70
    minutes on two free cores) and compared zero-shot with the bundled stage 2 on the
    validation splits, the same columns, spliced into ``docs/backbones.md``.
``reported``
    the numbers the MSFT and Moirai papers report, labelled as reported.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather"]
STRATEGIES = ["zero-shot", "linear-probe", "lora", "adalora", "prompt-tuning", "full", "msft"]
PEERS = ["dlinear", "nlinear", "patchtst", "timemixer", "itransformer"]
BASELINES = ["last-value", "seasonal-naive", "theta"]
CLASSICAL = ["autoets", "autoarima", "autotheta", "seasonal-naive", "theta", "last-value"]
#: Wall-clock cap per trained model of ``fair_h96`` (about what MSFT's 200 steps take).
FAIR_TIME_BUDGET = "60"
#: Dataset groups of the parallel jobs of ``fair_h96`` (Weather weighs about two ETT sets).
FAIR_GROUPS = [["ETTh1", "ETTm1", "ETTh2"], ["Weather", "ETTm2"]]
ABLATIONS = ["msft", "msft-no-aggregator", "msft-shared-lora", "msft-no-mixing", "msft-k0"]
WEIGHTING_MODELS = ["zero-shot", "linear-probe", "lora", "full", "msft", "msft-paper"]
#: Test-window strides giving at least 500 windows per dataset at horizon 96.
WEIGHTING_STRIDES = ["24", "ETTm1=96", "ETTm2=96", "Weather=144"]
#: Dataset groups of the parallel jobs (Weather, with 21 channels, weighs about two ETT sets).
WEIGHTING_GROUPS = [["ETTh1", "ETTm1", "ETTh2"], ["Weather", "ETTm2"]]
SECTIONS = (
    "scale_weighting_h96",
    "training_weights_design",
    "foundation_h96",
    "peers_h96",
    "fair_h96",
    "classical_h96",
    "headline",
    "own_data",
    "ablations",
    "ablations_etth1",
    "sampling",
    "precision",
    "training_cost",
    "training_cost_units",
    "inference",
    "thread_policy",
    "step_ratio",
    "import_time",
    "historical_forecasts",
    "backbone_speed",
    "bundled_backbone",
    "backbone_size",
    "backbone_size_stage2",
    "reported",
)
#: Widths the stage-1 recipe is pre-trained at by ``backbone_size`` (128 is the bundled one).
SIZE_WIDTHS = (64, 192)
#: Sections that fit models and write JSON.
ACCURACY_SECTIONS = (
    "foundation_h96",
    "peers_h96",
    "classical_h96",
    "ablations",
    "ablations_etth1",
)
#: Page of each section not on ``docs/benchmarks.md`` (relative to ``docs``).
SECTION_PAGES = {
    "own_data": "benchmark_your_data.md",
    "thread_policy": "faq.md",
    "bundled_backbone": "backbones.md",
    "backbone_size": "backbones.md",
    "backbone_size_stage2": "backbones.md",
}


def lsf_args(section: str, smoke: bool) -> list[str]:
    """Arguments of ``python -m msft_forecast.benchmarks.lsf`` for an accuracy section."""
    if section == "foundation_h96":
        models, datasets, seeds = STRATEGIES, DATASETS, ["0"]
    elif section == "peers_h96":
        models, datasets, seeds = PEERS + BASELINES, DATASETS, ["0"]
    elif section == "classical_h96":
        models, datasets, seeds = CLASSICAL, DATASETS, ["0"]
    elif section == "ablations":
        models, datasets, seeds = ABLATIONS, ["ETTm1", "Weather"], ["0", "1"]
    else:  # ablations_etth1: the dataset where MSFT lost to zero-shot
        models, datasets, seeds = ABLATIONS, ["ETTh1"], ["0", "1"]
    budget = ["--stride", "288", "--budget", "steps", "--max-steps", "200",
              "--val-check-interval", "25"]  # fmt: skip
    if section == "classical_h96":
        budget = ["--stride", "288", "--jobs", "2"]
    if smoke:
        datasets, seeds = ["ETTh1"], ["0"]
        budget = [
            "--stride", "2000", "--budget", "steps", "--max-steps", "2",
            "--val-check-interval", "1", "--context", "96", "--horizon", "24",
            "--num-samples", "10", "--channels", "OT",
        ]  # fmt: skip
        if section == "classical_h96":
            models = ["autoets", "autotheta", "seasonal-naive"]
    return [
        "--datasets", *datasets, "--strategies", *models, "--seeds", *seeds,
        "--sampling", "blend", "mixture", *budget,
    ]  # fmt: skip


def script_args(section: str, smoke: bool) -> list[str]:
    """Command line of the speed script behind ``training_cost(_units)`` or ``inference``."""
    if section == "training_cost_units":
        if smoke:
            return ["--backbone", "units", "--strategies", "msft", "--scales", "2",
                    "--precisions", "32-true", "--contexts", "64", "--batch", "1", "--steps",
                    "1", "--threads", "1"]  # fmt: skip
        return ["--backbone", "units", "--scales", "1", "2", "4", "--contexts", "512", "1024",
                "--threads", "2"]  # fmt: skip
    if section == "training_cost":
        if smoke:
            return ["--strategies", "lora", "msft", "--scales", "2", "--precisions",
                    "32-true", "--contexts", "64", "--batch", "1", "--steps", "1",
                    "--threads", "1"]  # fmt: skip
        return ["--scales", "1", "2", "4", "--contexts", "512", "1024", "--threads", "2"]
    if smoke:
        return ["--backbones", "moirai-tiny", "--contexts", "64", "--windows", "2",
                "--samples", "0", "--threads", "1"]  # fmt: skip
    return ["--contexts", "256", "512", "1024", "2048", "--threads", "2"]


def weighting_args(smoke: bool) -> list[str]:
    """Arguments of every job of ``scale_weighting_h96`` (datasets added per job)."""
    # validation every 50 steps (the engine's default): at 25 with patience 3, one transient rise
    # of the validation loss (steps 50-100, while the in-loss weights move) stopped MSFT at step
    # 100 in one of three ETTh1 runs, whose loss fell below its earlier best from step 125 on
    budget = ["--stride", *WEIGHTING_STRIDES, "--budget", "steps", "--max-steps", "200",
              "--val-check-interval", "50"]  # fmt: skip
    seeds = ["0", "1", "2"]
    if smoke:
        seeds = ["0"]
        budget = [
            "--stride", "2000", "--budget", "steps", "--max-steps", "2",
            "--val-check-interval", "1", "--context", "96", "--horizon", "24",
            "--num-samples", "10", "--channels", "OT",
        ]  # fmt: skip
    return [
        "--strategies", *WEIGHTING_MODELS, "--seeds", *seeds, "--sampling", "mixture", "blend",
        "--rescore-weights", "uniform", "finest", "--rescore-models", "msft", *budget,
    ]  # fmt: skip


def fair_args(smoke: bool) -> list[str]:
    """Arguments of every job of ``fair_h96`` (datasets added per job)."""
    models, seeds = STRATEGIES + PEERS, ["0", "1"]
    budget = ["--stride", "288", "--budget", "time", "--time-budget", FAIR_TIME_BUDGET,
              "--val-check-interval", "25"]  # fmt: skip
    if smoke:
        models, seeds = ["zero-shot", "msft", "dlinear"], ["0"]
        budget = [
            "--stride", "2000", "--budget", "time", "--time-budget", "5",
            "--val-check-interval", "1", "--context", "96", "--horizon", "24",
            "--num-samples", "10", "--channels", "OT",
        ]  # fmt: skip
    return ["--strategies", *models, "--seeds", *seeds, "--sampling", "mixture", *budget]


def run_jobs(
    md: Path, groups: list[list[str]], job_args: list[str], root: str, verify: bool
) -> list[Path]:
    """Run the runner once per dataset group, as single-threaded processes at the same time.

    Two single-threaded processes use two cores better than one two-threaded process (the
    threads of one small model wait on each other).  Returns the parts' paths (without suffix);
    each has its JSON and Markdown (header and command kept).
    """
    procs, parts = [], []
    for i, group in enumerate(groups):
        part = md.with_name(f"{md.stem}.part{i}")
        argv = ["--root", root, "--datasets", *group, *job_args]
        argv += [] if verify else ["--no-verify"]
        argv += ["--json", str(part) + ".json", "--markdown", str(part) + ".md"]
        cmd = [sys.executable, "-m", "msft_forecast.benchmarks.lsf", *argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env))
        parts.append(part)
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"a {md.stem} job failed; see its output above")
    return parts


def _groups(smoke: bool, jobs: int, groups: list[list[str]]) -> list[list[str]]:
    if smoke:
        return [["ETTh1"]]
    return [[d for g in groups for d in g]] if jobs == 1 else groups


def run_weighting_section(md: Path, root: str, smoke: bool, verify: bool, jobs: int) -> None:
    """Run ``scale_weighting_h96`` as single-threaded processes, merge, write tables."""
    groups = _groups(smoke, jobs, WEIGHTING_GROUPS)
    merge_weighting_parts(md, run_jobs(md, groups, weighting_args(smoke), root, verify))


def _load_parts(md: Path, parts: list[Path]) -> tuple[list, list[str]]:
    """Merge the jobs' JSON into ``<section>.json``; their results and Markdown headers."""
    import json

    from msft_forecast.benchmarks.lsf import load_results, save

    if not parts:
        raise SystemExit(f"no {md.stem}.part*.json next to {md}: run the section first")
    results, headers = [], []
    for part in parts:
        results += load_results(str(part) + ".json")
        lines = Path(str(part) + ".md").read_text(encoding="utf-8").split("\n\n")[0]
        headers.append(lines)
        env = json.loads(Path(str(part) + ".json").read_text(encoding="utf-8"))["environment"]
    save(results, md.with_suffix(".json"), {**env, "parts": [str(p.name) for p in parts]})
    return results, headers


def merge_fair_parts(md: Path, parts: list[Path]) -> None:
    """Write ``fair_h96``'s Markdown from its jobs."""
    from msft_forecast.benchmarks.lsf import markdown_table, summary_table

    results, headers = _load_parts(md, parts)
    blocks = [
        f"Made by `python benchmarks/reproduce.py --sections {md.stem}`: {len(parts)} "
        "single-threaded job(s) at the same time, each with the header below (machine, load at "
        "its start, commit, settings, datasets, command):",
        "\n\n".join(headers),
        "MSE (of the mean forecast; mean ± std over seeds):\n\n" + summary_table(results, "mse"),
        "Every run:\n\n" + markdown_table(results),
    ]
    md.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def merge_weighting_parts(md: Path, parts: list[Path]) -> None:
    """Merge the jobs' JSON into ``<section>.json`` and write the section's Markdown."""
    from msft_forecast.benchmarks.lsf import (
        markdown_table,
        paired_table,
        summary_table,
        weights_table,
    )

    results, headers = _load_parts(md, parts)
    windows = {r.dataset: r.windows for r in results}
    blocks = [
        f"Made by `python benchmarks/reproduce.py --sections {md.stem}`: {len(parts)} "
        "single-threaded job(s) at the same time, each with the header below (machine, load at "
        "its start, commit, settings, command):",
        "\n\n".join(headers),
        "Test windows (series x origins) per dataset: "
        + ", ".join(f"{d} {n}" for d, n in windows.items())
        + ". `msft` is the default (weights fitted on validation windows, mixture sampling); "
        "`(blend)` the same fit with the paper's sample-wise blend; `msft@uniform` and "
        "`msft@finest` the same fit forecasting with uniform weights or scale 0 alone; "
        "`msft-paper` the paper's in-loss weights (its own fit). Mean ± std over seeds.",
        "MSE (of the mean forecast):\n\n" + summary_table(results, "mse"),
        "MAE (of the median):\n\n" + summary_table(results, "mae"),
        "CRPS:\n\n" + summary_table(results, "crps"),
        "Coverage of the 80% interval (target 0.80):\n\n" + summary_table(results, "coverage80"),
        "Coverage of the 50% interval (target 0.50):\n\n" + summary_table(results, "coverage50"),
        "Coverage of the 95% interval (target 0.95):\n\n" + summary_table(results, "coverage95"),
        "MSFT (default) against the others, seed by seed:\n\n"
        + paired_table(
            results,
            "msft",
            (
                "zero-shot",
                "lora",
                "full",
                "linear-probe",
                "msft-paper",
                "msft@uniform",
                "msft@finest",
            ),
        ),  # fmt: skip
        "Scale weights used at inference:\n\n" + weights_table(results, ("msft", "msft-paper")),
        "Every run:\n\n" + markdown_table(results),
    ]
    md.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def design_table(md: Path, source: Path) -> None:
    """Validation loss and test MSE of equal vs in-loss training weights (stored results)."""
    import json

    from msft_forecast.benchmarks.lsf import RunResult, paired_table, summary_table

    if not source.is_file():
        md.write_text(f"(no {source.name}: nothing to show)\n", encoding="utf-8")
        return
    data = json.loads(source.read_text(encoding="utf-8"))
    keep = {"lora", "msft", "msft-paper"}
    rows = [r for r in data["results"] if r["strategy"] in keep and r["sampling"] != "blend"]
    results = [RunResult(**r) for r in rows]
    rename = {"msft": "equal training weights", "msft-paper": "in-loss training weights"}
    for r in results:
        r.strategy = rename.get(r.strategy, r.strategy)
    env = data["environment"]
    md.write_text(
        f"From `docs/results/{source.name}`: {data['note']} Machine {env['cpu']}, torch "
        f"{env['torch']}, one thread per job, load {env['load']} at the start, commit "
        f"{env['commit']}; the same settings as `scale_weighting_h96`. Both use inference "
        "weights chosen for the combined forecast (fitted on validation windows, resp. the "
        "trained in-loss weights); the validation loss is the combined forecast's CRPS on the "
        "validation windows, comparable across models.\n\n"
        "Validation loss (what the choice was made on):\n\n"
        + summary_table(results, "val_loss")
        + "\n\nTest MSE:\n\n"
        + summary_table(results, "mse")
        + "\n\nIn-loss against equal training weights, seed by seed:\n\n"
        + paired_table(results, "in-loss training weights", ("equal training weights", "lora"))
        + "\n",
        encoding="utf-8",
    )


def headline_tables(md: Path, out_dir: Path) -> None:
    """The headline from ``fair_h96`` and ``classical_h96``, and the two budgets side by side."""
    from msft_forecast.benchmarks.lsf import bootstrap_table, summary_table

    results = _results(out_dir, ("fair_h96", "classical_h96"))
    results = [r for r in results if r.sampling != "blend"]
    steps = {
        (r.dataset, r.strategy): r
        for r in _results(out_dir, ("foundation_h96", "peers_h96"))
        if r.sampling != "blend"
    }
    md.write_text(
        "From `fair_h96.json` (fine-tuned strategies and from-scratch peers under the fair "
        f"budget: early stopping or {FAIR_TIME_BUDGET} s each, best weights restored; two "
        "seeds) and `classical_h96.json` (refitted on every window); settings in their "
        "sections. Mean ± std over seeds; best per dataset in bold.\n\nMSE:\n\n"
        + summary_table(results, "mse")
        + "\n\nMAE:\n\n"
        + summary_table(results, "mae")
        + "\n\nCRPS (probabilistic models only):\n\n"
        + summary_table(results, "crps")
        + "\n\nMSFT against the best other model of each dataset, paired over the same test "
        "windows (squared errors averaged over seeds; 95% interval from 2000 bootstrap draws "
        "of forecast origins):\n\n"
        + bootstrap_table(results)
        + "\n\nThe two budgets: MSE and steps under the 200-step budget (`foundation_h96`, "
        "`peers_h96`, one seed) and under the fair budget (this table's runs, seed 0 | mean "
        "over seeds):\n\n" + budget_table(steps, results) + "\n",
        encoding="utf-8",
    )


def budget_table(step_runs: dict, fair: list) -> str:
    """MSE and steps of each trained model under both budgets, per dataset."""
    import numpy as np

    lines = [
        "| dataset | model | MSE 200 steps | steps | MSE fair (seed 0) | MSE fair (mean) | "
        "steps (seed 0) | change of the mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by: dict = {}
    for r in fair:
        if r.steps or r.strategy in STRATEGIES + PEERS:
            by.setdefault((r.dataset, r.strategy), []).append(r)
    for (dataset, model), runs in by.items():
        old = step_runs.get((dataset, model))
        if old is None or model not in STRATEGIES + PEERS:
            continue
        seed0 = min(runs, key=lambda r: r.seed)
        mean = float(np.mean([r.mse for r in runs]))
        lines.append(
            f"| {dataset} | {model} | {old.mse:.4f} | {old.steps} | {seed0.mse:.4f} | "
            f"{mean:.4f} | {seed0.steps} | {100 * (mean / old.mse - 1):+.1f}% |"
        )
    return "\n".join(lines)


def run_own_data(md: Path, out_dir: Path, smoke: bool) -> None:
    """The worked example of ``docs/benchmark_your_data.md`` on statsmodels' weekly CO2 data.

    Under the step budget (200 steps per trained model), so that its numbers do not depend on
    the machine's speed or load; the page says so.
    """
    import statsmodels.api as sm

    from msft_forecast.benchmarks.lsf import main as lsf_main

    frame = sm.datasets.co2.load_pandas().data  # ships with statsmodels: no download
    csv = out_dir / "co2_weekly.csv"
    frame.rename_axis("date").reset_index().to_csv(csv, index=False)
    models = ["zero-shot", "lora", "msft", "dlinear", "nlinear", "autoets", "autoarima",
              "autotheta", "seasonal-naive"]  # fmt: skip
    argv = ["--data", str(csv.relative_to(REPO) if csv.is_relative_to(REPO) else csv),
            "--horizon", "52", "--strategies", *models, "--seeds", "0", "1", "2",
            "--budget", "steps", "--max-steps", "200", "--jobs", "2"]  # fmt: skip
    if smoke:
        argv = ["--data", str(csv), "--horizon", "13", "--strategies", "zero-shot", "msft",
                "autotheta", "seasonal-naive", "--time-budget", "5", "--num-samples", "10",
                "--stride", "200", "--context", "128"]  # fmt: skip
    argv += ["--json", str(md.with_suffix(".json")), "--markdown", str(md)]
    cwd = os.getcwd()
    os.chdir(REPO)  # the command in the page is relative to the repository root
    try:
        lsf_main(argv)
    finally:
        os.chdir(cwd)


def run_section(
    section: str, out_dir: Path, root: str, smoke: bool, verify: bool, jobs: int = 2
) -> Path:
    """Run one section; returns the Markdown file it wrote."""
    md = out_dir / f"{section}.md"
    if section == "scale_weighting_h96":
        run_weighting_section(md, root, smoke, verify, jobs)
    elif section in ACCURACY_SECTIONS:
        from msft_forecast.benchmarks.lsf import main as lsf_main

        argv = ["--root", root, *lsf_args(section, smoke)]
        argv += [] if verify else ["--no-verify"]
        argv += ["--json", str(out_dir / f"{section}.json"), "--markdown", str(md)]
        lsf_main(argv)
    elif section == "training_weights_design":
        design_table(md, out_dir / "training_weights_design.json")
    elif section == "fair_h96":
        groups = _groups(smoke, jobs, FAIR_GROUPS)
        merge_fair_parts(md, run_jobs(md, groups, fair_args(smoke), root, verify))
    elif section == "headline":
        headline_tables(md, out_dir)
    elif section == "own_data":
        run_own_data(md, out_dir, smoke)
    elif section == "sampling":
        from msft_forecast.benchmarks.lsf import sampling_table

        sources = ("scale_weighting_h96",)  # one section: (dataset, model, seed) is a fit
        results = [r for r in _results(out_dir, sources) if "@" not in r.strategy]
        md.write_text(
            "Same fitted models, scales combined two ways (from "
            + ", ".join(f"`{name}.json`" for name in sources)
            + "):\n\n"
            + sampling_table(results)
            + "\n",
            encoding="utf-8",
        )
    elif section == "precision":
        from msft_forecast.benchmarks.lsf import main as lsf_main

        budget = ["--stride", "24", "--budget", "steps", "--max-steps", "200",
                  "--val-check-interval", "25"]  # fmt: skip
        if smoke:
            budget = ["--stride", "2000", "--budget", "steps", "--max-steps", "2",
                      "--val-check-interval", "1",
                      "--context", "96", "--horizon", "24", "--num-samples", "10"]  # fmt: skip
        parts = []
        for precision in ("32-true", "bf16-mixed"):
            part = out_dir / f"precision_{precision}.md"
            argv = ["--root", root, "--datasets", "ETTh1", "--channels", "OT", "--strategies",
                    "msft", "--precision", precision, *budget]  # fmt: skip
            argv += [] if verify else ["--no-verify"]
            argv += ["--json", str(part.with_suffix(".json")), "--markdown", str(part)]
            lsf_main(argv)
            parts.append(f"`precision={precision}`:\n\n" + part.read_text(encoding="utf-8"))
        md.write_text("\n".join(parts), encoding="utf-8")
    elif section == "reported":
        from msft_forecast.benchmarks.reported import reported_markdown

        md.write_text(reported_markdown(), encoding="utf-8")
    elif section == "bundled_backbone":
        script = REPO / "benchmarks" / "backbone_selection.py"
        smoke_args = ["--synthetic-count", "3", "--short-windows", "1", "--datasets", "ETTh1",
                      "--cost-repeats", "1"]  # fmt: skip
        smoke_args = (smoke_args if smoke else []) + ([] if verify else ["--no-verify"])
        parts = []
        for split in ("validation", "test"):
            part = out_dir / f"{section}.{split}.part.md"
            cmd = [sys.executable, str(script), "--backbones", "moirai-tiny-v1", "moirai-tiny"]
            cmd += ["--root", root, "--split", split, *smoke_args, "--markdown", str(part)]
            subprocess.run(cmd, check=True, cwd=REPO)
            parts.append(part.read_text(encoding="utf-8"))
        md.write_text("\n".join(parts), encoding="utf-8")
    elif section == "backbone_size":
        runs = (out_dir / "runs") if smoke else (REPO / "runs")
        candidates = ["moirai-tiny-v1"]
        # stage 1 of tools/pretrain/README.md at other widths; a rerun resumes or reuses a run
        for width in SIZE_WIDTHS[:1] if smoke else SIZE_WIDTHS:
            run = runs / f"moirai-d{width}-v1"
            _pretrain(run, width, stage=1, smoke=smoke)
            candidates.append(_relative(run))
        _compare_backbones(candidates, md, out_dir, root, smoke, verify, split=None)
    elif section == "backbone_size_stage2":
        runs = (out_dir / "runs") if smoke else (REPO / "runs")
        width = SIZE_WIDTHS[-1]
        stage1, stage2 = runs / f"moirai-d{width}-v1", runs / f"moirai-d{width}"
        _pretrain(stage1, width, stage=1, smoke=smoke)
        _pretrain(stage2, width, stage=2, smoke=smoke, init=_relative(stage1))
        candidates = ["moirai-tiny", _relative(stage2)]
        _compare_backbones(candidates, md, out_dir, root, smoke, verify, split="validation")
    elif section == "historical_forecasts":
        script = REPO / "benchmarks" / "darts_historical_forecasts.py"
        cases = [["--data", "airline"], ["--data", "sine3000", "--loop-windows", "300"]]
        if smoke:
            cases = [["--data", "airline", "--max-steps", "1", "--loop-windows", "3"]]
        parts = []
        for i, case in enumerate(cases):
            part = md.with_name(f"{section}.part{i}.md")
            cmd = [sys.executable, str(script), *case, "--threads", "1", "--markdown", str(part)]
            subprocess.run(cmd, check=True, cwd=REPO)
            parts.append(part.read_text(encoding="utf-8"))
        md.write_text("\n".join(parts), encoding="utf-8")
    elif section == "backbone_speed":
        args = ["--reps", "1", "--warmup", "0", "--batch", "1", "--tokens", "64"] if smoke else []
        cmd = [sys.executable, str(REPO / "benchmarks" / "backbone_speed.py"), *args]
        out = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True).stdout
        lines = []
        for ln in out.splitlines():
            if ln.startswith("|") and lines and not lines[-1].startswith("|"):
                lines.append("")  # a Markdown table starts after a blank line
            lines.append(f"- {ln[2:]}" if ln.startswith("# ") else ln)
        command = "python benchmarks/backbone_speed.py " + " ".join(args)
        md.write_text("\n".join(lines) + f"\n\nCommand: `{command.strip()}`\n", encoding="utf-8")
    elif section in ("step_ratio", "import_time"):
        args = {"step_ratio": ["--rounds", "15"], "import_time": ["--rounds", "7"]}[section]
        if smoke:
            args = {"step_ratio": ["--rounds", "1", "--batch", "1", "--context", "64",
                                   "--precisions", "32-true"],
                    "import_time": ["--rounds", "1", "--quick"]}[section]  # fmt: skip
        cmd = [sys.executable, str(REPO / "benchmarks" / f"{section}.py"), *args]
        subprocess.run([*cmd, "--markdown", str(md)], check=True, cwd=REPO)
    elif section == "thread_policy":
        args = ["--steps", "1", "--repeats", "1", "--policies", "PASSIVE"] if smoke else []
        cmd = [sys.executable, str(REPO / "benchmarks" / "thread_policy.py"), *args]
        subprocess.run([*cmd, "--markdown", str(md)], check=True, cwd=REPO)
    else:
        script = {"training_cost": "training_cost.py", "training_cost_units": "training_cost.py",
                  "inference": "inference_throughput.py"}  # fmt: skip
        cmd = [sys.executable, str(REPO / "benchmarks" / script[section])]
        cmd += script_args(section, smoke) + ["--markdown", str(md)]
        subprocess.run(cmd, check=True, cwd=REPO)
    return md


def _relative(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (as tables name runs)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _pretrain(out: Path, width: int, stage: int, smoke: bool, init: str | None = None) -> None:
    """Run (resume, or reuse when finished) a stage of ``tools/pretrain/README.md`` at ``width``.

    Stage 1 is the bundled ``moirai-tiny-v1``'s command (one thread); stage 2 the bundled
    ``moirai-tiny``'s from ``init``, on two threads (how the width-192 stage 2 was run: one
    thread takes 1.5 times as long on these machines; the thread count is in its record).  ``init``
    is named as the README's command names it (relative to the repository when inside it): a
    resumed run must be given the settings it started with.
    """
    cmd = [sys.executable, "-m", "tools.pretrain.pretrain", "--out", str(out)]
    cmd += ["--d-model", str(width), "--num-layers", "4"]
    if stage == 1:
        cmd += ["--max-steps", "2" if smoke else "6186", "--seed", "0", "--threads", "1"]
    else:
        cmd += ["--corpus", "v2", "--init", str(init), "--min-length", "48"]
        cmd += ["--typical-prob", "0.3", "--seed", "1", "--max-steps", "2" if smoke else "10000"]
        cmd += ["--lr", "5e-4", "--warmup-steps", "200", "--threads", "2"]
    subprocess.run(cmd, check=True, cwd=REPO)


def _compare_backbones(
    candidates: list[str], md: Path, out_dir: Path, root: str, smoke: bool, verify: bool,
    split: str | None,
) -> None:  # fmt: skip
    """Zero-shot quality and cost of ``candidates`` (``benchmarks/backbone_selection.py``),
    then their pre-training losses step for step (``benchmarks/pretrain_curves.py``)."""
    section = md.stem
    smoke_args = ["--synthetic-count", "2", "--short-windows", "1", "--skip-lsf",
                  "--cost-repeats", "1"]  # fmt: skip
    cmd = [sys.executable, str(REPO / "benchmarks" / "backbone_selection.py")]
    cmd += ["--backbones", *candidates, "--root", root]
    cmd += [*(smoke_args if smoke else []), *([] if verify else ["--no-verify"])]
    cmd += ["--split", split] if split else []
    part = out_dir / f"{section}.selection.part.md"
    subprocess.run(cmd + ["--markdown", str(part)], check=True, cwd=REPO)
    curves = out_dir / f"{section}.curves.part.md"  # the same runs, step for step
    cmd = [sys.executable, str(REPO / "benchmarks" / "pretrain_curves.py"), *candidates]
    subprocess.run(cmd + ["--markdown", str(curves)], check=True, cwd=REPO)
    md.write_text(
        part.read_text(encoding="utf-8") + "\n" + curves.read_text(encoding="utf-8"),
        encoding="utf-8",
    )


def _results(out_dir: Path, sections: tuple[str, ...]) -> list:
    from msft_forecast.benchmarks.lsf import load_results

    return [
        r
        for name in sections
        if (out_dir / f"{name}.json").is_file()
        for r in load_results(out_dir / f"{name}.json")
    ]


def splice(page: Path, section: str, table: str) -> bool:
    """Replace the text between the section's markers on ``page``; False if it has none."""
    text = page.read_text(encoding="utf-8")
    pattern = re.compile(
        rf"(<!-- reproduce:{section} -->\n).*?(<!-- /reproduce:{section} -->)", re.DOTALL
    )
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda m: m.group(1) + "\n" + table.rstrip() + "\n\n" + m.group(2), text)
    page.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate every table of docs/benchmarks.md.")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "lsf"))
    parser.add_argument("--out-dir", default=str(REPO / "docs" / "results"))
    parser.add_argument("--page", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--smoke", action="store_true", help="tiny budget (CI)")
    parser.add_argument("--no-verify", action="store_true", help="skip dataset checksums")
    parser.add_argument(
        "--jobs", type=int, default=2, help="parallel processes of scale_weighting_h96, fair_h96"
    )
    parser.add_argument(
        "--merge-only",
        action="store_true",
        help="scale_weighting_h96, fair_h96: merge the jobs' existing part files, run nothing",
    )
    parser.add_argument(
        "--splice-only",
        action="store_true",
        help="run nothing: put the sections' existing Markdown from --out-dir into the page",
    )
    args = parser.parse_args(argv)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for section in args.sections:
        print(f"== {section}", flush=True)
        started = time.perf_counter()
        if args.splice_only:
            md = out_dir / f"{section}.md"
            if not md.is_file():
                print(f"   (no {md}; run this section first)")
                continue
        elif args.merge_only and section in ("scale_weighting_h96", "fair_h96"):
            md = out_dir / f"{section}.md"
            parts = [p.with_suffix("") for p in sorted(out_dir.glob(f"{section}.part*.json"))]
            merge = merge_weighting_parts if section == "scale_weighting_h96" else merge_fair_parts
            merge(md, parts)
        else:
            md = run_section(section, out_dir, args.root, args.smoke, not args.no_verify, args.jobs)
        page = Path(args.page)
        if section in SECTION_PAGES:
            page = page.with_name(SECTION_PAGES[section])
        if not page.is_file() or not splice(page, section, md.read_text(encoding="utf-8")):
            print(f"   ({page} has no markers for {section}; table left in {md})")
        print(f"   {section}: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
