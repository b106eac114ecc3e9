"""Moirai 1.x (Salesforce) as a plain, fast, checkpoint-compatible PyTorch module.

:class:`MoiraiModule` computes what uni2ts' ``MoiraiModule`` computes (see
``tests/test_moirai_parity.py``) and has the same state-dict names and shapes, so the published
``Salesforce/moirai-1.{0,1}-R-*`` weights load strictly.  It differs in how:

* standardisation statistics use segment sums over (row, sample, variate) groups, O(tokens),
  instead of an O(tokens^2) id mask;
* the per-patch-size projections run one matrix product for the patch size in use;
* rotary angles and the attention mask are computed once per forward and shared by all layers;
* attention goes through ``F.scaled_dot_product_attention`` with a mask broadcast over heads
  (none where every token may attend every other), block by block where the caller says which
  token ranges share no sample (MSFT's scales);
  the per-head variate bias is only materialised when some sample holds several variates (with
  one variate per sample the bias is constant over each query's keys, which softmax ignores).

The forward pass is split into public stages that the multi-scale engine composes::

    scaled, loc, scale = m.standardize(target, observed_mask, sample_id, variate_id, pred_mask)
    x = m.embed(scaled, patch_size, pred_mask)
    ctx = m.attention_bias(sample_id, variate_id, time_id)
    for layer in m.encoder.layers:
        x = layer(x, ctx, scale_ctx)
    distr = m.distribution(m.encoder.norm(x), patch_size, loc, scale)

Extension slots (see :mod:`msft_forecast.backbones.hooks`): every attention and FFN module owns an
empty ``lora`` ``ModuleDict`` and every layer an ``aggregator`` slot (``None``); ``scale_ctx`` is
handed to whatever fills them.

Shapes: ``B`` rows, ``N`` tokens per row, ``P = max(patch_sizes)`` values per token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.backbones.distributions import (
    AffineTransformed,
    DistributionSpec,
    DistrParamProj,
    PatchDispatch,
    distr_output_to_dict,
    moirai_mixture_spec,
    parse_distr_output,
)
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.hooks import apply_delta

__all__ = [
    "AttentionContext",
    "MoiraiConfig",
    "MoiraiModule",
    "packed_std_scale",
]

# Fixed by uni2ts' MoiraiModule rather than stored in config.json.
HEAD_DIM_DIVISOR = 64  # num_heads = d_model // 64
ROTARY_FRACTION = 0.5  # rotary embedding on the first half of each head's dims
ROTARY_BASE = 10000
NORM_EPS = 1e-5  # RMSNorm (layers, final norm, q/k norms)
SCALER_CORRECTION = 1  # ddof of the standard deviation
SCALER_MIN_SCALE = 1e-5  # added to the variance before the square root

_REQUIRED = ("d_model", "num_layers", "patch_sizes", "max_seq_len", "attn_dropout_p", "dropout_p")


def glu_hidden_dim(d_model: int) -> int:
    """FFN width of uni2ts' ``GatedLinearUnitFeedForward`` when ``d_ff`` is None."""
    return (int(4 * d_model * 2 / 3) + 7) // 8 * 8


@dataclass(frozen=True)
class MoiraiConfig:
    """Architecture of a Moirai 1.x model: the fields of its ``config.json``.

    Parameters
    ----------
    d_model : int
        Model width; ``d_model // 64`` attention heads.
    num_layers : int
        Encoder layers.
    patch_sizes : tuple of int
        Patch sizes with their own input and output projections.
    max_seq_len : int
        Rotary table length in the reference (kept for the config; positions are not capped).
    attn_dropout_p, dropout_p : float
        Dropout on attention weights and on the residual branches (training only).
    scaling : bool
        Standardise each (sample, variate) group by its observed context values.
    distr_output : MixtureOutputSpec or ComponentSpec
        Output distribution; defaults to Moirai 1.x's four-component mixture.
    """

    d_model: int
    num_layers: int
    patch_sizes: tuple[int, ...]
    max_seq_len: int
    attn_dropout_p: float = 0.0
    dropout_p: float = 0.0
    scaling: bool = True
    distr_output: DistributionSpec = field(default_factory=moirai_mixture_spec)

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        positive_int("d_model", self.d_model)
        positive_int("num_layers", self.num_layers)
        positive_int("max_seq_len", self.max_seq_len)
        if self.d_model < HEAD_DIM_DIVISOR or self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be at least {HEAD_DIM_DIVISOR} and divisible by "
                f"d_model // {HEAD_DIM_DIVISOR}, got {self.d_model}"
            )
        if self.rotary_dim % 2:
            raise ValueError(f"d_model {self.d_model} gives an odd rotary width {self.rotary_dim}")
        sizes = self.patch_sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise ValueError(f"patch_sizes must be a non-empty list of integers, got {sizes!r}")
        for size in sizes:
            positive_int("each patch size", size)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"patch_sizes must be distinct, got {list(sizes)}")
        object.__setattr__(self, "patch_sizes", tuple(sizes))
        for name in ("attn_dropout_p", "dropout_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.scaling, bool):
            raise ValueError(f"scaling must be true or false, got {self.scaling!r}")
        if isinstance(self.distr_output, Mapping):
            object.__setattr__(self, "distr_output", parse_distr_output(self.distr_output))

    @property
    def num_heads(self) -> int:
        """Attention heads (uni2ts: ``d_model // 64``)."""
        return self.d_model // HEAD_DIM_DIVISOR

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.num_heads

    @property
    def rotary_dim(self) -> int:
        """Leading dims of each head that get the rotary embedding."""
        return int(self.head_dim * ROTARY_FRACTION)

    @property
    def d_ff(self) -> int:
        """Hidden width of the gated feed-forward block."""
        return glu_hidden_dim(self.d_model)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MoiraiConfig:
        """Parse a ``config.json`` dict; never imports the ``_target_`` names it contains.

        Raises
        ------
        CheckpointError
            Missing, unknown or invalid fields, or an unknown distribution class.
        """
        if not isinstance(config, Mapping):
            raise CheckpointError(f"a Moirai config must be a JSON object, got {config!r}")
        missing = [k for k in (*_REQUIRED, "distr_output") if k not in config]
        if missing:
            raise CheckpointError(f"Moirai config.json lacks required fields {missing}")
        known = {*_REQUIRED, "scaling", "distr_output"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise CheckpointError(
                f"Moirai config.json has unexpected fields {unknown}; this loader supports "
                f"Moirai 1.x checkpoints with the fields {sorted(known)}"
            )
        distr = parse_distr_output(config["distr_output"])
        kwargs = {k: config[k] for k in _REQUIRED}
        if "patch_sizes" in kwargs and isinstance(kwargs["patch_sizes"], list):
            kwargs["patch_sizes"] = tuple(kwargs["patch_sizes"])
        try:
            return cls(**kwargs, scaling=config.get("scaling", True), distr_output=distr)
        except ValueError as err:
            raise CheckpointError(f"invalid Moirai config.json: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        """The published ``config.json`` form (upstream ``uni2ts`` ``_target_`` names)."""
        return {
            "d_model": self.d_model,
            "num_layers": self.num_layers,
            "patch_sizes": list(self.patch_sizes),
            "max_seq_len": self.max_seq_len,
            "attn_dropout_p": self.attn_dropout_p,
            "dropout_p": self.dropout_p,
            "scaling": self.scaling,
            "distr_output": distr_output_to_dict(self.distr_output),
        }

    @classmethod
    def small(cls) -> MoiraiConfig:
        """Moirai-1.x-R-small (13.8M parameters)."""
        return cls(384, 6, (8, 16, 32, 64, 128), 512)

    @classmethod
    def base(cls) -> MoiraiConfig:
        """Moirai-1.x-R-base (91.4M parameters)."""
        return cls(768, 12, (8, 16, 32, 64, 128), 512)

    @classmethod
    def large(cls) -> MoiraiConfig:
        """Moirai-1.x-R-large."""
        return cls(1024, 24, (8, 16, 32, 64, 128), 512)


# --------------------------------------------------------------------------------------------
# Standardisation
# --------------------------------------------------------------------------------------------


def packed_std_scale(
    target: Tensor,
    observed: Tensor,
    sample_id: Tensor,
    variate_id: Tensor,
    correction: int = SCALER_CORRECTION,
    minimum_scale: float = SCALER_MIN_SCALE,
) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation per (row, sample, variate) group, in float64.

    Equals uni2ts' ``PackedStdScaler``: statistics over the ``observed`` values of each group,
    ``std = sqrt(var_ddof + minimum_scale)``, a group without observations gets ``loc 0`` and
    ``scale sqrt(minimum_scale)``, and padding tokens (``sample_id == 0``) get ``loc 0, scale 1``.
    Unobserved values never enter the statistics (NaN there is harmless).

    Parameters
    ----------
    target : Tensor
        ``(B, N, P)``.
    observed : Tensor
        ``(B, N, P)`` bool, values to use.
    sample_id, variate_id : Tensor
        ``(B, N)`` integer ids.

    Returns
    -------
    loc, scale : Tensor
        ``(B, N, 1)`` float64.
    """
    rows = torch.arange(sample_id.shape[0], device=sample_id.device).unsqueeze(-1)
    s = sample_id - sample_id.min()
    v = variate_id - variate_id.min()
    key = (rows * (int(s.max()) + 1) + s) * (int(v.max()) + 1) + v
    _, group = torch.unique(key.flatten(), return_inverse=True)
    n_groups = int(group.max()) + 1

    def group_sum(per_token: Tensor) -> Tensor:
        total = per_token.new_zeros(n_groups).index_add(0, group, per_token.flatten())
        return total[group].view(per_token.shape)

    x = target.double()
    zero = x.new_zeros(())
    count = group_sum(observed.sum(-1, dtype=torch.float64))
    loc = group_sum(torch.where(observed, x, zero).sum(-1)) / torch.where(count == 0, 1.0, count)
    loc = loc.unsqueeze(-1)
    sq_dev = torch.where(observed, (x - loc) ** 2, zero).sum(-1)
    denom = count - correction
    var = group_sum(sq_dev) / torch.where(denom == 0, 1.0, denom)
    scale = torch.sqrt(var + minimum_scale).unsqueeze(-1)
    pad = (sample_id == 0).unsqueeze(-1)
    return torch.where(pad, 0.0, loc), torch.where(pad, 1.0, scale)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis, with a learned gain."""

    def __init__(self, dim: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # same dtype for input and gain keeps the fused kernel under autocast
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


class MultiInSizeLinear(nn.Module):
    """Patch values -> ``d_model``, one map per patch size (uni2ts' ``MultiInSizeLinear``).

    ``weight`` is ``(len(patch_sizes), out_features, max(patch_sizes))``; patch size ``p`` uses
    the first ``p`` input columns.  Tokens whose patch size is not configured map to zeros.
    """

    def __init__(self, patch_sizes: Sequence[int], out_features: int) -> None:
        super().__init__()
        self.patch_sizes = tuple(patch_sizes)
        self.out_features = out_features
        n, max_in = len(self.patch_sizes), max(self.patch_sizes)
        self.weight = nn.Parameter(torch.empty(n, out_features, max_in))
        self.bias = nn.Parameter(torch.empty(n, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform on the live columns, zeros elsewhere (uni2ts' initialisation)."""
        with torch.no_grad():
            for idx, size in enumerate(self.patch_sizes):
                nn.init.kaiming_uniform_(self.weight[idx, :, :size], a=math.sqrt(5))
                self.weight[idx, :, size:].zero_()
                nn.init.uniform_(self.bias[idx], -1 / math.sqrt(size), 1 / math.sqrt(size))

    def _one(self, x: Tensor, idx: int) -> Tensor:
        size = self.patch_sizes[idx]
        return F.linear(x[..., :size], self.weight[idx, :, :size], self.bias[idx])

    def forward(self, x: Tensor, patch_size: Tensor | int) -> Tensor:
        """Map ``(B, N, P)`` patches to ``(B, N, out_features)``."""
        dispatch = PatchDispatch(patch_size, self.patch_sizes)
        if dispatch.uniform is not None:
            return self._one(x, dispatch.uniform)
        out: Tensor | None = None
        for idx, mask in dispatch.groups:
            part = self._one(x[mask], idx)
            if out is None:
                out = part.new_zeros(*x.shape[:-1], self.out_features)
            out[mask] = part
        if out is None:
            out = x.new_zeros(*x.shape[:-1], self.out_features)
        return out


def _cast(x: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if x is None else x.to(dtype)


@dataclass
class AttentionContext:
    """Per-forward attention inputs shared by all layers (see :meth:`MoiraiModule.attention_bias`).

    Attributes
    ----------
    blocks : tuple of slice
        Token ranges attended on their own: no token attends outside its block.  One block of
        all ``N`` tokens for a plain Moirai pass; MSFT passes one block per scale, so the
        attention's cost is the sum of the squared scale lengths, not the square of their sum.
    masks : tuple of (Tensor or None)
        Per block, ``(B, 1, n, n)`` float, 0 where a query may attend to a key (same sample)
        and ``-inf`` elsewhere; ``None`` where every token of the block may attend to every
        other (attention then runs without a mask).
    same_variate : tuple of (Tensor or None)
        Per block, ``(B, 1, n, n)`` float, 1 where query and key share a variate id.  ``None``
        when no sample of the block holds two variates: the binary variate bias is then
        constant along every query's admissible keys and softmax ignores it.
    rotary : Tensor
        ``(B, N, 1, rotary_dim // 2)`` complex64, ``exp(i * time_id * theta)`` per token.
    """

    blocks: tuple[slice, ...]
    masks: tuple[Tensor | None, ...]
    same_variate: tuple[Tensor | None, ...]
    rotary: Tensor
    _cast: dict[Any, Any] = field(default_factory=dict, repr=False)

    def split(self, t: Tensor, dim: int) -> list[Tensor]:
        """The blocks of ``t`` along ``dim``.

        When the blocks tile the tokens in order (MSFT's scales do) this is one ``split``,
        whose backward is one concatenation; slicing block by block would zero-fill a
        full-size gradient per block and add them up.
        """
        sizes = self._tiling(t.shape[dim])
        if sizes is not None:
            return list(t.split(sizes, dim))
        return [t[(slice(None),) * dim + (sl,)] for sl in self.blocks]

    def _tiling(self, n: int) -> list[int] | None:
        """The blocks' sizes when they tile ``n`` tokens in order, else None (cached: the
        blocks are fixed and :meth:`split` runs three times per layer)."""
        key = ("tiling", n)
        if key not in self._cast:
            bounds = [sl.indices(n) for sl in self.blocks]
            starts = [a for a, _, _ in bounds]
            stops = [b for _, b, _ in bounds]
            in_order = starts == [0, *stops[:-1]] and stops[-1] == n
            tiles = in_order and all(step == 1 for _, _, step in bounds)
            self._cast[key] = [b - a for a, b in zip(starts, stops, strict=True)] if tiles else None
        return self._cast[key]

    def masks_for(self, dtype: torch.dtype) -> list[tuple[Tensor | None, Tensor | None]]:
        """``(mask, same_variate)`` of every block in ``dtype`` (cached: bf16 attention needs a
        bf16 mask)."""
        if dtype not in self._cast:
            self._cast[dtype] = [
                (_cast(mask, dtype), _cast(same, dtype))
                for mask, same in zip(self.masks, self.same_variate, strict=True)
            ]
        return self._cast[dtype]

    def rotate(self, x: Tensor) -> Tensor:
        """Rotary embedding of the leading dims of ``x`` ``(B, N, H, head_dim)``.

        Dims ``2i, 2i+1`` form a pair (uni2ts' ``RotaryProjection`` layout), so the rotation is
        one complex product, with the products and sums of the reference's
        ``cos * x + sin * rotate(x)``.
        """
        half = self.rotary.shape[-1]
        width = 2 * half
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        if work.stride(-1) != 1:
            work = work.contiguous()
        rot = self.rotary
        if work.dtype == torch.float64:
            if "rotary128" not in self._cast:
                self._cast["rotary128"] = rot.to(torch.complex128)
            rot = self._cast["rotary128"]
        pairs = torch.view_as_complex(work[..., :width].unflatten(-1, (half, 2)))
        if torch.is_grad_enabled() and work.requires_grad:
            rotated = torch.view_as_real(pairs * rot).flatten(-2)
            out = torch.cat((rotated, work[..., width:]), dim=-1)
        else:  # write in place of a copy: a third of the memory traffic
            out = torch.empty_like(work)
            torch.mul(
                pairs, rot, out=torch.view_as_complex(out[..., :width].unflatten(-1, (half, 2)))
            )
            out[..., width:] = work[..., width:]
        return out.to(x.dtype)


class MoiraiAttention(nn.Module):
    """Multi-head self-attention with q/k RMSNorm, rotary time and binary variate bias."""

    def __init__(self, d_model: int, num_heads: int, attn_dropout_p: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.attn_dropout_p = attn_dropout_p
        self.softmax_scale = 1 / math.sqrt(self.head_dim)
        # Creation order mirrors the reference so that state-dict order matches too.
        self.var_attn_bias = BinaryAttentionBias(num_heads)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, ctx: AttentionContext, scale_ctx: Any = None) -> Tensor:
        """Attend within samples; ``x`` is ``(B, N, d_model)``, already normed."""
        b, n, _ = x.shape
        heads = (b, n, self.num_heads, self.head_dim)
        q = apply_delta(self.lora, "q", x, self.q_proj(x), scale_ctx)
        k = apply_delta(self.lora, "k", x, self.k_proj(x), scale_ctx)
        v = apply_delta(self.lora, "v", x, self.v_proj(x), scale_ctx)
        q = ctx.rotate(self.q_norm(q.view(heads)))
        k = ctx.rotate(self.k_norm(k.view(heads)))
        dtype = v.dtype
        q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v.view(heads)))
        outs = []
        blocks = zip(ctx.split(q, 2), ctx.split(k, 2), ctx.split(v, 2), strict=True)
        for (qb, kb, vb), (mask, same) in zip(blocks, ctx.masks_for(dtype), strict=True):
            if same is not None:
                mask = self.var_attn_bias(torch.zeros_like(same) if mask is None else mask, same)
            outs.append(
                F.scaled_dot_product_attention(
                    qb,
                    kb,
                    vb,
                    attn_mask=mask,
                    dropout_p=self.attn_dropout_p if self.training else 0.0,
                    scale=self.softmax_scale,
                )
            )
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        out = out.transpose(1, 2).reshape(b, n, -1)
        return apply_delta(self.lora, "out", out, self.out_proj(out), scale_ctx)


class BinaryAttentionBias(nn.Module):
    """Per-head bias ``emb[1]`` for same-variate pairs and ``emb[0]`` otherwise."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(2, num_heads)

    def forward(self, mask: Tensor, same_variate: Tensor) -> Tensor:
        """Add the bias to ``mask`` ``(B, 1, N, N)``; returns ``(B, heads, N, N)``.

        Adds ``same * (emb[1] - emb[0])``: it differs from the reference's bias by ``emb[0]``,
        a per-head constant that softmax cancels, and needs one fused pass instead of three.
        """
        weight = self.emb.weight.to(mask.dtype)
        delta = (weight[1] - weight[0]).view(1, -1, 1, 1)
        return torch.addcmul(mask, same_variate, delta)


class GatedFeedForward(nn.Module):
    """SwiGLU block ``fc2(silu(fc_gate(x)) * fc1(x))`` without biases."""

    def __init__(self, d_model: int, hidden: int, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.dropout_p = dropout_p
        self.fc1 = nn.Linear(d_model, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d_model, bias=False)
        self.fc_gate = nn.Linear(d_model, hidden, bias=False)
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """``(B, N, d_model) -> (B, N, d_model)``."""
        gate = apply_delta(self.lora, "fc_gate", x, self.fc_gate(x), scale_ctx)
        up = apply_delta(self.lora, "fc1", x, self.fc1(x), scale_ctx)
        h = F.silu(gate) * up
        h = F.dropout(h, self.dropout_p, self.training)
        out = apply_delta(self.lora, "fc2", h, self.fc2(h), scale_ctx)
        return F.dropout(out, self.dropout_p, self.training)


class MoiraiEncoderLayer(nn.Module):
    """Pre-norm layer: attention, optional cross-scale aggregator, gated FFN."""

    def __init__(self, config: MoiraiConfig) -> None:
        super().__init__()
        self.dropout_p = config.dropout_p
        self.self_attn = MoiraiAttention(config.d_model, config.num_heads, config.attn_dropout_p)
        self.ffn = GatedFeedForward(config.d_model, config.d_ff, config.dropout_p)
        self.norm1 = RMSNorm(config.d_model)
        self.norm2 = RMSNorm(config.d_model)
        self.aggregator: nn.Module | None = None

    def forward(self, x: Tensor, ctx: AttentionContext, scale_ctx: Any = None) -> Tensor:
        """``(B, N, d_model) -> (B, N, d_model)``."""
        attn = self.self_attn(self.norm1(x), ctx, scale_ctx)
        h = x + F.dropout(attn, self.dropout_p, self.training)
        if self.aggregator is not None:
            h = h + self.aggregator(h, scale_ctx)
        return h + self.ffn(self.norm2(h), scale_ctx)


class MoiraiEncoder(nn.Module):
    """Stack of :class:`MoiraiEncoderLayer` followed by a final RMSNorm."""

    def __init__(self, config: MoiraiConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MoiraiEncoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.d_model)

    def forward(self, x: Tensor, ctx: AttentionContext, scale_ctx: Any = None) -> Tensor:
        """Run every layer, then the final norm: ``(B, N, d_model) -> (B, N, d_model)``."""
        for layer in self.layers:
            x = layer(x, ctx, scale_ctx)
        return self.norm(x)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class MoiraiModule(nn.Module):
    """Moirai 1.x masked encoder over packed patch tokens.

    Parameters
    ----------
    config : MoiraiConfig

    Notes
    -----
    Inputs use uni2ts' packed layout: each row of ``B`` holds ``N`` tokens from one or more
    series (``sample_id`` 1, 2, ...; 0 marks padding), each token a patch of up to
    ``P = max(patch_sizes)`` values, left-aligned and zero-padded to ``P``.
    """

    def __init__(self, config: MoiraiConfig) -> None:
        super().__init__()
        self.config = config
        self.d_model = config.d_model
        self.num_layers = config.num_layers
        self.patch_sizes = config.patch_sizes
        self.max_seq_len = config.max_seq_len
        self.scaling = config.scaling
        self.mask_encoding = nn.Embedding(1, config.d_model)
        self.in_proj = MultiInSizeLinear(config.patch_sizes, config.d_model)
        self.encoder = MoiraiEncoder(config)
        self.param_proj = DistrParamProj(config.distr_output, config.d_model, config.patch_sizes)

    # -- stages ---------------------------------------------------------------------------------

    def standardize(
        self,
        target: Tensor,
        observed_mask: Tensor,
        sample_id: Tensor,
        variate_id: Tensor,
        prediction_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Standardise each (sample, variate) group by its observed, non-horizon values.

        Parameters
        ----------
        target : Tensor
            ``(B, N, P)`` patch values.
        observed_mask : Tensor
            ``(B, N, P)`` bool, False where a value is missing or padding.
        sample_id, variate_id : Tensor
            ``(B, N)`` integer ids; ``sample_id == 0`` is padding (``loc 0``, ``scale 1``).
        prediction_mask : Tensor
            ``(B, N)`` bool, True on horizon tokens (excluded from the statistics).

        Returns
        -------
        scaled_target : Tensor
            ``(target - loc) / scale``, ``(B, N, P)``.
        loc, scale : Tensor
            ``(B, N, 1)`` float32.
        """
        if self.scaling:
            observed = observed_mask.bool() & ~prediction_mask.bool().unsqueeze(-1)
            loc, scale = packed_std_scale(target, observed, sample_id, variate_id)
            loc, scale = loc.float(), scale.float()
        else:
            loc = target.new_zeros(*target.shape[:-1], 1, dtype=torch.float32)
            scale = torch.ones_like(loc)
        return (target - loc) / scale, loc, scale

    def embed(
        self, scaled_target: Tensor, patch_size: Tensor | int, prediction_mask: Tensor
    ) -> Tensor:
        """Input projection of each token's patch, then the mask embedding on horizon tokens.

        Returns
        -------
        Tensor
            ``(B, N, d_model)``.
        """
        reprs = self.in_proj(scaled_target, patch_size)
        return torch.where(prediction_mask.bool().unsqueeze(-1), self.mask_encoding.weight, reprs)

    def attention_bias(
        self,
        sample_id: Tensor,
        variate_id: Tensor,
        time_id: Tensor,
        blocks: Sequence[slice] | None = None,
    ) -> AttentionContext:
        """Masks, variate-bias indicators and rotary factors, computed once for all layers.

        Parameters
        ----------
        sample_id : Tensor
            ``(B, N)``; tokens attend only to tokens with the same id.
        variate_id : Tensor
            ``(B, N)``; drives the per-head binary bias.
        time_id : Tensor
            ``(B, N)`` non-negative positions for the rotary embedding.
        blocks : sequence of slice, optional
            Token ranges that share no sample id with each other (then attention runs block
            by block, with the same result as over all tokens); default one block of all.

        Returns
        -------
        AttentionContext
        """
        blocks = tuple(blocks) if blocks is not None else (slice(0, sample_id.shape[1]),)
        masks, sames = [], []
        for sl in blocks:
            sid, vid = sample_id[:, sl], variate_id[:, sl]
            allowed = (sid.unsqueeze(-1) == sid.unsqueeze(-2)).unsqueeze(1)
            mask = None
            if not bool(allowed.all()):
                mask = torch.zeros(allowed.shape, device=sid.device)
                mask = mask.masked_fill(~allowed, -math.inf)
            same_variate = None
            if bool((vid != vid[..., :1]).any()):
                same = (vid.unsqueeze(-1) == vid.unsqueeze(-2)).unsqueeze(1)
                if bool((allowed & ~same).any()):  # some sample mixes variates
                    same_variate = same.float()
            masks.append(mask)
            sames.append(same_variate)
        width = self.config.rotary_dim
        theta = 1.0 / torch.pow(
            ROTARY_BASE,
            torch.arange(0, width, 2, dtype=torch.float32, device=time_id.device) / width,
        )
        angle = (time_id.float().unsqueeze(-1) * theta).unsqueeze(-2)
        rotary = torch.complex(torch.cos(angle), torch.sin(angle))
        return AttentionContext(blocks, tuple(masks), tuple(sames), rotary)

    def distribution(
        self, reprs: Tensor, patch_size: Tensor | int, loc: Tensor, scale: Tensor
    ) -> AffineTransformed:
        """Output projection of the encoded tokens to the de-standardised distribution.

        Returns
        -------
        AffineTransformed
            Elementwise over ``(B, N, P)``: ``mean``, ``variance``, ``stddev``,
            ``log_prob(x)``, ``sample(shape)``.
        """
        return self.param_proj.distribution(reprs, patch_size, loc, scale)

    # -- full pass ------------------------------------------------------------------------------

    def forward(
        self,
        target: Tensor,
        observed_mask: Tensor,
        sample_id: Tensor,
        time_id: Tensor,
        variate_id: Tensor,
        prediction_mask: Tensor,
        patch_size: Tensor | int,
        scale_ctx: Any = None,
    ) -> AffineTransformed:
        """Predictive distribution for every value of every token.

        Parameters
        ----------
        target : Tensor
            ``(B, N, P)``.
        observed_mask : Tensor
            ``(B, N, P)`` bool.
        sample_id, time_id, variate_id : Tensor
            ``(B, N)`` integer ids.
        prediction_mask : Tensor
            ``(B, N)`` bool, True on horizon tokens.
        patch_size : Tensor or int
            ``(B, N)`` patch size per token, or one for all.
        scale_ctx : object, optional
            Handed unchanged to the extension slots of every layer.

        Returns
        -------
        AffineTransformed
        """
        scaled, loc, scale = self.standardize(
            target, observed_mask, sample_id, variate_id, prediction_mask
        )
        x = self.embed(scaled, patch_size, prediction_mask)
        ctx = self.attention_bias(sample_id, variate_id, time_id)
        x = self.encoder(x, ctx, scale_ctx)
        return self.distribution(x, patch_size, loc, scale)
