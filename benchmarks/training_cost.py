"""Training step time, peak memory and tokens per step of every strategy, fp32 and bf16.

Moirai-small architecture (random weights: cost does not depend on the weights), a fixed batch
of windows (default 8 x context 512 + horizon 96, patch size 32). Each configuration runs in a
fresh subprocess so its peak resident memory is its own. A step is forward + backward + AdamW.

    python benchmarks/training_cost.py [--batch 8] [--steps 5] [--threads 2] [--scales 1 2 4]
        [--contexts 512 1024] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

STRATEGIES = ("linear-probe", "lora", "adalora", "prompt-tuning", "full", "msft")


def measure(
    strategy: str, precision: str, batch: int, steps: int, scales: int, context: int
) -> dict:
    import copy

    import torch

    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule
    from msft_forecast.msft.adalora import RankAllocator
    from msft_forecast.msft.moirai_model import MultiScaleMoirai
    from msft_forecast.msft.strategies import resolve_strategy
    from msft_forecast.training.lightning import adamw, parameter_groups

    torch.manual_seed(0)
    backbone = MoiraiModule(MoiraiConfig.small()).requires_grad_(False)
    spec = resolve_strategy(strategy, num_scales=scales)
    model = MultiScaleMoirai(copy.deepcopy(backbone) if spec.train_backbone else backbone, spec, 32)
    model.train()
    opt = adamw(parameter_groups(model, 1e-4, 1e-2, 0.1))  # the package's optimizer (fused)
    allocator = RankAllocator.for_model(model, steps + 2)  # AdaLoRA's step includes allocation
    t = torch.arange(context + 96, dtype=torch.float32)
    y = torch.sin(2 * torch.pi * t / 24) + 0.1 * torch.randn(batch, context + 96)
    ctx, hor = y[:, :context], y[:, context:]
    args = (
        ctx,
        torch.ones_like(ctx, dtype=torch.bool),
        hor,
        torch.ones_like(hor, dtype=torch.bool),
    )
    times, losses = [], []
    for i in range(steps + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss, _ = model.loss(*args)
        loss.backward()
        opt.step()
        if allocator is not None:
            allocator.update_and_allocate(i + 1)
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
            losses.append(float(loss))
    tokens = batch * model.token_layout(context, 96).num_tokens
    return {
        "strategy": strategy,
        "precision": precision,
        "scales": spec.num_scales,
        "step_s": statistics.median(times),
        "tokens_per_step": tokens,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_loss": losses[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", type=int, nargs="+", default=[512])
    parser.add_argument("--markdown", default=None, help="also write the table here")
    parser.add_argument("--scales", type=int, nargs="+", default=[4])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        strategy, precision, scales = args.child.split(",")
        row = measure(strategy, precision, args.batch, args.steps, int(scales), args.contexts[0])
        print(json.dumps(row))
        return

    from msft_forecast.benchmarks.lsf import environment

    env = environment()
    env["threads"] = str(args.threads)
    lines = [
        f"- machine: {env['cpu']} | torch {env['torch']} | threads {env['threads']} | load "
        f"{env['load']} | commit {env['commit']}",
        f"- Moirai-small architecture, batch {args.batch} x (context + horizon 96), patch 32, "
        f"median of {args.steps} steps after 2 warm-up; each row in a fresh process",
        "- command: python benchmarks/training_cost.py " + " ".join(sys.argv[1:]),
        "",
        "| strategy | scales | context | precision | step (s) | tokens/step | tokens/s | "
        "trainable | peak RSS (MB) | first loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for context in args.contexts:
        for strategy in args.strategies:
            for scales in args.scales if strategy == "msft" else [1]:
                for precision in args.precisions:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        f"{strategy},{precision},{scales}",
                        "--batch",
                        str(args.batch),
                        "--steps",
                        str(args.steps),
                        "--threads",
                        str(args.threads),
                        "--contexts",
                        str(context),
                    ]
                    out = subprocess.run(
                        cmd,
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
                    )
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    line = (
                        f"| {r['strategy']} | {r['scales']} | {context} | {r['precision']} | "
                        f"{r['step_s']:.3f} | {r['tokens_per_step']} | "
                        f"{r['tokens_per_step'] / r['step_s']:.0f} | {r['trainable']:,} | "
                        f"{r['peak_rss_mb']:.0f} | {r['first_loss']:.4f} |"
                    )
                    lines.append(line)
                    print(line, flush=True)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
