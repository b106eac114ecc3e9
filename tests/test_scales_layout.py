"""Scale construction, token counts and cross-scale alignment.

The method: docs/strategies.md, "MSFT in one picture".
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.msft.layout import TokenLayout, coarse_index
from msft_forecast.msft.scales import build_scales, pool_pairs, upsample_horizon

lengths = st.integers(min_value=1, max_value=70)
scales = st.integers(min_value=1, max_value=5)


def _support(values: torch.Tensor, pooled_fn) -> torch.Tensor:
    """Which raw steps each pooled step depends on (nonzero Jacobian entries)."""
    jac = torch.autograd.functional.jacobian(pooled_fn, values)
    return jac[0, :, 0, :] != 0


@settings(max_examples=40, deadline=None)
@given(c=lengths, h=lengths, k=scales)
def test_lengths_halve_with_ceiling(c: int, h: int, k: int) -> None:
    ctx, hor = torch.randn(2, c), torch.randn(2, h)
    out = build_scales(
        ctx, torch.ones_like(ctx, dtype=bool), hor, torch.ones_like(hor, dtype=bool), k
    )
    assert len(out) == k
    for level, scale in enumerate(out):
        assert scale.context.values.shape == (2, math.ceil(c / 2**level))
        assert scale.horizon.values.shape == (2, math.ceil(h / 2**level))


@settings(max_examples=30, deadline=None)
@given(c=lengths, h=lengths, k=scales)
def test_pooled_steps_cover_the_right_raw_steps(c: int, h: int, k: int) -> None:
    """Horizon step j of scale k covers raw steps [j 2^k, (j+1) 2^k) (left-aligned); context
    step j covers the matching block counted back from the forecast boundary."""
    hor = torch.randn(1, h, dtype=torch.float64)
    ctx = torch.randn(1, c, dtype=torch.float64)
    level = k - 1

    def pooled_horizon(x):
        return build_scales(ctx, ctx == ctx, x, x == x, k)[level].horizon.values

    def pooled_context(x):
        return build_scales(x, x == x, hor, hor == hor, k)[level].context.values

    factor = 2**level
    support = _support(hor, pooled_horizon)
    for j in range(support.shape[0]):
        expected = [t for t in range(h) if t // factor == j]
        assert support[j].nonzero().flatten().tolist() == expected
    # every raw future step up to 2^k * H_k is covered exactly once
    assert support.sum(0).tolist() == [1] * h

    support = _support(ctx, pooled_context)
    n = support.shape[0]
    for j in range(n):
        expected = [i for i in range(c) if n - 1 - (c - 1 - i) // factor == j]
        assert support[j].nonzero().flatten().tolist() == expected


def test_pooling_ignores_unobserved_and_carries_the_mask() -> None:
    values = torch.tensor([[1.0, 100.0, 3.0, 5.0, 7.0]])
    observed = torch.tensor([[True, False, True, False, False]])
    seg = pool_pairs(values, observed, left=True)
    # left padding: pairs are (pad, 1), (100*, 3), (5*, 7*) with * unobserved
    assert seg.values.tolist() == [[1.0, 3.0, 0.0]]
    assert seg.observed.tolist() == [[True, True, False]]


def test_pooling_ops() -> None:
    values = torch.tensor([[1.0, 4.0, 2.0, 8.0]])
    observed = torch.ones_like(values, dtype=torch.bool)
    assert pool_pairs(values, observed, left=True, op="mean").values.tolist() == [[2.5, 5.0]]
    assert pool_pairs(values, observed, left=True, op="max").values.tolist() == [[4.0, 8.0]]
    # subsampling keeps the step nearest the forecast boundary
    assert pool_pairs(values, observed, left=True, op="subsample").values.tolist() == [[4.0, 8.0]]
    assert pool_pairs(values, observed, left=False, op="subsample").values.tolist() == [[1.0, 2.0]]


def test_upsample_inverts_horizon_pooling_on_constant_blocks() -> None:
    raw = torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0]])
    scales_ = build_scales(raw, raw == raw, raw, raw == raw, 3)
    assert torch.equal(upsample_horizon(scales_[2].horizon.values, 2, 9), raw)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 600), h=st.integers(1, 300), p=st.sampled_from([1, 8, 16, 32]), k=scales)
def test_token_counts_halve(c: int, h: int, p: int, k: int) -> None:
    layout = TokenLayout(c, h, p, k)
    spans = layout.spans
    assert spans[0].num_context == math.ceil(c / p)
    assert spans[0].num_horizon == math.ceil(h / p)
    for fine, coarse in zip(spans[:-1], spans[1:], strict=False):
        assert coarse.num_context == math.ceil(fine.num_context / 2)
        assert coarse.num_horizon == math.ceil(fine.num_horizon / 2)
        assert coarse.start == fine.stop
    assert layout.num_tokens == sum(s.num_context + s.num_horizon for s in spans)
    assert int(layout.is_horizon_token.sum()) == sum(s.num_horizon for s in spans)


@settings(max_examples=80, deadline=None)
@given(nc=st.integers(1, 40), nh=st.integers(1, 40))
def test_coarse_alignment_at_the_boundary(nc: int, nh: int) -> None:
    index = coarse_index(nc, nh)
    mc, mh = math.ceil(nc / 2), math.ceil(nh / 2)
    ctx, hor = index[:nc], index[nc:]
    # contexts: right-aligned, the two tokens nearest the boundary share the last coarse token
    assert ctx[-1] == mc - 1
    assert sorted(set(ctx)) == list(range(mc))
    covers = [ctx.count(j) for j in range(mc)]
    assert all(n == 2 for n in covers[1:]) and covers[0] == (1 if nc % 2 else 2)
    # horizons: left-aligned, only the last coarse token may cover a single fine token
    assert hor[0] == mc
    covers = [hor.count(mc + j) for j in range(mh)]
    assert all(n == 2 for n in covers[:-1]) and covers[-1] == (1 if nh % 2 else 2)


# ------------------------------------------------------------ masks, units and constants
masks = st.lists(st.booleans(), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(ctx_mask=masks, hor_mask=masks, k=scales)
def test_pooled_step_is_observed_iff_any_raw_step_of_its_block_is(ctx_mask, hor_mask, k) -> None:
    """The mask of every scale is the OR of the raw mask over the block the step covers:
    context blocks counted back from the forecast boundary, horizon blocks forward."""
    c, h = len(ctx_mask), len(hor_mask)
    c_obs, h_obs = torch.tensor([ctx_mask]), torch.tensor([hor_mask])
    out = build_scales(torch.randn(1, c), c_obs, torch.randn(1, h), h_obs, k)
    for level, scale in enumerate(out):
        f = 2**level
        n = scale.context.observed.shape[1]
        for j in range(n):
            block = [i for i in range(c) if n - 1 - (c - 1 - i) // f == j]
            assert bool(scale.context.observed[0, j]) == any(ctx_mask[i] for i in block)
        for j in range(scale.horizon.observed.shape[1]):
            block = [t for t in range(h) if t // f == j]
            assert bool(scale.horizon.observed[0, j]) == any(hor_mask[t] for t in block)
        # unobserved steps hold 0, whatever the raw values were
        assert not scale.context.values[~scale.context.observed].any()


@settings(max_examples=40, deadline=None)
@given(
    c=lengths,
    h=lengths,
    k=scales,
    op=st.sampled_from(["mean", "max", "subsample"]),
    factor=st.sampled_from([1e-12, 1e-3, 2.0, 7.5, 1e9]),
    level=st.floats(-1e3, 1e3),
)
def test_scales_are_equivariant_to_units_and_keep_constants(c, h, k, op, factor, level) -> None:
    ctx = torch.randn(2, c, dtype=torch.float64)
    hor = torch.randn(2, h, dtype=torch.float64)
    c_obs, h_obs = torch.rand(2, c) > 0.3, torch.rand(2, h) > 0.3
    base = build_scales(ctx, c_obs, hor, h_obs, k, op)
    scaled = build_scales(ctx * factor, c_obs, hor * factor, h_obs, k, op)
    for a, b in zip(base, scaled, strict=True):
        torch.testing.assert_close(b.context.values, a.context.values * factor)
        torch.testing.assert_close(b.horizon.values, a.horizon.values * factor)
        assert torch.equal(a.context.observed, b.context.observed)
    const = build_scales(
        torch.full((1, c), level, dtype=torch.float64),
        torch.ones(1, c, dtype=torch.bool),
        torch.full((1, h), level, dtype=torch.float64),
        torch.ones(1, h, dtype=torch.bool),
        k,
        op,
    )
    for scale in const:
        for seg in (scale.context, scale.horizon):
            torch.testing.assert_close(seg.values, torch.full_like(seg.values, level))
            assert seg.observed.all()


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 70), k=scales)
def test_upsampled_horizon_covers_every_raw_step_once(h: int, k: int) -> None:
    """Upsampling a scale's horizon back to H steps repeats pooled step j over exactly the raw
    steps it pooled, so per-scale forecasts align step by step with the original one."""
    level = k - 1
    n = math.ceil(h / 2**level)
    pooled = torch.arange(float(n)).unsqueeze(0)
    up = upsample_horizon(pooled, level, h)
    assert up.shape == (1, h)
    assert up[0].tolist() == [float(t // 2**level) for t in range(h)]
