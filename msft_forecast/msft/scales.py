"""Building the scales: recursive pair pooling that keeps every scale on the forecast boundary.

Scale 0 is the window itself.  Scale ``k`` pools scale ``k - 1`` by a factor of two, with the
context and the horizon pooled **separately**: the context is padded on the left and the horizon
on the right to an even length, so every pooled step lies entirely on one side of the forecast
boundary (docs/strategies.md, "MSFT in one picture").  Padding is unobserved; a pooled step is
observed when any of its inputs is, and unobserved steps hold 0.

Lengths follow ``C_k = ceil(C_{k-1} / 2)`` and ``H_k = ceil(H_{k-1} / 2)``; the pooled horizon of
scale ``k`` covers the first ``2**k * H_k`` raw future steps, left-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PoolingOp = Literal["mean", "max", "subsample"]
POOLING_OPS: tuple[str, ...] = ("mean", "max", "subsample")


@dataclass(frozen=True)
class Segment:
    """One side (context or horizon) of one scale.

    Attributes
    ----------
    values : Tensor
        ``(B, L)`` float values; unobserved steps hold 0.
    observed : Tensor
        ``(B, L)`` bool, True where a value was observed.
    """

    values: Tensor
    observed: Tensor


@dataclass(frozen=True)
class Scale:
    """Context and horizon of one scale; ``level`` k means a pooling factor of ``2**k``."""

    level: int
    context: Segment
    horizon: Segment


def scale_lengths(length: int, num_scales: int) -> list[int]:
    """Lengths of one side at every scale: ``[L, ceil(L/2), ceil(L/4), ...]``."""
    if length < 0 or num_scales < 1:
        raise ValueError(f"need length >= 0 and num_scales >= 1, got {length}, {num_scales}")
    out = [length]
    for _ in range(num_scales - 1):
        out.append(-(-out[-1] // 2))
    return out


def pool_pairs(values: Tensor, observed: Tensor, *, left: bool, op: PoolingOp = "mean") -> Segment:
    """Pool non-overlapping pairs of steps along the last dimension.

    Parameters
    ----------
    values, observed : Tensor
        ``(B, L)`` values (unobserved entries are ignored whatever they hold) and bool mask.
    left : bool
        Pad on the left (context: pairs end at the forecast boundary) or on the right (horizon:
        pairs start at it) when ``L`` is odd.
    op : {"mean", "max", "subsample"}
        Mean of the observed steps of a pair (the method's default), their maximum, or the
        step nearest the forecast boundary (the later one for a context, the earlier one for a
        horizon) when observed, else the other.

    Returns
    -------
    Segment
        ``(B, ceil(L / 2))`` pooled values and observed mask.
    """
    if op not in POOLING_OPS:
        raise ValueError(f"pooling op must be one of {POOLING_OPS}, got {op!r}")
    length = values.shape[-1]
    if length % 2:
        pad = (1, 0) if left else (0, 1)
        values = F.pad(values, pad)
        observed = F.pad(observed, pad, value=False)
    obs = observed.reshape(*observed.shape[:-1], -1, 2)
    vals = torch.where(obs, values.reshape(*values.shape[:-1], -1, 2), 0.0)
    any_obs = obs.any(-1)
    if op == "mean":
        count = obs.sum(-1)
        pooled = vals.sum(-1) / count.clamp(min=1).to(vals.dtype)
    elif op == "max":
        pooled = torch.where(obs, vals, torch.finfo(vals.dtype).min).amax(-1)
    else:
        near, far = (1, 0) if left else (0, 1)
        pooled = torch.where(obs[..., near], vals[..., near], vals[..., far])
    pooled = torch.where(any_obs, pooled, 0.0)
    return Segment(pooled, any_obs)


def build_scales(
    context: Tensor,
    context_observed: Tensor,
    horizon: Tensor,
    horizon_observed: Tensor,
    num_scales: int,
    op: PoolingOp = "mean",
) -> list[Scale]:
    """All scales of a batch of windows, finest first.

    Parameters
    ----------
    context, context_observed : Tensor
        ``(B, C)`` past values and bool mask (NaN values must be masked out by the caller);
        any leading shape, e.g. ``(B, V, C)`` for covariates.
    horizon, horizon_observed : Tensor
        ``(B, H)`` future values and mask (at inference: zeros and all False).
    num_scales : int
        Number of scales including the original one (the method's ``K + 1``).
    op : {"mean", "max", "subsample"}
        Pooling operation.

    Returns
    -------
    list of Scale
        ``num_scales`` scales; scale ``k`` has ``C_k = ceil(C / 2**k)`` context steps.

    Examples
    --------
    >>> import torch
    >>> from msft_forecast.msft.scales import build_scales
    >>> ctx = torch.arange(5.0)[None]
    >>> s = build_scales(ctx, ctx >= 0, torch.zeros(1, 3), torch.zeros(1, 3, dtype=bool), 2)
    >>> s[1].context.values
    tensor([[0.0000, 1.5000, 3.5000]])
    """
    context = torch.where(context_observed, context, 0.0)
    horizon = torch.where(horizon_observed, horizon, 0.0)
    scales = [Scale(0, Segment(context, context_observed), Segment(horizon, horizon_observed))]
    for level in range(1, num_scales):
        prev = scales[-1]
        ctx = pool_pairs(prev.context.values, prev.context.observed, left=True, op=op)
        hor = pool_pairs(prev.horizon.values, prev.horizon.observed, left=False, op=op)
        scales.append(Scale(level, ctx, hor))
    return scales


def context_scales(
    values: Tensor, observed: Tensor, num_scales: int, op: PoolingOp = "mean"
) -> list[Segment]:
    """The context side alone at every scale (past-only covariates, which have no horizon),
    pooled exactly as :func:`build_scales` pools a context; any leading shape."""
    segments = [Segment(torch.where(observed, values, 0.0), observed)]
    for _ in range(1, num_scales):
        segments.append(pool_pairs(segments[-1].values, segments[-1].observed, left=True, op=op))
    return segments


def upsample_horizon(values: Tensor, level: int, length: int) -> Tensor:
    """Repeat every step of a scale-``level`` horizon ``2**level`` times and keep ``length``.

    ``values`` has the time axis last.  This inverts the left-aligned horizon pooling.
    """
    if level == 0:
        return values[..., :length]
    return values.repeat_interleave(2**level, dim=-1)[..., :length]
