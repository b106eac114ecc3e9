"""Property-based tests (hypothesis): input validation, window cutting and quantiles.

Scale construction and alignment properties live in ``test_scales_layout.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from msft_forecast.engine import Forecast
from msft_forecast.training.windows import cut_window
from msft_forecast.validation import as_float_series, check_time_index, unit_scale

FAST = settings(max_examples=60, deadline=None)

values_with_gaps = arrays(
    np.float64,
    st.integers(0, 30),
    elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan), st.just(np.inf), st.just(-np.inf)),
)
finite_values = arrays(
    np.float64,
    st.integers(1, 50),
    elements=st.one_of(st.floats(-1e3, 1e3), st.just(np.nan)),
)


@FAST
@given(series=st.lists(values_with_gaps, min_size=1, max_size=4))
def test_validation_refuses_exactly_the_bad_series_and_never_mutates(series) -> None:
    before = [s.copy() for s in series]
    bad = next(
        (
            why
            for s in series
            for why in (
                "empty" if s.size == 0 else None,
                "infinite" if np.isinf(s).any() else None,
                "no observed value" if s.size and not np.isfinite(s).any() else None,
            )
            if why
        ),
        None,
    )
    if bad is None:
        out = as_float_series(series)
        assert all(o.dtype == np.float64 for o in out)
        for o, s in zip(out, series, strict=True):
            np.testing.assert_array_equal(o, s)
    else:
        with pytest.raises(ValueError, match=bad):
            as_float_series(series)
    for s, b in zip(series, before, strict=True):
        np.testing.assert_array_equal(s, b)


@FAST
@given(
    x=finite_values,
    c=st.floats(1e-12, 1e12).filter(lambda v: v > 0),
)
def test_unit_scale_is_positive_and_equivariant(x, c) -> None:
    s = unit_scale(x)
    assert s > 0 and np.isfinite(s)
    observed = x[np.isfinite(x)]
    if observed.size and np.any(observed != 0):
        # subnormal values (and products) carry fewer digits, or underflow to 0: 5e-324 * 0.5
        nonzero = np.abs(observed[observed != 0])
        tiny = np.finfo(np.float64).tiny
        assume(nonzero.min() >= tiny and nonzero.min() * c >= tiny)
        np.testing.assert_allclose(unit_scale(x * c), c * s, rtol=1e-9)
    else:
        assert s == 1.0


@FAST
@given(points=st.lists(st.integers(-50, 50), min_size=1, max_size=30))
def test_time_index_checks(points) -> None:
    index = pd.Index(points)
    if index.has_duplicates:
        with pytest.raises(ValueError, match="duplicated"):
            check_time_index(index)
    elif not index.is_monotonic_increasing:
        with pytest.raises(ValueError, match="not sorted"):
            check_time_index(index)
    else:
        check_time_index(index)


@FAST
@given(
    data=st.data(),
    n=st.integers(1, 60),
    c=st.integers(1, 40),
    h=st.integers(0, 20),
    scale=st.sampled_from([1.0, 1e-9, 3.0, 1e9]),
)
def test_cut_window_is_the_right_slice_in_the_right_units(data, n, c, h, scale) -> None:
    series = data.draw(
        arrays(np.float64, n, elements=st.one_of(st.floats(-1e3, 1e3), st.just(np.nan)))
    )
    before = series.copy()
    origin = data.draw(st.integers(0, n))
    w = cut_window(series, origin, c, h, scale)
    lo = max(0, origin - c)
    expected_ctx = np.full(c, np.nan)
    expected_ctx[c - (origin - lo) :] = series[lo:origin]
    expected_hor = np.full(h, np.nan)
    fut = series[origin : origin + h]
    expected_hor[: fut.size] = fut
    for got, mask, want in (
        (w["context"], w["context_observed"], expected_ctx),
        (w["horizon"], w["horizon_observed"], expected_hor),
    ):
        np.testing.assert_array_equal(mask.numpy(), np.isfinite(want))
        np.testing.assert_allclose(
            got.numpy(), np.where(np.isfinite(want), want / scale, 0.0).astype(np.float32)
        )
    assert int(w["available"]) == origin - lo
    np.testing.assert_array_equal(series, before)


@FAST
@given(
    samples=arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 5)),
        elements=st.floats(-1e6, 1e6),
    ),
    levels=st.lists(st.floats(0.001, 0.999), min_size=1, max_size=8, unique=True),
)
def test_forecast_quantiles_are_monotone_in_the_level(samples, levels) -> None:
    levels = sorted(levels)
    n, _, h = samples.shape
    fc = Forecast(
        mean=samples.mean(1), samples=samples, scale_means=samples[:, :1], weights=np.ones(1)
    )
    q = fc.quantiles(levels)
    assert q.shape == (n, len(levels), h)
    assert np.all(np.diff(q, axis=1) >= 0)
    assert np.all(q >= samples.min(1, keepdims=True)) and np.all(q <= samples.max(1, keepdims=True))


@pytest.fixture(scope="module")
def fitted_sktime():
    from msft_forecast import MSFTForecaster

    t = np.arange(150)
    y = pd.Series(10 + np.sin(t / 3), index=pd.period_range("2000-01", periods=150, freq="M"))
    params = dict(backbone="moirai-tiny", context_length=32, num_scales=2, max_steps=2)
    return MSFTForecaster(
        **params, batch_size=8, num_samples=50, random_state=0, validation=None
    ).fit(y, fh=[1, 2, 3, 4])


@settings(max_examples=15, deadline=None)
@given(levels=st.lists(st.floats(0.01, 0.99), min_size=2, max_size=6, unique=True))
def test_predict_quantiles_are_monotone(fitted_sktime, levels) -> None:
    alpha = sorted(levels)
    q = fitted_sktime.predict_quantiles(alpha=alpha)
    values = q.to_numpy()
    assert values.shape == (4, len(alpha)) and np.isfinite(values).all()
    assert np.all(np.diff(values, axis=1) >= 0)


@st.composite
def packed_blocks(draw):
    """Token blocks whose sample ids (above 0) no two blocks share, with padding (id 0) and
    several variates mixed in: the layout MSFT hands the backbone, one block per scale."""
    sizes = draw(st.lists(st.integers(1, 7), min_size=1, max_size=4))
    batch = draw(st.integers(1, 3))
    ids, next_id = [], 1
    for size in sizes:
        own = draw(st.lists(st.integers(0, 2), min_size=batch * size, max_size=batch * size))
        # ids 1, 2 of this block become next_id, next_id + 1: disjoint across blocks
        ids += [[0 if i == 0 else next_id + i - 1 for i in own[b::batch]] for b in range(batch)]
        next_id += 2
    rows = [sum((ids[k * batch + b] for k in range(len(sizes))), []) for b in range(batch)]
    variates = draw(st.lists(st.integers(0, 1), min_size=len(rows[0]), max_size=len(rows[0])))
    return sizes, torch.tensor(rows), torch.tensor(variates).expand(batch, -1)


@FAST
@given(case=packed_blocks(), seed=st.integers(0, 2**16))
def test_attention_block_by_block_equals_attention_over_all_tokens(case, seed) -> None:
    """Attending scale by scale gives every real token what one masked attention over all
    tokens gives it (padding tokens, id 0, may differ: no real token reads them)."""
    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

    sizes, sample_id, variate_id = case
    torch.manual_seed(seed)
    module = MoiraiModule(MoiraiConfig(128, 2, (8,), 64)).eval()  # two heads
    for p in module.parameters():  # the variate bias starts at zero: make it count
        torch.nn.init.normal_(p, std=0.3)
    starts = np.cumsum([0, *sizes])
    blocks = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    time_id = torch.arange(sample_id.shape[1]).expand_as(sample_id)
    x = torch.randn(*sample_id.shape, 128)
    whole = module.attention_bias(sample_id, variate_id, time_id)
    by_block = module.attention_bias(sample_id, variate_id, time_id, blocks)
    with torch.no_grad():
        expected, actual = x, x
        for layer in module.encoder.layers:
            expected, actual = layer(expected, whole), layer(actual, by_block)
    real = sample_id > 0
    # float32 rounding of a different summation order; a leak across blocks is O(1)
    torch.testing.assert_close(actual[real], expected[real], atol=1e-4, rtol=1e-4)


@st.composite
def scale_layouts(draw):
    """A token layout of 1-4 scales, with or without covariate variates, and a batch's
    ``valid`` tokens (some padding)."""
    from msft_forecast.msft.layout import TokenLayout

    layout = TokenLayout(
        context_length=draw(st.integers(8, 96)),
        horizon_length=draw(st.integers(1, 24)),
        patch_size=draw(st.sampled_from([4, 8])),
        num_scales=draw(st.integers(1, 4)),
        num_known=draw(st.integers(0, 1)),
        num_past=draw(st.integers(0, 1)),
    )
    batch = draw(st.integers(1, 3))
    valid = draw(
        arrays(np.bool_, (batch, layout.num_tokens), elements=st.booleans() | st.just(True))
    )
    return layout, torch.from_numpy(valid)


def _pair_per_scale(lora, x: torch.Tensor, spans) -> torch.Tensor:
    """Reference ScaleLoRA: every scale's tokens through their own pair, one at a time."""
    out = []
    for s in spans:
        a, b = lora.lora_A[s.level], lora.lora_B[s.level]
        out.append((x[:, s.tokens] @ a.T) @ b.T)
    return torch.cat(out, 1) * lora.scaling


def _grads(out: torch.Tensor, weight: torch.Tensor, tensors) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * weight).sum(), tensors, retain_graph=True))


def _assert_relative(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal to ``tol`` relative to the tensor's scale (float32 rounding of another
    summation order; routing a token through another scale's pair is O(1))."""
    scale = float(expected.detach().abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


@FAST
@given(case=scale_layouts(), seed=st.integers(0, 2**16))
def test_stacked_scale_lora_equals_a_pair_per_scale(case, seed) -> None:
    """The masked two-matmul ScaleLoRA (taken under CPU autocast) gives every token its own
    scale's update and every pair its own scale's gradients, as a pair per scale does."""
    from msft_forecast.msft.modules import ScaleContext, ScaleLoRA

    layout, valid = case
    torch.manual_seed(seed)
    ctx = ScaleContext.build(layout, valid)
    lora = ScaleLoRA(24, 20, layout.num_scales, rank=4, alpha=8.0)
    torch.nn.init.normal_(lora.lora_B)  # B starts at zero: make the update count
    x = torch.randn(valid.shape[0], layout.num_tokens, 24, requires_grad=True)
    weight = torch.randn(valid.shape[0], layout.num_tokens, 20)
    tensors = [x, lora.lora_A, lora.lora_B]
    expected = _pair_per_scale(lora, x, ctx.spans)
    want = _grads(expected, weight, tensors)
    for actual in (lora._stacked(x, ctx.spans) * lora.scaling, lora(x, ctx)):
        _assert_relative(actual, expected)
        for g, w in zip(_grads(actual, weight, tensors), want, strict=True):
            _assert_relative(g, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the route that stacks
        routed = lora(x, ctx).float()
    _assert_relative(routed, expected, tol=0.05)


@FAST
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), gap=st.booleans())
def test_attention_blocks_split_as_they_slice(sizes, gap) -> None:
    """Blocks that tile the tokens are split in one op; any blocks give what slicing gives,
    forward and backward."""
    from msft_forecast.backbones.moirai import AttentionContext

    starts = np.cumsum([0, *sizes]) + np.arange(len(sizes) + 1) * int(gap)
    blocks = tuple(slice(int(a), int(a) + n) for a, n in zip(starts[:-1], sizes, strict=True))
    t = torch.randn(2, 3, int(starts[-1]), 5, requires_grad=True)
    ctx = AttentionContext(blocks, (None,) * len(blocks), (None,) * len(blocks), torch.empty(0))
    weights = [torch.randn(2, 3, n, 5) for n in sizes]
    got = ctx.split(t, 2)
    want = [t[:, :, sl] for sl in blocks]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)

    def grad(parts):
        return torch.autograd.grad(
            sum((p * w).sum() for p, w in zip(parts, weights, strict=True)), t
        )

    assert torch.equal(grad(got)[0], grad(want)[0])
