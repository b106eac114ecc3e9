"""What every multi-scale model is: the interface the engine and the trainer rely on.

A backbone family (Moirai, MOMENT, ...) joins the package with one subclass of
:class:`MultiScaleModel` in this folder and one line in :mod:`msft_forecast.msft.registry`.
The subclass says what it can do (the patch sizes it offers for a frequency, the longest horizon
it forecasts in one pass, whether it forecasts before any training, whether its intervals come
from held-out residuals) and implements the loss, the validation scores and the forecast, which
returns the same :class:`ModelForecast` for every backbone.  The engine and the front ends never
ask which backbone they hold.

This class also owns the scale weights (training weights, inference weights; see
:mod:`msft_forecast.msft.mixing` and the "Scale weights" section of ``docs/strategies.md``)
and the trainable tensors' selection, saving and loading.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import numpy as np
import torch
from torch import Tensor, nn

from msft_forecast.msft.adalora import orthogonal_regularisation
from msft_forecast.msft.layout import TokenLayout
from msft_forecast.msft.mixing import (
    _MIN_WEIGHT,
    IN_LOSS_WEIGHTINGS,
    TRAINED_WEIGHTINGS,
    CombinationStatistics,
    fit_simplex_weights,
)
from msft_forecast.msft.strategies import StrategySpec

#: Buffers fine-tuning writes and saved models keep with the trainable tensors (AdaLoRA's
#: allocated ranks).
TRAINED_BUFFERS: tuple[str, ...] = ("rank_mask",)


class Covariates(TypedDict):
    """A batch's covariates, as the windows carry them (see
    :func:`~msft_forecast.training.windows.cut_window`); unobserved values hold 0.

    ``past`` / ``past_observed``: ``(B, P, C)`` past-only covariates over the context.
    ``future`` / ``future_observed``: ``(B, F, C + H)`` known-future covariates over the
    context and the horizon.  ``P`` or ``F`` may be 0.
    """

    past: Tensor
    past_observed: Tensor
    future: Tensor
    future_observed: Tensor


@dataclass
class ModelForecast:
    """A model's forecasts for a batch of contexts (the same fields for every backbone).

    Attributes
    ----------
    mean : Tensor
        ``(B, H)`` mean of the combined forecast.
    samples : Tensor
        ``(B, S, H)`` sample paths (``S = 0`` when only the mean was asked for).
    scale_means : Tensor
        ``(B, K+1, H)`` each scale's mean forecast at the original resolution.
    weights : Tensor
        ``(K+1,)`` the scales' weights in the combination.
    """

    mean: Tensor
    samples: Tensor
    scale_means: Tensor
    weights: Tensor


class MultiScaleModel(nn.Module):
    """A backbone with the multi-scale parts of a strategy (the interface of every backbone).

    Subclasses set :attr:`kind`, implement the abstract methods and call
    ``super().__init__(backbone, spec, pooling)`` first, then build their parts, then
    ``self._init_scale_weights()`` and ``self.set_trainable()``.

    Parameters
    ----------
    backbone : nn.Module
        The backbone this model owns (see :meth:`owned_backbone`).
    spec : StrategySpec
        What to build and what to train.
    pooling : {"mean", "max", "subsample"}
        Pooling between scales.
    """

    #: The backbone family (``LoadedBackbone.kind``) this class serves.
    kind: ClassVar[str]
    #: True when the model has no predictive distribution: its sample paths are the point
    #: forecast plus held-out residuals, which :meth:`calibrate` collects after training.
    intervals_from_residuals: ClassVar[bool] = False
    #: True when the model reads covariates (the ``covariates`` argument of :meth:`loss`,
    #: :meth:`validation_scores` and :meth:`forecast`) as extra input variates.
    supports_covariates: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, spec: StrategySpec, pooling: str = "mean") -> None:
        super().__init__()
        self.check_strategy(spec)
        self.backbone = backbone
        self.spec = spec
        self.pooling = pooling
        #: Held-out residuals of a model with :attr:`intervals_from_residuals` (else None).
        self.residuals: Tensor | None = None

    # ---------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls, loaded: Any, spec: StrategySpec, *, patch_size: int | None, horizon_length: int,
        pooling: str = "mean",
    ) -> MultiScaleModel:  # fmt: skip
        """A fresh model on the loaded backbone (``LoadedBackbone``) for this strategy."""
        raise NotImplementedError

    @staticmethod
    def owned_backbone(loaded: Any, spec: StrategySpec) -> nn.Module:
        """The backbone module a new model owns: a deep copy when the strategy trains the
        backbone, else a structural copy whose frozen tensors stay shared with the cache."""
        from msft_forecast.backbones.cache import structural_copy

        module = loaded.module
        return copy.deepcopy(module) if spec.train_backbone else structural_copy(module)

    @classmethod
    def check_strategy(cls, spec: StrategySpec) -> None:
        """Raise ``ValueError`` when this backbone cannot serve the strategy."""

    @classmethod
    def check_covariates(cls, num_past: int, num_future: int, loaded: Any = None) -> None:
        """Raise ``ValueError`` when covariates are given to a backbone that reads none; warn
        when the checkpoint (``LoadedBackbone``) was pre-trained on single-variate windows only,
        so that its any-variate attention never learned to read another variate."""
        if not (num_past or num_future):
            return
        if not cls.supports_covariates:
            raise ValueError(
                f"The {cls.kind} backbone has no covariate input, and {num_past} past and "
                f"{num_future} known-future covariates were given. Use a Moirai backbone "
                f"(backbone='moirai'), whose any-variate attention reads covariates, or drop "
                f"the covariates."
            )
        from msft_forecast.backbones.checkpoint import BUNDLED_PREFIX, UNIVARIATE_PRETRAINED

        location = getattr(getattr(loaded, "source", None), "location", "")
        if location in {BUNDLED_PREFIX + name for name in UNIVARIATE_PRETRAINED}:
            warnings.warn(
                f"{location} was pre-trained on single-variate synthetic series only: its "
                f"any-variate attention never learned to read covariates, and on the ETT sets "
                f"they make its forecasts worse, zero-shot and fine-tuned (docs/benchmarks.md, "
                f"'Covariates'). Use a published Moirai checkpoint (backbone='moirai') to "
                f"forecast with covariates.",
                UserWarning,
                stacklevel=4,
            )

    @classmethod
    def candidate_patch_sizes(cls, config: Any, freq: str | None, context_length: int) -> list[int]:
        """Patch sizes the backbone offers for this frequency and context, smallest first."""
        raise NotImplementedError

    @property
    def horizon_limit(self) -> int | None:
        """Most steps one forward pass forecasts (None: any); the engine rolls the forecast
        forward beyond it."""
        return None

    def token_layout(self, context_length: int, horizon_length: int) -> TokenLayout:
        """Where every scale's tokens sit in the packed sequence."""
        raise NotImplementedError

    # -------------------------------------------------------------------------- parameters
    def msft_modules(self) -> list[nn.Module]:
        """The modules the strategy added (adapters, LoRA, aggregators)."""
        raise NotImplementedError

    def set_trainable(self) -> None:
        """Freeze and unfreeze tensors as the strategy says."""
        raise NotImplementedError

    def trained_tensors(self) -> dict[str, Tensor]:
        """The live tensors fine-tuning changes: the trainable parameters and the buffers named
        in :data:`TRAINED_BUFFERS`."""
        out: dict[str, Tensor] = {n: p for n, p in self.named_parameters() if p.requires_grad}
        for name, buf in self.named_buffers():
            if name.rsplit(".", 1)[-1] in TRAINED_BUFFERS:
                out[name] = buf
        return out

    def trainable_tensors(self) -> dict[str, Tensor]:
        """Every tensor fine-tuning owns (everything but the frozen backbone), on the CPU."""
        return {name: t.detach().cpu().contiguous() for name, t in self.trained_tensors().items()}

    def load_trainable(self, tensors: dict[str, Tensor]) -> None:
        """Copy saved trainable tensors in, checking their names and shapes."""
        params = self.trained_tensors()
        wanted = set(params)
        if set(tensors) != wanted:
            missing, unexpected = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
            raise ValueError(
                "The saved tensors do not match the model these settings build (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}); were the settings changed?"
            )
        with torch.no_grad():
            for name, value in tensors.items():
                if params[name].shape != value.shape:
                    raise ValueError(
                        f"Saved tensor {name!r} has shape {tuple(value.shape)}, the model needs "
                        f"{tuple(params[name].shape)}."
                    )
                params[name].copy_(value)

    # ----------------------------------------------------------------------------- training
    def loss(
        self, context: Tensor, context_observed: Tensor, horizon: Tensor,
        horizon_observed: Tensor, available: Tensor | None = None,
        covariates: Covariates | None = None,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Training loss and the ``(K+1,)`` per-scale losses (detached); ``covariates`` only
        for a model that :attr:`supports_covariates`."""
        raise NotImplementedError

    def validation_scores(
        self, context: Tensor, context_observed: Tensor, horizon: Tensor,
        horizon_observed: Tensor, available: Tensor | None = None,
        covariates: Covariates | None = None, *,
        generator: torch.Generator | None = None, num_samples: int = 16,
    ) -> tuple[Tensor, CombinationStatistics]:  # fmt: skip
        """Per-scale losses and the statistics of the combined forecast's validation loss."""
        raise NotImplementedError

    def calibrate(self, held_out: Any, train: Any) -> None:
        """After training: collect what intervals need (residual models); else nothing."""

    # ---------------------------------------------------------------------------- inference
    def forecast(
        self, context: Tensor, context_observed: Tensor, horizon_length: int,
        num_samples: int = 0, available: Tensor | None = None,
        generator: torch.Generator | None = None, seeds: Sequence[int] | None = None,
        covariates: Covariates | None = None,
    ) -> ModelForecast:  # fmt: skip
        """Forecast ``horizon_length`` steps after each context.

        Sample paths come from ``generator`` (one stream for the batch) or, with ``seeds``,
        one stream per row seeded by ``seeds[b]``, so a row's samples do not depend on the
        other rows; ``num_samples=0`` gives the mean alone.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------ scale weights
    def _init_scale_weights(self) -> None:
        """Create ``scale_logits`` (trained weights) and ``mixing_logits`` (weights fitted on
        validation windows; None unless ``scale_weighting="validation"``)."""
        logits = torch.zeros(self.spec.num_scales)
        if self.spec.num_scales > 1:
            logits[0] = float(self.spec.scale_weight_prior)
        self.scale_logits = nn.Parameter(logits)
        fitted = nn.Parameter(torch.zeros(self.spec.num_scales))
        self.mixing_logits = fitted if self.fits_weights_on_validation else None

    def _set_scale_weights_trainable(self) -> None:
        multi = self.spec.num_scales > 1
        self.scale_logits.requires_grad_(multi and self.spec.scale_weighting in TRAINED_WEIGHTINGS)
        if self.mixing_logits is not None:
            # not trained (a zero-gradient term in the loss), but kept with the trainable
            # tensors: best-weight restore, checkpoints and saved models hold the fitted weights
            self.mixing_logits.requires_grad_(True)

    @property
    def fits_weights_on_validation(self) -> bool:
        """True when the inference weights are fitted after every validation pass."""
        return self.spec.num_scales > 1 and self.spec.scale_weighting == "validation"

    def scale_weights(self) -> Tensor:
        """``softmax(scale_logits)``: the trained weights (training weights of ``"validation"``
        and ``"paper"``, inference weights of ``"paper"`` and ``"learned"``)."""
        return torch.softmax(self.scale_logits.float(), dim=0)

    def mixing_weights(self) -> Tensor:
        """Weights of the scales in the combined forecast at inference."""
        k, device = self.spec.num_scales, self.scale_logits.device
        weighting = self.spec.scale_weighting
        if k == 1 or weighting == "finest":
            return torch.eye(k, device=device)[0]
        if weighting == "uniform":
            return torch.full((k,), 1.0 / k, device=device)
        if weighting == "validation":
            return torch.softmax(self.mixing_logits.float(), dim=0)
        return self.scale_weights()

    def set_mixing_weights(self, weights: Tensor | np.ndarray) -> None:
        """Store fitted inference weights (``log w``, zeros kept at 1e-12)."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).clamp(min=_MIN_WEIGHT)
        with torch.no_grad():
            self.mixing_logits.copy_(w.log().to(self.mixing_logits))

    def fit_mixing_weights(self, stats: CombinationStatistics) -> np.ndarray:
        """Fit and store the inference weights that minimise the combined validation loss."""
        weights = fit_simplex_weights(stats)
        self.set_mixing_weights(weights)
        return weights

    def combined_point_loss(
        self, means: Tensor, horizon: Tensor, observed: Tensor, unit: Tensor
    ) -> Tensor:
        """``scale_weighting="learned"`` for point forecasters (MOMENT, UniTS): the MSE of the
        weighted mean of the scales' ``(B, K+1, H)`` forecasts (detached, so only the weights
        learn through it) in units of ``unit``."""
        combined = torch.einsum("k,bkh->bh", self.scale_weights(), means.detach())
        err = (combined - horizon) / unit
        return torch.where(observed, err**2, 0.0).sum() / observed.sum().clamp(min=1)

    def weighted_loss(self, losses: Tensor) -> Tensor:
        """The training loss from the per-scale losses (normalised units, see
        :mod:`~msft_forecast.msft.mixing`): ``sum_k softmax(v)_k L_k`` for ``"validation"``
        and ``"paper"``, else their mean."""
        if self.spec.num_scales > 1 and self.spec.scale_weighting in IN_LOSS_WEIGHTINGS:
            loss = (self.scale_weights().to(losses.dtype) * losses).sum()
        else:
            loss = losses.mean()
        regularisation = orthogonal_regularisation(self.msft_modules())
        if regularisation is not None:  # AdaLoRA's orthogonality term
            loss = loss + regularisation.to(loss.dtype)
        if self.mixing_logits is not None and self.mixing_logits.requires_grad:
            # a zero-gradient term keeps DDP's reducer from waiting for a gradient the loss
            # never sends (AdamW leaves a tensor with zero gradient and no decay unchanged)
            loss = loss + 0.0 * self.mixing_logits.sum()
        return loss


def context_spread(context: Tensor, observed: Tensor) -> Tensor:
    """Standard deviation of the observed context steps of each row (at least 1e-8)."""
    n = observed.sum(-1).clamp(min=1)
    mean = torch.where(observed, context, 0.0).sum(-1) / n
    var = torch.where(observed, (context - mean[:, None]) ** 2, 0.0).sum(-1) / n
    return var.sqrt().clamp(min=1e-8)
