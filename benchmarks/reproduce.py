"""Regenerate every table of ``docs/benchmarks.md`` with one command.

    python benchmarks/reproduce.py                 # everything (about 1.5 h on 2 CPU cores)
    python benchmarks/reproduce.py --sections ablations inference
    python benchmarks/reproduce.py --smoke --root DIR --out-dir DIR --page FILE   # CI

Each section writes ``<out-dir>/<section>.md`` (and ``.json`` for the accuracy runs), then the
Markdown is spliced into the page between ``<!-- reproduce:SECTION -->`` and
``<!-- /reproduce:SECTION -->``; prose outside the markers is left alone.  Every table carries
the machine, torch version, commit, settings and the exact command that made it.

Sections:

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
    of the two sections above (no new runs).
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
SECTIONS = (
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
    """Command line of the speed script behind ``sampling``
        blend vs mixture sampling of the same fitted MSFT models (CRPS, coverage), from the JSON
        of the two sections above (no new runs).
    ``training_cost`` or ``inference``."""
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


def run_section(section: str, out_dir: Path, root: str, smoke: bool, verify: bool) -> Path:
    """Run one section; returns the Markdown file it wrote."""
    md = out_dir / f"{section}.md"
    if section in ACCURACY_SECTIONS:
        from msft_forecast.benchmarks.lsf import main as lsf_main

        argv = ["--root", root, *lsf_args(section, smoke)]
        argv += [] if verify else ["--no-verify"]
        argv += ["--json", str(out_dir / f"{section}.json"), "--markdown", str(md)]
        lsf_main(argv)
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

        results = _results(out_dir, ("foundation_h96", "ablations", "ablations_etth1"))
        md.write_text(
            "Same fitted models, scales combined two ways (from `foundation_h96.json`, "
            "`ablations.json` and `ablations_etth1.json`):\n\n" + sampling_table(results) + "\n",
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
        else:
            md = run_section(section, out_dir, args.root, args.smoke, not args.no_verify)
        if not splice(Path(args.page), section, md.read_text(encoding="utf-8")):
            print(f"   ({args.page} has no markers for {section}; table left in {md})")


if __name__ == "__main__":
    main()
