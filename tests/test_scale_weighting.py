"""Scale weights that mean something (docs/strategies.md, "MSFT in one picture").

Per-scale losses on a common footing, weights fitted for the combined forecast, a validation
criterion that does not move with the weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.backbones.cache import get_backbone, structural_copy
from msft_forecast.engine import MSFTEngine, MSFTSettings
from msft_forecast.msft.mixing import (
    crps_statistics,
    fit_simplex_weights,
    project_to_capped_simplex,
    squared_error_statistics,
)
from msft_forecast.msft.moirai_model import MultiScaleMoirai
from msft_forecast.msft.strategies import resolve_strategy


def _model(tiny_moirai_dir, weighting: str = "paper") -> MultiScaleMoirai:
    backbone = get_backbone(str(tiny_moirai_dir)).module
    spec = resolve_strategy("msft", num_scales=4, scale_weighting=weighting)
    torch.manual_seed(0)
    model = MultiScaleMoirai(structural_copy(backbone), spec, 8)
    # a trained-looking model: non-zero LoRA and aggregator, so scales interact
    with torch.no_grad():
        for module in model.msft_modules():
            for p in module.parameters():
                p.add_(0.02 * torch.randn_like(p))
    return model


def _window(batch: int = 3, context: int = 64, horizon: int = 16):
    g = torch.Generator().manual_seed(1)
    t = torch.arange(context + horizon, dtype=torch.float32)
    y = torch.sin(t * 2 * torch.pi / 12) + 0.5 * torch.randn(batch, context + horizon, generator=g)
    ctx, fut = y[:, :context], y[:, context:]
    return ctx, torch.ones_like(ctx, dtype=torch.bool), fut, torch.ones_like(fut, dtype=torch.bool)


def _losses_with_finer_scales_widened(model: MultiScaleMoirai, factor: float):
    """Per-scale losses, and scale 0's data-unit NLL, with scales 0-2 multiplied by ``factor``:
    the coarsest scale's spread becomes ``factor`` times smaller than theirs (widening the others
    rather than shrinking it keeps the scaler's variance floor out of the comparison)."""
    ctx, c_obs, fut, h_obs = _window()
    tok, layout = model.tokens(ctx, c_obs, fut, h_obs)
    for span in layout.spans[:3]:
        tok.target[:, span.tokens] *= factor
    distributions = model._horizon_distributions(tok, layout)
    losses = model._scale_losses(tok, layout, distributions)
    span = layout.spans[0]
    data_nll = -distributions[0].log_prob(tok.target[:, span.horizon_tokens])
    mask = tok.observed[:, span.horizon_tokens].clone()
    mask[..., model.patch_size :] = False
    return losses, data_nll[mask].mean()


def test_a_scale_cannot_win_weight_by_having_a_smaller_spread(tiny_moirai_dir):
    """Making the coarsest scale's spread 100 times smaller than the others' (and changing
    nothing else) leaves every per-scale loss, and so the gradient on the weights, unchanged; in
    data units the finer scales would have looked log(100) = 4.6 nats worse and pushed the
    weights to the coarsest scale."""
    model = _model(tiny_moirai_dir)
    base, base_data = _losses_with_finer_scales_widened(model, 1.0)
    wide, wide_data = _losses_with_finer_scales_widened(model, 100.0)
    torch.testing.assert_close(wide, base, rtol=1e-4, atol=1e-4)
    # the artefact the standardised loss removes (so this test can fail)
    assert float((wide_data - base_data).detach()) == pytest.approx(np.log(100.0), abs=0.05)

    def weight_grad(losses):
        logits = torch.zeros(4, requires_grad=True)
        (torch.softmax(logits, 0) * losses).sum().backward()
        return logits.grad

    torch.testing.assert_close(weight_grad(wide), weight_grad(base), rtol=1e-3, atol=1e-4)


def test_training_weights_are_in_loss_for_validation_and_paper_else_uniform(tiny_moirai_dir):
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    for weighting in ("learned", "uniform", "finest"):
        model = _model(tiny_moirai_dir, weighting)
        with torch.no_grad():
            model.scale_logits.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
        assert float(model.weighted_loss(losses).detach()) == pytest.approx(2.5)
    for weighting in ("validation", "paper"):
        model = _model(tiny_moirai_dir, weighting)
        with torch.no_grad():
            model.scale_logits.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
        expected = float((torch.softmax(model.scale_logits, 0) * losses).sum())
        assert float(model.weighted_loss(losses).detach()) == pytest.approx(expected)


def test_fitted_inference_weights_are_kept_apart_from_the_training_weights(tiny_moirai_dir):
    model = _model(tiny_moirai_dir, "validation")
    model.set_mixing_weights(np.array([0.7, 0.3, 0.0, 0.0]))
    weights = model.mixing_weights().detach().numpy()
    np.testing.assert_allclose(weights, [0.7, 0.3, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(model.scale_weights().detach().numpy(), 0.25)
    # the fitted weights are kept with the trainable tensors but never move in training
    assert model.mixing_logits.requires_grad
    loss = model.weighted_loss(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    loss.backward()
    assert float(model.mixing_logits.grad.abs().max()) == 0.0
    assert float(model.scale_logits.grad.abs().max()) > 0.0


def test_paper_prior_puts_almost_all_initial_weight_on_scale_0(tiny_moirai_dir):
    backbone = get_backbone(str(tiny_moirai_dir)).module
    spec = resolve_strategy("msft", scale_weighting="paper", scale_weight_prior=10.0)
    model = MultiScaleMoirai(structural_copy(backbone), spec, 8)
    assert float(model.mixing_weights()[0]) > 0.999


# ---------------------------------------------------------------------------- fitting weights
def test_squared_error_weights_recover_the_inverse_variance_combination():
    """Two unbiased forecasts with independent errors of variance 1 and 4: the best weights
    are 4/5 and 1/5."""
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(400, 48, generator=g)
    means = torch.stack(
        [truth + torch.randn(400, 48, generator=g), truth + 2 * torch.randn(400, 48, generator=g)],
        1,
    )
    stats = squared_error_statistics(means, truth, torch.ones_like(truth, dtype=torch.bool),
                                     torch.ones(400))  # fmt: skip
    np.testing.assert_allclose(fit_simplex_weights(stats), [0.8, 0.2], atol=0.01)


def test_crps_weights_pick_the_true_distribution_and_the_true_mixture():
    g = torch.Generator().manual_seed(0)
    n, s, h = 300, 32, 24
    obs = torch.ones(n, h, dtype=torch.bool)
    # the truth is N(0, 1); scale 0 forecasts N(0, 1), scale 1 N(2, 1)
    truth = torch.randn(n, h, generator=g)
    samples = torch.randn(n, 2, s, h, generator=g)
    samples[:, 1] += 2.0
    w = fit_simplex_weights(crps_statistics(samples, truth, obs, torch.ones(n)))
    assert w[0] > 0.97
    # the truth is an equal mixture of N(-2, 0.5) and N(2, 0.5), one component per scale
    side = torch.where(torch.rand(n, h, generator=g) < 0.5, -2.0, 2.0)
    truth = side + 0.5 * torch.randn(n, h, generator=g)
    samples = 0.5 * torch.randn(n, 2, s, h, generator=g)
    samples[:, 0] -= 2.0
    samples[:, 1] += 2.0
    stats = crps_statistics(samples, truth, obs, torch.ones(n))
    np.testing.assert_allclose(fit_simplex_weights(stats), [0.5, 0.5], atol=0.03)
    # the fitted mixture scores better than either scale alone
    assert stats.loss([0.5, 0.5]) < min(stats.single_scale_losses())


def test_crps_statistics_match_a_direct_sample_crps():
    """For one scale, ``c + Q/2`` is the energy-form CRPS estimate, checked against the
    expectation computed directly."""
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(5, 1, 50, 7, generator=g)
    truth = torch.randn(5, 7, generator=g)
    stats = crps_statistics(samples, truth, torch.ones(5, 7, dtype=torch.bool), torch.ones(5))
    x, y = samples[:, 0].double(), truth.double()
    first = (x - y[:, None]).abs().mean(1)
    pairs = (x[:, :, None] - x[:, None, :]).abs().sum((1, 2)) / (50 * 49)
    direct = (first - 0.5 * pairs).mean()
    assert stats.loss([1.0]) == pytest.approx(float(direct), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    scales=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    spread=st.floats(0.1, 3.0),
)
def test_no_scale_takes_the_majority_unless_its_own_forecast_is_best(scales, seed, spread):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(20, 8, generator=g)
    bias = spread * torch.randn(scales, 1, generator=g)
    means = truth[:, None] + bias + spread * torch.randn(20, scales, 8, generator=g)
    stats = squared_error_statistics(means, truth, torch.ones(20, 8, dtype=torch.bool),
                                     torch.ones(20))  # fmt: skip
    w = fit_simplex_weights(stats)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    single = stats.single_scale_losses()
    for k in np.flatnonzero(w > 0.5 + 1e-9):
        assert single[k] == single.min()
    # never worse than uniform weights, nor than the best scale alone
    assert stats.loss(w) <= stats.loss(np.full(scales, 1 / scales)) + 1e-9
    assert stats.loss(w) <= single.min() + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    v=st.lists(st.floats(-5, 5), min_size=2, max_size=6),
    cap=st.floats(0.34, 1.0),
)
def test_capped_simplex_projection_lands_on_the_set(v, cap):
    v = np.asarray(v)
    upper = np.full(v.shape[0], cap)
    upper[0] = 1.0
    w = project_to_capped_simplex(v, upper)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= -1e-12).all() and (w <= upper + 1e-9).all()


# --------------------------------------------------------------------------- in a real fit
@pytest.fixture(scope="module")
def seasonal_series():
    rng = np.random.default_rng(0)
    t = np.arange(1400)
    return [np.sin(t * 2 * np.pi / 24) + 0.3 * rng.standard_normal(t.shape[0]) for _ in range(2)]


def _fit(series, **overrides) -> MSFTEngine:
    settings = dict(
        backbone="moirai-tiny",
        context_length=128,
        prediction_length=24,
        patch_size=16,
        max_steps=10,
        val_check_interval=5,
        batch_size=16,
        random_state=0,
    )
    settings.update(overrides)
    return MSFTEngine(**settings).fit(series)


def test_validation_weights_are_fitted_saved_and_restored(seasonal_series, tmp_path):
    engine = _fit(seasonal_series)
    weights = engine.scale_weights
    assert weights.sum() == pytest.approx(1.0)
    assert not np.allclose(weights, 0.25)  # fitted, not the initial uniform weights
    history = engine.report_.history["scale_weights"]
    assert np.allclose(history[-1][1], weights) or engine.report_.best_step != history[-1][0]
    loaded = MSFTEngine.load(engine.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.scale_weights, weights, rtol=1e-6)


def test_the_validation_criterion_does_not_move_with_the_weights(seasonal_series):
    """The starting point's validation loss is the same whatever the logits held before the
    pass: the weights are refitted, and the criterion is the combined forecast's."""
    losses = []
    for prior in (0.0, 8.0, -8.0):
        engine = _fit(seasonal_series, max_steps=1, scale_weight_prior=prior)
        losses.append(engine.report_.initial_val_loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6) == pytest.approx(losses[2], rel=1e-6)


def test_single_scale_criterion_is_comparable_with_msft(seasonal_series):
    """A single-scale model's validation loss is the CRPS of its forecast, in the same units as
    MSFT's combined forecast: at initialisation (nothing trained, scale 0 = zero-shot) MSFT
    with the finest scale alone scores what LoRA scores."""
    exact = dict(max_steps=1, precision="32-true")  # bf16 rounds differently per sequence length
    lora = _fit(seasonal_series, fit_strategy="lora", **exact)
    finest = _fit(seasonal_series, scale_weighting="finest", **exact)
    assert lora.report_.initial_val_loss == pytest.approx(finest.report_.initial_val_loss, rel=1e-5)


def test_legacy_mixing_finest_means_scale_weighting_finest():
    with pytest.warns(FutureWarning, match="scale_weighting"):
        settings = MSFTSettings(mixing="finest")
    assert (settings.scale_weighting, settings.mixing) == ("finest", "mixture")


def test_default_intervals_are_calibrated_on_a_series_with_known_noise():
    """Sine plus Gaussian noise of known spread: the default MSFT forecast's 80% intervals
    cover close to 80% of held-out values (the old default, the paper's blend with in-loss
    weights, covered far less)."""
    rng = np.random.default_rng(3)
    t = np.arange(2400)
    series = [np.sin(t * 2 * np.pi / 24 + phase) + 0.4 * rng.standard_normal(t.shape[0])
              for phase in (0.0, 1.0)]  # fmt: skip
    train = [s[:1800] for s in series]
    engine = _fit(train, max_steps=40, val_check_interval=10, validation=300)
    origins = np.arange(1800, 2400 - 24, 12)
    contexts = [s[:o] for s in series for o in origins]
    truth = np.stack([s[o : o + 24] for s in series for o in origins])
    fc = engine.forecast(contexts, 24, 200, seed=0)
    q = fc.quantiles([0.1, 0.9])
    coverage = float(((truth >= q[:, 0]) & (truth <= q[:, 1])).mean())
    assert 0.72 <= coverage <= 0.88, coverage


def test_fine_log_densities_read_each_step_under_the_coarse_step_that_covers_it(
    tiny_moirai_dir,
):
    """``scale_weighting="learned"`` scores every original step under the distribution of the
    coarse step covering it (the way the scale's samples are upsampled)."""
    model = _model(tiny_moirai_dir, "learned")
    ctx, c_obs, fut, h_obs = _window(batch=2, context=64, horizon=21)  # odd lengths on purpose
    tok, layout = model.tokens(ctx, c_obs, fut, h_obs)
    with torch.no_grad():
        distributions = model._horizon_distributions(tok, layout)
        dens = model._fine_log_densities(distributions, layout, fut)
    p = model.patch_size
    for span, distr in zip(layout.spans, distributions, strict=True):
        for b in range(2):
            for t in (0, 1, 7, 20):
                coarse = t // 2**span.level
                value = torch.zeros(distr.batch_shape)
                value[b, coarse // p, coarse % p] = fut[b, t]
                expected = distr.log_prob(value)[b, coarse // p, coarse % p]
                assert float(dens[b, span.level, t]) == pytest.approx(float(expected), abs=1e-5)


def test_learned_weights_move_towards_the_scale_whose_density_fits(tiny_moirai_dir):
    from msft_forecast.msft.mixing import mixture_nll

    logits = torch.zeros(2, requires_grad=True)
    # scale 0 gives the observed steps a much higher density than scale 1
    dens = torch.stack([torch.full((4, 10), -1.0), torch.full((4, 10), -5.0)], 1)
    loss = mixture_nll(dens, torch.softmax(logits, 0), torch.ones(4, 10, dtype=torch.bool))
    loss.backward()
    assert float(logits.grad[0]) < 0 < float(logits.grad[1])
