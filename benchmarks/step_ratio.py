"""The MSFT training step against a LoRA step, paired in one process, on Moirai-small.

    python benchmarks/step_ratio.py [--rounds 15] [--batch 8] [--threads 2] [--markdown FILE]

One process holds the models (Moirai-small architecture, random weights: cost does not depend
on the weights; one frozen backbone shared by all of them, as the engine shares it), a fixed
batch of windows (context 512 + horizon 96, patch size 32) and the package's optimizer
(:func:`msft_forecast.training.lightning.adamw`: fused AdamW where torch has it).  Every round
runs one step of each model in turn, so load from other processes hits them alike; the table
gives each model's median step time and the median of the per-round ratios to LoRA.  A step is
forward, loss, backward and the optimizer step, under the CPU default precision (bf16 autocast)
and in float32.  ``msft (unfused AdamW)`` is the same MSFT step with torch's default AdamW, so
its ratio to ``msft`` is what the fused optimizer saves.  ``msft without aggregator`` and
``msft without aggregator, one LoRA`` take MSFT's parts away one at a time (the same scales,
adapters and losses), so the differences between the rows say where MSFT's extra cost lies.

A second table times MSFT's per-layer parts alone, forward and backward, on the inputs they get
in the model (one layer of the same batch): the per-scale LoRA update of one projection next to
one LoRA pair on the same tokens (what a shared LoRA costs), the cross-scale aggregator, and
the throughput of the matrix products involved (the aggregator's low-rank products against the
backbone's feed-forward product), so the table says whether a part's cost is its FLOPs or the
matrix library's rate on small shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def build(strategy: str, backbone, scales: int, fused: bool, **options):
    import copy

    from msft_forecast.backbones.cache import structural_copy
    from msft_forecast.msft.moirai_model import MultiScaleMoirai
    from msft_forecast.msft.strategies import resolve_strategy
    from msft_forecast.training.lightning import adamw, parameter_groups

    spec = resolve_strategy(strategy, num_scales=scales, **options)
    # each model owns a structural copy, as in the engine: models built on one module would
    # write their LoRA and aggregators into each other's slots
    owned = copy.deepcopy(backbone) if spec.train_backbone else structural_copy(backbone)
    model = MultiScaleMoirai(owned, spec, 32)
    model.train()
    return model, adamw(parameter_groups(model, 1e-3, 1e-2, 0.1), fused=fused)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed", "32-true"])
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)

    import torch

    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule
    from msft_forecast.benchmarks.lsf import environment

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = MoiraiModule(MoiraiConfig.small()).requires_grad_(False)
    models = {
        "lora": build("lora", backbone, 1, fused=True),
        "msft": build("msft", backbone, args.scales, fused=True),
        "msft (unfused AdamW)": build("msft", backbone, args.scales, fused=False),
        # where MSFT's cost lies: without the aggregator, then also with one shared LoRA
        "msft without aggregator": build("msft", backbone, args.scales, True, aggregator=False),
        "msft without aggregator, one LoRA": build(
            "msft", backbone, args.scales, True, aggregator=False, shared_lora=True
        ),
    }
    t = torch.arange(args.context + 96, dtype=torch.float32)
    y = torch.sin(2 * torch.pi * t / 24) + 0.1 * torch.randn(args.batch, args.context + 96)
    ctx, hor = y[:, : args.context], y[:, args.context :]
    batch = (
        ctx,
        torch.ones_like(ctx, dtype=torch.bool),
        hor,
        torch.ones_like(hor, dtype=torch.bool),
    )

    def step(model, opt, bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model.loss(*batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    env = environment()
    lines = [
        f"- machine: {env['cpu']} | torch {env['torch']} | threads {args.threads} | load "
        f"{env['load']} at the start, {', '.join(f'{x:.1f}' for x in os.getloadavg())} at the "
        f"end | commit {env['commit']}",
        f"- Moirai-small architecture, batch {args.batch} x (context {args.context} + horizon "
        f"96), patch 32, {args.scales} scales for msft; {args.rounds} rounds after 2 warm-up "
        "rounds, the models alternated within each round",
        "- command: python benchmarks/step_ratio.py " + " ".join(argv or sys.argv[1:]),
        "",
        "| precision | model | median step (s) | median ratio to lora |",
        "|---|---|---|---|",
    ]
    times_lora: dict[str, float] = {}
    for precision in args.precisions:
        bf16 = precision == "bf16-mixed"
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.rounds + 2):
            for name, (model, opt) in models.items():
                elapsed = step(model, opt, bf16)
                if r >= 2:
                    times[name].append(elapsed)
        times_lora[precision] = statistics.median(times["lora"])
        for name in models:
            ratios = [a / b for a, b in zip(times[name], times["lora"], strict=True)]
            lines.append(
                f"| {precision} | {name} | {statistics.median(times[name]):.3f} | "
                f"{statistics.median(ratios):.2f}x |"
            )
    lines += part_costs(models["msft"][0], batch, args.precisions, times_lora, args.rounds)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(table)
    return table


def _timed(fn, grad, rounds: int, bf16: bool) -> float:
    """Median seconds of ``fn()`` forward and backward (with ``grad``) under the precision."""
    import torch

    times = []
    for r in range(rounds + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fn()
        out.backward(grad.to(out.dtype))
        if r >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_costs(model, batch, precisions, lora_step: dict, rounds: int) -> list[str]:
    """Lines of the parts table: each per-layer part of MSFT alone, on the inputs it gets."""
    import torch

    from msft_forecast.msft.modules import CrossScaleAggregator, ScaleLoRA

    lora = next(m for m in model.modules() if isinstance(m, ScaleLoRA))
    aggregator = next(m for m in model.modules() if isinstance(m, CrossScaleAggregator))
    n_lora = sum(isinstance(m, ScaleLoRA) for m in model.modules())
    n_agg = sum(isinstance(m, CrossScaleAggregator) for m in model.modules())
    seen: dict = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, key=key: seen.setdefault(key, args))
        for key, m in (("lora", lora), ("aggregator", aggregator))
    ]
    with torch.no_grad():
        model.loss(*batch)
    for hook in hooks:
        hook.remove()
    (x, ctx), (h, _) = seen["lora"], seen["aggregator"]
    x = x.detach().float().requires_grad_(True)
    h = h.detach().float().requires_grad_(True)
    one_pair = ScaleLoRA(x.shape[-1], lora.lora_B.shape[1], 1, lora.lora_A.shape[1])
    grad_x, grad_h = torch.randn_like(x), torch.randn_like(h)
    parts = [
        (f"per-scale LoRA, {len(ctx.spans)} scales (one projection)", n_lora,
         lambda: lora(x, ctx), grad_x),
        ("one LoRA pair on the same tokens (one projection)", n_lora,
         lambda: one_pair(x, None), grad_x),
        ("cross-scale aggregator (one layer)", n_agg, lambda: aggregator(h, ctx), grad_h),
    ]  # fmt: skip
    tokens = x.shape[0] * x.shape[1]
    lines = [
        "",
        f"MSFT's parts alone, forward and backward, on the inputs of one layer ({tokens} tokens "
        f"of width {x.shape[-1]}; the scales' spans {[s.stop - s.start for s in ctx.spans]} "
        f"tokens per row); 'per step' multiplies by the {n_lora} LoRA modules or {n_agg} "
        "aggregators of the model:",
        "",
        "| precision | part | median (ms) | per step (ms) | per step / lora step |",
        "|---|---|---|---|---|",
    ]
    for precision in precisions:
        bf16 = precision == "bf16-mixed"
        for name, count, fn, grad in parts:
            sec = _timed(fn, grad, max(rounds * 4, 3), bf16)
            lines.append(
                f"| {precision} | {name} | {sec * 1e3:.2f} | {sec * count * 1e3:.1f} | "
                f"{sec * count / lora_step[precision]:.2f}x |"
            )
    # the rate of the float32 products: the aggregator's (rank 64) against the FFN's
    d = x.shape[-1]
    rank = aggregator.coarse_to_fine[0].down.weight.shape[0]
    shapes = [(rows, d, rank) for rows in sorted({x.shape[0] * (s.stop - s.start)
                                                  for s in ctx.spans})]  # fmt: skip
    from msft_forecast.backbones.moirai import GatedFeedForward

    ffn = next(m for m in model.modules() if isinstance(m, GatedFeedForward))
    shapes.append((tokens, d, ffn.fc1.out_features))
    lines += ["", "| float32 product (rows x in -> out) | median (us) | GFLOP/s |", "|---|---|---|"]
    for rows, k, n in shapes:
        a, w = torch.randn(rows, k), torch.randn(k, n)
        times = []
        for _ in range(max(rounds * 20, 5)):
            start = time.perf_counter()
            a @ w
            times.append(time.perf_counter() - start)
        sec = statistics.median(times)
        rate = 2 * rows * k * n / sec / 1e9
        lines.append(f"| {rows} x {k} -> {n} | {sec * 1e6:.0f} | {rate:.0f} |")
    return lines


if __name__ == "__main__":
    main()
