"""Darts-style constructor arguments of :class:`~msft_forecast.darts.MSFTModel` to engine settings.

The Darts front end names some :class:`~msft_forecast.settings.MSFTSettings` fields as Darts
models do (``input_chunk_length``, ``output_chunk_length``, ``n_epochs``, ``pl_trainer_kwargs``);
this module translates them, so that every other setting keeps its engine name and default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from msft_forecast.settings import MSFTSettings

#: ``pl_trainer_kwargs`` keys passed to the engine; the engine owns the rest of the Trainer.
TRAINER_KEYS = ("accelerator", "devices", "strategy", "precision", "enable_progress_bar")
#: MSFTSettings fields that the constructor exposes under their Darts names (or elsewhere).
_RENAMED = {
    "context_length": "input_chunk_length",
    "prediction_length": "output_chunk_length",
    "max_epochs": "n_epochs",
    "accelerator": "pl_trainer_kwargs",
    "devices": "pl_trainer_kwargs",
    "strategy": "pl_trainer_kwargs",
    "precision": "pl_trainer_kwargs",
    "verbose": "fit(verbose=...)",
}


def settings_from_params(params: dict[str, Any], icl: int, ocl: int | None) -> MSFTSettings:
    """Engine settings from ``MSFTModel.model_params`` (context ``icl``; training horizon
    ``ocl``, None for ``"auto"``); unsupported ``pl_trainer_kwargs`` keys are refused."""
    trainer = dict(params.get("pl_trainer_kwargs") or {})
    unknown = sorted(set(trainer) - set(TRAINER_KEYS))
    if unknown:
        raise ValueError(
            f"pl_trainer_kwargs keys {unknown} are not supported: the engine builds its own "
            f"Lightning Trainer and takes only {list(TRAINER_KEYS)} from pl_trainer_kwargs "
            f"(the other training settings are MSFTModel parameters)."
        )
    values = {
        f.name: params[f.name]
        for f in fields(MSFTSettings)
        if f.name not in _RENAMED and f.name in params
    }
    verbose = bool(trainer.pop("enable_progress_bar", MSFTSettings.verbose))
    values.update(trainer)
    values.update(
        context_length=icl,
        prediction_length="auto" if ocl is None else ocl,
        max_epochs=params.get("n_epochs"),
        verbose=verbose,
    )
    settings = MSFTSettings(**values)
    settings.validate()
    return settings


def parse_input_chunk_length(value: int | tuple[int, int]) -> tuple[int, int]:
    """``(min_length, max_length)`` of an ``input_chunk_length`` (an int is both)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        lo = hi = int(value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        lo, hi = int(value[0]), int(value[1])
    else:
        raise ValueError(
            f"input_chunk_length must be an int or a (min_length, max_length) tuple, got {value!r}."
        )
    if not 1 <= lo <= hi:
        raise ValueError(f"input_chunk_length needs 1 <= min_length <= max_length, got {value!r}.")
    return lo, hi


def parse_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Sorted, distinct quantile levels in (0, 1)."""
    levels = tuple(sorted(float(q) for q in quantiles))
    if not levels or not all(0.0 < q < 1.0 for q in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"quantiles must be distinct levels in (0, 1), got {quantiles!r}.")
    return levels
