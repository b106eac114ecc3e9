"""MOMENT-1 (AutonLab/MOMENT-1-{small,base,large}) as a plain, checkpoint-compatible module.

The module loads the published ``model.safetensors`` unchanged (same parameter names and shapes,
except ``encoder.embed_tokens.weight``, the unused T5 vocabulary embedding, which is never
allocated) and reproduces the reference ``momentfm`` 0.1.4 reconstruction forward.  The T5
encoder is built only from the ``t5_config`` stored in the checkpoint's ``config.json``; nothing
is downloaded and ``transformers`` is not used.

The forward pass is split into public stages so that the multi-scale engine can compose them::

    x_norm, stats = m.normalize(x, mask)              # RevIN per series        (B, L)
    tokens = m.patchify_embed(x_norm, mask)           # patches -> tokens       (B, N, d)
    bias = m.attention_bias(key_mask, position_ids)   # T5 relative bias + mask (B|1, H, N, N)
    hidden = m.encode(tokens, bias, scale_ctx)        # T5 blocks + final norm  (B, N, d)
    y = m.denormalize(m.head(hidden), stats)          # reconstruction          (B, L)

Every attention and feed-forward module has an empty ``lora`` :class:`~torch.nn.ModuleDict` and
every block an ``aggregator`` slot (see :mod:`msft_forecast.backbones.hooks`); empty slots add no
state-dict entries and leave the output bit-for-bit unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.hooks import apply_delta

__all__ = [
    "IGNORED_CHECKPOINT_KEYS",
    "MomentConfig",
    "MomentModule",
    "RevINStats",
    "filter_checkpoint_state_dict",
    "relative_position_bucket",
]

#: Keys of published MOMENT checkpoints that this module deliberately does not allocate:
#: ``encoder.embed_tokens.weight`` is T5's (32128, d) token embedding, unused by MOMENT.
IGNORED_CHECKPOINT_KEYS: tuple[str, ...] = ("encoder.embed_tokens.weight",)

# Number of sinusoidal positions the reference PatchEmbedding stores (a persistent buffer).
_MAX_POSITIONS = 5000

# Published flan-t5 encoder sizes: (d_model, d_ff, d_kv, num_heads, num_layers).
_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "small": (512, 1024, 64, 6, 8),
    "base": (768, 2048, 64, 12, 12),
    "large": (1024, 2816, 64, 16, 24),
}

# Values T5Config fills in when a saved t5_config omits them.
_T5_DEFAULTS: dict[str, Any] = {
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
}
_T5_REQUIRED = ("d_model", "d_ff", "d_kv", "num_heads", "num_layers", "feed_forward_proj")
_T5_USED = _T5_REQUIRED + tuple(_T5_DEFAULTS)
_TOP_USED = (
    "d_model",
    "seq_len",
    "patch_len",
    "patch_stride_len",
    "transformer_backbone",
    "revin_affine",
    "add_positional_embedding",
    "value_embedding_bias",
    "dropout",
    "t5_config",
)
_POSITIVE_INT_FIELDS = (
    "d_model",
    "d_ff",
    "d_kv",
    "num_heads",
    "num_layers",
    "seq_len",
    "patch_len",
    "patch_stride_len",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _get_int(d: Mapping[str, Any], key: str, where: str) -> int:
    value = d[key]
    # bool is an int subclass; `true` in a size field is a broken file, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"MOMENT {where}['{key}'] must be an integer, got {value!r}.")
    return value


def _get_float(d: Mapping[str, Any], key: str, where: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"MOMENT {where}['{key}'] must be a number, got {value!r}.")
    return float(value)


def _get_bool(d: Mapping[str, Any], key: str, where: str) -> bool:
    value = d[key]
    if not isinstance(value, bool):
        raise CheckpointError(f"MOMENT {where}['{key}'] must be true or false, got {value!r}.")
    return value


@dataclass(frozen=True)
class MomentConfig:
    """Architecture of a MOMENT-1 model, as stored in the published ``config.json``.

    Parameters
    ----------
    d_model, d_ff, d_kv, num_heads, num_layers : int
        T5 encoder sizes (``t5_config`` entries).
    seq_len : int
        Input length MOMENT was pre-trained on (512).
    patch_len, patch_stride_len : int
        Patch length and stride (8 and 8; they must be equal).
    feed_forward_proj : str
        T5 feed-forward type; only ``"gated-gelu"`` (what MOMENT uses) is supported.
    relative_attention_num_buckets, relative_attention_max_distance : int
        T5 relative position buckets (32 and 128).
    layer_norm_epsilon : float
        Epsilon of the T5 RMS layer norms.
    dropout_rate : float
        T5 dropout (``t5_config['dropout_rate']``), active in train mode only.
    dropout : float
        MOMENT dropout of the patch embedding and the reconstruction head.
    revin_affine : bool
        Whether RevIN has learnable affine parameters (False in the published models).
    add_positional_embedding : bool
        Whether sinusoidal patch positions are added (True in the published models).
    value_embedding_bias : bool
        Whether the patch value embedding has a bias (False in the published models).
    transformer_backbone : str or None
        Name of the T5 the model was initialised from; informational, never downloaded.
    t5_extra, extra : Mapping
        Unused ``t5_config`` and top-level entries, kept so that :meth:`to_dict` round-trips.
    """

    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    num_layers: int
    seq_len: int = 512
    patch_len: int = 8
    patch_stride_len: int = 8
    feed_forward_proj: str = "gated-gelu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.1
    dropout: float = 0.1
    revin_affine: bool = False
    add_positional_embedding: bool = True
    value_embedding_bias: bool = False
    transformer_backbone: str | None = None
    t5_extra: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(
                    f"MOMENT config: {name} must be a positive integer, got {value!r}."
                )
        if self.feed_forward_proj != "gated-gelu":
            raise CheckpointError(
                f"MOMENT config: feed_forward_proj {self.feed_forward_proj!r} is not supported; "
                "MOMENT-1 uses 'gated-gelu'."
            )
        if self.patch_stride_len != self.patch_len:
            raise CheckpointError(
                f"MOMENT config: patch_stride_len ({self.patch_stride_len}) must equal "
                f"patch_len ({self.patch_len}); overlapping patches are not supported."
            )
        if self.seq_len % self.patch_len:
            raise CheckpointError(
                f"MOMENT config: seq_len ({self.seq_len}) must be a multiple of patch_len "
                f"({self.patch_len})."
            )
        for name in ("dropout_rate", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise CheckpointError(f"MOMENT config: {name} must be in [0, 1).")
        if not self.layer_norm_epsilon > 0:
            raise CheckpointError("MOMENT config: layer_norm_epsilon must be positive.")

    @property
    def n_patches(self) -> int:
        """Number of patches of a ``seq_len`` input (64 for the published models)."""
        return self.seq_len // self.patch_len

    @property
    def inner_dim(self) -> int:
        """Width of the attention projections, ``num_heads * d_kv``."""
        return self.num_heads * self.d_kv

    @classmethod
    def preset(cls, size: str, **overrides: Any) -> MomentConfig:
        """Config of a published size (``"small"``, ``"base"`` or ``"large"``).

        Parameters
        ----------
        size : str
            One of ``"small"``, ``"base"``, ``"large"``.
        **overrides
            Fields to replace (for example fewer ``num_layers`` for a tiny test model).
        """
        if size not in _PRESETS:
            raise CheckpointError(
                f"Unknown MOMENT size {size!r}; expected one of {sorted(_PRESETS)}."
            )
        d_model, d_ff, d_kv, num_heads, num_layers = _PRESETS[size]
        values: dict[str, Any] = {
            "d_model": d_model,
            "d_ff": d_ff,
            "d_kv": d_kv,
            "num_heads": num_heads,
            "num_layers": num_layers,
            "transformer_backbone": f"google/flan-t5-{size}",
            "t5_extra": {
                "vocab_size": 32128,
                "dense_act_fn": "gelu_new",
                "is_gated_act": True,
                "model_type": "t5",
            },
            "extra": {
                "task_name": "reconstruction",
                "model_name": "MOMENT",
                "transformer_type": "encoder_only",
            },
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MomentConfig:
        """Parse a published MOMENT ``config.json`` (already decoded from JSON).

        Raises
        ------
        CheckpointError
            If an entry is missing, has the wrong type or describes an unsupported model.
        """
        if not isinstance(d, Mapping):
            raise CheckpointError(f"MOMENT config must be a JSON object, got {type(d).__name__}.")
        if "t5_config" not in d:
            raise CheckpointError(
                "MOMENT config.json has no 't5_config' entry. The encoder is built only from the "
                "stored t5_config (nothing is downloaded); use the config.json published with "
                "AutonLab/MOMENT-1-* or one written by MomentConfig.to_dict()."
            )
        t5_raw = d["t5_config"]
        if not isinstance(t5_raw, Mapping):
            raise CheckpointError("MOMENT config: 't5_config' must be a JSON object.")
        missing = [k for k in ("seq_len", "patch_len", "patch_stride_len") if k not in d]
        missing += [f"t5_config.{k}" for k in _T5_REQUIRED if k not in t5_raw]
        if missing:
            raise CheckpointError(f"MOMENT config.json lacks {', '.join(missing)}.")
        t5 = {**_T5_DEFAULTS, **t5_raw}
        if not isinstance(t5["feed_forward_proj"], str):
            raise CheckpointError("MOMENT t5_config['feed_forward_proj'] must be a string.")
        # T5Config turns "gated-gelu" into dense_act_fn "gelu_new"; any other stored value
        # would change what the weights mean.
        if t5.get("dense_act_fn", "gelu_new") != "gelu_new":
            raise CheckpointError(
                f"MOMENT t5_config['dense_act_fn'] is {t5['dense_act_fn']!r}; only 'gelu_new' "
                "(gated-gelu) is supported."
            )
        if t5.get("is_decoder", False):
            raise CheckpointError("MOMENT t5_config['is_decoder'] must be false.")
        transformer_type = d.get("transformer_type", "encoder_only")
        if transformer_type != "encoder_only":
            raise CheckpointError(
                f"MOMENT config: transformer_type {transformer_type!r} is not supported; the "
                "published MOMENT-1 models are 'encoder_only'."
            )
        d_model = _get_int(t5, "d_model", "t5_config")
        if d.get("d_model") is not None and d["d_model"] != d_model:
            raise CheckpointError(
                f"MOMENT config: d_model ({d['d_model']!r}) disagrees with "
                f"t5_config['d_model'] ({d_model})."
            )
        backbone = d.get("transformer_backbone")
        if backbone is not None and not isinstance(backbone, str):
            raise CheckpointError("MOMENT config: 'transformer_backbone' must be a string.")
        flags = {
            key: _get_bool(d, key, "config") if key in d else default
            for key, default in (
                ("revin_affine", False),
                ("add_positional_embedding", True),
                ("value_embedding_bias", False),
            )
        }
        return cls(
            d_model=d_model,
            d_ff=_get_int(t5, "d_ff", "t5_config"),
            d_kv=_get_int(t5, "d_kv", "t5_config"),
            num_heads=_get_int(t5, "num_heads", "t5_config"),
            num_layers=_get_int(t5, "num_layers", "t5_config"),
            seq_len=_get_int(d, "seq_len", "config"),
            patch_len=_get_int(d, "patch_len", "config"),
            patch_stride_len=_get_int(d, "patch_stride_len", "config"),
            feed_forward_proj=t5["feed_forward_proj"],
            relative_attention_num_buckets=_get_int(
                t5, "relative_attention_num_buckets", "t5_config"
            ),
            relative_attention_max_distance=_get_int(
                t5, "relative_attention_max_distance", "t5_config"
            ),
            layer_norm_epsilon=_get_float(t5, "layer_norm_epsilon", "t5_config"),
            dropout_rate=_get_float(t5, "dropout_rate", "t5_config"),
            dropout=_get_float(d, "dropout", "config") if "dropout" in d else 0.1,
            transformer_backbone=backbone,
            t5_extra={k: v for k, v in t5_raw.items() if k not in _T5_USED},
            extra={k: v for k, v in d.items() if k not in _TOP_USED},
            **flags,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the published ``config.json`` layout (JSON-serialisable if the extras are)."""
        t5 = dict(self.t5_extra)
        t5.update({k: getattr(self, k) for k in _T5_USED})
        out: dict[str, Any] = dict(self.extra)
        out.update(
            # The published files carry d_model null (the reference then asks the hub); an
            # explicit value is equivalent and lets the reference load the file offline.
            d_model=self.d_model,
            seq_len=self.seq_len,
            patch_len=self.patch_len,
            patch_stride_len=self.patch_stride_len,
            revin_affine=self.revin_affine,
            add_positional_embedding=self.add_positional_embedding,
            value_embedding_bias=self.value_embedding_bias,
            dropout=self.dropout,
            t5_config=t5,
        )
        if self.transformer_backbone is not None:
            out["transformer_backbone"] = self.transformer_backbone
        return out


# --------------------------------------------------------------------------------------------
# RevIN and patch embedding
# --------------------------------------------------------------------------------------------


class RevINStats(NamedTuple):
    """Per-series statistics of :meth:`MomentModule.normalize`, each of shape (B, 1)."""

    mean: Tensor
    stdev: Tensor


class RevIN(nn.Module):
    """Reversible instance normalisation over the observed steps of each series.

    Matches the reference ``models/layers/revin.py``: population variance (no Bessel
    correction), ``eps`` added to the standard deviation, statistics detached.
    """

    def __init__(self, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            # (1, n_channels=1, 1) as in the reference, so that its state dicts load.
            self.affine_weight = nn.Parameter(torch.ones(1, 1, 1))
            self.affine_bias = nn.Parameter(torch.zeros(1, 1, 1))

    def normalize(self, x: Tensor, mask: Tensor) -> tuple[Tensor, RevINStats]:
        """Normalise ``x`` (B, L) with statistics over the steps where ``mask`` (B, L) is set."""
        masked_x = torch.where(mask.bool(), x, torch.nan)
        mean = torch.nanmean(masked_x, dim=-1, keepdim=True)
        var = (masked_x - mean).square().nanmean(dim=-1, keepdim=True)
        stats = RevINStats(mean.detach(), var.sqrt().detach() + self.eps)
        x = (x - stats.mean) / stats.stdev
        if self.affine:
            x = x * self.affine_weight.reshape(-1) + self.affine_bias.reshape(-1)
        return x, stats

    def denormalize(self, y: Tensor, stats: RevINStats) -> Tensor:
        """Invert :meth:`normalize` on ``y`` (B, any length)."""
        if self.affine:
            y = y - self.affine_bias.reshape(-1)
            y = y / (self.affine_weight.reshape(-1) + self.eps * self.eps)
        return y * stats.stdev + stats.mean


class PositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions; ``pe`` (1, 5000, d) is persistent in published checkpoints."""

    def __init__(self, d_model: int, max_len: int = _MAX_POSITIONS) -> None:
        super().__init__()
        position = torch.arange(0, max_len).float().unsqueeze(1)
        div_term = (torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model)).exp()
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))


class PatchEmbedding(nn.Module):
    """Parameters of the patch embedding; the computation is :meth:`MomentModule.patchify_embed`."""

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.value_embedding = nn.Linear(
            config.patch_len, config.d_model, bias=config.value_embedding_bias
        )
        self.mask_embedding = nn.Parameter(torch.zeros(config.d_model))
        if config.add_positional_embedding:
            self.position_embedding = PositionalEmbedding(config.d_model)
        self.dropout = nn.Dropout(config.dropout)


# --------------------------------------------------------------------------------------------
# T5 encoder
# --------------------------------------------------------------------------------------------


def relative_position_bucket(
    relative_position: Tensor, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """Bidirectional T5 bucket of ``key_position - query_position``, exactly as T5 computes it.

    Half of the buckets hold positive offsets.  Within each half, offsets below
    ``num_buckets // 4`` get a bucket each; larger ones share log-spaced buckets, and all
    offsets beyond ``max_distance`` share the last one.
    """
    num_buckets //= 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    relative_position = torch.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    # log(0) = -inf only where is_small picks the exact bucket instead.
    if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    if_large = torch.clamp(if_large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, if_large)


def gelu_new(x: Tensor) -> Tensor:
    """T5's ``gelu_new``: the tanh approximation of gelu, written as transformers writes it.

    ``F.gelu(x, approximate="tanh")`` is the same function and faster, but rounds differently
    (about 1e-6 relative after 8 layers); this form keeps outputs bit-identical to the reference.
    """
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))
    return 0.5 * x * (1.0 + torch.tanh(inner))


class T5LayerNorm(nn.Module):
    """T5 RMS norm: no mean subtraction, no bias, variance accumulated in float32."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.variance_epsilon = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` over its last dimension."""
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


class T5Attention(nn.Module):
    """Multi-head self-attention without biases and without 1/sqrt(d_kv) scaling.

    T5 folds the usual scaling into its initialisation, so scores are plain ``q @ k^T`` plus
    the additive bias (relative positions and mask).  Deltas registered in ``lora`` under
    ``"q"``, ``"k"``, ``"v"`` and ``"o"`` are added to the respective projections.
    """

    def __init__(self, config: MomentConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        self.n_heads = config.num_heads
        self.d_kv = config.d_kv
        self.dropout = config.dropout_rate
        self.q = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.k = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.v = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.o = nn.Linear(config.inner_dim, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(
                config.relative_attention_num_buckets, config.num_heads
            )
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, attn_bias: Tensor | None, scale_ctx: Any = None) -> Tensor:
        """Attend ``x`` (B, N, d) with the additive ``attn_bias`` (B or 1, H, N, N)."""
        b, n, _ = x.shape
        lora = self.lora
        q = apply_delta(lora, "q", x, self.q(x), scale_ctx)
        k = apply_delta(lora, "k", x, self.k(x), scale_ctx)
        v = apply_delta(lora, "v", x, self.v(x), scale_ctx)
        q, k, v = (t.view(b, n, self.n_heads, self.d_kv).transpose(1, 2) for t in (q, k, v))
        if attn_bias is not None and attn_bias.dtype != q.dtype:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias,
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,
        )
        out = out.transpose(1, 2).reshape(b, n, self.n_heads * self.d_kv)
        return apply_delta(lora, "o", out, self.o(out), scale_ctx)


class T5LayerSelfAttention(nn.Module):
    """Pre-norm self-attention sub-layer with residual: ``x + dropout(attn(norm(x)))``."""

    def __init__(self, config: MomentConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: Tensor, attn_bias: Tensor | None, scale_ctx: Any = None) -> Tensor:
        """Apply the sub-layer to ``x`` (B, N, d)."""
        return x + self.dropout(self.SelfAttention(self.layer_norm(x), attn_bias, scale_ctx))


class T5DenseGatedActDense(nn.Module):
    """Gated-gelu feed-forward: ``wo(dropout(gelu_new(wi_0 x) * wi_1 x))``, with ``lora`` slots."""

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.lora = nn.ModuleDict()

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """Apply the feed-forward network to ``x`` (B, N, d)."""
        lora = self.lora
        gate = gelu_new(apply_delta(lora, "wi_0", x, self.wi_0(x), scale_ctx))
        h = self.dropout(gate * apply_delta(lora, "wi_1", x, self.wi_1(x), scale_ctx))
        return apply_delta(lora, "wo", h, self.wo(h), scale_ctx)


class T5LayerFF(nn.Module):
    """Pre-norm feed-forward sub-layer with residual: ``x + dropout(ffn(norm(x)))``."""

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        """Apply the sub-layer to ``x`` (B, N, d)."""
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x), scale_ctx))


class T5Block(nn.Module):
    """One encoder block: attention sub-layer, optional ``aggregator``, feed-forward sub-layer."""

    aggregator: nn.Module | None

    def __init__(self, config: MomentConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            [T5LayerSelfAttention(config, has_relative_attention_bias), T5LayerFF(config)]
        )
        # A registered (None) child: assigning a module later registers it, and an empty slot
        # adds nothing to the state dict.
        self.register_module("aggregator", None)

    def forward(self, x: Tensor, attn_bias: Tensor | None, scale_ctx: Any = None) -> Tensor:
        """Apply the block to ``x`` (B, N, d)."""
        h = self.layer[0](x, attn_bias, scale_ctx)
        if self.aggregator is not None:
            h = h + self.aggregator(h, scale_ctx)
        return self.layer[1](h, scale_ctx)


class T5Encoder(nn.Module):
    """T5 encoder stack without the token embedding (MOMENT feeds patch embeddings).

    With ``gradient_checkpointing`` set, training-mode forwards keep only each block's input
    and recompute the block during backward (the reference enables this by default).
    """

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.block = nn.ModuleList([T5Block(config, i == 0) for i in range(config.num_layers)])
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.gradient_checkpointing = False

    def forward(self, tokens: Tensor, attn_bias: Tensor | None, scale_ctx: Any = None) -> Tensor:
        """Encode ``tokens`` (B, N, d) into hidden states (B, N, d)."""
        h = self.dropout(tokens)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.block:
            if recompute:
                # The RNG state is restored for the recomputation, so dropout masks match.
                h = checkpoint(block, h, attn_bias, scale_ctx, use_reentrant=False)
            else:
                h = block(h, attn_bias, scale_ctx)
        return self.dropout(self.final_layer_norm(h))


class PretrainHead(nn.Module):
    """MOMENT's reconstruction head: one linear map from a token to its patch's values."""

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.linear = nn.Linear(config.d_model, config.patch_len)

    def forward(self, hidden: Tensor) -> Tensor:
        """Map hidden states (B, N, d) to the normalised series (B, N * patch_len)."""
        return self.linear(self.dropout(hidden)).flatten(start_dim=-2)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def filter_checkpoint_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the :data:`IGNORED_CHECKPOINT_KEYS` from a published MOMENT state dict."""
    return {k: v for k, v in state_dict.items() if k not in IGNORED_CHECKPOINT_KEYS}


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


class MomentModule(nn.Module):
    """MOMENT-1 with the published parameter names, split into composable stages.

    Parameters
    ----------
    config : MomentConfig
        Architecture, usually ``MomentConfig.from_dict(json.load(config.json))``.

    Notes
    -----
    The stages take univariate series ``x`` (B, L) with an ``input_mask`` (B, L) that is
    non-zero on observed steps (zero on left padding).  :meth:`reconstruct` and :meth:`embed`
    also accept (B, C, L) like the reference; channels are then encoded independently.
    """

    def __init__(self, config: MomentConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = RevIN(affine=config.revin_affine)
        self.patch_embedding = PatchEmbedding(config)
        self.encoder = T5Encoder(config)
        self.head = PretrainHead(config)

    # ---- checkpoints -------------------------------------------------------------------------

    def load_published_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True
    ) -> None:
        """Load a published MOMENT state dict, skipping :data:`IGNORED_CHECKPOINT_KEYS`.

        Load before filling extension slots (or pass ``strict=False``): filled slots own
        parameters that a published checkpoint does not have.

        Raises
        ------
        CheckpointError
            On shape mismatches, or missing or unexpected keys when ``strict``.
        """
        state_dict = filter_checkpoint_state_dict(state_dict)
        own = self.state_dict()
        bad = [
            f"{k} {tuple(v.shape)} (model expects {tuple(own[k].shape)})"
            for k, v in state_dict.items()
            if k in own and own[k].shape != v.shape
        ]
        if bad:
            raise CheckpointError(
                f"MOMENT weights do not match config.json: wrong shapes for {_listing(bad)}."
            )
        missing = sorted(own.keys() - state_dict.keys())
        unexpected = sorted(state_dict.keys() - own.keys())
        if strict and (missing or unexpected):
            raise CheckpointError(
                "MOMENT weights do not match config.json: "
                f"missing [{_listing(missing)}], unexpected [{_listing(unexpected)}]."
            )
        self.load_state_dict(state_dict, strict=strict)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory in training: recompute encoder blocks during backward."""
        self.encoder.gradient_checkpointing = enabled

    # ---- stages ------------------------------------------------------------------------------

    def normalize(self, x: Tensor, input_mask: Tensor | None = None) -> tuple[Tensor, RevINStats]:
        """RevIN per series over the observed steps.

        Parameters
        ----------
        x : Tensor
            Series (B, L).
        input_mask : Tensor, optional
            (B, L), non-zero where observed; everything is observed if omitted.

        Returns
        -------
        x_norm : Tensor
            (B, L); non-finite values (e.g. NaN padding) become 0, as in the reference.
        stats : RevINStats
            Per-series mean and standard deviation, shapes (B, 1).
        """
        if input_mask is None:
            input_mask = torch.ones_like(x, dtype=torch.bool)
        x_norm, stats = self.normalizer.normalize(x, input_mask)
        return torch.nan_to_num(x_norm, nan=0.0, posinf=0.0, neginf=0.0), stats

    def denormalize(self, y: Tensor, stats: RevINStats) -> Tensor:
        """Invert :meth:`normalize` on ``y`` (B, any length) with the stats it returned."""
        return self.normalizer.denormalize(y, stats)

    def patch_mask(self, input_mask: Tensor) -> Tensor:
        """Bool patch mask (B, N) from a step mask (B, L): a patch counts if fully observed."""
        p = self.config.patch_len
        return (input_mask.unfold(-1, p, p) != 0).all(dim=-1)

    def patchify_embed(
        self,
        x_norm: Tensor,
        input_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Cut a normalised series into patches and embed them (the reference PatchEmbedding).

        Parameters
        ----------
        x_norm : Tensor
            (B, L) with ``L`` a multiple of ``patch_len``.
        input_mask : Tensor, optional
            Step mask (B, L) or patch mask (B, N).  Patches that are not fully observed take
            ``mask_embedding`` instead of their value embedding.  All observed if omitted.
        position_ids : Tensor, optional
            Long (B or 1, N) rows of the sinusoidal table; ``arange(N)`` if omitted.

        Returns
        -------
        Tensor
            Tokens (B, N, d), with the embedding dropout applied in train mode.
        """
        p = self.config.patch_len
        length = x_norm.shape[-1]
        if length % p:
            raise ValueError(f"Series length {length} is not a multiple of patch_len {p}.")
        n = length // p
        emb = self.patch_embedding
        tokens = emb.value_embedding(x_norm.unfold(-1, p, p))  # (B, N, d)
        if input_mask is not None:
            if input_mask.shape[-1] == length:
                observed = self.patch_mask(input_mask)
            elif input_mask.shape[-1] == n:
                observed = input_mask != 0
            else:
                raise ValueError(
                    f"input_mask has {input_mask.shape[-1]} entries per series; expected "
                    f"{length} steps or {n} patches."
                )
            tokens = torch.where(observed.unsqueeze(-1), tokens, emb.mask_embedding)
        if self.config.add_positional_embedding:
            pe = emb.position_embedding.pe
            if position_ids is None:
                if n > pe.shape[1]:
                    raise ValueError(f"{n} patches exceed the {pe.shape[1]} stored positions.")
                tokens = tokens + pe[:, :n]
            else:
                tokens = tokens + pe[0, position_ids]
        return emb.dropout(tokens)

    def position_bias(self, position_ids: Tensor) -> Tensor:
        """T5 relative position bias from per-token positions.

        Parameters
        ----------
        position_ids : Tensor
            Long (B or 1, N).  The offset of key ``j`` seen from query ``i`` is
            ``position_ids[j] - position_ids[i]``, so positions may restart per segment.

        Returns
        -------
        Tensor
            Additive bias (B or 1, num_heads, N, N) in the dtype of the bias table.
        """
        table = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
        relative = position_ids[:, None, :] - position_ids[:, :, None]  # (B, N_query, N_key)
        buckets = relative_position_bucket(
            relative,
            self.config.relative_attention_num_buckets,
            self.config.relative_attention_max_distance,
        )
        return table(buckets).permute(0, 3, 1, 2)

    def attention_bias(
        self,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        n_tokens: int | None = None,
    ) -> Tensor:
        """Position bias with disallowed (query, key) pairs set to the dtype's minimum.

        Parameters
        ----------
        attention_mask : Tensor, optional
            Key mask (B, N) or pair mask (B, N_query, N_key); non-zero means "may attend".
        position_ids : Tensor, optional
            Long (B or 1, N); ``arange(N)`` if omitted.
        n_tokens : int, optional
            N, needed only when both other arguments are omitted.

        Returns
        -------
        Tensor
            (B or 1, num_heads, N, N), for :meth:`encode`.  The dtype's minimum, not -inf,
            keeps fully masked rows finite, as in the reference.
        """
        if position_ids is None:
            if n_tokens is None:
                if attention_mask is None:
                    raise ValueError("Give attention_mask, position_ids or n_tokens.")
                n_tokens = attention_mask.shape[-1]
            device = self.encoder.final_layer_norm.weight.device
            position_ids = torch.arange(n_tokens, device=device)[None]
        bias = self.position_bias(position_ids)
        if attention_mask is None:
            return bias
        if attention_mask.dim() == 2:
            allowed = attention_mask[:, None, None, :] != 0
        elif attention_mask.dim() == 3:
            allowed = attention_mask[:, None] != 0
        else:
            raise ValueError("attention_mask must have shape (B, N) or (B, N, N).")
        return torch.where(allowed, bias, torch.finfo(bias.dtype).min)

    def encode(self, tokens: Tensor, attn_bias: Tensor | None, scale_ctx: Any = None) -> Tensor:
        """Run all T5 blocks and the final layer norm (with T5 dropout in train mode).

        Parameters
        ----------
        tokens : Tensor
            (B, N, d) from :meth:`patchify_embed`, or several of them concatenated.
        attn_bias : Tensor or None
            (B or 1, num_heads, N, N) from :meth:`attention_bias`.  ``None`` drops the position
            bias altogether, which is not how MOMENT was trained.
        scale_ctx : Any
            Opaque object handed to every filled extension slot.

        Returns
        -------
        Tensor
            Hidden states (B, N, d).
        """
        return self.encoder(tokens, attn_bias, scale_ctx)

    # ---- full pipelines ----------------------------------------------------------------------

    def encode_series(
        self,
        x: Tensor,
        input_mask: Tensor | None = None,
        mask: Tensor | None = None,
        scale_ctx: Any = None,
    ) -> tuple[Tensor, RevINStats]:
        """RevIN, patch embedding and encoder, as in the reference ``reconstruction`` task.

        Parameters
        ----------
        x : Tensor
            (B, L).
        input_mask : Tensor, optional
            (B, L) observed steps; patches that are not fully observed are not attended to.
        mask : Tensor, optional
            (B, L) pre-training mask (0 = hidden from the model, replaced by
            ``mask_embedding``).  Defaults to the fully observed patches, which is what the
            reference's mask generator returns at its default ``mask_ratio`` of 0.
        scale_ctx : Any
            Passed to the extension slots.

        Returns
        -------
        hidden : Tensor
            (B, N, d).
        stats : RevINStats
            For :meth:`denormalize`.
        """
        if input_mask is None:
            input_mask = torch.ones_like(x)
        observed = self.patch_mask(input_mask)
        if mask is None:
            mask = observed.repeat_interleave(self.config.patch_len, dim=-1)
        # The reference takes RevIN statistics over steps that are observed AND unmasked.
        x_norm, stats = self.normalize(x, (mask != 0) & (input_mask != 0))
        tokens = self.patchify_embed(x_norm, mask)
        return self.encode(tokens, self.attention_bias(observed), scale_ctx), stats

    def reconstruct(
        self, x: Tensor, input_mask: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """The reference ``reconstruction`` task: RevIN, encoder, head, de-normalisation.

        Parameters
        ----------
        x : Tensor
            (B, L) or (B, C, L).
        input_mask : Tensor, optional
            (B, L), shared by the channels.
        mask : Tensor, optional
            (B, L) pre-training mask, see :meth:`encode_series`.

        Returns
        -------
        Tensor
            Reconstruction with the shape of ``x``.
        """
        flat_x, input_mask, mask = self._flatten_channels(x, input_mask, mask)
        hidden, stats = self.encode_series(flat_x, input_mask, mask)
        return self.denormalize(self.head(hidden), stats).reshape(x.shape)

    def embed(self, x: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """The reference ``embedding`` task: mean of the hidden states over observed patches.

        Parameters
        ----------
        x : Tensor
            (B, L) or (B, C, L).
        input_mask : Tensor, optional
            (B, L).

        Returns
        -------
        Tensor
            (B, d); with channels, their hidden states are averaged first, as the reference does.
        """
        flat_x, flat_mask, _ = self._flatten_channels(x, input_mask, None)
        x_norm, _ = self.normalize(flat_x, flat_mask)
        observed = self.patch_mask(flat_mask)
        hidden = self.encode(self.patchify_embed(x_norm, flat_mask), self.attention_bias(observed))
        batch = x.shape[0]
        hidden = hidden.reshape(batch, -1, *hidden.shape[1:]).mean(dim=1)  # over channels
        weights = observed.reshape(batch, -1, observed.shape[-1])[:, 0, :, None].to(hidden.dtype)
        return (weights * hidden).sum(dim=1) / weights.sum(dim=1)

    def forward(
        self, x: Tensor, input_mask: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """Same as :meth:`reconstruct`."""
        return self.reconstruct(x, input_mask, mask)

    @staticmethod
    def _flatten_channels(
        x: Tensor, input_mask: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, C, L) -> (B * C, L), repeating the (B, L) masks per channel."""
        if input_mask is None:
            input_mask = torch.ones(x.shape[0], x.shape[-1], dtype=x.dtype, device=x.device)
        if x.dim() == 2:
            return x, input_mask, mask
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, L) or (B, C, L), got {tuple(x.shape)}.")
        channels = x.shape[1]
        # Channel-major order matches the reference's reshape to (B * C, N, d).
        input_mask = input_mask.repeat_interleave(channels, dim=0)
        if mask is not None:
            mask = mask.repeat_interleave(channels, dim=0)
        return x.reshape(-1, x.shape[-1]), input_mask, mask
