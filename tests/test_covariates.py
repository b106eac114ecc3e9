"""Covariates through the engine: windows, alignment, fitting, forecasting, saving, refusals."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.engine import MSFTEngine
from msft_forecast.training.covariates import as_covariates
from msft_forecast.training.windows import covariate_window, cut_window, split_windows

T, C, H = 240, 64, 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    season = np.sin(np.arange(T + H) * 2 * np.pi / 24)
    past = rng.normal(size=(T, 2))
    y = 3 * season[:T] + past[:, 0] + 0.1 * rng.normal(size=T)
    return y, past, season


@pytest.fixture(scope="module")
def fitted(data):
    y, past, season = data
    engine = MSFTEngine(backbone="moirai-tiny", context_length=C, prediction_length=H,
                        max_steps=2, batch_size=4, random_state=0)  # fmt: skip
    return engine.fit([y], past_covariates=[past], future_covariates=[season[:T]],
                      covariate_names=(["p0", "p1"], ["season"]))  # fmt: skip


# ------------------------------------------------------------------------------- windows
@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 40), origin_back=st.integers(0, 39), context=st.integers(1, 20),
    horizon=st.integers(0, 8), extra=st.integers(0, 10), width=st.integers(0, 3),
)  # fmt: skip
def test_covariate_windows_align_with_the_target_window(
    length, origin_back, context, horizon, extra, width
):
    """Step ``j`` of a covariate window is the covariate at the same series step as step ``j``
    of the target window; steps outside the arrays are unobserved."""
    origin = max(1, length - origin_back)
    series = np.arange(length, dtype=float) * 10
    past = series[:, None] + np.arange(width)  # row t: 10 t + column
    future = np.concatenate([series, np.arange(length, length + extra) * 10.0])[:, None] + 0.5
    w = cut_window(series, origin, context, horizon, 1.0, (past, future))
    cov = w["covariates"]
    assert cov["past"].shape == (width, context) and cov["future"].shape == (1, context + horizon)
    for j in range(context):
        t = origin - context + j
        observed = 0 <= t < length
        assert bool(w["context_observed"][j]) == observed
        assert cov["past_observed"][:, j].tolist() == [observed] * width
        if observed:
            assert cov["past"][:, j].tolist() == [10.0 * t + c for c in range(width)]
    for j in range(context + horizon):
        t = origin - context + j
        inside = 0 <= t < length + extra
        assert bool(cov["future_observed"][0, j]) == inside
        if inside:
            assert float(cov["future"][0, j]) == 10.0 * t + 0.5


def test_missing_covariate_values_are_unobserved():
    past = np.array([[1.0], [np.nan], [3.0]])
    w = covariate_window((past, None), 3, 3, 0)
    assert w["past_observed"].tolist() == [[True, False, True]]
    assert w["past"].tolist() == [[1.0, 0.0, 3.0]] and w["future"].shape == (0, 3)


def test_windows_without_covariates_are_unchanged(data):
    y, _, _ = data
    split = split_windows([y], C, H)
    assert "covariates" not in split.train[0]


# ------------------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(past=[np.zeros(9)]), "past covariates are aligned"),
        (dict(future=[np.zeros(11)], horizon=2), "at least 12 steps"),
        (dict(past=np.zeros((10, 1))), "one array per series"),
        (dict(past=[np.full(10, np.inf)]), "infinite"),
        (dict(past=[np.zeros((10, 2))], names=(["a"], None)), "1 names for 2 past"),
    ],
)
def test_bad_covariates_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        as_covariates([np.zeros(10)], **kwargs)


# ------------------------------------------------------------------------------- engine
def test_fitted_engine_records_and_reads_its_covariates(fitted, data):
    y, past, season = data
    assert fitted.report_.past_covariates == ["p0", "p1"]
    assert fitted.report_.future_covariates == ["season"]
    fc = fitted.forecast([y], H, 8, past_covariates=[past], future_covariates=[season], seed=0)
    assert fc.mean.shape == (1, H) and np.isfinite(fc.samples).all()
    other = fitted.forecast([y], H, 8, past_covariates=[past], future_covariates=[-season],
                            seed=0)  # fmt: skip
    assert not np.allclose(fc.mean, other.mean)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "fitted with 2 past covariates \\['p0', 'p1'\\]"),
        (dict(past=True), "fitted with 1 known-future covariates \\['season'\\]"),
        (dict(past=True, future=T + H - 1), "at least 256 steps"),
    ],
)
def test_forecast_without_the_fitted_covariates_is_refused(fitted, data, kwargs, message):
    y, past, season = data
    covs = {}
    if kwargs.get("past"):
        covs["past_covariates"] = [past]
    if "future" in kwargs:
        covs["future_covariates"] = [season[: kwargs["future"]]]
    with pytest.raises(ValueError, match=message):
        fitted.forecast([y], H, 4, **covs)


def test_covariates_are_refused_by_a_model_fitted_without_them(data):
    y, past, _ = data
    engine = MSFTEngine(backbone="moirai-tiny", context_length=C, prediction_length=H,
                        fit_strategy="zero-shot").fit([y])  # fmt: skip
    with pytest.raises(ValueError, match="fitted with 0 past covariates"):
        engine.forecast([y], H, 4, past_covariates=[past])


def test_save_load_and_pickle_keep_the_covariates(fitted, data, tmp_path):
    y, past, season = data
    kwargs = dict(past_covariates=[past], future_covariates=[season], seed=3)
    expected = fitted.forecast([y], H, 8, **kwargs)
    restored = MSFTEngine.load(fitted.save(tmp_path / "m")), pickle.loads(pickle.dumps(fitted))
    for engine in restored:
        assert engine.report_.past_covariates == ["p0", "p1"]
        np.testing.assert_array_equal(engine.forecast([y], H, 8, **kwargs).samples,
                                      expected.samples)  # fmt: skip
        with pytest.raises(ValueError, match="fitted with 2 past covariates"):
            engine.forecast([y], H, 4)


def test_a_backbone_without_covariate_input_refuses_covariates(tiny_moment_dir, data):
    y, past, _ = data
    engine = MSFTEngine(backbone=str(tiny_moment_dir), context_length=C, prediction_length=H,
                        max_steps=1)  # fmt: skip
    with pytest.raises(ValueError, match="no covariate input.*backbone='moirai'"):
        engine.fit([y], past_covariates=[past])
    assert not engine.is_fitted


def test_the_bundled_single_variate_backbones_warn_that_they_cannot_read_covariates(
    tiny_moirai_dir, data
):
    import warnings

    y, past, _ = data
    kwargs = dict(context_length=C, prediction_length=H, max_steps=1, batch_size=4)
    with pytest.warns(UserWarning, match="pre-trained on single-variate synthetic series only"):
        MSFTEngine(backbone="moirai-tiny", **kwargs).fit([y], past_covariates=[past])
    with warnings.catch_warnings(record=True) as caught:  # a checkpoint of its own: no warning
        warnings.simplefilter("always")
        MSFTEngine(backbone=str(tiny_moirai_dir), **kwargs).fit([y], past_covariates=[past])
    assert not [w for w in caught if "single-variate" in str(w.message)]


def test_covariates_shared_by_several_series(data):
    """Every series has its own covariates (e.g. the channels of one multivariate series
    repeat theirs); a zero-shot engine reads them without training."""
    y, past, season = data
    engine = MSFTEngine(backbone="moirai-tiny", context_length=C, prediction_length=H,
                        fit_strategy="zero-shot")  # fmt: skip
    engine.fit([y, -y], future_covariates=[season[:T]] * 2)
    fc = engine.forecast([y[:200], -y], H, 0, future_covariates=[season[: 200 + H], season])
    assert fc.mean.shape == (2, H) and np.isfinite(fc.mean).all()


# ------------------------------------------------------------------------------- layout
@settings(max_examples=80, deadline=None)
@given(
    context=st.integers(1, 300), horizon=st.integers(1, 80), patch=st.sampled_from([4, 8, 16]),
    scales=st.integers(1, 4), known=st.integers(0, 3), past=st.integers(0, 3),
)  # fmt: skip
def test_covariate_variates_sit_inside_their_scale_and_map_onto_themselves(
    context, horizon, patch, scales, known, past
):
    from msft_forecast.msft.layout import TokenLayout

    plain = TokenLayout(context, horizon, patch, scales)
    layout = TokenLayout(context, horizon, patch, scales, known, past)
    for s0, s in zip(plain.spans, layout.spans, strict=True):
        # the target keeps its token counts and its horizon tokens lead the span's horizon
        assert (s.num_context, s.num_horizon) == (s0.num_context, s0.num_horizon)
        variates = s.variates
        assert len(variates) == 1 + known + past and variates[0][0] == s.start
        assert s.horizon_tokens == slice(s.start + s.num_context, s.start + s.num_context
                                         + s.num_horizon)  # fmt: skip
        ends = [first + nc + nh for first, nc, nh in variates]
        assert ends[-1] == s.stop
        assert [v[0] for v in variates[1:]] == ends[:-1]
        assert [nh for _, _, nh in variates] == [s.num_horizon] * (1 + known) + [0] * past
    assert int(layout.is_horizon_token.sum()) == int(plain.is_horizon_token.sum())
    pairs = zip(layout.spans[:-1], layout.spans[1:], layout.coarse_maps(), plain.coarse_maps(),
                strict=True)  # fmt: skip
    for fine, coarse, index, plain_index in pairs:
        assert len(index) == fine.stop - fine.start
        for (ff, fnc, fnh), (cf, cnc, cnh) in zip(fine.variates, coarse.variates, strict=True):
            mine = index[ff - fine.start : ff - fine.start + fnc + fnh] + coarse.start
            assert int(mine.min()) >= cf and int(mine.max()) < cf + cnc + cnh
            if fnh:  # the target's (and known covariates') map is the single-variate one
                assert (mine - cf).tolist() == plain_index.tolist()


def test_covariate_tokens_share_their_scale_group_and_get_their_own_variate_ids():
    """Attention is "same sample, same scale": every real token of scale k, target or
    covariate, has group k + 1; each covariate has its own variate id; only the target's
    horizon is predicted and known covariates' horizon tokens are observed inputs."""
    import torch

    from msft_forecast.backbones.cache import get_backbone
    from msft_forecast.msft.moirai_model import MultiScaleMoirai
    from msft_forecast.msft.strategies import resolve_strategy

    model = MultiScaleMoirai.build(get_backbone("moirai-tiny"), resolve_strategy("msft"),
                                   patch_size=8, horizon_length=H)  # fmt: skip
    B, known, past = 2, 2, 1
    ones = lambda *shape: torch.ones(*shape, dtype=torch.bool)  # noqa: E731
    covariates = {"past": torch.randn(B, past, C), "past_observed": ones(B, past, C),
                  "future": torch.randn(B, known, C + H),
                  "future_observed": ones(B, known, C + H)}  # fmt: skip
    ctx = torch.randn(B, C)
    tok, layout = model.tokens(ctx, ctx > -9, torch.zeros(B, H), torch.zeros(B, H, dtype=bool),
                               torch.tensor([C, 20]), covariates)  # fmt: skip
    for span in layout.spans:
        ids = tok.sample_id[:, span.tokens]
        assert set(ids.unique().tolist()) <= {0, span.level + 1}
        predicted = tok.prediction_mask[:, span.tokens].nonzero()[:, 1].unique() + span.start
        target_horizon = span.horizon_tokens
        assert predicted.tolist() == list(range(target_horizon.start, target_horizon.stop))
        for v, (first, nc, nh) in enumerate(span.variates):
            assert (tok.variate_id[:, first : first + nc + nh] == v).all()
            if 1 <= v <= known:  # known covariates: observed over their (pooled) horizon
                steps = tok.observed[:, first + nc : first + nc + nh, :8].flatten(1)
                n = span.horizon_steps
                assert steps[:, :n].all() and not steps[:, n:].any()
    assert tok.variate_id.max() == known + past
