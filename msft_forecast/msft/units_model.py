"""MSFT on a UniTS backbone (docs/strategies.md, "UniTS").

UniTS (Gao et al., 2024) normalises each series over its context, cuts it into patches of
``patch_len``, prepends a data set's prompt tokens, appends horizon tokens built from that
data set's mask token by a dynamic linear map over the whole sequence (``prompt2forecat``),
runs blocks of time attention, variable attention and a dynamic MLP (whose time-mixing maps are
resized to the token count) and reads the horizon off a forecasting head that mixes all tokens.

Scale ``k`` is built exactly as UniTS builds a forecast for its pooled context ``C_k`` and
horizon ``H_k``: its own normalisation statistics, its context left-padded to whole patches (so
every scale ends on a token boundary at the forecast start), the frozen patch embedding, the
scale's adapter, the data set's prompt tokens, ``ceil(H_k / patch_len)`` horizon tokens from
``prompt2forecat`` resized to that scale's length, and positions restarting at 0.  The scales'
sequences are concatenated on the time axis; every time-mixing operation of UniTS (time
attention, the dynamic MLP's time maps, the head's ``pos_proj``, ``prompt2forecat``) stays inside
a scale (computed scale by scale: the same as a block-diagonal mask, for ``sum T_k^2`` scores),
with each scale's LoRA on the time attention.  The cross-scale aggregator, after each block's
time attention, is the only path between scales; it sees the context and horizon tokens, not
the prompts, which have no position in time.  Variable attention runs per scale too: its
queries and keys are averaged over one scale's tokens.  (msft_forecast models every channel as
its own series, so there is one variable and it reduces to a per-token value projection.)

Each scale's loss is the MSE against its pooled target in that scale's own normalised units,
as for MOMENT; intervals come from held-out residuals (:mod:`msft_forecast.msft.residuals`).

``"adalora"`` puts AdaLoRA's updates in the same LoRA slots
(:func:`~msft_forecast.msft.modules.lora_for`), so the rank allocator and the orthogonality term
find them as on the other backbones.  ``"prompt-tuning"`` is the authors' own prompt tuning
(``choose_training_parts(prompt_tune=True)`` in their exp/exp_sup.py): UniTS already prepends
the data set's ``prompt_num`` prompt tokens, so the strategy trains those and the mask token
with everything else, head included, frozen, and adds no tokens (``num_prompt_tokens`` does not
apply).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.msft.base import ModelForecast, MultiScaleModel
from msft_forecast.msft.layout import ScaleSpan, TokenLayout
from msft_forecast.msft.mixing import CombinationStatistics, squared_error_statistics
from msft_forecast.msft.modules import (
    CrossScaleAggregator,
    ScaleAdapters,
    ScaleContext,
    lora_for,
    split_scales,
)
from msft_forecast.msft.residuals import collect_residuals, residual_paths
from msft_forecast.msft.scales import PoolingOp, build_scales, upsample_horizon
from msft_forecast.msft.strategies import DEFAULT_NUM_PROMPT_TOKENS, StrategySpec

#: The strategies this model implements; any other (including ones added later) is refused.
SUPPORTED_STRATEGIES: tuple[str, ...] = (
    "zero-shot", "linear-probe", "lora", "adalora", "prompt-tuning", "full", "msft",
)  # fmt: skip
#: LoRA targets on UniTS: q, k, v of the time attention's fused ``qkv`` and ``"out"`` (its
#: ``proj``).  Its MLP is a convolution with dynamic time maps, which has no LoRA slot.
SUPPORTED_LORA_TARGETS: tuple[str, ...] = ("q", "k", "v", "out")

# Variance floor of UniTS' normalisation (inside the square root), as the backbone's.
_NORM_EPS = 1e-5


@dataclass(frozen=True)
class _OneScale:
    """The :class:`ScaleContext` a scale-aware module sees while one scale runs alone: one
    span, so :class:`~msft_forecast.msft.modules.ScaleLoRA` applies that scale's pair to every
    token."""

    spans: tuple[ScaleSpan, ...]

    @classmethod
    def of(cls, level: int, tokens: int) -> _OneScale:
        return cls((ScaleSpan(level, 0, tokens, 0, 0, 0),))


class FusedQKVLoRA(nn.Module):
    """The strategy's low-rank update on some of q, k, v of a fused ``qkv`` projection
    (d -> 3d).

    One update (d -> d) per target, as :func:`~msft_forecast.msft.modules.lora_for` builds it
    for the spec (per-scale LoRA, or AdaLoRA); the other thirds get no update.

    Parameters
    ----------
    spec : StrategySpec
        The strategy (its LoRA settings).
    d_model : int
        Token width.
    targets : sequence of str
        Which of ``"q"``, ``"k"``, ``"v"`` get an update.
    """

    def __init__(self, spec: StrategySpec, d_model: int, targets: Sequence[str]) -> None:
        super().__init__()
        self.d_model = d_model
        self.parts = nn.ModuleDict(
            {t: lora_for(spec, d_model, d_model) for t in ("q", "k", "v") if t in targets}
        )

    def forward(self, x: Tensor, ctx) -> Tensor:
        zeros = None
        outs = []
        for t in ("q", "k", "v"):
            if t in self.parts:
                outs.append(self.parts[t](x, ctx))
            else:
                zeros = x.new_zeros(*x.shape[:-1], self.d_model) if zeros is None else zeros
                outs.append(zeros)
        return torch.cat(outs, dim=-1)


@dataclass
class _Scale:
    """One scale's normalised forecast and statistics, each (B, ...)."""

    pred: Tensor  # (B, H_k) normalised
    mean: Tensor  # (B, 1)
    stdev: Tensor  # (B, 1)


class MultiScaleUnits(MultiScaleModel):
    """A UniTS backbone with the MSFT parts of a strategy.

    Parameters
    ----------
    backbone : UnitsModule
        Owned copy of the backbone (structural copy sharing the frozen tensors, or a deep copy
        for full fine-tuning), without prompt tokens: the model owns the ones it uses.
    spec : StrategySpec
        What to build and train (:data:`SUPPORTED_STRATEGIES`).
    horizon_length : int
        Steps forecast at scale 0 (longer forecasts roll forward, see :attr:`horizon_limit`).
    prompt, mask : Tensor
        The data set's prompt (1, 1, prompt_num, d) and mask (1, 1, 1, d) tokens of one
        variable; copied into the model and trained by every training strategy (by
        ``"prompt-tuning"`` alone).
    pooling : {"mean", "max", "subsample"}
        Pooling between scales.
    """

    kind = "units"
    intervals_from_residuals = True

    def __init__(
        self,
        backbone: nn.Module,
        spec: StrategySpec,
        horizon_length: int,
        prompt: Tensor,
        mask: Tensor,
        pooling: PoolingOp = "mean",
    ) -> None:
        super().__init__(backbone, spec, pooling)
        cfg = backbone.config
        self.patch_len = int(cfg.patch_len)
        self.horizon_length = int(horizon_length)
        d = int(cfg.d_model)
        self.prompt_tokens = nn.Parameter(prompt.detach().clone().reshape(1, 1, -1, d))
        self.mask_token = nn.Parameter(mask.detach().clone().reshape(1, 1, 1, d))
        self.adapters = ScaleAdapters(d, spec.num_scales) if spec.scale_adapters else None
        qkv_targets = [t for t in ("q", "k", "v") if t in spec.lora_targets]
        for block in backbone.blocks:
            attn = block.seq_att_block.attn_seq
            if qkv_targets:
                attn.lora["qkv"] = FusedQKVLoRA(spec, d, qkv_targets)
            if "out" in spec.lora_targets:
                attn.lora["proj"] = lora_for(spec, d, d)
            if spec.aggregator:
                block.aggregator = CrossScaleAggregator(d, spec.num_scales, spec.aggregator_rank)
        self._init_scale_weights()
        self.set_trainable()

    # ---------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls, loaded, spec: StrategySpec, *, patch_size: int | None, horizon_length: int,
        pooling: PoolingOp = "mean",
    ) -> MultiScaleUnits:  # fmt: skip
        cls.check_strategy(spec)
        settings = loaded.raw_config
        if not spec.trains and not settings.get("trained_tokens", False):
            raise ValueError(
                f"UniTS forecasts zero-shot only with prompt tokens it was trained on; the data "
                f"set {settings.get('dataset')!r} is new to this checkpoint, so its prompt "
                f"tokens are freshly initialised. Name one of the checkpoint's data sets in "
                f"units.json, or fine-tune (fit_strategy='prompt-tuning', the authors' way "
                f"for new data, or 'linear-probe', 'lora', 'adalora', 'msft', 'full'), which "
                f"trains the new prompt tokens."
            )
        if spec.prompt_tokens not in (0, DEFAULT_NUM_PROMPT_TOKENS):
            warnings.warn(
                f"num_prompt_tokens={spec.prompt_tokens} does not apply to UniTS: its prompt "
                f"tuning trains the checkpoint's own {loaded.config.prompt_num} prompt tokens "
                f"of the data set (their number is fixed by the checkpoint).",
                UserWarning,
                stacklevel=2,
            )
        if patch_size is not None and int(patch_size) != int(loaded.config.patch_len):
            raise ValueError(
                f"UniTS has one patch length, {loaded.config.patch_len}; got patch_size="
                f"{patch_size}."
            )
        source = loaded.module
        name, variable = settings["dataset"], int(settings.get("variable", 0))
        prompt = source.prompt_tokens[name][:, variable : variable + 1]
        mask = source.mask_tokens[name][:, variable : variable + 1]
        module = cls.owned_backbone(loaded, spec)
        # the model owns the tokens it uses: the backbone copy keeps none (no shared tensor
        # gets trained, and a full fine-tune does not carry every data set's tokens)
        module.prompt_tokens = nn.ParameterDict()
        module.mask_tokens = nn.ParameterDict()
        if spec.train_head and not spec.train_backbone and spec.trains:
            # the head is trained: own a copy instead of writing into the shared backbone
            module.forecast_head = copy.deepcopy(module.forecast_head)
        return cls(module, spec, horizon_length, prompt, mask, pooling)

    @classmethod
    def check_strategy(cls, spec: StrategySpec) -> None:
        if spec.name not in SUPPORTED_STRATEGIES:
            raise ValueError(
                f"fit_strategy={spec.name!r} is not implemented for UniTS backbones; UniTS "
                f"supports {list(SUPPORTED_STRATEGIES)}."
            )
        other = sorted(set(spec.lora_targets) - set(SUPPORTED_LORA_TARGETS))
        if other:
            raise ValueError(
                f"lora_targets {other} do not exist on UniTS: its LoRA goes on the time "
                f"attention's q, k, v and 'out' (its MLP is a convolution with dynamic time "
                f"maps). Use lora_targets among {list(SUPPORTED_LORA_TARGETS)}."
            )

    @classmethod
    def candidate_patch_sizes(cls, config, freq: str | None, context_length: int) -> list[int]:
        """UniTS has one patch length."""
        return [int(config.patch_len)]

    @property
    def horizon_limit(self) -> int:
        """The horizon trained (and calibrated) for; longer forecasts roll forward."""
        return self.horizon_length

    def token_layout(self, context_length: int, horizon_length: int) -> TokenLayout:
        """Context and horizon tokens of every scale (each scale's ``prompt_num`` prompt
        tokens come before its context tokens and are not part of the layout)."""
        return TokenLayout(context_length, horizon_length, self.patch_len, self.spec.num_scales)

    # -------------------------------------------------------------------------- parameters
    def set_trainable(self) -> None:
        """Freeze and unfreeze tensors as the strategy says: every training strategy trains
        the data set's prompt and mask tokens, and all but ``"prompt-tuning"`` the forecasting
        head."""
        for p in self.parameters():
            p.requires_grad_(False)
        if self.spec.train_backbone:
            self.backbone.requires_grad_(True)
        if self.spec.trains:
            self.prompt_tokens.requires_grad_(True)
            self.mask_token.requires_grad_(True)
        if self.spec.trains and (self.spec.train_head or self.spec.train_backbone):
            self.backbone.forecast_head.requires_grad_(True)
        for module in self.msft_modules():
            module.requires_grad_(True)
        self._set_scale_weights_trainable()

    def msft_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [] if self.adapters is None else [self.adapters]
        for block in self.backbone.blocks:
            mods += list(block.seq_att_block.attn_seq.lora.values())
            if block.aggregator is not None:
                mods.append(block.aggregator)
        return mods

    # ----------------------------------------------------------------------------- forward
    def _predict_normalised(
        self, context: Tensor, context_observed: Tensor, horizon: Tensor, horizon_observed: Tensor
    ):
        """Every scale's forecast in its own normalised units, with its statistics; and the
        scales (pooled targets)."""
        bb, p = self.backbone, self.patch_len
        layout = self.token_layout(context.shape[-1], horizon.shape[-1])
        scales = build_scales(
            context, context_observed, horizon, horizon_observed, self.spec.num_scales, self.pooling
        )
        hidden, stats, valid = [], [], []
        for scale, span in zip(scales, layout.spans, strict=True):
            x, obs = scale.context.values, scale.context.observed
            pad = span.num_context * p - x.shape[-1]
            x, obs = F.pad(x, (pad, 0)), F.pad(obs, (pad, 0), value=False)
            n = obs.sum(-1, keepdim=True)
            mean = torch.where(obs, x, 0.0).sum(-1, keepdim=True) / n.clamp(min=1)
            centred = torch.where(obs, x - mean, 0.0)
            stdev = torch.sqrt(centred.square().sum(-1, keepdim=True) / n.clamp(min=1) + _NORM_EPS)
            # a series with no observed step has no statistics: leave it unscaled
            stdev = torch.where(n > 0, stdev, torch.ones_like(stdev))
            tokens = bb.embed_patches((centred / stdev).unsqueeze(1))  # (B, 1, N_k, d)
            if self.adapters is not None:
                tokens = self.adapters.linears[span.level](tokens)
            seq = bb.task_tokens(tokens, self.prompt_tokens, self.mask_token, span.num_horizon)
            hidden.append(seq)
            stats.append((mean, stdev))
            valid.append(obs.reshape(obs.shape[0], -1, p).any(-1))
            valid.append(obs.new_ones(obs.shape[0], span.num_horizon))
        ctx = ScaleContext.build(layout, torch.cat(valid, 1))
        hidden = self._encode(hidden, ctx)
        out = []
        for h, span, (mean, stdev) in zip(hidden, layout.spans, stats, strict=True):
            n_tokens = span.num_context + span.num_horizon
            y = bb.head(h, n_tokens)[:, 0]  # (B, n_tokens * p)
            start = span.num_context * p
            out.append(_Scale(y[:, start : start + span.horizon_steps], mean, stdev))
        return out, scales

    def _encode(self, hidden: list[Tensor], ctx: ScaleContext) -> list[Tensor]:
        """UniTS' blocks, scale by scale, with the aggregator between the scales."""
        prompt_num = self.prompt_tokens.shape[2]
        for block in self.backbone.blocks:
            hidden = [
                block.seq_att_block(h, _OneScale.of(k, h.shape[2])) for k, h in enumerate(hidden)
            ]
            if block.aggregator is not None:
                series = torch.cat([h[:, 0, prompt_num:] for h in hidden], dim=1)  # (B, N, d)
                delta = split_scales(block.aggregator(series, ctx), ctx.spans)
                hidden = [
                    torch.cat((h[:, :, :prompt_num], h[:, :, prompt_num:] + dk.unsqueeze(1)), 2)
                    for h, dk in zip(hidden, delta, strict=True)
                ]
            hidden = [block.dynamic_mlp(block.var_att_block(h)) for h in hidden]
        return hidden

    def _scale_losses(self, out: list[_Scale], scales) -> Tensor:
        """``(K+1,)`` MSE of every scale against its pooled target, in its own units."""
        losses = []
        for o, scale in zip(out, scales, strict=True):
            target = (scale.horizon.values - o.mean) / o.stdev
            mask = scale.horizon.observed
            err = torch.where(mask, (o.pred - target) ** 2, 0.0)
            losses.append(err.sum() / mask.sum().clamp(min=1))
        return torch.stack(losses)

    def _upsampled_means(self, out: list[_Scale], horizon_length: int) -> Tensor:
        """``(B, K+1, H)`` every scale's forecast in data units at the original resolution."""
        return torch.stack(
            [
                upsample_horizon(o.pred.float() * o.stdev + o.mean, level, horizon_length)
                for level, o in enumerate(out)
            ],
            1,
        )

    # ----------------------------------------------------------------------------- training
    def loss(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Training loss from the per-scale MSEs in normalised units (as MOMENT's)."""
        out, scales = self._predict_normalised(context, context_observed, horizon, horizon_observed)
        losses = self._scale_losses(out, scales)
        loss = self.weighted_loss(losses)
        if self.spec.num_scales > 1 and self.spec.scale_weighting == "learned":
            means = self._upsampled_means(out, horizon.shape[-1])
            loss = loss + self.combined_point_loss(means, horizon, horizon_observed, out[0].stdev)
        return loss, losses.detach()

    @torch.no_grad()
    def validation_scores(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        num_samples: int = 16,
    ) -> tuple[Tensor, CombinationStatistics]:
        """Per-scale losses and the squared-error statistics of the combined forecast, in units
        of each window's scale-0 spread."""
        out, scales = self._predict_normalised(context, context_observed, horizon, horizon_observed)
        losses = self._scale_losses(out, scales)
        means = self._upsampled_means(out, horizon.shape[-1])
        unit = out[0].stdev.reshape(-1)
        return losses, squared_error_statistics(means, horizon, horizon_observed, unit)

    @torch.no_grad()
    def calibrate(self, held_out, train) -> None:
        """Keep up to 512 held-out residuals (see :func:`collect_residuals`)."""
        self.residuals = collect_residuals(self, held_out, train, "UniTS")

    # ---------------------------------------------------------------------------- inference
    @torch.no_grad()
    def forecast(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon_length: int,
        num_samples: int = 0,
        available: Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
    ) -> ModelForecast:
        """Weighted mean of the scales' forecasts (always computed for the trained horizon and
        cut); sample paths are the point forecast plus resampled held-out residuals."""
        if horizon_length > self.horizon_length:
            raise ValueError(
                f"This UniTS model was fitted for {self.horizon_length} steps; it forecasts at "
                f"most that many in one pass (the engine rolls longer forecasts forward)."
            )
        horizon = context.new_zeros(context.shape[0], self.horizon_length)
        out, _ = self._predict_normalised(
            context, context_observed, horizon, torch.zeros_like(horizon, dtype=torch.bool)
        )
        scale_means = self._upsampled_means(out, horizon_length)
        w = self.mixing_weights().to(scale_means.dtype)
        mean = torch.einsum("k,bkh->bh", w, scale_means)
        samples = residual_paths(
            self.residuals, context, context_observed, mean, num_samples, seeds, generator
        )
        return ModelForecast(mean=mean, samples=samples, scale_means=scale_means, weights=w)
