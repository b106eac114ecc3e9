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
    from msft_forecast.msft.units_model import SUPPORTED_STRATEGIES

    rows = units_table(d_model=32, num_layers=2, num_scales=3, num_heads=4)
    by_name = {r["strategy"]: r for r in rows}
    assert set(by_name) == set(SUPPORTED_STRATEGIES)  # adalora, prompt-tuning: not on UniTS
    for row in rows:
        assert row["trainable (model)"] == row["trainable (formula)"], row["strategy"]
    assert by_name["zero-shot"]["trainable (model)"] == 0
    # every training strategy trains the data set's 10 prompt tokens and its mask token
    tokens = 11 * 32
    assert by_name["full"]["trainable (model)"] == by_name["full"]["backbone"] + tokens
    assert by_name["linear-probe"]["trainable (model)"] < by_name["lora"]["trainable (model)"]
    assert by_name["lora"]["trainable (model)"] < by_name["msft"]["trainable (model)"]


def test_param_count_command_prints_units(capsys) -> None:
    from msft_forecast.msft.param_count import main

    main(["--backbone", "units", "--d-model", "32", "--num-layers", "1", "--num-scales", "2"])
    out = capsys.readouterr().out
    assert "UniTS architecture d_model=32" in out and "does not implement adalora" in out
    assert "| linear-probe | " in out and "| adalora |" not in out
