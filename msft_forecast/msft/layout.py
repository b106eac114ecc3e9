"""Where every scale's tokens sit in the packed sequence, and how adjacent scales line up.

Every window in a batch has the same context length ``C``, horizon ``H``, patch size ``p`` and
number of scales, so the token layout is the same for every row and is computed once:

``[s0 context | s0 horizon | s1 context | s1 horizon | ...]``

Token counts follow ``N_k = ceil(C_k / p)`` context tokens and ``ceil(H_k / p)`` horizon tokens,
which equals ``ceil(N_{k-1} / 2)`` on each side.  Context tokens of adjacent scales are
right-aligned at the forecast boundary, horizon tokens left-aligned (docs/strategies.md, "MSFT in
one picture").
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

    @property
    def stop(self) -> int:
        return self.start + self.num_context + self.num_horizon

    @property
    def tokens(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def horizon_tokens(self) -> slice:
        return slice(self.start + self.num_context, self.stop)


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
                level, start, _ceil_div(c, self.patch_size), _ceil_div(h, self.patch_size), c, h
            )
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
    def is_horizon_token(self) -> Tensor:
        """``(N,)`` bool: True on horizon (prediction) tokens."""
        out = torch.zeros(self.num_tokens, dtype=torch.bool)
        for s in self.spans:
            out[s.horizon_tokens] = True
        return out

    def coarse_maps(self) -> list[Tensor]:
        """For each adjacent pair (k, k+1), the coarse token index of every token of scale k."""
        return [
            torch.tensor(coarse_index(f.num_context, f.num_horizon), dtype=torch.long)
            for f in self.spans[:-1]
        ]
