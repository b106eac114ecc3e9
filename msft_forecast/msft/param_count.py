"""Trainable parameters of every strategy: the closed-form count and the built model's count.

Run ``python -m msft_forecast.msft.param_count`` (defaults: Moirai-small architecture, random
weights, no download) to print the table.  With ``d`` the model width, ``L`` layers,
``S`` scales, LoRA rank ``r`` on ``T`` projections of shape ``d x d`` and aggregator rank
``a``::

    adapters    S (d^2 + d)
    LoRA        L |T| S r (d + d)          (S -> 1 when shared, and for "lora")
    AdaLoRA     L |T| r0 (d + d + 1)       (r0 = ceil(1.5 r) initial rank; P, Q and lambda)
    prompts     n d                        (n = num_prompt_tokens)
    aggregator  L (S - 1) 2 (2 d a)        (2 d^2 per map when a is None: full maps)
    head        parameters of the distribution projection (all patch sizes)
    weights     S                          (scale logits, when S > 1: validation, learned,
                                            paper; plus S fitted weights for validation)

``"msft"`` trains adapters, LoRA, aggregator, head and weights, ``"lora"`` LoRA + head,
``"adalora"`` AdaLoRA + head (pruned singular values stay tensors: the count is that of the
initial rank; the rank masks are buffers, not parameters), ``"prompt-tuning"`` the prompts
(on MOMENT also its new heads), ``"linear-probe"`` the head, ``"full"`` every backbone weight,
``"zero-shot"`` nothing.

``--backbone moment`` prints the same for the MOMENT-small architecture (horizon 96): its
per-scale linear heads (scale ``k``: ``N_k d`` inputs, ``ceil(H / 2^k)`` outputs) are trained by
every strategy, prompt tuning included; LoRA maps ``d -> h d_kv`` on q, k, v and ``h d_kv -> d``
on ``"out"``.  ``--backbone units`` prints the same for a UniTS architecture (defaults: the released
``units_x128`` size, d_model 128, 3 blocks, patch 16, 10 prompt tokens) and the strategies UniTS
implements (``msft/units_model.py``).  Its LoRA goes on the time attention (``T`` among q, k, v,
``out``), its head is the forecasting head, and every training strategy also trains the data
set's prompt and mask tokens, ``(prompt_num + 1) d``; ``"full"`` trains the backbone without the
prompt tokens of other data sets, and ``"prompt-tuning"`` trains those tokens alone (it adds no
``num_prompt_tokens`` prompts: UniTS tunes its own).
"""

from __future__ import annotations

import argparse
import dataclasses
from types import SimpleNamespace

from torch import nn

from msft_forecast.msft.mixing import TRAINED_WEIGHTINGS
from msft_forecast.msft.strategies import FIT_STRATEGIES, StrategySpec, resolve_strategy


def moirai_trainable_formula(
    spec: StrategySpec,
    d_model: int,
    num_layers: int,
    head_parameters: int,
    backbone_parameters: int,
) -> int:
    """Closed-form number of trainable parameters of a multi-scale Moirai (see module doc)."""
    if not spec.trains:
        return 0
    if spec.train_backbone:
        return backbone_parameters + (spec.num_scales if spec.num_scales > 1 else 0)
    s, d, n = spec.num_scales, d_model, num_layers
    total = head_parameters if spec.train_head else 0
    if spec.scale_adapters:
        total += s * (d * d + d)
    per_lora = (1 if spec.shared_lora or s == 1 else s) * spec.lora_rank * 2 * d
    if spec.adalora:
        per_lora = spec.adalora_init_rank * (2 * d + 1)
    attn_targets = [t for t in spec.lora_targets if t != "ffn"]
    total += n * len(attn_targets) * per_lora
    total += spec.prompt_tokens * d
    if spec.aggregator:
        per_map = d * d if spec.aggregator_rank is None else 2 * d * spec.aggregator_rank
        total += n * (s - 1) * 2 * per_map
    if s > 1 and spec.scale_weighting in TRAINED_WEIGHTINGS:
        total += s
    if s > 1 and spec.scale_weighting == "validation":
        total += s  # the fitted inference weights, kept with the trainable tensors
    return total


def units_trainable_formula(
    spec: StrategySpec,
    d_model: int,
    num_layers: int,
    prompt_num: int,
    head_parameters: int,
    backbone_parameters: int,
) -> int:
    """Closed-form number of trainable parameters of a multi-scale UniTS (see module doc);
    ``backbone_parameters`` excludes prompt and mask tokens."""
    if not spec.trains:
        return 0
    tokens = (prompt_num + 1) * d_model  # the data set's prompt and mask tokens
    if spec.train_backbone:
        return backbone_parameters + tokens + (spec.num_scales if spec.num_scales > 1 else 0)
    # the LoRA, AdaLoRA, adapter, aggregator and weight terms are Moirai's (the same modules);
    # the head is UniTS' forecasting head, and no prompts are added (prompt tuning tunes the
    # data set's own tokens, counted above)
    return tokens + moirai_trainable_formula(
        dataclasses.replace(spec, prompt_tokens=0), d_model, num_layers, head_parameters,
        backbone_parameters,
    )  # fmt: skip


def moment_trainable_formula(
    spec: StrategySpec, config, horizon_length: int, backbone_parameters: int
) -> int:
    """Closed-form number of trainable parameters of a multi-scale MOMENT (see module doc):
    its per-scale linear heads are always trained; LoRA maps ``d -> h d_kv`` (q, k, v),
    ``h d_kv -> d`` (``"out"``) and the gated feed-forward's ``d -> d_ff`` twice and
    ``d_ff -> d`` (``"ffn"``)."""
    if not spec.trains:
        return 0
    s, d, n = spec.num_scales, config.d_model, config.num_layers
    patches = config.seq_len // config.patch_len
    heads = sum(
        ((patches >> k) * d + 1) * -(-horizon_length // 2**k) for k in range(s)
    )  # scale k: its patches x d -> ceil(H / 2^k)
    weights = (s if spec.scale_weighting in TRAINED_WEIGHTINGS else 0) if s > 1 else 0
    weights += s if s > 1 and spec.scale_weighting == "validation" else 0
    if spec.train_backbone:
        return backbone_parameters + heads + weights
    inner, ff = config.inner_dim, config.d_ff
    shapes = {"q": [(d, inner)], "k": [(d, inner)], "v": [(d, inner)], "out": [(inner, d)],
              "ffn": [(d, ff), (d, ff), (ff, d)]}  # fmt: skip
    total = heads + weights + spec.prompt_tokens * d
    if spec.scale_adapters:
        total += s * (d * d + d)
    for target in spec.lora_targets:
        for fan_in, fan_out in shapes[target]:
            if spec.adalora:
                total += n * spec.adalora_init_rank * (fan_in + fan_out + 1)
            else:
                copies = 1 if spec.shared_lora or s == 1 else s
                total += n * copies * spec.lora_rank * (fan_in + fan_out)
    if spec.aggregator:
        per_map = d * d if spec.aggregator_rank is None else 2 * d * spec.aggregator_rank
        total += n * (s - 1) * 2 * per_map
    return total


def moment_table(size: str = "small", num_scales: int = 4, **overrides) -> list[dict]:
    """Formula and built-model counts for every strategy MOMENT runs (all but zero-shot), on a
    MOMENT architecture (``MomentConfig.preset(size, **overrides)``), horizon 96."""
    import torch

    from msft_forecast.backbones.moment import MomentConfig, MomentModule
    from msft_forecast.msft.layout import TokenLayout
    from msft_forecast.msft.moment_model import MultiScaleMoment

    torch.manual_seed(0)
    config = MomentConfig.preset(size, **overrides)
    backbone = MomentModule(config).requires_grad_(False)
    total = sum(p.numel() for p in backbone.parameters())
    loaded = SimpleNamespace(module=backbone, config=config)
    rows = []
    for name in FIT_STRATEGIES:
        spec = resolve_strategy(name, num_scales=num_scales)
        built = 0  # MOMENT refuses zero-shot: no forecasting head from pre-training
        if spec.trains:
            model = MultiScaleMoment.build(loaded, spec, patch_size=None, horizon_length=96)
            built = count_trainable(model)
        rows.append(
            {
                "strategy": name,
                "trainable (model)": built,
                "trainable (formula)": moment_trainable_formula(spec, config, 96, total),
                "backbone": total,
                "tokens per window (C=512)": TokenLayout(
                    config.seq_len, 0, config.patch_len, spec.num_scales
                ).num_tokens
                + spec.prompt_tokens,
            }
        )
    return rows


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def table(d_model: int = 384, num_layers: int = 6, num_scales: int = 4) -> list[dict]:
    """Formula and built-model counts for every strategy on a Moirai architecture."""
    import copy

    import torch

    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule
    from msft_forecast.msft.layout import TokenLayout
    from msft_forecast.msft.moirai_model import MultiScaleMoirai

    torch.manual_seed(0)
    config = MoiraiConfig(d_model, num_layers, (8, 16, 32, 64, 128), 512)
    backbone = MoiraiModule(config).requires_grad_(False)
    head = sum(p.numel() for p in backbone.param_proj.parameters())
    total = sum(p.numel() for p in backbone.parameters())
    rows = []
    for name in FIT_STRATEGIES:
        spec = resolve_strategy(name, num_scales=num_scales)
        model = MultiScaleMoirai(copy.deepcopy(backbone), spec, 32)
        tokens = TokenLayout(512, 96, 32, spec.num_scales).num_tokens + spec.prompt_tokens
        rows.append(
            {
                "strategy": name,
                "trainable (model)": count_trainable(model),
                "trainable (formula)": moirai_trainable_formula(
                    spec, d_model, num_layers, head, total
                ),
                "backbone": total,
                "tokens per window (C=512, H=96, p=32)": tokens,
            }
        )
    return rows


def units_table(
    d_model: int = 128, num_layers: int = 3, num_scales: int = 4, num_heads: int = 8
) -> list[dict]:
    """Formula and built-model counts for every strategy UniTS implements, on a UniTS
    architecture (defaults: the released ``units_x128`` size) with new prompt tokens."""
    import torch

    from msft_forecast.backbones.units import UnitsConfig, UnitsModule
    from msft_forecast.msft.layout import TokenLayout
    from msft_forecast.msft.units_model import SUPPORTED_STRATEGIES, MultiScaleUnits

    torch.manual_seed(0)
    config = UnitsConfig(d_model=d_model, num_layers=num_layers, num_heads=num_heads)
    backbone = UnitsModule(config, {"msft_forecast": 1}).requires_grad_(False)
    head = sum(p.numel() for p in backbone.forecast_head.parameters())
    tokens_of = {id(p) for d in (backbone.prompt_tokens, backbone.mask_tokens) for p in d.values()}
    total = sum(p.numel() for p in backbone.parameters() if id(p) not in tokens_of)
    settings = {"dataset": "msft_forecast", "variable": 0, "trained_tokens": False}
    loaded = SimpleNamespace(module=backbone, config=config, raw_config=settings)
    rows = []
    for name in (s for s in FIT_STRATEGIES if s in SUPPORTED_STRATEGIES):
        spec = resolve_strategy(name, num_scales=num_scales)
        if spec.trains:
            model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=96)
            built = count_trainable(model)
        else:  # zero-shot needs trained prompt tokens to build, and trains nothing
            built = 0
        layout = TokenLayout(512, 96, config.patch_len, spec.num_scales)
        rows.append(
            {
                "strategy": name,
                "trainable (model)": built,
                "trainable (formula)": units_trainable_formula(
                    spec, d_model, num_layers, config.prompt_num, head, total
                ),
                "backbone": total,
                f"tokens per window (C=512, H=96, p={config.patch_len})": layout.num_tokens
                + spec.num_scales * config.prompt_num,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("moirai", "units", "moment"), default="moirai")
    parser.add_argument("--d-model", type=int, default=None, help="moirai: 384, units: 128")
    parser.add_argument("--num-layers", type=int, default=None, help="moirai: 6, units: 3")
    parser.add_argument("--num-scales", type=int, default=4)
    args = parser.parse_args(argv)
    if args.backbone == "moment":
        overrides = {k: v for k, v in (("d_model", args.d_model), ("num_layers", args.num_layers))
                     if v is not None}  # fmt: skip
        rows = moment_table("small", args.num_scales, **overrides)
        print(
            f"MOMENT-small architecture{f' with {overrides}' if overrides else ''}, "
            f"num_scales={args.num_scales} (msft), "
            f"horizon 96, LoRA r=16 on q,k,v (AdaLoRA: initial rank 24, target 16), aggregator "
            f"rank 64, 8 prompt tokens; MOMENT refuses zero-shot (no forecasting head)"
        )
    elif args.backbone == "units":
        d_model, num_layers = args.d_model or 128, args.num_layers or 3
        rows = units_table(d_model, num_layers, args.num_scales)
        missing = [s for s in FIT_STRATEGIES if s not in {r["strategy"] for r in rows}]
        print(
            f"UniTS architecture d_model={d_model}, num_layers={num_layers}, patch_len=16, "
            f"prompt_num=10, num_scales={args.num_scales} (msft), LoRA r=16 on q,k,v (AdaLoRA: "
            f"initial rank 24, target 16), aggregator rank 64, prompt tuning on the 10 prompt "
            f"tokens and the mask token"
            + (f"; UniTS does not implement {', '.join(missing)}" if missing else "")
        )
    else:
        d_model, num_layers = args.d_model or 384, args.num_layers or 6
        rows = table(d_model, num_layers, args.num_scales)
        print(
            f"Moirai architecture d_model={d_model}, num_layers={num_layers}, "
            f"num_scales={args.num_scales} (msft), LoRA r=16 on q,k,v (AdaLoRA: initial rank "
            f"24, target 16), aggregator rank 64, 8 prompt tokens"
        )
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else row[c] for c in cols)
            + " |"
        )


if __name__ == "__main__":
    main()
