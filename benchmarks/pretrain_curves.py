"""Pre-training runs compared step for step: the training loss of several runs of one recipe.

    python benchmarks/pretrain_curves.py moirai-tiny-v1 runs/moirai-d64-v1 runs/moirai-d192-v1

A run is a bundled backbone name, or a pre-training folder (its ``training_record.json`` once
finished, else its ``state.pt``, so a run can be compared while it trains). Runs of the same
recipe and seed read the same synthetic windows in the same order (the corpus comes from one
seeded NumPy generator, independent of the model), and every window is new, so their training
losses at equal steps are a paired comparison on the same unseen data: a held-out loss in all
but name. The table gives, per range of steps, each run's mean loss (``nll_scaled``: the
negative log-likelihood in units of each window's scale, the part of the loss that does not
depend on the data's magnitude) and the share of 25-step blocks in which it is below the first
run's; and each run's seconds per step as recorded (wall time on one thread: comparable only
between runs on equally loaded machines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the pre-training code (tools/pretrain/) is not installed
    sys.path.insert(0, str(ROOT))

EVERY = 25


def curve(run: str) -> tuple[dict[int, float], float, int]:
    """Block means of ``nll_scaled`` by last step, seconds per step and steps done."""
    from msft_forecast.backbones.checkpoint import bundled_checkpoint_dir

    folder = Path(run)
    if not folder.exists():
        folder = bundled_checkpoint_dir(run)
    record = folder / "training_record.json"
    if record.is_file():
        r = json.loads(record.read_text(encoding="utf-8"))
        if r["loss_curve_every"] != EVERY:
            raise ValueError(f"{run}: loss curve every {r['loss_curve_every']} steps, not {EVERY}")
        blocks = {c["step"]: c["nll_scaled"] for c in r["loss_curve"]}
        return blocks, r["train_wall_time_s"] / r["steps"], int(r["steps"])
    import torch

    from tools.pretrain.pretrain import TrainState, loss_curve

    payload = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    st = TrainState(**json.loads(payload["train_state"]))
    blocks = {c["step"]: c["nll_scaled"] for c in loss_curve(st, EVERY)}
    return blocks, st.elapsed_s / max(st.step, 1), int(st.step)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="the first is the reference")
    parser.add_argument("--ranges", type=int, default=6, help="step ranges in the table")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    curves = {run: curve(run) for run in args.runs}
    common = sorted(set.intersection(*(set(c[0]) for c in curves.values())))
    # no common block yet (a run shorter than one block): the table is empty, not an error
    edges = np.linspace(0, common[-1] if common else 0, args.ranges + 1).round().astype(int)
    ref = curves[args.runs[0]][0]
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "- steps done: "
        + ", ".join(f"{run} {c[2]}" for run, c in curves.items())
        + f"; compared on the {len(common)} blocks of {EVERY} steps all have; seconds per step "
        + ", ".join(f"{run} {c[1]:.2f}" for run, c in curves.items())
        + f"; command: python benchmarks/pretrain_curves.py {shown}",
        "",
        "| steps | " + " | ".join(args.runs) + " | " + " | ".join(
            f"{run} below {args.runs[0]}" for run in args.runs[1:]
        ) + " |",
        "|---|" + "---|" * (2 * len(args.runs) - 1),
    ]  # fmt: skip
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        steps = [s for s in common if lo < s <= hi]
        if not steps:
            continue
        means = [np.mean([curves[r][0][s] for s in steps]) for r in args.runs]
        below = [np.mean([curves[r][0][s] < ref[s] for s in steps]) for r in args.runs[1:]]
        lines.append(
            f"| {lo + 1}-{hi} | "
            + " | ".join(f"{m:.4f}" for m in means)
            + " | "
            + " | ".join(f"{b:.0%}" for b in below)
            + " |"
        )
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
