"""The trainable parts MSFT adds to a frozen backbone (docs/strategies.md, "MSFT in one picture").

* :class:`ScaleAdapters` - one identity-initialised ``Linear(d, d)`` per scale after the frozen
  input projection;
* :class:`ScaleLoRA` - a low-rank delta per scale on a frozen projection (zero-initialised ``B``),
  attached to the backbone's ``lora`` slots;
* :class:`CrossScaleAggregator` - coarse-to-fine and fine-to-coarse exchange between adjacent
  scales after each layer's attention, zero-initialised, attached to the ``aggregator`` slots.

The other parameter-efficient strategies use the same slots: ``"adalora"`` puts an
:class:`~msft_forecast.msft.adalora.AdaLoRA` in the ``lora`` slots (:func:`lora_for`), and
``"prompt-tuning"`` prepends :class:`PromptTokens` to the encoder's input.

All three are exact no-ops at initialisation, so an untrained MSFT model computes what the
frozen backbone computes.  They route tokens by the static :class:`ScaleContext`, never by
variate id.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from msft_forecast.msft.adalora import AdaLoRA
from msft_forecast.msft.layout import ScaleSpan, TokenLayout
from msft_forecast.msft.strategies import StrategySpec


@dataclass
class ScaleContext:
    """What the scale-aware modules need to know about the packed token sequence.

    Attributes
    ----------
    spans : tuple of ScaleSpan
        Token range of every scale (the same in every row).
    coarse_maps : list of Tensor
        For each adjacent pair (k, k+1), the coarse index of every scale-k token (on device).
    coarse_counts : list of Tensor
        ``(B, n_{k+1})`` how many valid fine tokens feed each coarse token (at least 1).
    valid : Tensor
        ``(B, N)`` bool, False on tokens that are entirely padding before a series' start.
    """

    spans: tuple[ScaleSpan, ...]
    coarse_maps: list[Tensor]
    coarse_counts: list[Tensor]
    valid: Tensor
    _cache: dict = field(default_factory=dict, repr=False)

    def valid_by_scale(self, dtype: torch.dtype) -> tuple[Tensor | None, ...]:
        """Per scale, ``(B, n_k, 1)`` 1.0 on valid tokens and 0.0 on padding, or ``None`` when
        every token of the scale is valid (no mask to apply); cached per dtype."""
        if dtype not in self._cache:
            parts = split_scales(self.valid.unsqueeze(-1), self.spans)
            self._cache[dtype] = tuple(None if bool(v.all()) else v.to(dtype) for v in parts)
        return self._cache[dtype]

    @classmethod
    def build(cls, layout: TokenLayout, valid: Tensor) -> ScaleContext:
        maps = [m.to(valid.device) for m in layout.coarse_maps()]
        counts = []
        for fine, coarse, index in zip(layout.spans[:-1], layout.spans[1:], maps, strict=True):
            weight = valid[:, fine.tokens].to(torch.float32)
            count = torch.zeros(valid.shape[0], coarse.stop - coarse.start, device=valid.device)
            count.index_add_(1, index, weight)
            counts.append(count.clamp(min=1.0))
        return cls(layout.spans, maps, counts, valid)


def split_scales(x: Tensor, spans: tuple[ScaleSpan, ...]) -> tuple[Tensor, ...]:
    """The tokens of every scale (axis 1), in order: one ``split``, whose backward is one
    concatenation, where slicing scale by scale would zero-fill a full gradient per scale."""
    return x.split([s.stop - s.start for s in spans], dim=1)


@functools.lru_cache(maxsize=32)
def _scale_blocks(
    spans: tuple[ScaleSpan, ...], blocks: int, width: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``(N, blocks * width)`` 1 where a column block is the token's own scale's, else 0.

    Block ``k`` (columns ``k * width`` to ``(k + 1) * width``) belongs to scale ``k``; masking a
    stack of per-scale projections with it keeps every token's own scale.  The layout is
    static, so the mask is built once per layout, width, dtype and device.
    """
    mask = torch.zeros(spans[-1].stop, blocks * width, dtype=dtype)
    for s in spans:
        mask[s.tokens, s.level * width : (s.level + 1) * width] = 1
    return mask.to(device)


def _per_scale(x: Tensor, spans: tuple[ScaleSpan, ...], fns: list) -> Tensor:
    """Apply ``fns[k]`` to the tokens of scale ``k`` and put the pieces back in order."""
    parts = split_scales(x, spans)
    return torch.cat([fns[s.level](part) for s, part in zip(spans, parts, strict=True)], dim=1)


class ScaleAdapters(nn.Module):
    """One ``Linear(d, d)`` per scale, initialised to the identity with zero bias."""

    def __init__(self, d_model: int, num_scales: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(num_scales))
        for linear in self.linears:
            nn.init.eye_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, ctx: ScaleContext) -> Tensor:
        return _per_scale(x, ctx.spans, list(self.linears))


class ScaleLoRA(nn.Module):
    """Low-rank update ``(alpha / r) * B_k A_k x`` with separate ``A_k, B_k`` per scale.

    With ``shared=True`` (the ablation "without scale-specific LoRA", and the single-scale
    ``"lora"`` strategy) one pair serves every scale.

    Parameters
    ----------
    in_features, out_features : int
        Shape of the frozen projection.
    num_scales : int
        Number of scales.
    rank, alpha : int, float
        LoRA rank and scaling numerator.
    shared : bool
        One LoRA for all scales.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_scales: int,
        rank: int = 16,
        alpha: float = 16.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        n = 1 if shared else num_scales
        self.shared = shared or num_scales == 1
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(n, rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(n, out_features, rank))
        for a in self.lora_A:
            # the initialisation of nn.Linear (and of PEFT's LoRA A)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    @staticmethod
    def _delta(a: Tensor, b: Tensor):
        return lambda x: (x @ a.transpose(0, 1).to(x.dtype)) @ b.transpose(0, 1).to(x.dtype)

    def forward(self, x: Tensor, ctx: ScaleContext | None) -> Tensor:
        if self.shared or ctx is None:
            return self._delta(self.lora_A[0], self.lora_B[0])(x) * self.scaling
        if len(ctx.spans) == 1:  # one scale running alone (UniTS): its pair on every token
            level = ctx.spans[0].level
            return self._delta(self.lora_A[level], self.lora_B[level])(x) * self.scaling
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return self._stacked(x, ctx.spans) * self.scaling
        # unbind: one backward for all scales, where indexing lora_A[k] would zero-fill a
        # full-size gradient per scale
        pairs = zip(self.lora_A.unbind(0), self.lora_B.unbind(0), strict=True)
        fns = [self._delta(a, b) for a, b in pairs]
        return _per_scale(x, ctx.spans, fns) * self.scaling

    def _stacked(self, x: Tensor, spans: tuple[ScaleSpan, ...]) -> Tensor:
        """Every scale's update in two matmuls over all tokens: the stacked ranks (``K r``
        wide) are masked to each token's own scale in between.

        The masked entries are exact zeros, so every token gets its own scale's update and
        every pair gradients from its own scale's tokens only, as with a pair per scale.  It
        costs ``K`` times the low-rank FLOPs but a split, ``2K`` matmuls and a concatenation
        fewer; under CPU bf16 autocast, where every small matmul also casts its inputs, that
        is faster (per update 1.1 ms against 1.6-1.8 ms forward and backward on
        Moirai-small's shapes), in float32 slower (1.5 ms against 1.1-1.3 ms), so
        :meth:`forward` stacks under CPU autocast only.
        """
        n, rank, d = self.lora_A.shape
        z = x @ self.lora_A.reshape(n * rank, d).transpose(0, 1).to(x.dtype)
        z = z * _scale_blocks(spans, n, rank, z.dtype, z.device)
        # (K, out, r) -> (K r, out): row k r + j is column j of B_k, matching z's columns
        b = self.lora_B.transpose(1, 2).reshape(n * rank, -1)
        return z @ b.to(z.dtype)


def lora_for(spec: StrategySpec, in_features: int, out_features: int) -> nn.Module:
    """The low-rank update a strategy puts on a frozen ``in -> out`` projection: AdaLoRA at its
    initial rank, or :class:`ScaleLoRA`."""
    if spec.adalora:
        return AdaLoRA(in_features, out_features, spec.adalora_init_rank, spec.lora_alpha)
    return ScaleLoRA(
        in_features, out_features, spec.num_scales, spec.lora_rank, spec.lora_alpha,
        spec.shared_lora,
    )  # fmt: skip


class PromptTokens(nn.Module):
    """``n`` learned tokens prepended to every row of the encoder's input (prompt tuning,
    Lester et al., 2021), drawn from N(0, 1) as peft's random prompt initialisation."""

    def __init__(self, num_tokens: int, d_model: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_tokens, d_model))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def prepend(self, x: Tensor) -> Tensor:
        """``(B, N, d) -> (B, n + N, d)``, the prompts first."""
        prompts = self.tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([prompts, x], dim=1)


class _Projection(nn.Module):
    """A zero-initialised map ``d -> d``: full, or low rank ``up(down(x))`` with ``up = 0``."""

    def __init__(self, d_model: int, rank: int | None) -> None:
        super().__init__()
        if rank is None:
            self.down = None
            self.up = nn.Linear(d_model, d_model, bias=False)
        else:
            self.down = nn.Linear(d_model, rank, bias=False)
            self.up = nn.Linear(rank, d_model, bias=False)
        nn.init.zeros_(self.up.weight)

    def reduce(self, x: Tensor) -> Tensor:
        """The first factor (identity for a full map)."""
        return x if self.down is None else self.down(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.reduce(x))


def _masked(x: Tensor, valid: Tensor | None) -> Tensor:
    return x if valid is None else x * valid


class CrossScaleAggregator(nn.Module):
    """Both-direction exchange between adjacent scales, computed from pre-fusion states.

    For each adjacent pair (fine k, coarse k+1):

    * coarse to fine: ``phi_k(coarse)`` repeated onto the (one or two) fine tokens each coarse
      token covers;
    * fine to coarse: ``phi'_k(fine)`` averaged over the valid fine tokens each coarse token
      covers.

    Alignment (right-aligned contexts, left-aligned horizons) comes from
    :meth:`TokenLayout.coarse_maps`.  Padding tokens send nothing.

    Parameters
    ----------
    d_model : int
        Token width.
    num_scales : int
        Number of scales (``num_scales - 1`` adjacent pairs).
    rank : int or None
        Rank of each projection; ``None`` for a full ``d x d`` map.
    """

    def __init__(self, d_model: int, num_scales: int, rank: int | None = 64) -> None:
        super().__init__()
        pairs = num_scales - 1
        self.coarse_to_fine = nn.ModuleList(_Projection(d_model, rank) for _ in range(pairs))
        self.fine_to_coarse = nn.ModuleList(_Projection(d_model, rank) for _ in range(pairs))

    def forward(self, h: Tensor, ctx: ScaleContext) -> Tensor:
        parts = split_scales(h, ctx.spans)
        if len(parts) < 2:
            return torch.zeros_like(h)
        valid = ctx.valid_by_scale(h.dtype)
        received: list[list[Tensor]] = [[] for _ in parts]
        # The maps are linear without bias, so masking and pooling happen in the low-rank
        # space (``rank`` wide, not ``d``), and the fine-to-coarse map's second factor runs on
        # the coarse tokens only.
        for k in range(len(parts) - 1):
            index = ctx.coarse_maps[k]
            c2f, f2c = self.coarse_to_fine[k], self.fine_to_coarse[k]
            down = c2f.up(_masked(c2f.reduce(parts[k + 1]), valid[k + 1]))
            received[k].append(down[:, index])
            z = _masked(f2c.reduce(parts[k]), valid[k])
            pooled = z.new_zeros(z.shape[0], parts[k + 1].shape[1], z.shape[-1])
            pooled = pooled.index_add(1, index, z) / ctx.coarse_counts[k].unsqueeze(-1).to(z.dtype)
            received[k + 1].append(f2c.up(pooled))
        return torch.cat([sum(r[1:], r[0]) for r in received], dim=1)
