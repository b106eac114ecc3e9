"""Invariants of the multi-scale models on small random backbones.

The method: docs/strategies.md, "MSFT in one picture".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msft_forecast.backbones.cache import clear_backbone_cache, get_backbone, structural_copy
from msft_forecast.engine import MSFTEngine
from msft_forecast.msft.moirai_model import MultiScaleMoirai, blend
from msft_forecast.msft.moment_model import MultiScaleMoment
from msft_forecast.msft.strategies import resolve_strategy


def _batch(batch: int = 3, c: int = 100, h: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(c + h, dtype=torch.float32)
    y = 5 + torch.sin(2 * torch.pi * t / 24) + 0.3 * torch.randn(batch, c + h, generator=g)
    ctx, hor = y[:, :c].clone(), y[:, c:].clone()
    obs = torch.rand(batch, c, generator=g) > 0.1  # missing values
    obs[1, :37] = False  # a shorter series: padding before its start
    available = torch.tensor([c, c - 37, c])
    return ctx, obs, hor, torch.ones_like(hor, dtype=torch.bool), available


@pytest.fixture
def moirai(tiny_moirai_dir):
    return get_backbone(str(tiny_moirai_dir))


def _scale0(model: MultiScaleMoirai, ctx, obs, hor, hobs, available):
    tok, layout = model.tokens(ctx, obs, hor, hobs, available)
    return model._horizon_distributions(tok, layout)[0], tok, layout


def test_at_init_scale0_equals_the_zero_shot_backbone(moirai) -> None:
    torch.manual_seed(0)
    ctx, obs, hor, hobs, available = _batch()
    msft = MultiScaleMoirai(structural_copy(moirai.module), resolve_strategy("msft"), 16).eval()
    zero = MultiScaleMoirai(
        structural_copy(moirai.module), resolve_strategy("zero-shot"), 16
    ).eval()
    with torch.no_grad():
        d_msft, tok, layout = _scale0(msft, ctx, obs, hor, hobs, available)
        d_zero, tok0, _ = _scale0(zero, ctx, obs, hor, hobs, available)
        # the zero-shot reference is the plain backbone forward on the one-scale layout
        full = moirai.module(
            tok0.target,
            tok0.observed,
            tok0.sample_id,
            tok0.time_id,
            tok0.variate_id,
            tok0.prediction_mask,
            tok0.patch_size,
        )
    sl = layout.spans[0].horizon_tokens
    target = tok.target[:, sl]
    torch.testing.assert_close(d_msft.mean, d_zero.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d_msft.stddev, d_zero.stddev, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        d_msft.log_prob(target), d_zero.log_prob(target), atol=1e-5, rtol=1e-5
    )
    n_ctx = layout.spans[0].num_context
    torch.testing.assert_close(d_zero.mean, full.mean[:, n_ctx:], atol=1e-6, rtol=1e-6)

    # the check can fail: a non-zero LoRA update changes scale 0
    lora = msft.backbone.encoder.layers[0].self_attn.lora["q"]
    with torch.no_grad():
        lora.lora_B.normal_()
        moved, _, _ = _scale0(msft, ctx, obs, hor, hobs, available)
    assert not torch.allclose(moved.mean, d_zero.mean, atol=1e-5)


def test_in_scale_attention_isolates_scales(moirai) -> None:
    """Without the aggregator, scale 0 ignores every coarser scale's values."""
    ctx, obs, hor, hobs, available = _batch()
    spec = resolve_strategy("msft", aggregator=False)
    model = MultiScaleMoirai(structural_copy(moirai.module), spec, 16).eval()
    with torch.no_grad():
        base, _, _ = _scale0(model, ctx, obs, hor, hobs, available)
        tok, layout = model.tokens(ctx, obs, hor, hobs, available)
        coarse = slice(layout.spans[1].start, layout.num_tokens)
        # noise, not a shift: every scale is standardised on its own, so a shift is invisible
        tok.target[:, coarse] += 3.0 * torch.randn_like(tok.target[:, coarse])
        after = model._horizon_distributions(tok, layout)[0]
    torch.testing.assert_close(base.mean, after.mean)


def test_aggregator_is_the_only_path_between_scales(moirai) -> None:
    ctx, obs, hor, hobs, available = _batch()
    model = MultiScaleMoirai(structural_copy(moirai.module), resolve_strategy("msft"), 16).eval()
    for layer in model.backbone.encoder.layers:
        for proj in list(layer.aggregator.coarse_to_fine) + list(layer.aggregator.fine_to_coarse):
            torch.nn.init.normal_(proj.up.weight, std=0.1)
    with torch.no_grad():
        tok, layout = model.tokens(ctx, obs, hor, hobs, available)
        base = model._horizon_distributions(tok, layout)[0].mean
        coarse = slice(layout.spans[1].start, layout.spans[1].stop)
        tok.target[:, coarse] += 3.0 * torch.randn_like(tok.target[:, coarse])
        after = model._horizon_distributions(tok, layout)[0].mean
    assert not torch.allclose(base, after)


def test_training_leaves_frozen_tensors_bit_identical(tiny_moirai_dir, seasonal_series) -> None:
    clear_backbone_cache()
    frozen = {
        k: v.clone() for k, v in get_backbone(str(tiny_moirai_dir)).module.state_dict().items()
    }
    engine = MSFTEngine(
        backbone=str(tiny_moirai_dir),
        context_length=64,
        prediction_length=16,
        max_steps=3,
        batch_size=4,
        random_state=0,
        patch_size=16,
        validation=None,
        learning_rate=1e-2,
    ).fit([seasonal_series])
    model = engine.model_
    after = get_backbone(str(tiny_moirai_dir)).module.state_dict()
    for key, value in frozen.items():
        assert torch.equal(value, after[key]), key
    # the fitted model's own backbone tensors are the shared frozen ones, except its head copy
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith(("backbone.param_proj", "adapters", "scale_logits", "mixing_logits"))
        or ".lora." in n
        or ".aggregator." in n
        for n in trainable
    )
    # only trainable tensors receive gradients
    ctx, obs, hor, hobs, available = _batch(c=64, h=16)
    model.train()
    model.zero_grad()
    loss, _ = model.loss(ctx, obs, hor, hobs, available)
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    # and training changed them
    lora_b = model.backbone.encoder.layers[0].self_attn.lora["q"].lora_B
    assert lora_b.abs().sum() > 0


@pytest.mark.parametrize("strategy", ["lora", "linear-probe", "full"])
def test_strategies_train_what_they_say(moirai, strategy: str) -> None:
    module = moirai.module
    if strategy == "full":
        import copy

        module = copy.deepcopy(module)
    model = MultiScaleMoirai(structural_copy(module), resolve_strategy(strategy), 16)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {n for n in names if n.startswith("backbone.param_proj")}
    assert head
    if strategy == "linear-probe":
        assert names == head
    elif strategy == "lora":
        assert names - head and all(".lora." in n for n in names - head)
    else:
        assert len(names) == len(list(model.backbone.parameters()))


def test_blend_and_mixture() -> None:
    means = torch.tensor([[[1.0, 1.0]], [[3.0, 3.0]]]).transpose(0, 1)  # (B=1, K=2, H=2)
    samples = torch.stack([torch.zeros(5, 2), torch.ones(5, 2) * 10])[None]  # (1, 2, 5, 2)
    w = torch.tensor([0.75, 0.25])
    b = blend(means, samples, w, "blend")
    torch.testing.assert_close(b["mean"], torch.tensor([[1.5, 1.5]]))
    torch.testing.assert_close(b["samples"], torch.full((1, 5, 2), 2.5))
    g = torch.Generator().manual_seed(0)
    m = blend(means, samples.repeat(1, 1, 800, 1), w, "mixture", g)
    picked = m["samples"][0, :, 0]
    assert set(picked.unique().tolist()) == {0.0, 10.0}  # whole paths from one scale
    assert abs(float((picked == 10).float().mean()) - 0.25) < 0.03


def test_moment_msft_shapes_and_isolation(tiny_moment_dir) -> None:
    bb = get_backbone(str(tiny_moment_dir))
    model = MultiScaleMoment(structural_copy(bb.module), resolve_strategy("msft"), 24).eval()
    assert [s.num_context for s in model.token_layout(512, 24).spans] == [64, 32, 16, 8]
    ctx, obs, hor, hobs, _ = _batch(c=200, h=24)
    loss, per_scale = model.loss(ctx, obs, hor, hobs)
    assert per_scale.shape == (4,) and torch.isfinite(loss)
    out = model.forecast(ctx, obs, 24)
    assert out.mean.shape == (3, 24) and out.scale_means.shape == (3, 4, 24)
    with pytest.raises(ValueError, match="trained for 24"):
        model.forecast(ctx, obs, 30)
    with pytest.raises(ValueError, match="zero-shot"):
        MultiScaleMoment(structural_copy(bb.module), resolve_strategy("zero-shot"), 24)


def test_same_seed_same_forecast_and_save_load(tiny_moirai_dir, seasonal_series, tmp_path) -> None:
    kwargs = dict(
        backbone=str(tiny_moirai_dir),
        context_length=64,
        prediction_length=16,
        max_steps=2,
        batch_size=4,
        patch_size=16,
        val_check_interval=1,
        num_samples=16,
    )
    a = MSFTEngine(random_state=3, **kwargs).fit([seasonal_series])
    b = MSFTEngine(random_state=3, **kwargs).fit([seasonal_series])
    fa, fb = a.forecast([seasonal_series], 20, seed=1), b.forecast([seasonal_series], 20, seed=1)
    np.testing.assert_array_equal(fa.samples, fb.samples)
    np.testing.assert_array_equal(fa.mean, fb.mean)
    assert not np.array_equal(fa.samples, a.forecast([seasonal_series], 20, seed=2).samples)

    loaded = MSFTEngine.load(a.save(tmp_path / "model"))
    fl = loaded.forecast([seasonal_series], 20, seed=1)
    np.testing.assert_array_equal(fa.samples, fl.samples)
    assert loaded.report_.patch_size == a.report_.patch_size

    q = fa.quantiles([0.1, 0.5, 0.9])
    assert np.all(np.diff(q, axis=1) >= 0)
