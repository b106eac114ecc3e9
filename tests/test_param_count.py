"""The closed-form trainable-parameter count matches the built models (docs/strategies.md)."""

from __future__ import annotations

from msft_forecast.msft.param_count import table


def test_formula_matches_model_for_every_strategy() -> None:
    rows = table(d_model=128, num_layers=2, num_scales=3)
    by_name = {r["strategy"]: r for r in rows}
    for row in rows:
        assert row["trainable (model)"] == row["trainable (formula)"], row["strategy"]
    assert by_name["zero-shot"]["trainable (model)"] == 0
    assert by_name["full"]["trainable (model)"] == by_name["full"]["backbone"]
    # the parameter-efficient strategies train a fraction of the backbone
    assert by_name["lora"]["trainable (model)"] < by_name["msft"]["trainable (model)"]
    assert by_name["msft"]["trainable (model)"] < by_name["full"]["trainable (model)"]
    # extra scales cost tokens: 3 scales need more tokens than one
    assert (
        by_name["msft"]["tokens per window (C=512, H=96, p=32)"]
        > by_name["lora"]["tokens per window (C=512, H=96, p=32)"]
    )


def test_units_formula_matches_model_for_every_strategy_it_implements() -> None:
    from msft_forecast.msft.param_count import units_table
    from msft_forecast.msft.strategies import FIT_STRATEGIES
    from msft_forecast.msft.units_model import SUPPORTED_STRATEGIES

    rows = units_table(d_model=32, num_layers=2, num_scales=3, num_heads=4)
    by_name = {r["strategy"]: r for r in rows}
    assert set(by_name) == set(SUPPORTED_STRATEGIES) == set(FIT_STRATEGIES)
    for row in rows:
        assert row["trainable (model)"] == row["trainable (formula)"], row["strategy"]
    assert by_name["zero-shot"]["trainable (model)"] == 0
    # every training strategy trains the data set's 10 prompt tokens and its mask token
    tokens = 11 * 32
    assert by_name["full"]["trainable (model)"] == by_name["full"]["backbone"] + tokens
    assert by_name["prompt-tuning"]["trainable (model)"] == tokens  # the tokens alone
    assert by_name["linear-probe"]["trainable (model)"] < by_name["lora"]["trainable (model)"]
    assert by_name["lora"]["trainable (model)"] < by_name["adalora"]["trainable (model)"]
    assert by_name["lora"]["trainable (model)"] < by_name["msft"]["trainable (model)"]


def test_param_count_command_prints_units(capsys) -> None:
    from msft_forecast.msft.param_count import main

    main(["--backbone", "units", "--d-model", "32", "--num-layers", "1", "--num-scales", "2"])
    out = capsys.readouterr().out
    assert "UniTS architecture d_model=32" in out and "does not implement" not in out
    assert all(f"| {s} | " in out for s in ("linear-probe", "adalora", "prompt-tuning"))


def test_moment_formula_matches_model_for_every_strategy_and_lora_target() -> None:
    import copy
    from types import SimpleNamespace

    from msft_forecast.backbones.moment import MomentConfig, MomentModule
    from msft_forecast.msft.moment_model import MultiScaleMoment
    from msft_forecast.msft.param_count import (
        count_trainable,
        moment_table,
        moment_trainable_formula,
    )
    from msft_forecast.msft.strategies import resolve_strategy

    small = dict(d_model=32, d_ff=48, d_kv=8, num_heads=2, num_layers=2)
    rows = moment_table("small", 3, **small)
    by_name = {r["strategy"]: r for r in rows}
    for row in rows:
        assert row["trainable (model)"] == row["trainable (formula)"], row["strategy"]
    # prompt tuning trains MOMENT's new heads too: more than the prompts alone
    assert by_name["prompt-tuning"]["trainable (model)"] == (
        by_name["linear-probe"]["trainable (model)"] + 8 * 32
    )
    # every LoRA target, inner width != d_model, AdaLoRA and shared LoRA
    config = MomentConfig.preset("small", **small)
    loaded = SimpleNamespace(module=MomentModule(config).requires_grad_(False), config=config)
    targets = ("q", "k", "v", "out", "ffn")
    for name, extra in [("lora", {}), ("adalora", {}), ("msft", {"shared_lora": True})]:
        spec = resolve_strategy(name, num_scales=3, lora_targets=targets, **extra)
        built = MultiScaleMoment.build(copy.copy(loaded), spec, patch_size=None, horizon_length=96)
        total = sum(p.numel() for p in loaded.module.parameters())
        assert count_trainable(built) == moment_trainable_formula(spec, config, 96, total), name


def test_param_count_command_prints_moment(capsys) -> None:
    from msft_forecast.msft.param_count import main

    main(["--backbone", "moment", "--d-model", "32", "--num-layers", "1", "--num-scales", "2"])
    out = capsys.readouterr().out
    assert "MOMENT-small architecture with" in out and "| prompt-tuning | " in out
