"""Threads on shared machines: passive OpenMP waiting by default, and ``num_threads``."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch


def _policy(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport os; print(os.environ.get('OMP_WAIT_POLICY'))"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()[-1]


def test_openmp_waits_passively_unless_the_user_chose_or_torch_came_first() -> None:
    assert _policy("import msft_forecast") == "PASSIVE"
    assert _policy("import msft_forecast", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    # the runtime has read the environment when torch loaded: changing it would be a lie
    assert _policy("import torch, msft_forecast") == "None"


def test_num_threads_applies_during_fit_and_predict_and_is_restored(monkeypatch) -> None:
    from msft_forecast import MSFTForecaster
    from msft_forecast.engine import MSFTEngine

    seen: list[int] = []
    original_fit, original_batches = MSFTEngine._fit, MSFTEngine._forecast_batches

    def fit(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original_fit(self, *args, **kwargs)

    def batches(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original_batches(self, *args, **kwargs)

    monkeypatch.setattr(MSFTEngine, "_fit", fit)
    monkeypatch.setattr(MSFTEngine, "_forecast_batches", batches)
    before = torch.get_num_threads()
    y = pd.Series(10 + np.sin(np.arange(120) / 4),
                  index=pd.date_range("2024-01-01", periods=120, freq="h"))  # fmt: skip
    forecaster = MSFTForecaster(backbone="moirai-tiny", fit_strategy="zero-shot",
                                context_length=32, num_threads=1, random_state=0)  # fmt: skip
    forecaster.fit(y, fh=[1, 2]).predict()
    assert seen == [1, 1]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_num_threads_must_be_a_positive_integer(bad) -> None:
    from msft_forecast.engine import MSFTSettings

    with pytest.raises(ValueError, match="num_threads must be a positive integer or None"):
        MSFTSettings(num_threads=bad).validate()
