"""UniTS (Gao et al., 2024) forecasting path as a plain, checkpoint-compatible module.

The module re-implements the forecasting task of ``models/UniTS.py`` of mims-harvard/UniTS
(MIT licence) with the same parameter names and shapes, so the published ``*.pth`` state dicts
load unchanged (see :mod:`msft_forecast.backbones.units_checkpoint`).  Parts that only the
classification and pre-training tasks use are not allocated (:data:`IGNORED_CHECKPOINT_PATTERNS`).

Tokens have the shape (B, V, T, d): batch, variables, tokens on the time axis, width.  Each block
runs attention along time within each variable, attention across variables (queries and keys
averaged over time), then a convolutional MLP whose first half of channels is mixed along time
by "dynamic linear" maps (weights resized by bilinear interpolation to the token count).  The
forward pass is split into stages so that the multi-scale engine can compose them::

    x_norm, stats = m.normalize(x)                       # (B, L, V) -> (B, V, L_padded)
    tokens = m.embed_patches(x_norm)                     # (B, V, N, d)
    h = m.prompt_forecast_tokens(tokens, "ETTh1", n_pred)  # (B, V, P + N + n_pred, d)
    h = m.encode(h)                                      # blocks          (same shape)
    y = m.forecast_head(h, n_tokens)                     # (B, V, n_tokens * patch_len)
    out = m.denormalize(y, stats)                        # (B, steps, V)

:meth:`UnitsModule.forecast` runs them as the reference's ``forecast`` task does.

Every attention module has an empty ``lora`` :class:`~torch.nn.ModuleDict` (entries ``"qkv"``
and ``"proj"``) and every block an ``aggregator`` slot after its time attention (see
:mod:`msft_forecast.backbones.hooks`); empty slots add no state-dict entries and leave the output
bit-for-bit unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.hooks import apply_delta

__all__ = [
    "IGNORED_CHECKPOINT_PATTERNS",
    "UnitsConfig",
    "UnitsModule",
    "UnitsStats",
    "forecast_token_counts",
    "is_ignored_key",
]

#: State-dict keys of published checkpoints that the forecasting path never reads, so they are
#: not allocated: the classification head and tokens, the pre-training head and CLS tokens, the
#: ``cls_prompts`` the authors' own loader drops, and the ``proj`` layers that the reference's
#: ``SeqAttBlock`` and ``VarAttBlock`` create but never call.
IGNORED_CHECKPOINT_PATTERNS: tuple[str, ...] = (
    r"cls_head\..*",
    r"pretrain_head\..*",
    r"cls_tokens\..*",
    r"category_tokens\..*",
    r".*cls_prompts.*",
    r"blocks\.\d+\.(seq|var)_att_block\.proj\.(weight|bias)",
)
_IGNORED = re.compile("|".join(f"(?:{p})" for p in IGNORED_CHECKPOINT_PATTERNS))

#: Standard deviation of the prompt tokens of a data set that is new to a checkpoint (the
#: authors' ``torch.nn.init.normal_(..., std=.02)``; its mask token starts at zero).
PROMPT_INIT_STD = 0.02

# Variance floor of the non-stationary-transformer normalisation (inside the square root).
_NORM_EPS = 1e-5


def is_ignored_key(key: str) -> bool:
    """Whether a published state-dict key belongs to :data:`IGNORED_CHECKPOINT_PATTERNS`."""
    return _IGNORED.fullmatch(key) is not None


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitsConfig:
    """Architecture of a UniTS model (the reference's ``args``).

    Published checkpoints carry no config file;
    :func:`~msft_forecast.backbones.units_checkpoint.infer_config` reads these values from the
    tensor shapes.

    Parameters
    ----------
    d_model : int
        Token width (128 in the published ``x128`` model).
    num_layers : int
        Number of blocks (``e_layers``; 3 published).
    num_heads : int
        Attention heads (``n_heads``; 8, the authors' default).  Not visible in the weights.
    patch_len : int
        Patch length, equal to the stride (16 published; the reference asserts equality).
    prompt_num : int
        Prompt tokens per variable (10 published).
    dynamic_width : int
        Stored size of the time-mixing weights of ``prompt2forecat`` and the forecast head's
        ``pos_proj`` (128 in the reference), resized to each token count.
    max_positions : int
        Rows of the learnable position table (5000 in the reference).
    dropout : float
        Dropout of the patch embedding, the block MLPs and the head (0.1), train mode only.
    """

    d_model: int
    num_layers: int
    num_heads: int = 8
    patch_len: int = 16
    prompt_num: int = 10
    dynamic_width: int = 128
    max_positions: int = 5000
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "d_model",
            "num_layers",
            "num_heads",
            "patch_len",
            "prompt_num",
            "dynamic_width",
            "max_positions",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(
                    f"UniTS config: {name} must be a positive integer, got {value!r}."
                )
        if self.d_model % self.num_heads:
            raise CheckpointError(
                f"UniTS config: d_model ({self.d_model}) is not divisible by num_heads "
                f"({self.num_heads})."
            )
        # The dynamic linear maps keep their first prompt_num inputs apart ("fixed"), so each
        # stored weight needs more inputs than that (the reference asserts the same).
        if self.prompt_num >= min(self.dynamic_width, 2 * self.d_model):
            raise CheckpointError(
                f"UniTS config: prompt_num ({self.prompt_num}) must be below dynamic_width "
                f"({self.dynamic_width}) and 2 * d_model ({2 * self.d_model})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise CheckpointError(f"UniTS config: dropout must be in [0, 1), got {self.dropout}.")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (for the engine's saved settings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitsConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"UniTS config: unknown fields {unknown}.")
        return cls(**d)


def forecast_token_counts(seq_len: int, pred_len: int, patch_len: int) -> tuple[int, int, int]:
    """Context tokens, horizon tokens and right padding of the reference's forecasting task.

    The reference right-pads the normalised context with zeros to a multiple of ``patch_len``
    and appends ``(pred_len - padding) // patch_len`` horizon tokens.  Its output covers
    ``seq_len + pred_len`` steps: the first ``padding`` forecast steps come from the padded last
    context token and steps beyond the last horizon token are 0 before de-normalisation, i.e.
    the context mean (mirrored here, see :meth:`UnitsModule.forecast`).

    Parameters
    ----------
    seq_len, pred_len, patch_len : int
        Context length, forecast length and patch length.

    Returns
    -------
    n_context, n_pred, padding : int

    Raises
    ------
    ValueError
        If ``pred_len`` is shorter than ``padding + patch_len`` (no whole horizon token: the
        reference then builds a nonsensical token sequence).

    Examples
    --------
    >>> forecast_token_counts(96, 32, 16)
    (6, 2, 0)
    >>> forecast_token_counts(100, 40, 16)
    (7, 1, 12)
    """
    if min(seq_len, pred_len, patch_len) < 1:
        raise ValueError("seq_len, pred_len and patch_len must be positive.")
    padding = -seq_len % patch_len
    n_context = (seq_len + padding) // patch_len
    n_pred = (pred_len - padding) // patch_len
    if n_pred < 1:
        raise ValueError(
            f"UniTS needs pred_len >= padding + patch_len = {padding + patch_len} for a "
            f"context of {seq_len} steps and patches of {patch_len} (the context is right-padded "
            f"by {padding} steps); got pred_len={pred_len}."
        )
    return n_context, n_pred, padding


# --------------------------------------------------------------------------------------------
# Layers (named like the reference's, so that state dicts match)
# --------------------------------------------------------------------------------------------


class DynamicLinear(nn.Module):
    """A linear map along the token axis whose stored weight is resized to each token count.

    The first ``fixed_in`` inputs (the prompt tokens) and the rest are resized separately, by
    bilinear interpolation (``align_corners=False``), to ``(out_features, fixed_in)`` and
    ``(out_features, in - fixed_in)``; the bias is resized when ``out_features`` changes.

    Parameters
    ----------
    in_features, out_features : int
        Stored weight size.
    fixed_in : int
        Leading inputs resized apart from the others.
    """

    def __init__(self, in_features: int, out_features: int, fixed_in: int = 0) -> None:
        super().__init__()
        if not fixed_in < in_features:
            raise ValueError(f"fixed_in ({fixed_in}) must be below in_features ({in_features}).")
        self.fixed_in = fixed_in
        self.weights = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, as the reference."""
        nn.init.kaiming_uniform_(self.weights, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.weights.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)

    @staticmethod
    def _resize(w: Tensor, rows: int, cols: int) -> Tensor:
        return F.interpolate(
            w[None, None], size=(rows, cols), mode="bilinear", align_corners=False
        )[0, 0]

    def forward(self, x: Tensor, out_features: int) -> Tensor:
        """Map the last axis of ``x`` (any length above ``fixed_in``) to ``out_features``."""
        fixed, dynamic = self.weights[:, : self.fixed_in], self.weights[:, self.fixed_in :]
        bias = self.bias
        n_in = x.shape[-1]
        stored_out, stored_in = self.weights.shape
        # Resize only when a size differs, as the reference does (interpolating to the same
        # size would be the identity anyway, up to rounding).
        if n_in != stored_in or out_features != stored_out:
            dynamic = self._resize(dynamic, out_features, n_in - self.fixed_in)
            if self.fixed_in:
                fixed = self._resize(fixed, out_features, self.fixed_in)
        if out_features != stored_out:
            bias = self._resize(bias[None], 1, out_features)[0]
        return F.linear(x, torch.cat((fixed, dynamic), dim=1), bias)


class SeqAttention(nn.Module):
    """Multi-head self-attention along time, within each variable, with ``lora`` slots."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """(B', T, d) -> (B', T, d)."""
        b, t, c = x.shape
        qkv = apply_delta(self.lora, "qkv", x, self.qkv(x), scale_ctx)
        q, k, v = qkv.reshape(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c)
        return self.proj_drop(apply_delta(self.lora, "proj", out, self.proj(out), scale_ctx))


class VarAttention(nn.Module):
    """Attention across variables: queries and keys averaged over time, values kept whole.

    Each variable's value is its whole (head_dim x T) slice, so a variable attends to the
    others by their time-averaged key and receives their full sequences.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d)."""
        b, v_n, t, c = x.shape
        h = self.num_heads
        qkv = apply_delta(self.lora, "qkv", x, self.qkv(x), scale_ctx)
        # (3, B, T, heads, V, head_dim)
        q, k, v = qkv.reshape(b, v_n, t, 3, h, c // h).permute(3, 0, 2, 4, 1, 5)
        q, k = q.mean(dim=1), k.mean(dim=1)  # (B, heads, V, head_dim)
        v = v.permute(0, 2, 3, 4, 1).reshape(b, h, v_n, -1)  # (B, heads, V, head_dim * T)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.view(b, h, v_n, -1, t).permute(0, 2, 4, 1, 3).reshape(b, v_n, t, c)
        return self.proj_drop(apply_delta(self.lora, "proj", out, self.proj(out), scale_ctx))


class GateLayer(nn.Module):
    """``sigmoid(gate(x)) * x``: a learned scalar gate per token on a residual branch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Gate ``x`` (..., d)."""
        return self.gate(x).sigmoid() * x


class SeqAttBlock(nn.Module):
    """Pre-norm time attention with a gated residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn_seq = SeqAttention(dim, num_heads, dropout)
        self.ls1 = GateLayer(dim)

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d)."""
        b, v_n, t, c = x.shape
        h = self.attn_seq(self.norm1(x).reshape(b * v_n, t, c), scale_ctx)
        return x + self.ls1(h.reshape(b, v_n, t, c))


class VarAttBlock(nn.Module):
    """Pre-norm variable attention with a gated residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn_var = VarAttention(dim, num_heads, dropout)
        self.ls1 = GateLayer(dim)

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d)."""
        return x + self.ls1(self.attn_var(self.norm1(x), scale_ctx))


class DynamicLinearMlp(nn.Module):
    """Convolutional MLP whose first half of hidden channels is also mixed along time.

    ``fc1`` is a width-3 convolution over time (d -> 8d).  On the first 4d channels, the prompt
    outputs come from ``prompt_fc`` and the other tokens' outputs from ``seq_fc``, both dynamic
    linear maps over all tokens; the second half passes unchanged.  GELU, then ``fc2``
    (8d -> d) per token.
    """

    def __init__(self, dim: int, hidden: int, prompt_num: int, dropout: float) -> None:
        super().__init__()
        self.prompt_num = prompt_num
        self.fc1 = nn.Conv1d(dim, hidden, 3, padding=1)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        # The reference sizes both stored weights by hidden // 4 and always gives them a bias.
        self.seq_fc = DynamicLinear(hidden // 4, hidden // 4, fixed_in=prompt_num)
        self.prompt_fc = DynamicLinear(hidden // 4, prompt_num, fixed_in=prompt_num)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d), T including the prompt tokens."""
        b, v_n, t, c = x.shape
        h = self.fc1(x.reshape(b * v_n, t, c).transpose(1, 2))  # (B * V, 8d, T)
        mixed, kept = h.chunk(2, dim=1)
        mixed = torch.cat(
            (self.prompt_fc(mixed, self.prompt_num), self.seq_fc(mixed, t - self.prompt_num)),
            dim=-1,
        )
        h = self.drop1(self.act(torch.cat((mixed, kept), dim=1))).transpose(1, 2)
        return self.drop2(self.fc2(h).view(b, v_n, t, c))


class MLPBlock(nn.Module):
    """Pre-norm :class:`DynamicLinearMlp` with a gated residual."""

    def __init__(self, dim: int, prompt_num: int, dropout: float) -> None:
        super().__init__()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DynamicLinearMlp(dim, dim * 8, prompt_num, dropout)
        self.ls2 = GateLayer(dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d)."""
        return x + self.ls2(self.mlp(self.norm2(x)))


class BasicBlock(nn.Module):
    """Time attention, optional ``aggregator``, variable attention, dynamic MLP."""

    aggregator: nn.Module | None

    def __init__(self, config: UnitsConfig) -> None:
        super().__init__()
        d = config.d_model
        self.seq_att_block = SeqAttBlock(d, config.num_heads, config.dropout)
        self.var_att_block = VarAttBlock(d, config.num_heads, config.dropout)
        self.dynamic_mlp = MLPBlock(d, config.prompt_num, config.dropout)
        self.register_module("aggregator", None)

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """(B, V, T, d) -> (B, V, T, d)."""
        x = self.seq_att_block(x, scale_ctx)
        if self.aggregator is not None:
            x = x + self.aggregator(x, scale_ctx)
        x = self.var_att_block(x, scale_ctx)
        return self.dynamic_mlp(x)


class PatchEmbedding(nn.Module):
    """Non-overlapping patches -> tokens (a bias-free linear map)."""

    def __init__(self, config: UnitsConfig) -> None:
        super().__init__()
        self.patch_len = config.patch_len
        self.value_embedding = nn.Linear(config.patch_len, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, V, L) with L a multiple of ``patch_len`` -> (B, V, L / patch_len, d)."""
        p = self.patch_len
        return self.dropout(self.value_embedding(x.unfold(-1, p, p)))


def _sinusoids(n: int, d_model: int, device: torch.device) -> Tensor:
    """The transformer's sinusoidal table (n, d_model): sin on even, cos on odd columns."""
    position = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    div = torch.arange(0, d_model, 2, device=device).float()
    angle = position * (div * -(math.log(10000.0) / d_model)).exp()
    table = torch.zeros(n, d_model, device=device)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)[:, : d_model // 2]
    return table


class LearnablePositionalEmbedding(nn.Module):
    """Learnable position table ``pe`` (1, 1, max_positions, d), initialised sinusoidally."""

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.pe = nn.Parameter(torch.empty(1, 1, max_positions, d_model))
        if self.pe.device.type != "meta":  # a shape-only skeleton needs no values
            with torch.no_grad():
                self.pe.copy_(_sinusoids(max_positions, d_model, self.pe.device)[None, None])

    def forward(self, n: int, offset: int = 0) -> Tensor:
        """Positions ``offset .. offset + n - 1``, shape (1, 1, n, d)."""
        if offset + n > self.pe.shape[2]:
            raise ValueError(
                f"{offset + n} token positions exceed the {self.pe.shape[2]} the checkpoint stores."
            )
        return self.pe[:, :, offset : offset + n]


class ForecastHead(nn.Module):
    """Tokens -> patches of values: a token-mixing ``pos_proj``, an MLP and ``proj_out``."""

    def __init__(self, config: UnitsConfig) -> None:
        super().__init__()
        d = config.d_model
        self.proj_in = nn.Linear(d, d)
        self.mlp = _Mlp(d, 4 * d, config.dropout)
        self.proj_out = nn.Linear(d, config.patch_len)
        self.pos_proj = DynamicLinear(
            config.dynamic_width, config.dynamic_width, fixed_in=config.prompt_num
        )

    def forward(self, hidden: Tensor, n_tokens: int) -> Tensor:
        """(B, V, T, d) -> (B, V, n_tokens * patch_len) from the last ``n_tokens`` tokens.

        Every output token also sees all tokens (prompts included) through ``pos_proj``.
        """
        h = self.proj_in(hidden)
        mixed = self.pos_proj(h.transpose(-1, -2), n_tokens).transpose(-1, -2)
        patches = self.proj_out(self.mlp(mixed + h[:, :, -n_tokens:]))  # (B, V, n, patch_len)
        # Patches do not overlap (patch_len == stride), so the reference's fold is a flatten.
        return patches.flatten(start_dim=-2)


class _Mlp(nn.Module):
    """timm's ``Mlp`` as the reference uses it: fc1, GELU, dropout, fc2, dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., d) -> (..., d)."""
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class UnitsStats(NamedTuple):
    """Per-series normalisation statistics, each (B, 1, V)."""

    mean: Tensor
    stdev: Tensor


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(
            f"A UniTS data-set name must be a non-empty string without '.'; got {name!r}."
        )


class UnitsModule(nn.Module):
    """UniTS' forecasting path with the published parameter names, in composable stages.

    Parameters
    ----------
    config : UnitsConfig
        Architecture.
    datasets : Mapping[str, int], optional
        Data sets that get prompt tokens, with their number of variables.  UniTS keeps
        ``prompt_num`` prompt tokens and one mask token per variable and data set; a forecast
        names the data set whose tokens it uses.  More can be added with :meth:`add_dataset`.

    Examples
    --------
    >>> import torch
    >>> from msft_forecast.backbones.units import UnitsConfig, UnitsModule
    >>> config = UnitsConfig(d_model=32, num_layers=1, num_heads=4, patch_len=8, prompt_num=2)
    >>> model = UnitsModule(config, {"demo": 3}).eval()
    >>> model.forecast(torch.randn(2, 64, 3), pred_len=16, dataset="demo").shape
    torch.Size([2, 16, 3])
    """

    def __init__(self, config: UnitsConfig, datasets: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.prompt_tokens = nn.ParameterDict()
        self.mask_tokens = nn.ParameterDict()
        self.patch_embeddings = PatchEmbedding(config)
        self.position_embedding = LearnablePositionalEmbedding(config.d_model, config.max_positions)
        self.prompt2forecat = DynamicLinear(
            config.dynamic_width, config.dynamic_width, fixed_in=config.prompt_num
        )
        self.blocks = nn.ModuleList(BasicBlock(config) for _ in range(config.num_layers))
        self.forecast_head = ForecastHead(config)
        for name, n_vars in (datasets or {}).items():
            self.add_dataset(name, n_vars)

    # ---- data sets ---------------------------------------------------------------------------

    @property
    def datasets(self) -> dict[str, int]:
        """Data sets with prompt tokens, and their numbers of variables."""
        return {name: int(p.shape[1]) for name, p in self.prompt_tokens.items()}

    def add_dataset(self, name: str, n_vars: int, generator: torch.Generator | None = None) -> None:
        """Give a new data set prompt tokens, initialised as the authors do for new data.

        Prompt tokens (1, n_vars, prompt_num, d) are drawn from N(0, 0.02^2) and the mask token
        (1, n_vars, 1, d) starts at zero (the reference's ``Model.__init__``, whose values stay
        when a checkpoint without that data set is loaded with ``strict=False``).

        Parameters
        ----------
        name : str
            Data-set name (no ``"."``; it becomes a state-dict key).
        n_vars : int
            Number of variables the data set's series have.
        generator : torch.Generator, optional
            Source of randomness for the prompt tokens.

        Raises
        ------
        ValueError
            If the name exists already or ``n_vars`` is not positive.
        """
        _check_name(name)
        if name in self.prompt_tokens:
            raise ValueError(f"Data set {name!r} has prompt tokens already.")
        if isinstance(n_vars, bool) or not isinstance(n_vars, int) or n_vars < 1:
            raise ValueError(f"n_vars must be a positive integer, got {n_vars!r}.")
        c = self.config
        device = self.position_embedding.pe.device
        prompt = torch.empty(1, n_vars, c.prompt_num, c.d_model, device=device)
        if device.type != "meta":
            with torch.no_grad():
                prompt.normal_(0.0, PROMPT_INIT_STD, generator=generator)
        self.prompt_tokens[name] = nn.Parameter(prompt)
        self.mask_tokens[name] = nn.Parameter(torch.zeros(1, n_vars, 1, c.d_model, device=device))

    def _tokens_of(self, dataset: str, n_vars: int) -> tuple[Tensor, Tensor]:
        if dataset not in self.prompt_tokens:
            raise KeyError(
                f"No prompt tokens for data set {dataset!r}; known: {sorted(self.prompt_tokens)}. "
                "Add them with add_dataset(name, n_vars)."
            )
        prompt, mask = self.prompt_tokens[dataset], self.mask_tokens[dataset]
        if prompt.shape[1] != n_vars:
            raise ValueError(
                f"Data set {dataset!r} has prompt tokens for {prompt.shape[1]} variables; the "
                f"series have {n_vars}."
            )
        return prompt, mask

    # ---- stages ------------------------------------------------------------------------------

    def normalize(self, x: Tensor) -> tuple[Tensor, UnitsStats]:
        """Standardise each variable over time, then right-pad to whole patches.

        Parameters
        ----------
        x : Tensor
            Series (B, L, V).

        Returns
        -------
        x_norm : Tensor
            (B, V, L + padding), zeros in the padding (see :func:`forecast_token_counts`).
        stats : UnitsStats
            Mean (detached, as in the reference) and standard deviation (population, with 1e-5
            added to the variance), each (B, 1, V).
        """
        mean = x.mean(1, keepdim=True).detach()
        x = x - mean
        stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + _NORM_EPS)
        x = (x / stdev).permute(0, 2, 1)
        return F.pad(x, (0, -x.shape[-1] % self.config.patch_len)), UnitsStats(mean, stdev)

    def denormalize(self, y: Tensor, stats: UnitsStats) -> Tensor:
        """(B, V, steps) in normalised units -> (B, steps, V) in the data's units."""
        return y.transpose(1, 2) * stats.stdev + stats.mean

    def embed_patches(self, x_norm: Tensor) -> Tensor:
        """(B, V, L) with L a multiple of ``patch_len`` -> tokens (B, V, N, d)."""
        if x_norm.shape[-1] % self.config.patch_len:
            raise ValueError(
                f"Series length {x_norm.shape[-1]} is not a multiple of patch_len "
                f"{self.config.patch_len}."
            )
        return self.patch_embeddings(x_norm)

    def prompt_forecast_tokens(self, tokens: Tensor, dataset: str, n_pred: int) -> Tensor:
        """Prepend the data set's prompt tokens and append ``n_pred`` horizon tokens.

        The horizon tokens start as the data set's mask token and are then replaced by a
        dynamic linear map (``prompt2forecat``) of the whole sequence along time; positions
        0.. are added to every token after the prompts.

        Parameters
        ----------
        tokens : Tensor
            Context tokens (B, V, N, d).
        dataset : str
            Whose prompt and mask tokens to use.
        n_pred : int
            Horizon tokens to append (at least 1).

        Returns
        -------
        Tensor
            (B, V, prompt_num + N + n_pred, d).
        """
        prompt, mask = self._tokens_of(dataset, tokens.shape[1])
        return self.task_tokens(tokens, prompt, mask, n_pred)

    def task_tokens(self, tokens: Tensor, prompt: Tensor, mask: Tensor, n_pred: int) -> Tensor:
        """:meth:`prompt_forecast_tokens` with the prompt (1, V, prompt_num, d) and mask
        (1, V, 1, d) tokens given as tensors (the multi-scale model owns its own copies)."""
        if n_pred < 1:
            raise ValueError(f"n_pred must be at least 1, got {n_pred}.")
        b, _, n_ctx, _ = tokens.shape
        prompt = prompt.expand(b, -1, -1, -1)
        full = torch.cat((prompt, tokens, mask.expand(b, -1, n_pred, -1)), dim=2)
        horizon = self.prompt2forecat(full.transpose(-1, -2), n_ctx + n_pred).transpose(-1, -2)
        series = torch.cat((tokens, horizon[:, :, -n_pred:]), dim=2)
        series = series + self.position_embedding(n_ctx + n_pred)
        return torch.cat((prompt, series), dim=2)

    def encode(self, hidden: Tensor, scale_ctx: Any = None) -> Tensor:
        """Run every block on (B, V, T, d); ``scale_ctx`` goes to the filled slots."""
        for block in self.blocks:
            hidden = block(hidden, scale_ctx)
        return hidden

    def head(self, hidden: Tensor, n_tokens: int) -> Tensor:
        """Values (B, V, n_tokens * patch_len), normalised, of the last ``n_tokens`` tokens."""
        return self.forecast_head(hidden, n_tokens)

    # ---- the forecasting task ----------------------------------------------------------------

    def forecast(self, x: Tensor, pred_len: int, dataset: str, scale_ctx: Any = None) -> Tensor:
        """The reference's ``forecast`` task: the ``pred_len`` steps after ``x``.

        Parameters
        ----------
        x : Tensor
            Context (B, L, V), fully observed.
        pred_len : int
            Steps to forecast; at least ``patch_len`` plus the context's right padding
            (:func:`forecast_token_counts`).
        dataset : str
            Whose prompt and mask tokens to use (its number of variables must be V).
        scale_ctx : Any
            Passed to the filled extension slots.

        Returns
        -------
        Tensor
            (B, pred_len, V).  As in the reference, the last ``(pred_len - padding) %
            patch_len`` steps, beyond the last horizon token, equal the context mean.
        """
        seq_len = x.shape[1]
        n_ctx, n_pred, _ = forecast_token_counts(seq_len, pred_len, self.config.patch_len)
        x_norm, stats = self.normalize(x)
        hidden = self.prompt_forecast_tokens(self.embed_patches(x_norm), dataset, n_pred)
        hidden = self.encode(hidden, scale_ctx)
        y = self.head(hidden, n_ctx + n_pred)  # covers steps 0 .. (n_ctx + n_pred) * patch_len
        y = F.pad(y, (0, seq_len + pred_len - y.shape[-1]))[..., -pred_len:]
        return self.denormalize(y, stats)

    def forward(self, x: Tensor, pred_len: int, dataset: str) -> Tensor:
        """Same as :meth:`forecast`."""
        return self.forecast(x, pred_len, dataset)
