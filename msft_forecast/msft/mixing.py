"""Weighting the scales: training weights, inference weights and the validation criterion.

Each scale of an MSFT model forecasts the window's future at its own resolution; the forecast
at the original resolution combines them with weights ``w`` on the simplex (docs/strategies.md,
"MSFT in one picture"). Three things are kept apart:

* **per-scale losses** - each ``L_k`` is in that scale's own normalised units (Moirai: the NLL
  of the standardised target; MOMENT: the MSE in RevIN units), so a coarse scale cannot look
  better merely because pooling shrank its spread (in data units the NLL is the standardised
  NLL plus ``log sigma_k``, and the paper's in-loss weights slid to the coarsest scale).
* **training weights** - how the per-scale losses are summed. ``"validation"`` and ``"paper"``
  train the paper's in-loss weights ``sum_k softmax(v)_k L_k`` (logits ``v`` = ``scale_logits``
  with their own learning rate ``scale_weight_lr`` and optional prior ``scale_weight_prior`` on
  scale 0): on standardised losses they concentrate the training on the scales whose own
  forecasts are most accurate, which measured better than equal training weights
  (docs/benchmarks.md). ``"learned"``, ``"uniform"`` and ``"finest"`` train every scale with
  weight ``1 / (K+1)``.
* **inference weights** - how the scales' forecasts are combined, by ``scale_weighting``:

  ==============  =================================================================
  ``"validation"`` (default) fitted after every validation pass to minimise the loss of the
                   *combined* forecast at the original resolution on the validation windows
                   (Moirai: CRPS of the mixture of the scales' predictive distributions;
                   MOMENT: MSE of the weighted mean), a convex problem on the simplex; a scale
                   may take more than half the weight only if its own forecast is the best one.
                   Held in ``mixing_logits``, apart from the training weights
  ``"learned"``    trained by gradient through the NLL of the combined (mixture) forecast at
                   the original resolution, per-scale densities detached (the scales train on
                   their own losses)
  ``"paper"``      the trained in-loss weights themselves (the paper's configuration)
  ``"uniform"``    ``1 / (K+1)`` each (ablation)
  ``"finest"``     scale 0 alone; the other scales still train (ablation "without mixing")
  ==============  =================================================================

Early stopping and best-weight selection use the **combined forecast's validation loss** with
the inference weights (for ``"validation"``, the weights fitted on that pass): the same
criterion for every strategy (a single-scale model's combined forecast is its forecast), so
validation losses compare across strategies.

Both criteria are quadratic in ``w``: ``loss(w) = (c @ w + 0.5 * w @ Q @ w) / n``. For the
CRPS of a mixture, in its energy form ``E|X - y| - 0.5 E|X - X'|``, ``c_k = sum E|X_k - y|`` and
``Q_jk = -sum E|X_j - X'_k|``; for the MSE of a weighted mean, ``c = 0`` and
``Q_jk = 2 sum e_j e_k`` with ``e_k`` scale k's error. Models return ``(c, Q, n)`` summed over a
batch (:class:`CombinationStatistics`), so passes and devices add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Weightings with trained logits ``scale_logits`` (training weights, or inference weights).
TRAINED_WEIGHTINGS: tuple[str, ...] = ("validation", "learned", "paper")
#: Weightings whose training loss weights the scales by ``softmax(scale_logits)``.
IN_LOSS_WEIGHTINGS: tuple[str, ...] = ("validation", "paper")
#: Smallest weight written into the logits (``log 0`` is not a number).
_MIN_WEIGHT = 1e-12


@dataclass
class CombinationStatistics:
    """Sums over validation steps from which the combined forecast's loss follows for any ``w``.

    Attributes
    ----------
    linear : Tensor
        ``(K+1,)`` float64, ``c`` above.
    quadratic : Tensor
        ``(K+1, K+1)`` float64, ``Q`` above (symmetric).
    count : Tensor
        Scalar float64: number of scored (observed) steps.
    """

    linear: Tensor
    quadratic: Tensor
    count: Tensor

    def __add__(self, other: CombinationStatistics) -> CombinationStatistics:
        return CombinationStatistics(
            self.linear + other.linear.to(self.linear.device),
            self.quadratic + other.quadratic.to(self.linear.device),
            self.count + other.count.to(self.linear.device),
        )

    def loss(self, weights: Tensor | np.ndarray) -> float:
        """The combined forecast's mean loss per step with ``weights``."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).to(self.linear.device)
        total = self.linear @ w + 0.5 * w @ self.quadratic @ w
        return float(total / self.count.clamp(min=1.0))

    def single_scale_losses(self) -> np.ndarray:
        """Loss of each scale's forecast alone (the diagonal terms)."""
        n = float(self.count.clamp(min=1.0))
        diag = torch.diagonal(self.quadratic)
        return ((self.linear + 0.5 * diag) / n).cpu().numpy()


def crps_statistics(samples: Tensor, truth: Tensor, observed: Tensor, unit: Tensor):
    """:class:`CombinationStatistics` of the CRPS of a mixture of the scales' forecasts.

    Parameters
    ----------
    samples : Tensor
        ``(B, K+1, S, H)`` sample paths of every scale at the original resolution (``S >= 2``),
        drawn independently per scale.
    truth, observed : Tensor
        ``(B, H)`` what happened, and where it was observed.
    unit : Tensor
        ``(B,)`` positive: each row's errors are divided by it (the scale-0 context spread), so
        every window counts in its own units.
    """
    x = samples.double() / unit.double()[:, None, None, None]
    y = truth.double() / unit.double()[:, None]
    mask = observed.to(torch.float64)
    num_scales, num_samples = x.shape[1], x.shape[2]
    linear = ((x - y[:, None, None]).abs().mean(2) * mask[:, None]).sum((0, 2))
    quadratic = torch.zeros(num_scales, num_scales, dtype=torch.float64, device=x.device)
    for j in range(num_scales):
        for k in range(j, num_scales):
            pair = (x[:, j, :, None] - x[:, k, None, :]).abs().mean((1, 2))  # (B, H)
            if j == k:  # independent copies X, X' of one scale: leave out the s == s' pairs
                pair = pair * num_samples / (num_samples - 1)
            value = -(pair * mask).sum()
            quadratic[j, k] = quadratic[k, j] = value
    return CombinationStatistics(linear, quadratic, mask.sum())


def squared_error_statistics(means: Tensor, truth: Tensor, observed: Tensor, unit: Tensor):
    """:class:`CombinationStatistics` of the squared error of a weighted mean of the scales'
    ``(B, K+1, H)`` point forecasts (arguments as :func:`crps_statistics`)."""
    err = (means.double() - truth.double()[:, None]) / unit.double()[:, None, None]
    err = err * observed.to(torch.float64)[:, None]
    quadratic = 2.0 * torch.einsum("bjh,bkh->jk", err, err)
    linear = torch.zeros(means.shape[1], dtype=torch.float64, device=means.device)
    return CombinationStatistics(linear, quadratic, observed.to(torch.float64).sum())


def project_to_capped_simplex(v: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{w : sum w = 1, 0 <= w <= upper}``.

    ``w = clip(v - tau, 0, upper)`` with ``tau`` found by bisection (the sum is monotone in
    ``tau``); needs ``sum(upper) >= 1``.
    """
    lo, hi = float(np.min(v - upper)) - 1.0, float(np.max(v)) + 1.0
    for _ in range(100):
        tau = 0.5 * (lo + hi)
        if np.clip(v - tau, 0.0, upper).sum() > 1.0:
            lo = tau
        else:
            hi = tau
    w = np.clip(v - 0.5 * (lo + hi), 0.0, upper)
    return w / w.sum()


def fit_simplex_weights(
    stats: CombinationStatistics, *, majority_needs_best: bool = True, iterations: int = 2000
) -> np.ndarray:
    """Weights on the simplex that minimise ``stats.loss(w)`` (projected gradient descent).

    The loss is convex on the simplex for both criteria (``-Q`` is the energy-distance
    kernel, conditionally negative definite; for the MSE ``Q`` is a Gram matrix). With
    ``majority_needs_best`` a scale may get more than half the weight only if its own forecast
    has the lowest validation loss of all scales: no scale dominates the combination on the
    strength of its complementarity alone.

    Examples
    --------
    >>> import torch
    >>> means = torch.tensor([[[1.0], [3.0]]])  # two scales forecast 1 and 3; the truth is 2
    >>> stats = squared_error_statistics(means, torch.tensor([[2.0]]), torch.tensor([[True]]),
    ...                                  torch.ones(1))
    >>> fit_simplex_weights(stats).round(3)
    array([0.5, 0.5])
    """
    c = stats.linear.detach().cpu().numpy().astype(np.float64)
    q = stats.quadratic.detach().cpu().numpy().astype(np.float64)
    q = 0.5 * (q + q.T)
    k = c.shape[0]
    if k == 1:
        return np.ones(1)
    scale = float(stats.count.clamp(min=1.0))
    c, q = c / scale, q / scale
    upper = np.ones(k)
    if majority_needs_best:
        best = int(np.argmin(c + 0.5 * np.diag(q)))
        upper[:] = 0.5
        upper[best] = 1.0

    def loss(w: np.ndarray) -> float:
        return float(c @ w + 0.5 * w @ q @ w)

    lipschitz = float(np.abs(np.linalg.eigvalsh(q)).max()) + 1e-12
    w = project_to_capped_simplex(np.full(k, 1.0 / k), upper)
    for _ in range(iterations):
        step = project_to_capped_simplex(w - (c + q @ w) / lipschitz, upper)
        if np.abs(step - w).max() < 1e-12:
            w = step
            break
        w = step
    # never worse than the candidates a user would try by hand
    candidates = [w, project_to_capped_simplex(np.full(k, 1.0 / k), upper)]
    candidates += [np.eye(k)[i] for i in range(k) if upper[i] >= 1.0]
    return min(candidates, key=loss)


def mixture_nll(log_densities: Tensor, weights: Tensor, observed: Tensor) -> Tensor:
    """Mean NLL of the mixture ``sum_k w_k p_k(y_t)`` over observed steps.

    Parameters
    ----------
    log_densities : Tensor
        ``(B, K+1, H)`` ``log p_k(y_t)`` of every scale at every original-resolution step.
    weights : Tensor
        ``(K+1,)`` on the simplex.
    observed : Tensor
        ``(B, H)`` bool.
    """
    log_w = weights.clamp(min=_MIN_WEIGHT).log().to(log_densities.dtype)
    lp = torch.logsumexp(log_densities + log_w[None, :, None], dim=1)
    lp = torch.where(observed, lp, 0.0)
    return -lp.sum() / observed.sum().clamp(min=1)
