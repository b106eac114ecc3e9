"""Covariates through Moirai's any-variate attention, against the vendored reference.

``sktime.libs.uni2ts``' ``MoiraiForecast`` packs known-future covariates
(``feat_dynamic_real``, context and horizon) and past-only ones (``past_feat_dynamic_real``,
context only) as extra variates of the target's sample.  Our zero-shot model (one scale) packs
them as extra variates of the scale's group; on the same random weights both give the same
predictive distribution over the target's horizon.  With several scales, a model at
initialisation equals the backbone at scale 0 with covariates too.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule
from msft_forecast.msft.moirai_model import MultiScaleMoirai
from msft_forecast.msft.strategies import resolve_strategy

pytest.importorskip("einops", reason="the vendored uni2ts reference needs einops")
ref_forecast = pytest.importorskip("sktime.libs.uni2ts.forecast")
ref_module = pytest.importorskip("sktime.libs.uni2ts.moirai_module")
ref_mixture = pytest.importorskip("sktime.libs.uni2ts.distribution.mixture")
ref_student_t = pytest.importorskip("sktime.libs.uni2ts.distribution.student_t")
ref_normal = pytest.importorskip("sktime.libs.uni2ts.distribution.normal")
ref_nb = pytest.importorskip("sktime.libs.uni2ts.distribution.negative_binomial")
ref_log_normal = pytest.importorskip("sktime.libs.uni2ts.distribution.log_normal")

CONFIG = {"d_model": 128, "num_layers": 2, "patch_sizes": (8, 16, 32), "max_seq_len": 512,
          "attn_dropout_p": 0.0, "dropout_p": 0.0, "scaling": True}  # fmt: skip


@pytest.fixture(scope="module")
def backbones() -> tuple[torch.nn.Module, MoiraiModule]:
    """The reference module with seeded random weights and ours with the same state dict."""
    distr = ref_mixture.MixtureOutput(
        [ref_student_t.StudentTOutput(), ref_normal.NormalFixedScaleOutput(scale=1e-3),
         ref_nb.NegativeBinomialOutput(), ref_log_normal.LogNormalOutput()]
    )  # fmt: skip
    ref = ref_module.MoiraiModule(distr_output=distr, **CONFIG)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in ref.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name:
                param.copy_(1.0 + 0.1 * noise)
            elif "var_attn_bias" in name:
                param.copy_(noise)  # large enough that the variate bias matters
            else:
                param.copy_(0.02 * noise)
    ours = MoiraiModule(MoiraiConfig(**CONFIG))
    ours.load_state_dict(ref.state_dict())
    return ref.eval(), ours.eval()


def _inputs(batch: int, C: int, H: int, known: int, past: int, pad: int, seed: int):
    """Target, covariates and masks with a few missing values and ``pad`` steps of left
    padding in the first row."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(C + H, dtype=torch.float32)
    y = torch.sin(t / 5)[None] * 3 + 10 + torch.randn(batch, C + H, generator=g)
    fut = torch.randn(batch, C + H, known, generator=g) * 2 + 1
    pst = torch.randn(batch, C, past, generator=g) + y[:, :C, None] * 0.5
    miss = lambda *s: torch.rand(*s, generator=g) > 0.05  # noqa: E731
    y_obs, fut_obs, pst_obs = miss(batch, C), miss(batch, C + H, known), miss(batch, C, past)
    is_pad = torch.zeros(batch, C, dtype=torch.long)
    is_pad[0, :pad] = 1
    for obs in (y_obs, fut_obs[:, :C], pst_obs):
        obs[0, :pad] = False
    return y[:, :C], y_obs, is_pad, fut, fut_obs, pst, pst_obs


# One deliberate difference: uni2ts pads a covariate's ``past_is_pad`` with 0 when aligning the
# context to whole patches, so a first token made of alignment padding and padding before the
# series' start counts as a real token for the covariates (not for the target).  Here such a
# token is padding for every variate, as for the target; the cases with left padding keep the
# first token partly real (or the context a whole number of patches), where both agree.
def _covariates(fut, fut_obs, pst, pst_obs) -> dict[str, torch.Tensor]:
    """The model's covariate batch (variates before time) from ``(B, T, V)`` arrays."""
    return {"past": pst.transpose(1, 2), "past_observed": pst_obs.transpose(1, 2),
            "future": fut.transpose(1, 2), "future_observed": fut_obs.transpose(1, 2)}  # fmt: skip


CASES = [  # batch, context, horizon, known, past, patch, left padding
    (2, 64, 16, 1, 1, 8, 0),
    (3, 96, 24, 2, 0, 16, 37),
    (2, 90, 20, 0, 3, 16, 0),
    (2, 128, 40, 3, 2, 32, 50),
    (1, 77, 9, 1, 2, 8, 4),
    (2, 100, 30, 2, 2, 16, 3),
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_zero_shot_forecast_with_covariates_equals_uni2ts(backbones, case) -> None:
    ref, ours = backbones
    batch, C, H, known, past, patch, pad = case
    y, y_obs, is_pad, fut, fut_obs, pst, pst_obs = _inputs(batch, C, H, known, past, pad, 1)
    forecaster = ref_forecast.MoiraiForecast(
        prediction_length=H, target_dim=1, feat_dynamic_real_dim=known,
        past_feat_dynamic_real_dim=past, context_length=C, module=ref, patch_size=patch,
    )  # fmt: skip
    zero = lambda x: torch.where(x[1], x[0], 0.0)  # noqa: E731 (values with 0 where missing)
    with torch.no_grad():
        distr = forecaster._get_distr(
            patch, zero((y, y_obs))[..., None], y_obs[..., None], is_pad,
            zero((fut, fut_obs)) if known else None, fut_obs if known else None,
            zero((pst, pst_obs)) if past else None, pst_obs if past else None,
        )  # fmt: skip
        expected_mean = forecaster._format_preds(patch, distr.mean[None], 1)[:, 0]
        expected_std = forecaster._format_preds(patch, distr.variance.sqrt()[None], 1)[:, 0]

    model = MultiScaleMoirai(ours, resolve_strategy("zero-shot"), patch).eval()
    covariates = _covariates(zero((fut, fut_obs)), fut_obs, zero((pst, pst_obs)), pst_obs)
    available = C - is_pad.sum(-1)
    out = model.forecast(y, y_obs, H, 0, available=available, covariates=covariates)
    assert_close(out.mean, expected_mean, atol=1e-4, rtol=1e-4)
    tok, layout = model.tokens(
        y, y_obs, torch.zeros(batch, H), torch.zeros(batch, H, dtype=torch.bool), available,
        covariates,
    )  # fmt: skip
    (distribution,) = model._horizon_distributions(tok, layout)
    std = model._flatten_horizon(distribution.variance.sqrt(), layout.spans[0])
    assert_close(std, expected_std, atol=1e-4, rtol=1e-4)


def test_covariates_change_the_forecast(backbones) -> None:
    """The covariates are read: the same target with other covariate values forecasts
    differently (a check that the parity above is not vacuous)."""
    _, ours = backbones
    y, y_obs, _, fut, fut_obs, pst, pst_obs = _inputs(2, 64, 16, 1, 1, 0, 3)
    model = MultiScaleMoirai(ours, resolve_strategy("zero-shot"), 8).eval()
    a = model.forecast(y, y_obs, 16, 0, covariates=_covariates(fut, fut_obs, pst, pst_obs)).mean
    b = model.forecast(y, y_obs, 16, 0, covariates=_covariates(-fut, fut_obs, pst, pst_obs)).mean
    c = model.forecast(y, y_obs, 16, 0).mean
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)


@pytest.mark.parametrize("strategy", ["msft", "lora"])
def test_untrained_multi_scale_model_with_covariates_equals_the_backbone_at_scale_0(
    backbones, strategy
) -> None:
    """MSFT's parts are no-ops at initialisation and scales attend only within themselves, so
    scale 0 of an untrained model with covariates is the zero-shot backbone with covariates."""
    _, ours = backbones
    torch.manual_seed(0)
    y, y_obs, is_pad, fut, fut_obs, pst, pst_obs = _inputs(2, 100, 24, 2, 1, 30, 4)
    covariates = _covariates(fut, fut_obs, pst, pst_obs)
    available = 100 - is_pad.sum(-1)
    zero_shot = MultiScaleMoirai(ours, resolve_strategy("zero-shot"), 16).eval()
    expected = zero_shot.forecast(y, y_obs, 24, 0, available=available, covariates=covariates)
    model = MultiScaleMoirai(ours, resolve_strategy(strategy), 16).eval()
    out = model.forecast(y, y_obs, 24, 0, available=available, covariates=covariates)
    assert_close(out.scale_means[:, 0], expected.mean, atol=1e-5, rtol=1e-5)
