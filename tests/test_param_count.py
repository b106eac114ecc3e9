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
