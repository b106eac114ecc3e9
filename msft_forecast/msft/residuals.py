"""Intervals from held-out residuals, for backbones without a predictive distribution.

Used by MOMENT and UniTS (docs/strategies.md, "MOMENT"): after training, up to 512 held-out
residuals are kept in units of each window's context spread; a sample path is the point forecast
plus one resampled residual path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from msft_forecast.msft.base import context_spread

#: Fewest held-out windows from which the residual intervals are drawn alone.
MIN_RESIDUAL_WINDOWS = 30


@torch.no_grad()
def collect_residuals(model: Any, held_out: Any, train: Any, backbone: str) -> Tensor:
    """Up to 512 residuals ``(N, H)`` of ``model.forecast`` on held-out windows, NaN where the
    truth is missing, in units of each window's context spread.

    With fewer than :data:`MIN_RESIDUAL_WINDOWS` held-out windows the training windows are used
    too (in-sample, so narrower intervals; a warning says so).
    """
    data = held_out if held_out is not None else train
    if len(data) < MIN_RESIDUAL_WINDOWS and data is not train:
        warnings.warn(
            f"Only {len(data)} validation windows for {backbone}'s residual intervals; training "
            f"windows are used too, so intervals may be too narrow. Hold out more data "
            f"(validation=...) for calibrated intervals.",
            UserWarning,
            stacklevel=5,
        )
        data = torch.utils.data.ConcatDataset([data, train])
    n = min(len(data), 512)
    idx = np.linspace(0, len(data) - 1, n).round().astype(int)
    rows = []
    for chunk in np.array_split(idx, max(1, -(-n // 128))):
        batch = torch.utils.data.default_collate([data[int(i)] for i in chunk])
        mean = model.forecast(
            batch["context"], batch["context_observed"], batch["horizon"].shape[-1]
        ).mean
        spread = context_spread(batch["context"], batch["context_observed"])
        res = (batch["horizon"] - mean) / spread[:, None]
        rows.append(torch.where(batch["horizon_observed"], res, torch.nan))
    return torch.cat(rows).float()


def residual_paths(
    residuals: Tensor | None, context: Tensor, observed: Tensor, mean: Tensor,
    num_samples: int, seeds: Sequence[int] | None, generator: torch.Generator | None,
) -> Tensor:  # fmt: skip
    """``(B, S, H)``: the point forecast plus resampled residual paths (the point forecast
    alone before any residual was collected); row ``b`` draws from a stream seeded by
    ``seeds[b]`` (else from ``generator``)."""
    horizon = mean.shape[-1]
    if num_samples == 0:
        return mean.new_zeros(mean.shape[0], 0, horizon)
    if residuals is None or residuals.shape[0] == 0:
        return mean.unsqueeze(1).expand(-1, num_samples, -1).clone()
    res = torch.nan_to_num(residuals[:, :horizon], nan=0.0).to(mean)
    if seeds is None:
        rows = torch.randint(0, res.shape[0], (mean.shape[0], num_samples), generator=generator)
    else:
        rows = torch.stack(
            [
                torch.randint(
                    0, res.shape[0], (num_samples,), generator=torch.Generator().manual_seed(sd)
                )
                for sd in seeds
            ]
        )
    spread = context_spread(context, observed)
    return mean.unsqueeze(1) + res[rows] * spread[:, None, None]
