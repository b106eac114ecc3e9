"""MSFT on a Moirai backbone: packing scales into tokens, the forward pass, loss and sampling.

Tokens of every scale are packed into one sequence (:mod:`msft_forecast.msft.layout`).  Each
scale gets its own group id, which the backbone uses as its packing ``sample_id``: attention then
stays inside a scale (in-scale attention) and the scaler normalises every scale on its own
(docs/strategies.md, "MSFT in one picture"), both without any change to the backbone; attention
runs scale by scale (one block per scale), which computes the same for a fraction of the cost.
Tokens that hold nothing but padding before a series' start get group 0, as in zero-shot Moirai;
padding tokens of one scale then attend only among themselves, and no real token reads them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.backbones.distributions import build_distribution, map_params, select_rows
from msft_forecast.frequencies import MOIRAI_PATCH_SIZES_BY_FREQ, frequency_key
from msft_forecast.msft.base import Covariates, ModelForecast, MultiScaleModel
from msft_forecast.msft.layout import TokenLayout
from msft_forecast.msft.mixing import CombinationStatistics, crps_statistics, mixture_nll
from msft_forecast.msft.modules import (
    CrossScaleAggregator,
    PromptTokens,
    ScaleAdapters,
    ScaleContext,
    lora_for,
)
from msft_forecast.msft.scales import (
    PoolingOp,
    Scale,
    Segment,
    build_scales,
    context_scales,
    upsample_horizon,
)
from msft_forecast.msft.strategies import StrategySpec


@dataclass
class MoiraiTokens:
    """A packed multi-scale batch in the backbone's input format (all ``(B, N, ...)``)."""

    target: Tensor
    observed: Tensor
    sample_id: Tensor
    time_id: Tensor
    variate_id: Tensor
    prediction_mask: Tensor
    patch_size: Tensor
    ctx: ScaleContext


def _patch(values: Tensor, observed: Tensor, n_tokens: int, p: int, *, left: bool):
    """Pad one segment to ``n_tokens * p`` steps (padding unobserved) and cut it into tokens
    (``(..., L) -> (..., n_tokens, p)``)."""
    pad = n_tokens * p - values.shape[-1]
    spec = (pad, 0) if left else (0, pad)
    values = F.pad(values, spec).reshape(*values.shape[:-1], n_tokens, p)
    observed = F.pad(observed, spec, value=False).reshape(*observed.shape[:-1], n_tokens, p)
    return values, observed


def _covariate_tokens(
    known: Scale | None, past: Segment | None, span, p: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Values and observed masks ``(B, tokens, p)`` of a scale's covariates in span order:
    each known covariate's context then horizon tokens, then each past covariate's context."""
    values, observed = [], []
    if known is not None:
        cv, co = _patch(
            known.context.values, known.context.observed, span.num_context, p, left=True
        )
        hv, ho = _patch(
            known.horizon.values, known.horizon.observed, span.num_horizon, p, left=False
        )
        values.append(torch.cat([cv, hv], 2).flatten(1, 2))  # (B, F * (nc + nh), p)
        observed.append(torch.cat([co, ho], 2).flatten(1, 2))
    if past is not None:
        pv, po = _patch(past.values, past.observed, span.num_context, p, left=True)
        values.append(pv.flatten(1, 2))
        observed.append(po.flatten(1, 2))
    return values, observed


def pack_tokens(
    scales: list[Scale],
    available: Tensor,
    layout: TokenLayout,
    max_patch_size: int,
    known: list[Scale] | None = None,
    past: list[Segment] | None = None,
) -> MoiraiTokens:
    """Pack all scales of a window batch into one token sequence per row.

    Parameters
    ----------
    scales : list of Scale
        Output of :func:`~msft_forecast.msft.scales.build_scales`.
    available : Tensor
        ``(B,)`` long: how many context steps lie after the series' start (the rest is padding).
    layout : TokenLayout
        Static layout for these lengths (and covariate counts).
    max_patch_size : int
        The backbone's largest patch size (token width of its input).
    known, past : list, optional
        Known-future covariates' scales (values ``(B, F, .)``) and past-only covariates'
        context scales (``(B, P, C_k)``), packed as uni2ts packs ``feat_dynamic_real`` and
        ``past_feat_dynamic_real``: each its own variate id in the target's sample (here the
        scale's group), the target's time ids, the same padding; known covariates' horizon
        tokens are observed inputs, never predicted; past covariates have no horizon tokens.
    """
    p = layout.patch_size
    batch = available.shape[0]
    device = available.device
    nk, np_ = layout.num_known, layout.num_past
    covariates = bool(nk or np_)
    targets, observed, sample_ids, time_ids = [], [], [], []
    for scale, span in zip(scales, layout.spans, strict=True):
        cv, co = _patch(
            scale.context.values, scale.context.observed, span.num_context, p, left=True
        )
        hv, ho = _patch(
            scale.horizon.values, scale.horizon.observed, span.num_horizon, p, left=False
        )
        targets += [cv, hv]
        observed += [co, ho]
        # available steps at this scale: ceil(a / 2**k) (pairs are right-aligned)
        avail = -torch.div(-available, 2**scale.level, rounding_mode="floor")
        real_tokens = -torch.div(-avail, p, rounding_mode="floor")
        position = torch.arange(span.num_context, device=device)
        is_real = position.unsqueeze(0) >= (span.num_context - real_tokens).unsqueeze(1)
        group = scale.level + 1
        ctx_sample = torch.where(is_real, group, 0)
        hor_sample = torch.full((batch, span.num_horizon), group, device=device)
        sample_ids += [ctx_sample, hor_sample]
        # zero-shot Moirai's time ids: count observed context tokens, horizon continues after
        ctx_time = (co.any(-1).long().cumsum(-1) - 1).clamp(min=0)
        last = ctx_time.max(dim=-1, keepdim=True).values
        hor_time = last + 1 + torch.arange(span.num_horizon, device=device)
        time_ids += [ctx_time, hor_time]
        if not covariates:
            continue
        # covariates: the target's sample ids (padding included) and time ids, per variate
        level = scale.level
        values, masks = _covariate_tokens(
            None if known is None else known[level], None if past is None else past[level],
            span, p,
        )  # fmt: skip
        targets += values
        observed += masks
        full_sample = torch.cat([ctx_sample, hor_sample], 1)
        full_time = torch.cat([ctx_time, hor_time], 1)
        sample_ids += [full_sample.repeat(1, nk), ctx_sample.repeat(1, np_)]
        time_ids += [full_time.repeat(1, nk), ctx_time.repeat(1, np_)]
    target = F.pad(torch.cat(targets, 1), (0, max_patch_size - p))
    obs = F.pad(torch.cat(observed, 1), (0, max_patch_size - p), value=False)
    sample_id = torch.cat(sample_ids, 1).long()
    prediction_mask = layout.is_horizon_token.to(device).unsqueeze(0).expand(batch, -1)
    variate_id = torch.zeros_like(sample_id)
    if covariates:
        variate_id = layout.variate_of_token.to(device).unsqueeze(0).expand(batch, -1)
    return MoiraiTokens(
        target=target,
        observed=obs,
        sample_id=sample_id,
        time_id=torch.cat(time_ids, 1),
        variate_id=variate_id,
        prediction_mask=prediction_mask,
        patch_size=torch.full_like(sample_id, p),
        ctx=ScaleContext.build(layout, sample_id > 0),
    )


def _attach_lora(backbone: nn.Module, spec: StrategySpec) -> None:
    """Put the strategy's low-rank update (:func:`lora_for`: LoRA or AdaLoRA) into the
    backbone's ``lora`` slots it names."""
    for layer in backbone.encoder.layers:
        attn = layer.self_attn
        names = {"q": attn.q_proj, "k": attn.k_proj, "v": attn.v_proj, "out": attn.out_proj}
        for target, linear in names.items():
            if target in spec.lora_targets:
                attn.lora[target] = lora_for(spec, linear.in_features, linear.out_features)
        if "ffn" in spec.lora_targets:
            ffn = layer.ffn
            for name in ("fc1", "fc_gate", "fc2"):
                linear = getattr(ffn, name)
                ffn.lora[name] = lora_for(spec, linear.in_features, linear.out_features)


class MultiScaleMoirai(MultiScaleModel):
    """A Moirai backbone with the MSFT parts a strategy asks for.

    Parameters
    ----------
    backbone : MoiraiModule
        The backbone this model owns: a structural copy of the shared frozen backbone (its
        tensors stay shared and frozen) or, for full fine-tuning, a deep copy.
    spec : StrategySpec
        What to build and what to train.
    patch_size : int
        Patch size used at every scale (one of the backbone's patch sizes).
    pooling : {"mean", "max", "subsample"}
        Pooling operation between scales.

    Examples
    --------
    >>> import torch
    >>> from msft_forecast.backbones.cache import get_backbone, structural_copy
    >>> from msft_forecast.msft.strategies import resolve_strategy
    >>> bb = get_backbone("moirai-tiny")  # doctest: +SKIP
    >>> spec = resolve_strategy("msft")
    >>> model = MultiScaleMoirai(structural_copy(bb.module), spec, 16)  # doctest: +SKIP
    >>> ctx = torch.randn(2, 128); fut = torch.randn(2, 32)  # doctest: +SKIP
    >>> loss, per_scale = model.loss(ctx, ~ctx.isnan(), fut, ~fut.isnan())  # doctest: +SKIP
    """

    kind = "moirai"
    supports_covariates = True

    def __init__(
        self, backbone: nn.Module, spec: StrategySpec, patch_size: int, pooling: PoolingOp = "mean"
    ) -> None:
        super().__init__(backbone, spec, pooling)
        patch_sizes = tuple(int(p) for p in backbone.config.patch_sizes)
        if patch_size not in patch_sizes:
            raise ValueError(
                f"patch_size {patch_size} is not one of this backbone's patch sizes {patch_sizes}."
            )
        self.patch_size = patch_size
        self.max_patch_size = max(patch_sizes)
        d_model = backbone.config.d_model
        self.adapters = ScaleAdapters(d_model, spec.num_scales) if spec.scale_adapters else None
        self.prompts = PromptTokens(spec.prompt_tokens, d_model) if spec.prompt_tokens else None
        if spec.lora_targets:
            _attach_lora(backbone, spec)
        if spec.aggregator:
            for layer in backbone.encoder.layers:
                layer.aggregator = CrossScaleAggregator(
                    d_model, spec.num_scales, spec.aggregator_rank
                )
        # softmax(0): the scales start with uniform weights (plus the optional prior)
        self._init_scale_weights()
        self._layouts: dict[tuple[int, int], TokenLayout] = {}
        self.set_trainable()

    @classmethod
    def build(
        cls, loaded, spec: StrategySpec, *, patch_size: int | None, horizon_length: int,
        pooling: PoolingOp = "mean",
    ) -> MultiScaleMoirai:  # fmt: skip
        module = cls.owned_backbone(loaded, spec)
        if spec.train_head and not spec.train_backbone and spec.trains:
            # the head is trained: own a copy instead of writing into the shared backbone
            module.param_proj = copy.deepcopy(module.param_proj)
        return cls(module, spec, int(patch_size), pooling)

    @classmethod
    def candidate_patch_sizes(cls, config, freq: str | None, context_length: int) -> list[int]:
        """The backbone's patch sizes, narrowed by the frequency (Moirai's table) and to those
        that leave at least two context tokens."""
        sizes = sorted(int(p) for p in config.patch_sizes)
        if freq:
            allowed = MOIRAI_PATCH_SIZES_BY_FREQ.get(frequency_key(freq))
            if allowed:
                sizes = [p for p in sizes if p in allowed] or sizes
        # at least two context tokens, else there is nothing to attend over
        fitting = [p for p in sizes if context_length >= 2 * p]
        return fitting or [min(sizes)]

    # ----------------------------------------------------------------------------- parameters
    def set_trainable(self) -> None:
        """Freeze and unfreeze tensors as the strategy says."""
        spec = self.spec
        for p in self.parameters():
            p.requires_grad_(False)
        if not spec.trains:
            return
        if spec.train_backbone:
            self.backbone.requires_grad_(True)
        if spec.train_head or spec.train_backbone:
            self.backbone.param_proj.requires_grad_(True)
        for module in self.msft_modules():
            module.requires_grad_(True)
        self._set_scale_weights_trainable()

    def msft_modules(self) -> list[nn.Module]:
        """The modules the strategy added (adapters, LoRA or AdaLoRA, aggregators, prompts)."""
        mods: list[nn.Module] = [m for m in (self.adapters, self.prompts) if m is not None]
        for layer in self.backbone.encoder.layers:
            mods += list(layer.self_attn.lora.values()) + list(layer.ffn.lora.values())
            if layer.aggregator is not None:
                mods.append(layer.aggregator)
        return mods

    # --------------------------------------------------------------------------------- forward
    def token_layout(
        self, context_length: int, horizon_length: int, num_known: int = 0, num_past: int = 0
    ) -> TokenLayout:
        key = (context_length, horizon_length, num_known, num_past)
        if key not in self._layouts:
            self._layouts[key] = TokenLayout(
                context_length, horizon_length, self.patch_size, self.spec.num_scales,
                num_known, num_past,
            )  # fmt: skip
        return self._layouts[key]

    def tokens(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
        covariates: Covariates | None = None,
    ) -> tuple[MoiraiTokens, TokenLayout]:
        """Build scales and pack them; ``available`` defaults to the whole context.

        ``covariates`` (see :class:`~msft_forecast.msft.base.Covariates`) are pooled into the
        same scales as the target and packed as extra variates of every scale.
        """
        C, H, K = context.shape[-1], horizon.shape[-1], self.spec.num_scales
        known = past = None
        if covariates is not None:
            fut, fut_obs = covariates["future"], covariates["future_observed"]
            if fut.shape[1]:
                if fut.shape[-1] != C + H:
                    raise ValueError(
                        f"known-future covariates span {fut.shape[-1]} steps; the window needs "
                        f"{C + H} (context {C} + horizon {H})."
                    )
                known = build_scales(
                    fut[..., :C], fut_obs[..., :C], fut[..., C:], fut_obs[..., C:], K, self.pooling
                )
            if covariates["past"].shape[1]:
                past = context_scales(
                    covariates["past"], covariates["past_observed"], K, self.pooling
                )
        layout = self.token_layout(
            C, H, 0 if known is None else fut.shape[1],
            0 if past is None else covariates["past"].shape[1],
        )  # fmt: skip
        scales = build_scales(
            context, context_observed, horizon, horizon_observed, self.spec.num_scales, self.pooling
        )
        if available is None:
            available = torch.full(
                (context.shape[0],), context.shape[-1], dtype=torch.long, device=context.device
            )
        return pack_tokens(scales, available, layout, self.max_patch_size, known, past), layout

    def encode(self, tok: MoiraiTokens) -> tuple[Tensor, Tensor, Tensor]:
        """Run the backbone with the MSFT parts; returns (representations, loc, scale)."""
        bb = self.backbone
        scaled, loc, scale = bb.standardize(
            tok.target, tok.observed, tok.sample_id, tok.variate_id, tok.prediction_mask
        )
        x = bb.embed(scaled, tok.patch_size, tok.prediction_mask)
        if self.adapters is not None:
            x = self.adapters(x, tok.ctx)
        if self.prompts is not None:
            return self._encode_with_prompts(x, tok), loc, scale
        # one attention block per scale: scales share no group id, so attending scale by scale
        # gives the same outputs for a fraction of the scores
        blocks = [span.tokens for span in tok.ctx.spans]
        bias = bb.attention_bias(tok.sample_id, tok.variate_id, tok.time_id, blocks)
        for layer in bb.encoder.layers:
            x = layer(x, bias, scale_ctx=tok.ctx)
        return bb.encoder.norm(x), loc, scale

    def _encode_with_prompts(self, x: Tensor, tok: MoiraiTokens) -> Tensor:
        """The encoder over the prompts followed by the (single-scale) tokens; returns the
        tokens' representations only, so the head never reads a prompt.

        The prompts sit just before the first observed context token: time ids ``0 .. n-1``
        and the series' time ids shifted by ``n`` (rotary attention depends on time
        differences only, so the series' tokens see each other exactly as without prompts);
        the group id of the series (1), so padding tokens (group 0) neither see them nor are
        seen; variate id 0 like the series, so the binary variate bias stays constant.
        """
        bb, n = self.backbone, len(self.prompts)
        batch = x.shape[0]
        x = self.prompts.prepend(x)
        ids = torch.arange(n, device=x.device).expand(batch, -1)
        sample_id = torch.cat([torch.ones_like(ids), tok.sample_id], 1)
        variate_id = torch.cat([torch.zeros_like(ids), tok.variate_id], 1)
        time_id = torch.cat([ids, tok.time_id + n], 1)
        bias = bb.attention_bias(sample_id, variate_id, time_id)
        for layer in bb.encoder.layers:
            x = layer(x, bias)
        return bb.encoder.norm(x)[:, n:]

    def _horizon_distributions(self, tok: MoiraiTokens, layout: TokenLayout):
        """Each scale's predictive distribution over its horizon tokens."""
        return self._distributions(self.encode(tok), tok, layout)

    def _distributions(self, encoded, tok: MoiraiTokens, layout: TokenLayout):
        return self._build(self._head(encoded, tok, layout))

    def _head(self, encoded, tok: MoiraiTokens, layout: TokenLayout) -> list:
        """Each scale's raw distribution parameters over its horizon tokens, with the
        standardisation to undo: the output head runs once per batch."""
        reprs, loc, scale = encoded
        spans = layout.spans
        # one projection over every scale's horizon tokens: per scale, each call would zero-fill
        # a full-size gradient of every head weight it indexes
        horizon = torch.cat([reprs[:, s.horizon_tokens] for s in spans], dim=1)
        raw = self.backbone.param_proj(horizon, self.patch_size)
        out, start = [], 0
        for span in spans:
            part = slice(start, start + span.num_horizon)
            start = part.stop
            token_params = map_params(raw, lambda value, part=part: value[:, part])
            out.append((token_params, loc[:, span.horizon_tokens], scale[:, span.horizon_tokens]))
        return out

    def _build(self, head: list, rows=slice(None)) -> list:
        """Each scale's distribution from :meth:`_head`'s parameters, for ``rows``."""
        spec = self.backbone.param_proj.spec
        return [
            build_distribution(spec, select_rows(raw, rows), loc[rows], scale[rows])
            for raw, loc, scale in head
        ]

    def _flatten_horizon(self, values: Tensor, span) -> Tensor:
        """``(..., n_tokens, P)`` token values of a horizon -> ``(..., H_k)`` steps."""
        values = values[..., : self.patch_size]
        return values.flatten(-2)[..., : span.horizon_steps]

    # ------------------------------------------------------------------------------------ loss
    def _scale_losses(self, tok: MoiraiTokens, layout: TokenLayout, distributions) -> Tensor:
        """``(K+1,)`` NLL of every scale's pooled target, in that scale's standardised units.

        The NLL in data units is the standardised NLL plus ``log sigma_k``, and pooling shrinks
        ``sigma_k``: in data units a coarse scale would look better for its smaller spread
        alone (docs/strategies.md, "MSFT in one picture").
        """
        per_scale = []
        for span, distr in zip(layout.spans, distributions, strict=True):
            sl = span.horizon_tokens
            mask = tok.observed[:, sl].clone()
            mask[..., self.patch_size :] = False
            nll = -distr.standardized_log_prob(tok.target[:, sl])
            per_scale.append(torch.where(mask, nll, 0.0).sum() / mask.sum().clamp(min=1))
        return torch.stack(per_scale)

    def _fine_log_densities(self, distributions, layout: TokenLayout, horizon: Tensor) -> Tensor:
        """``(B, K+1, H)``: each scale's predictive density (data units) at every original step.

        A coarse step's distribution is read as the distribution of each of the ``2**k`` steps
        it covers, which is how its sample paths are upsampled (repeated) for the forecast.
        """
        batch, length = horizon.shape
        p = self.patch_size
        out = []
        for span, distr in zip(layout.spans, distributions, strict=True):
            f, steps = 2**span.level, span.horizon_steps
            y = F.pad(horizon, (0, steps * f - length)).reshape(batch, steps, f).permute(2, 0, 1)
            y = F.pad(y, (0, span.num_horizon * p - steps)).reshape(f, batch, span.num_horizon, p)
            lp = distr.log_prob(F.pad(y, (0, self.max_patch_size - p)))[..., :p]
            lp = lp.reshape(f, batch, -1)[..., :steps].permute(1, 2, 0).reshape(batch, -1)
            out.append(lp[:, :length])
        return torch.stack(out, 1)

    def loss(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
        covariates: Covariates | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Training loss and the per-scale losses (see :mod:`msft_forecast.msft.mixing`).

        With ``scale_weighting="learned"`` the loss adds the NLL of the combined (mixture)
        forecast at the original resolution, through which only the weights learn.
        """
        tok, layout = self.tokens(
            context, context_observed, horizon, horizon_observed, available, covariates
        )
        distributions = self._horizon_distributions(tok, layout)
        losses = self._scale_losses(tok, layout, distributions)
        loss = self.weighted_loss(losses)
        if self.spec.num_scales > 1 and self.spec.scale_weighting == "learned":
            dens = self._fine_log_densities(distributions, layout, horizon).detach()
            loss = loss + mixture_nll(dens, self.scale_weights(), horizon_observed)
        return loss, losses.detach()

    @torch.no_grad()
    def validation_scores(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon: Tensor,
        horizon_observed: Tensor,
        available: Tensor | None = None,
        covariates: Covariates | None = None,
        *,
        generator: torch.Generator | None = None,
        num_samples: int = 16,
    ) -> tuple[Tensor, CombinationStatistics]:
        """Per-scale losses and the CRPS statistics of the combined forecast at the original
        resolution, each window in units of its scale-0 spread (one encoder pass)."""
        tok, layout = self.tokens(
            context, context_observed, horizon, horizon_observed, available, covariates
        )
        encoded = self.encode(tok)
        distributions = self._distributions(encoded, tok, layout)
        losses = self._scale_losses(tok, layout, distributions)
        length = horizon.shape[-1]
        draws = self._draws(distributions, layout, num_samples, generator, length)
        unit = encoded[2][:, layout.spans[0].horizon_tokens.start, 0]
        return losses, crps_statistics(draws, horizon, horizon_observed, unit)

    # ------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def forecast(
        self,
        context: Tensor,
        context_observed: Tensor,
        horizon_length: int,
        num_samples: int,
        available: Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        covariates: Covariates | None = None,
    ) -> ModelForecast:
        """Per-scale and combined forecasts (see :meth:`MultiScaleModel.forecast`); the mean
        is the combination's mean, from the distributions' means."""
        batch = context.shape[0]
        horizon = context.new_zeros(batch, horizon_length)
        tok, layout = self.tokens(
            context,
            context_observed,
            horizon,
            torch.zeros_like(horizon, dtype=torch.bool),
            available,
            covariates,
        )
        head = self._head(self.encode(tok), tok, layout)
        distributions = self._build(head)
        means = torch.stack(
            [
                upsample_horizon(
                    self._flatten_horizon(d.mean.float(), span), span.level, horizon_length
                )
                for span, d in zip(layout.spans, distributions, strict=True)
            ],
            1,
        )
        weights, mixing = self.mixing_weights(), self.spec.mixing
        if num_samples == 0:  # the mean alone was asked for
            empty = means.new_zeros(batch, len(layout.spans), 0, horizon_length)
            return ModelForecast(**blend(means, empty, weights, mixing, generator))
        if seeds is None:
            draws = self._draws(distributions, layout, num_samples, generator, horizon_length)
            return ModelForecast(**blend(means, draws, weights, mixing, generator))
        if len(seeds) != batch:
            raise ValueError(f"{len(seeds)} seeds for a batch of {batch} rows.")
        rows = []
        for b, seed in enumerate(seeds):
            g = torch.Generator(device=context.device).manual_seed(int(seed))
            row = self._build(head, slice(b, b + 1))
            draws = self._draws(row, layout, num_samples, g, horizon_length)
            rows.append(blend(means[b : b + 1], draws, weights, mixing, g))
        out = {k: torch.cat([r[k] for r in rows]) for k in ("mean", "samples", "scale_means")}
        return ModelForecast(weights=rows[0]["weights"], **out)

    def _draws(
        self,
        distributions: list,
        layout: TokenLayout,
        num_samples: int,
        generator: torch.Generator | None,
        horizon_length: int,
    ) -> Tensor:
        """``(B, K+1, S, H)`` sample paths of every scale, upsampled to the original resolution."""
        draws = []
        for span, distr in zip(layout.spans, distributions, strict=True):
            draw = self._flatten_horizon(_sample(distr, num_samples, generator).float(), span)
            draws.append(upsample_horizon(draw, span.level, horizon_length).transpose(0, 1))
        return torch.stack(draws, 1)


def _sample(distr, num_samples: int, generator: torch.Generator | None) -> Tensor:
    """Draw samples under a private RNG stream so forecasts are reproducible."""
    if generator is None:
        return distr.sample(torch.Size((num_samples,)))
    devices = [] if generator.device.type == "cpu" else [generator.device]
    with torch.random.fork_rng(devices=devices):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        # seeding only the generator in use: torch.manual_seed also seeds every accelerator
        # backend, which costs milliseconds per call
        if generator.device.type == "cpu":
            torch.default_generator.manual_seed(seed)
        else:
            torch.cuda.manual_seed(seed)
        return distr.sample(torch.Size((num_samples,)))


def blend(
    scale_means: Tensor,
    scale_samples: Tensor,
    weights: Tensor,
    mixing: str,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Combine per-scale forecasts (docs/strategies.md, "MSFT in one picture").

    Parameters
    ----------
    scale_means : Tensor
        ``(B, K+1, H)`` per-scale means at the original resolution.
    scale_samples : Tensor
        ``(B, K+1, S, H)`` per-scale sample paths.
    weights : Tensor
        ``(K+1,)`` mixing weights summing to one.
    mixing : {"blend", "mixture"}
        ``"blend"``: the paper's sample-by-sample weighted sum; ``"mixture"``: each sample path
        is taken whole from scale k with probability ``w_k`` (a true mixture, wider and better
        calibrated intervals).

    Returns
    -------
    dict
        ``mean`` ``(B, H)``, ``samples`` ``(B, S, H)``, ``scale_means``, ``weights``.
    """
    w = weights.to(scale_means.dtype)
    mean = torch.einsum("k,bkh->bh", w, scale_means)
    if mixing == "mixture":
        batch, _, num_samples, _ = scale_samples.shape
        choice = (
            torch.multinomial(
                w.cpu().expand(batch * num_samples, -1),
                1,
                replacement=True,
                generator=_cpu(generator),
            )
            .view(batch, 1, num_samples, 1)
            .to(scale_samples.device)
        )
        samples = scale_samples.gather(1, choice.expand(-1, -1, -1, scale_samples.shape[-1]))[:, 0]
    else:
        samples = torch.einsum("k,bksh->bsh", w, scale_samples)
    return {"mean": mean, "samples": samples, "scale_means": scale_means, "weights": w}


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None or generator.device.type == "cpu":
        return generator
    g = torch.Generator()
    g.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
    return g
