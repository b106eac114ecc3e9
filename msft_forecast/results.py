"""What the engine returns: :class:`Forecast` and :class:`FitReport` (what a fit did)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Forecast:
    """Forecasts for a batch of series.

    Attributes
    ----------
    mean : ndarray
        ``(n, H)`` point forecast: the **mean** of the blended predictive distribution
        (MSE-optimal).  Use :meth:`quantiles` with 0.5 for the median (MAE-optimal).
    samples : ndarray
        ``(n, S, H)`` sample paths (for MOMENT: the point forecast plus held-out residuals).
    scale_means : ndarray
        ``(n, K+1, H)`` each scale's mean forecast, upsampled to the original resolution.
    weights : ndarray
        ``(K+1,)`` mixing weights used.
    """

    mean: np.ndarray
    samples: np.ndarray
    scale_means: np.ndarray
    weights: np.ndarray

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """``(n, len(levels), H)`` empirical quantiles of the sample paths (monotone in level)."""
        q = np.quantile(self.samples, np.asarray(levels, dtype=np.float64), axis=1)
        return np.moveaxis(q, 0, 1)


@dataclass
class FitReport:
    """What happened during :meth:`MSFTEngine.fit`."""

    patch_size: int
    patch_size_scores: dict[int, float] = field(default_factory=dict)
    #: Context and training horizon the fit used (see :mod:`msft_forecast.training.lengths`);
    #: 0 in reports saved before they were recorded (the settings' values were used).
    context_length: int = 0
    prediction_length: int = 0
    #: One sentence per length or patch size chosen from the data, saying what and why.
    choices: list[str] = field(default_factory=list)
    steps: int = 0
    best_step: int = -1
    initial_val_loss: float | None = None
    best_val_loss: float | None = None
    history: dict[str, list] = field(default_factory=dict)
    trainable_parameters: int = 0
    wall_time_s: float = 0.0
    #: Names of the past-only and known-future covariates the model was fitted with (see
    #: :mod:`msft_forecast.training.covariates`); forecasts must pass as many of each.
    past_covariates: list[str] = field(default_factory=list)
    future_covariates: list[str] = field(default_factory=list)
    #: Channels per series of a joint model (``multivariate="joint"``: it forecasts series of
    #: as many channels, :mod:`msft_forecast.training.joint`); 1 for channel-independent ones.
    channels: int = 1

    def summary(self) -> str:
        """What the fit did, on one line: steps, best validation loss and its step, patch
        size, horizon, context and seconds.

        Examples
        --------
        >>> FitReport(patch_size=16, context_length=144, prediction_length=24, steps=200,
        ...           best_step=150, initial_val_loss=0.52, best_val_loss=0.41,
        ...           wall_time_s=93.4).summary()
        'fit: 200 steps, best validation loss 0.41 at step 150 (0.52 before training), patch \
size 16, horizon 24, context 144, 93.4 s'
        """
        if self.best_val_loss is None:
            validation = "no validation"
        else:
            validation = f"best validation loss {self.best_val_loss:.4g} at step {self.best_step}"
            if self.initial_val_loss is not None:
                validation += f" ({self.initial_val_loss:.4g} before training)"
        return (
            f"fit: {self.steps} steps, {validation}, patch size {self.patch_size}, horizon "
            f"{self.prediction_length}, context {self.context_length}, {self.wall_time_s:.1f} s"
        )
