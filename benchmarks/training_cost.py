"""Training step time, peak memory and tokens per step of every strategy, fp32 and bf16.

Moirai-small architecture (random weights: cost does not depend on the weights), a fixed batch
of windows (default 8 x context 512 + horizon 96, patch size 32). Each configuration runs in a
fresh subprocess so its peak resident memory is its own. A step is forward + backward + AdamW.

``--backbone units`` measures UniTS instead: random weights in the size of the released
``units_x128`` checkpoint (:data:`UNITS_CONFIG`: d_model 128, 3 blocks, 8 heads, patch 16, 10
prompt tokens), built through ``MultiScaleUnits.build`` as a folder without ``units.json`` is
(new prompt tokens), for every training strategy UniTS implements (:func:`units_strategies`).
Its tokens per step count each scale's prompt tokens too (they run through every block).

    python benchmarks/training_cost.py [--backbone moirai-small] [--batch 8] [--steps 5]
        [--threads 2] [--scales 1 2 4] [--contexts 512 1024] [--markdown FILE]
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
BACKBONES = ("moirai-small", "units")
#: The released UniTS size (``units_x128``; :class:`~msft_forecast.backbones.units.UnitsConfig`).
UNITS_CONFIG = dict(d_model=128, num_layers=3, num_heads=8, patch_len=16, prompt_num=10)


def units_strategies() -> tuple[str, ...]:
    """The strategies of :data:`STRATEGIES` that UniTS implements (its ``SUPPORTED_STRATEGIES``)."""
    from msft_forecast.msft.units_model import SUPPORTED_STRATEGIES

    return tuple(s for s in STRATEGIES if s in SUPPORTED_STRATEGIES)


def build_units(spec):
    """A multi-scale UniTS of the released size with random weights and new prompt tokens."""
    from types import SimpleNamespace

    from msft_forecast.backbones.units import UnitsConfig, UnitsModule
    from msft_forecast.msft.units_model import MultiScaleUnits

    config = UnitsConfig(**UNITS_CONFIG)
    module = UnitsModule(config, {"msft_forecast": 1}).requires_grad_(False)
    settings = {"dataset": "msft_forecast", "variable": 0, "trained_tokens": False}
    loaded = SimpleNamespace(module=module, config=config, raw_config=settings)
    return MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=96)


def measure(
    strategy: str,
    precision: str,
    batch: int,
    steps: int,
    scales: int,
    context: int,
    backbone_name: str = "moirai-small",
) -> dict:
    import copy

    import torch

    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule
    from msft_forecast.msft.adalora import RankAllocator
    from msft_forecast.msft.moirai_model import MultiScaleMoirai
    from msft_forecast.msft.strategies import resolve_strategy
    from msft_forecast.training.lightning import adamw, parameter_groups

    torch.manual_seed(0)
    spec = resolve_strategy(strategy, num_scales=scales)
    if backbone_name == "units":
        model = build_units(spec)
    else:
        backbone = MoiraiModule(MoiraiConfig.small()).requires_grad_(False)
        backbone = copy.deepcopy(backbone) if spec.train_backbone else backbone
        model = MultiScaleMoirai(backbone, spec, 32)
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
    if backbone_name == "units":  # each scale's prompt tokens run through every block too
        tokens += batch * spec.num_scales * UNITS_CONFIG["prompt_num"]
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
    parser.add_argument("--backbone", choices=BACKBONES, default="moirai-small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", type=int, nargs="+", default=[512])
    parser.add_argument("--markdown", default=None, help="also write the table here")
    parser.add_argument("--scales", type=int, nargs="+", default=[4])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--strategies", nargs="+", default=None, help="default: every one the backbone has"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    units = args.backbone == "units"
    supported = units_strategies() if units else STRATEGIES
    if args.strategies is None:
        args.strategies = list(supported)
    refused = [s for s in args.strategies if s not in supported]
    if refused:
        parser.error(f"{args.backbone} does not implement {refused}; choose among {supported}")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        strategy, precision, scales = args.child.split(",")
        row = measure(
            strategy,
            precision,
            args.batch,
            args.steps,
            int(scales),
            args.contexts[0],
            args.backbone,
        )
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
    ]
    if units:
        lines[-1] = (
            "- UniTS architecture of the released units_x128 checkpoint ("
            + ", ".join(f"{k} {v}" for k, v in UNITS_CONFIG.items())
            + f"), random weights, new prompt tokens; batch {args.batch} x (context + "
            f"horizon 96); tokens/step include each scale's prompt tokens; median of "
            f"{args.steps} steps after 2 warm-up; each row in a fresh process"
        )
        skipped = [s for s in STRATEGIES if s not in supported]
        if skipped:  # none since UniTS runs AdaLoRA and prompt tuning (issue 20)
            refused = ", ".join(skipped)
            lines.append(f"- not implemented for UniTS (refused with a message): {refused}")
    lines += [
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
                        "--backbone",
                        args.backbone,
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
