"""Regenerate every table of ``docs/benchmarks.md`` with one command.

    python benchmarks/reproduce.py                 # everything (about 2.5 h on 2 CPU cores)
    python benchmarks/reproduce.py --sections ablations inference
    python benchmarks/reproduce.py --smoke --root DIR --out-dir DIR --page FILE   # CI

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
    linear-probe, lora, full and msft (blend and mixture sampling).
``peers_h96``
    the same windows for the from-scratch peers (DLinear, NLinear, PatchTST, TimeMixer,
    iTransformer) and the classical baselines (last value, seasonal naive, Theta).
``headline``
    MSE and MAE of everything in the two sections above in one table per metric (from their
    JSON; no new runs).
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
``inference``
    forecast throughput of zero-shot vs MSFT by context length
    (``benchmarks/inference_throughput.py``).
``reported``
    the numbers the MSFT and Moirai papers report, labelled as reported.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather"]
STRATEGIES = ["zero-shot", "linear-probe", "lora", "full", "msft"]
PEERS = ["dlinear", "nlinear", "patchtst", "timemixer", "itransformer"]
BASELINES = ["last-value", "seasonal-naive", "theta"]
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
    "headline",
    "ablations",
    "ablations_etth1",
    "sampling",
    "precision",
    "training_cost",
    "inference",
    "reported",
)
#: Sections that fit models and write JSON.
ACCURACY_SECTIONS = ("foundation_h96", "peers_h96", "ablations", "ablations_etth1")


def lsf_args(section: str, smoke: bool) -> list[str]:
    """Arguments of ``python -m msft_forecast.benchmarks.lsf`` for an accuracy section."""
    if section == "foundation_h96":
        models, datasets, seeds = STRATEGIES, DATASETS, ["0"]
    elif section == "peers_h96":
        models, datasets, seeds = PEERS + BASELINES, DATASETS, ["0"]
    elif section == "ablations":
        models, datasets, seeds = ABLATIONS, ["ETTm1", "Weather"], ["0", "1"]
    else:  # ablations_etth1: the dataset where MSFT lost to zero-shot
        models, datasets, seeds = ABLATIONS, ["ETTh1"], ["0", "1"]
    budget = ["--stride", "288", "--max-steps", "200", "--val-check-interval", "25"]
    if smoke:
        datasets, seeds = ["ETTh1"], ["0"]
        budget = [
            "--stride", "2000", "--max-steps", "2", "--val-check-interval", "1",
            "--context", "96", "--horizon", "24", "--num-samples", "10", "--channels", "OT",
        ]  # fmt: skip
    return [
        "--datasets", *datasets, "--strategies", *models, "--seeds", *seeds,
        "--sampling", "blend", "mixture", *budget,
    ]  # fmt: skip


def script_args(section: str, smoke: bool) -> list[str]:
    """Command line of the speed script behind ``training_cost`` or ``inference``."""
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
    budget = ["--stride", *WEIGHTING_STRIDES, "--max-steps", "200", "--val-check-interval", "50"]
    seeds = ["0", "1", "2"]
    if smoke:
        seeds = ["0"]
        budget = [
            "--stride", "2000", "--max-steps", "2", "--val-check-interval", "1",
            "--context", "96", "--horizon", "24", "--num-samples", "10", "--channels", "OT",
        ]  # fmt: skip
    return [
        "--strategies", *WEIGHTING_MODELS, "--seeds", *seeds, "--sampling", "mixture", "blend",
        "--rescore-weights", "uniform", "finest", "--rescore-models", "msft", *budget,
    ]  # fmt: skip


def run_weighting_section(md: Path, root: str, smoke: bool, verify: bool, jobs: int) -> None:
    """Run ``scale_weighting_h96`` as single-threaded processes, merge, write tables.

    Two single-threaded processes use two cores better than one two-threaded process (the
    threads of one small model wait on each other): ``jobs=1`` runs every dataset in one
    process, more runs the two groups of :data:`WEIGHTING_GROUPS`. Every job's header and
    command are kept.
    """
    if smoke:
        groups = [["ETTh1"]]
    elif jobs == 1:
        groups = [[d for g in WEIGHTING_GROUPS for d in g]]
    else:
        groups = WEIGHTING_GROUPS
    procs, parts = [], []
    for i, group in enumerate(groups):
        part = md.with_name(f"{md.stem}.part{i}")
        argv = ["--root", root, "--datasets", *group, *weighting_args(smoke)]
        argv += [] if verify else ["--no-verify"]
        argv += ["--json", str(part) + ".json", "--markdown", str(part) + ".md"]
        cmd = [sys.executable, "-m", "msft_forecast.benchmarks.lsf", *argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env))
        parts.append(part)
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a scale_weighting_h96 job failed; see its output above")
    merge_weighting_parts(md, parts)


def merge_weighting_parts(md: Path, parts: list[Path]) -> None:
    """Merge the jobs' JSON into ``<section>.json`` and write the section's Markdown."""
    import json

    from msft_forecast.benchmarks.lsf import (
        load_results,
        markdown_table,
        paired_table,
        save,
        summary_table,
        weights_table,
    )

    if not parts:
        raise SystemExit(f"no {md.stem}.part*.json next to {md}: run the section first")
    results, headers = [], []
    for part in parts:
        results += load_results(str(part) + ".json")
        text = Path(str(part) + ".md").read_text(encoding="utf-8")
        headers.append("\n".join(text.splitlines()[:3]))
        env = json.loads(Path(str(part) + ".json").read_text(encoding="utf-8"))["environment"]
    save(results, md.with_suffix(".json"), {**env, "parts": [str(p.name) for p in parts]})
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
    elif section == "headline":
        from msft_forecast.benchmarks.lsf import summary_table

        results = _results(out_dir, ("foundation_h96", "peers_h96"))
        md.write_text(
            "From `foundation_h96.json` and `peers_h96.json` (settings in their sections); "
            "best per dataset in bold.\n\nMSE:\n\n"
            + summary_table(results, "mse")
            + "\n\nMAE:\n\n"
            + summary_table(results, "mae")
            + "\n",
            encoding="utf-8",
        )
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

        budget = ["--stride", "24", "--max-steps", "200", "--val-check-interval", "25"]
        if smoke:
            budget = ["--stride", "2000", "--max-steps", "2", "--val-check-interval", "1",
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
    else:
        script = {"training_cost": "training_cost.py", "inference": "inference_throughput.py"}
        cmd = [sys.executable, str(REPO / "benchmarks" / script[section])]
        cmd += script_args(section, smoke) + ["--markdown", str(md)]
        subprocess.run(cmd, check=True, cwd=REPO)
    return md


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
        "--jobs", type=int, default=2, help="parallel processes of scale_weighting_h96"
    )
    parser.add_argument(
        "--merge-only",
        action="store_true",
        help="scale_weighting_h96: merge the jobs' existing part files, run nothing",
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
        if args.splice_only:
            md = out_dir / f"{section}.md"
            if not md.is_file():
                print(f"   (no {md}; run this section first)")
                continue
        elif args.merge_only and section == "scale_weighting_h96":
            md = out_dir / f"{section}.md"
            parts = sorted(out_dir.glob(f"{section}.part*.json"))
            merge_weighting_parts(md, [p.with_suffix("") for p in parts])
        else:
            md = run_section(section, out_dir, args.root, args.smoke, not args.no_verify, args.jobs)
        if not splice(Path(args.page), section, md.read_text(encoding="utf-8")):
            print(f"   ({args.page} has no markers for {section}; table left in {md})")


if __name__ == "__main__":
    main()
