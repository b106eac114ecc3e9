"""Where every scale's tokens sit in the packed sequence, and how adjacent scales line up.

Every window in a batch has the same context length ``C``, horizon ``H``, patch size ``p`` and
number of scales, so the token layout is the same for every row and is computed once:

``[s0 context | s0 horizon | s1 context | s1 horizon | ...]``

Token counts follow ``N_k = ceil(C_k / p)`` context tokens and ``ceil(H_k / p)`` horizon tokens,
which equals ``ceil(N_{k-1} / 2)`` on each side.  Context tokens of adjacent scales are
right-aligned at the forecast boundary, horizon tokens left-aligned (docs/strategies.md, "MSFT in
one picture").

Covariates (Moirai's any-variate input) are extra variates inside every scale's span: the
target first, then each known-future covariate (context and horizon tokens), then each
past-only covariate (context tokens only, as uni2ts packs ``past_feat_dynamic_real``):

``[s0: target ctx | target hor | known_1 ctx | known_1 hor | ... | past_1 ctx | ... | s1: ...]``

Every variate of a scale has the scale's token counts, so attention within a span is "same
sample, same scale" across variates, and the cross-scale maps link each variate to itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from msft_forecast.msft.scales import scale_lengths


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ScaleSpan:
    """Token positions of one scale in the packed sequence."""

    level: int
    start: int
    num_context: int
    num_horizon: int
    context_steps: int
    horizon_steps: int
    #: Known-future covariates (context and horizon tokens each) after the target.
    num_known: int = 0
    #: Past-only covariates (context tokens only) after the known ones.
    num_past: int = 0

    @property
    def stop(self) -> int:
        full = self.num_context + self.num_horizon
        return self.start + (1 + self.num_known) * full + self.num_past * self.num_context

    @property
    def variates(self) -> tuple[tuple[int, int, int], ...]:
        """``(first token, context tokens, horizon tokens)`` of every variate of the scale,
        the target first (its horizon tokens are the ones predicted)."""
        out, start = [], self.start
        for v in range(1 + self.num_known + self.num_past):
            horizon = self.num_horizon if v <= self.num_known else 0
            out.append((start, self.num_context, horizon))
            start += self.num_context + horizon
        return tuple(out)

    @property
    def tokens(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def horizon_tokens(self) -> slice:
        """The target's horizon tokens (the predicted ones)."""
        first = self.start + self.num_context
        return slice(first, first + self.num_horizon)


def coarse_index(num_fine_context: int, num_fine_horizon: int) -> list[int]:
    """For every token of a fine scale, the index of its coarse token within the coarse scale.

    Context tokens are right-aligned at the boundary: the two fine tokens nearest the boundary
    share the last coarse context token, and with an odd count the oldest coarse token covers a
    single fine token.  Horizon tokens are left-aligned: with an odd count the last coarse
    horizon token covers a single fine token.

    Examples
    --------
    >>> coarse_index(3, 3)
    [0, 1, 1, 2, 2, 3]
    """
    num_coarse_context = _ceil_div(num_fine_context, 2)
    ctx = [
        num_coarse_context - 1 - (num_fine_context - 1 - i) // 2 for i in range(num_fine_context)
    ]
    hor = [num_coarse_context + i // 2 for i in range(num_fine_horizon)]
    return ctx + hor


@dataclass(frozen=True)
class TokenLayout:
    """Static token layout of a multi-scale window batch.

    Parameters
    ----------
    context_length, horizon_length : int
        Steps of context and horizon at scale 0.
    patch_size : int
        Steps per token (the same at every scale).
    num_scales : int
        Number of scales, the original included.
    num_known, num_past : int, default 0
        Known-future and past-only covariates packed as extra variates of every scale.

    Examples
    --------
    >>> layout = TokenLayout(512, 96, 32, 4)
    >>> [(s.num_context, s.num_horizon) for s in layout.spans]
    [(16, 3), (8, 2), (4, 1), (2, 1)]
    """

    context_length: int
    horizon_length: int
    patch_size: int
    num_scales: int
    num_known: int = 0
    num_past: int = 0

    def __post_init__(self) -> None:
        if self.context_length < 1 or self.horizon_length < 0:
            raise ValueError("context length must be positive and horizon length >= 0")
        if self.patch_size < 1 or self.num_scales < 1:
            raise ValueError("patch_size and num_scales must be positive")

    @cached_property
    def spans(self) -> tuple[ScaleSpan, ...]:
        ctx = scale_lengths(self.context_length, self.num_scales)
        hor = scale_lengths(self.horizon_length, self.num_scales)
        spans, start = [], 0
        for level, (c, h) in enumerate(zip(ctx, hor, strict=True)):
            span = ScaleSpan(
                level, start, _ceil_div(c, self.patch_size), _ceil_div(h, self.patch_size), c, h,
                self.num_known, self.num_past,
            )  # fmt: skip
            spans.append(span)
            start = span.stop
        return tuple(spans)

    @property
    def num_tokens(self) -> int:
        return self.spans[-1].stop

    @cached_property
    def scale_of_token(self) -> Tensor:
        """``(N,)`` long: the scale of every token."""
        return torch.cat([torch.full((s.stop - s.start,), s.level) for s in self.spans])

    @cached_property
    def variate_of_token(self) -> Tensor:
        """``(N,)`` long: the variate of every token (0 the target, then the known-future
        covariates, then the past-only ones)."""
        return torch.cat([
            torch.full((nc + nh,), v)
            for s in self.spans
            for v, (_, nc, nh) in enumerate(s.variates)
        ])  # fmt: skip

    @cached_property
    def is_horizon_token(self) -> Tensor:
        """``(N,)`` bool: True on horizon (prediction) tokens."""
        out = torch.zeros(self.num_tokens, dtype=torch.bool)
        for s in self.spans:
            out[s.horizon_tokens] = True
        return out

    def coarse_maps(self) -> list[Tensor]:
        """For each adjacent pair (k, k+1), the coarse token index of every token of scale k
        (within scale k+1's span; each variate maps onto the same variate)."""
        maps = []
        for fine, coarse in zip(self.spans[:-1], self.spans[1:], strict=True):
            parts = [
                torch.tensor(coarse_index(nc, nh), dtype=torch.long) + (first - coarse.start)
                for (_, nc, nh), (first, _, _) in zip(fine.variates, coarse.variates, strict=True)
            ]
            maps.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        return maps
