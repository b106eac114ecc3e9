"""MSFT on a MOMENT backbone (docs/strategies.md, "MOMENT").

MOMENT reads a fixed ``seq_len`` (512) input cut into patches of 8, normalises each series with
RevIN and has no forecasting head from pre-training.  Scale ``k`` gets ``seq_len / 2**k`` input
steps (the pooled context, left-padded and masked), its own RevIN statistics, the frozen patch
embedding with positions restarting at 0, and its own adapter; all scales run through one
encoder pass with a block-diagonal mask, and each scale has a linear forecasting head
(flattened tokens -> ``H_k`` steps).  Each scale's loss is the MSE against its pooled target in
that scale's own RevIN units: its forecast error relative to its own spread, so neither series
of a larger magnitude nor finer scales (whose spread pooling has not shrunk) weigh more.  The
combined forecast is a weighted mean (MOMENT has no predictive distribution), so the
validation criterion of :mod:`msft_forecast.msft.mixing` is its MSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.msft.base import ModelForecast, MultiScaleModel
from msft_forecast.msft.layout import TokenLayout
from msft_forecast.msft.mixing import CombinationStatistics, squared_error_statistics
from msft_forecast.msft.modules import (
    CrossScaleAggregator,
    PromptTokens,
    ScaleAdapters,
    ScaleContext,
    lora_for,
)
from msft_forecast.msft.residuals import collect_residuals, residual_paths
from msft_forecast.msft.scales import PoolingOp, build_scales, upsample_horizon
from msft_forecast.msft.strategies import StrategySpec


class MultiScaleMoment(MultiScaleModel):
    """A MOMENT backbone with per-scale forecasting heads and the MSFT parts of a strategy.

    Parameters
    ----------
    backbone : MomentModule
        Owned copy of the backbone (structural copy sharing frozen tensors, or a deep copy for
        full fine-tuning).
    spec : StrategySpec
        What to build and train; ``"zero-shot"`` is refused (MOMENT cannot forecast without a
        trained head).
    horizon_length : int
        Steps the forecasting heads produce at scale 0.
    pooling : {"mean", "max", "subsample"}
        Pooling between scales.
    """

    def __init__(
        self,
        backbone: nn.Module,
        spec: StrategySpec,
        horizon_length: int,
        pooling: PoolingOp = "mean",
    ) -> None:
        super().__init__(backbone, spec, pooling)
        cfg = backbone.config
        self.seq_len = int(cfg.seq_len)
        self.patch_len = int(cfg.patch_len)
        max_scales = 1
        while (
            self.seq_len // 2**max_scales >= self.patch_len
            and (self.seq_len // 2**max_scales) % self.patch_len == 0
        ):
            max_scales += 1
        if spec.num_scales > max_scales:
            raise ValueError(
                f"MOMENT's {self.seq_len}-step input allows at most {max_scales} scales "
                f"(each needs a whole number of {self.patch_len}-step patches); got num_scales="
                f"{spec.num_scales}."
            )
        self.horizon_length = horizon_length
        d_model = int(cfg.d_model)
        self._layout = TokenLayout(self.seq_len, 0, self.patch_len, spec.num_scales)
        self.heads = nn.ModuleList(
            nn.Linear(span.num_context * d_model, -(-horizon_length // 2**span.level))
            for span in self._layout.spans
        )
        self.adapters = ScaleAdapters(d_model, spec.num_scales) if spec.scale_adapters else None
        self.prompts = PromptTokens(spec.prompt_tokens, d_model) if spec.prompt_tokens else None
        for block in backbone.encoder.block:
            attn = block.layer[0].SelfAttention
            for name in ("q", "k", "v"):
                if name in spec.lora_targets:
                    lin = getattr(attn, name)
                    attn.lora[name] = lora_for(spec, lin.in_features, lin.out_features)
            if "out" in spec.lora_targets:
                attn.lora["o"] = lora_for(spec, attn.o.in_features, attn.o.out_features)
            if "ffn" in spec.lora_targets:
                ffn = block.layer[1].DenseReluDense
                for name in ("wi_0", "wi_1", "wo"):
                    lin = getattr(ffn, name)
                    ffn.lora[name] = lora_for(spec, lin.in_features, lin.out_features)
            if spec.aggregator:
                block.aggregator = CrossScaleAggregator(
                    d_model, spec.num_scales, spec.aggregator_rank
                )
        self._init_scale_weights()
        position = torch.cat([torch.arange(s.num_context) for s in self._layout.spans])
        scale_of = self._layout.scale_of_token
        n = spec.prompt_tokens
        if n:
            # the prompts sit just before the first patch: T5's relative position bias sees the
            # patches as before (offsets unchanged) and each prompt at a fixed offset before them
            position = torch.cat([torch.arange(n), position + n])
            scale_of = torch.cat([torch.zeros(n, dtype=scale_of.dtype), scale_of])
        self.register_buffer("position_ids", position.unsqueeze(0), persistent=False)
        self.register_buffer("scale_of_token", scale_of, persistent=False)
        self.set_trainable()

    kind = "moment"
    intervals_from_residuals = True

    @classmethod
    def build(
        cls, loaded, spec: StrategySpec, *, patch_size: int | None, horizon_length: int,
        pooling: PoolingOp = "mean",
    ) -> MultiScaleMoment:  # fmt: skip
        cls.check_strategy(spec)  # before copying a backbone for nothing
        return cls(cls.owned_backbone(loaded, spec), spec, horizon_length, pooling)

    @classmethod
    def check_strategy(cls, spec: StrategySpec) -> None:
        if not spec.trains:
            raise ValueError(
                "MOMENT has no forecasting head from pre-training, so it cannot forecast "
                "zero-shot. "
                "Use fit_strategy='linear-probe' (MOMENT's standard fine-tuning: frozen encoder, "
                "trained head), 'lora', 'adalora', 'prompt-tuning', 'msft' or 'full'."
            )

    @classmethod
    def candidate_patch_sizes(cls, config, freq: str | None, context_length: int) -> list[int]:
        """MOMENT has one patch length."""
        return [int(config.patch_len)]

    @property
    def horizon_limit(self) -> int:
        """The heads' output length: longer forecasts roll forward."""
        return int(self.horizon_length)

    def token_layout(self, context_length: int, horizon_length: int) -> TokenLayout:
        """The fixed layout of MOMENT's ``seq_len`` input (the horizon is not tokenised)."""
        return self._layout

    def set_trainable(self) -> None:
        """Freeze and unfreeze tensors as the strategy says (heads are always trained)."""
        for p in self.parameters():
            p.requires_grad_(False)
        if self.spec.train_backbone:
            self.backbone.requires_grad_(True)
            self.backbone.encoder.requires_grad_(True)
        self.heads.requires_grad_(True)
        for module in self.msft_modules():
            module.requires_grad_(True)
        self._set_scale_weights_trainable()

    def msft_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [m for m in (self.adapters, self.prompts) if m is not None]
        for block in self.backbone.encoder.block:
            mods += list(block.layer[0].SelfAttention.lora.values())
            mods += list(block.layer[1].DenseReluDense.lora.values())
            if block.aggregator is not None:
                mods.append(block.aggregator)
        return mods

    def _check_context(self, context: Tensor) -> None:
        if context.shape[-1] > self.seq_len:
            raise ValueError(
                f"MOMENT reads at most {self.seq_len} context steps; got {context.shape[-1]}. "
                f"Use context_length <= {self.seq_len}."
            )

    def _predict_normalised(
        self, context: Tensor, context_observed: Tensor, horizon: Tensor, horizon_observed: Tensor
    ):
        """Per-scale predictions in RevIN units, with the per-scale statistics and targets."""
        self._check_context(context)
        bb = self.backbone
        scales = build_scales(
            context, context_observed, horizon, horizon_observed, self.spec.num_scales, self.pooling
        )
        tokens, masks, stats = [], [], []
        for scale, span in zip(scales, self._layout.spans, strict=True):
            pad = span.context_steps - scale.context.values.shape[-1]
            x = F.pad(scale.context.values, (pad, 0))
            mask = F.pad(scale.context.observed, (pad, 0), value=False)
            x_norm, st = bb.normalize(x, mask)
            # a series with no observed step has no statistics: leave it unscaled
            st = type(st)(torch.nan_to_num(st.mean, nan=0.0), torch.nan_to_num(st.stdev, nan=1.0))
            tokens.append(bb.patchify_embed(x_norm, mask))
            masks.append(mask.reshape(mask.shape[0], -1, self.patch_len).any(-1))
            stats.append(st)
        x = torch.cat(tokens, 1)
        key_valid = torch.cat(masks, 1)
        ctx = ScaleContext.build(self._layout, key_valid)
        if self.adapters is not None:
            x = self.adapters(x, ctx)
        n = 0 if self.prompts is None else len(self.prompts)
        if n:
            # prompts: every patch sees them and they see every observed patch; the heads read
            # the patches only
            x = self.prompts.prepend(x)
            key_valid = torch.cat([key_valid.new_ones(key_valid.shape[0], n), key_valid], 1)
            ctx = None  # no scale-aware part runs with prompts
        same_scale = self.scale_of_token
        allowed = (same_scale[:, None] == same_scale[None, :]).unsqueeze(0) & key_valid[:, None, :]
        # a query whose scale has no observed patch would attend to nothing: let it see itself
        allowed = allowed | torch.eye(allowed.shape[-1], dtype=torch.bool, device=x.device)
        bias = bb.attention_bias(allowed, self.position_ids)
        hidden = bb.encode(x, bias, scale_ctx=ctx)[:, n:]
        preds = []
        for span, head in zip(self._layout.spans, self.heads, strict=True):
            preds.append(head(hidden[:, span.tokens].flatten(1)))
        return preds, stats, scales

    def _scale_losses(self, preds, stats, scales) -> Tensor:
        """``(K+1,)`` MSE of every scale against its pooled target, in its own RevIN units."""
        losses = []
        for pred, st, scale in zip(preds, stats, scales, strict=True):
            target = (scale.horizon.values - st.mean) / st.stdev
            mask = scale.horizon.observed
            err = torch.where(mask, (pred[:, : target.shape[-1]] - target) ** 2, 0.0)
            losses.append(err.sum() / mask.sum().clamp(min=1))
        return torch.stack(losses)

    def loss(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Training loss from the per-scale MSEs in RevIN units; returns (loss, per-scale).

        ``scale_weighting="learned"`` adds the MSE of the combined forecast (the weighted mean of
        the upsampled per-scale forecasts, detached) in scale-0 units, through which only the
        weights learn.
        """
        preds, stats, scales = self._predict_normalised(
            context, context_observed, horizon, horizon_observed
        )
        losses = self._scale_losses(preds, stats, scales)
        loss = self.weighted_loss(losses)
        if self.spec.num_scales > 1 and self.spec.scale_weighting == "learned":
            means = self._upsampled_means(preds, stats, horizon.shape[-1])
            loss = loss + self.combined_point_loss(means, horizon, horizon_observed, stats[0].stdev)
        return loss, losses.detach()

    def _upsampled_means(self, preds, stats, horizon_length: int) -> Tensor:
        """``(B, K+1, H)`` every scale's forecast in data units at the original resolution."""
        means = []
        for span, pred, st in zip(self._layout.spans, preds, stats, strict=True):
            values = self.backbone.denormalize(pred.float(), st)
            means.append(upsample_horizon(values, span.level, horizon_length))
        return torch.stack(means, 1)

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
        """Per-scale losses and the squared-error statistics of the combined forecast at the
        original resolution, in units of each window's scale-0 RevIN spread (``generator`` and
        ``num_samples`` are accepted for the common interface)."""
        preds, stats, scales = self._predict_normalised(
            context, context_observed, horizon, horizon_observed
        )
        losses = self._scale_losses(preds, stats, scales)
        means = self._upsampled_means(preds, stats, horizon.shape[-1])
        unit = stats[0].stdev.reshape(-1)
        return losses, squared_error_statistics(means, horizon, horizon_observed, unit)

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
        """Weighted mean of the scales' point forecasts; sample paths are the point forecast
        plus resampled held-out residuals (split-conformal style, see :meth:`calibrate`): row
        ``b`` draws from a stream seeded by ``seeds[b]`` (else from ``generator``)."""
        if horizon_length > self.horizon_length:
            raise ValueError(
                f"This MOMENT model's forecasting heads were trained for {self.horizon_length} "
                f"steps; it cannot forecast {horizon_length}. Fit with a prediction length of at "
                f"least {horizon_length}."
            )
        batch = context.shape[0]
        horizon = context.new_zeros(batch, self.horizon_length)
        preds, stats, _ = self._predict_normalised(
            context, context_observed, horizon, torch.zeros_like(horizon, dtype=torch.bool)
        )
        scale_means = self._upsampled_means(preds, stats, horizon_length)
        w = self.mixing_weights().to(scale_means.dtype)
        mean = torch.einsum("k,bkh->bh", w, scale_means)
        samples = residual_paths(
            self.residuals, context, context_observed, mean, num_samples, seeds, generator
        )
        return ModelForecast(mean=mean, samples=samples, scale_means=scale_means, weights=w)

    # ----------------------------------------------------------------- residual intervals
    def calibrate(self, held_out, train) -> None:
        """Keep up to 512 held-out residuals, in units of each window's context spread
        (:func:`~msft_forecast.msft.residuals.collect_residuals`; training windows join when
        there are fewer than :data:`~msft_forecast.msft.residuals.MIN_RESIDUAL_WINDOWS`
        held-out ones, with a warning)."""
        self.residuals = collect_residuals(self, held_out, train, "MOMENT")
