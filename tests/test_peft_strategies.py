"""AdaLoRA and prompt tuning (``fit_strategy="adalora"``, ``"prompt-tuning"``): the native
AdaLoRA against peft's on toy layers, the invariants of both strategies on every backbone, and
fits and forecasts through sktime and Darts.  (UniTS' own prompt tuning, on the checkpoint's
prompt tokens, is tested in ``tests/test_units_msft.py``.)"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from msft_forecast.backbones.cache import get_backbone
from msft_forecast.msft.adalora import (
    AdaLoRA,
    RankAllocator,
    adalora_modules,
    orthogonal_regularisation,
)
from msft_forecast.msft.registry import model_class
from msft_forecast.msft.strategies import FIT_STRATEGIES, resolve_strategy

NEW = ("adalora", "prompt-tuning")


# ------------------------------------------------------------------------- AdaLoRA vs peft
class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 12, bias=False)
        self.b = nn.Linear(12, 8, bias=False)

    def forward(self, x, y=None):
        out = self.b(torch.tanh(self.a(x)))
        loss = None if y is None else ((out - y) ** 2).mean()
        return SimpleNamespace(out=out, loss=loss)


def _pair(total_step=12, tinit=2, tfinal=3, init_r=6, target_r=3, alpha=4.0):
    """A peft AdaLoRA model on a toy network and the same network with this package's AdaLoRA,
    holding the same tensors; returns (peft model, peft tuner layers, ours, our allocator)."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    toy = _Toy()
    ours_base = copy.deepcopy(toy)
    config = peft.AdaLoraConfig(
        target_modules=["a", "b"], init_r=init_r, target_r=target_r, lora_alpha=alpha,
        tinit=tinit, tfinal=tfinal, total_step=total_step, lora_dropout=0.0,
    )  # fmt: skip
    model = peft.get_peft_model(toy, config)
    layers = {n: getattr(model.base_model.model, n) for n in ("a", "b")}
    ours = {}
    with torch.no_grad():
        for name, layer in layers.items():
            base = getattr(ours_base, name)
            mod = AdaLoRA(base.in_features, base.out_features, init_r, alpha)
            layer.lora_E["default"].normal_()  # non-zero singular values: a real update
            for part in ("lora_A", "lora_E", "lora_B"):
                getattr(mod, part).copy_(getattr(layer, part)["default"])
            ours[name] = mod
    allocator = RankAllocator(ours, target_r, total_step, tinit=tinit, tfinal=tfinal)
    return model, layers, ours_base, ours, allocator


def _our_forward(base: _Toy, ours: dict, x):
    h = torch.tanh(base.a(x) + ours["a"](x))
    return base.b(h) + ours["b"](h)


def test_adalora_forward_and_regulariser_match_peft():
    model, _, base, ours, _ = _pair()
    x, y = torch.randn(5, 16), torch.randn(5, 8)
    out = model.base_model(x, y)  # AdaloraModel.forward adds the regulariser
    mine = _our_forward(base, ours, x)
    torch.testing.assert_close(mine, out.out, rtol=1e-5, atol=1e-6)
    # peft adds orth_reg_weight * mean_over_matrices ||.||_F to the loss
    loss = ((mine - y) ** 2).mean() + orthogonal_regularisation(list(ours.values()))
    torch.testing.assert_close(loss, out.loss, rtol=1e-5, atol=1e-6)


def test_adalora_defaults_are_peft_defaults():
    peft = pytest.importorskip("peft")
    from msft_forecast.msft import adalora

    config = peft.AdaLoraConfig(target_modules=["a"], total_step=10)
    assert (adalora.BETA1, adalora.BETA2) == (config.beta1, config.beta2)
    assert adalora.ORTH_REG_WEIGHT == config.orth_reg_weight
    spec = resolve_strategy("adalora")
    assert config.init_r / config.target_r == 1.5 == spec.adalora_init_rank / spec.lora_rank


def test_adalora_importance_and_masks_match_peft_given_identical_gradients():
    """Same gradients and the same update on both sides, then each side's allocation: the
    singular values (masked ones at zero) and the rank pattern agree at every step, through
    the initial, the falling and the final phase of the budget."""
    total = 12
    model, layers, _, ours, allocator = _pair(total_step=total)
    generator = torch.Generator().manual_seed(1)
    budgets = []
    for step in range(1, total + 3):
        with torch.no_grad():
            for name, layer in layers.items():
                for part in ("lora_A", "lora_E", "lora_B"):
                    theirs, mine = getattr(layer, part)["default"], getattr(ours[name], part)
                    grad = torch.randn(theirs.shape, generator=generator)
                    theirs.grad, mine.grad = grad.clone(), grad.clone()
                    theirs -= 0.05 * grad
                    mine -= 0.05 * grad
        model.base_model.update_and_allocate(step)
        allocator.update_and_allocate(step)
        for name, layer in layers.items():
            torch.testing.assert_close(ours[name].lora_E, layer.lora_E["default"], rtol=0, atol=0)
        pattern = model.peft_config["default"].rank_pattern
        if pattern is not None:
            for name in layers:
                key = next(k for k in pattern if k.split(".")[-3] == name)
                assert ours[name].rank_mask.tolist() == pattern[key], (step, name)
        budgets.append(sum(allocator.ranks().values()))
    assert budgets[0] == allocator.init_budget  # the initial phase prunes nothing
    assert budgets[-1] <= allocator.target_budget == 6
    assert all(int((m.lora_E != 0).sum()) == int(m.rank_mask.sum()) for m in ours.values())


def test_budget_schedule_is_cubic_between_tinit_and_tfinal():
    mods = {"m": AdaLoRA(8, 8, rank=12, alpha=1.0)}
    alloc = RankAllocator(mods, target_rank=8, total_step=100)
    assert (alloc.tinit, alloc.tfinal) == (10, 20)
    assert alloc.budget_schedule(10) == (12, False)
    assert alloc.budget_schedule(45)[0] == int(4 * (1 - 35 / 70) ** 3 + 8)
    assert alloc.budget_schedule(81) == (8, True)


# ------------------------------------------------------------------------------ invariants
@pytest.fixture(scope="module")
def backbones(tiny_moment_dir, tiny_units_dir):
    return {
        "moirai": get_backbone("moirai-tiny"),
        "moment": get_backbone(str(tiny_moment_dir)),
        "units": get_backbone(str(tiny_units_dir)),
    }


def _patch_size(backbone: str) -> int | str:
    return "auto" if backbone == "units" else 16  # UniTS has one patch length (8 here)


def _build(loaded, name: str, horizon: int = 16, **kwargs):
    spec = resolve_strategy(name, **kwargs)
    patch_size = None if loaded.kind == "units" else 16
    return model_class(loaded.kind).build(
        loaded, spec, patch_size=patch_size, horizon_length=horizon
    )


def _batch(batch: int = 3, context: int = 96, horizon: int = 16):
    torch.manual_seed(0)
    t = torch.arange(context + horizon, dtype=torch.float32)
    y = torch.sin(2 * torch.pi * t / 12) + 0.1 * torch.randn(batch, context + horizon)
    ctx, hor = y[:, :context], y[:, context:]
    return ctx, torch.ones_like(ctx, dtype=torch.bool), hor, torch.ones_like(hor, dtype=torch.bool)


def test_new_strategies_are_listed():
    assert set(NEW) <= set(FIT_STRATEGIES)


@pytest.mark.parametrize("kind", ["moirai", "moment", "units"])
def test_adalora_at_init_forecasts_as_the_frozen_backbone(backbones, kind):
    ctx, obs, _, _ = _batch()
    # MOMENT has no pre-trained head: compare against linear probing with the same heads
    reference = "linear-probe" if kind == "moment" else "zero-shot"
    loaded = backbones[kind]
    torch.manual_seed(0)
    ref = _build(loaded, reference)
    ada = _build(loaded, "adalora", lora_targets=("q", "k", "v", "out"))
    if kind == "moment":
        ada.heads.load_state_dict(ref.heads.state_dict())
    a = ada.forecast(ctx, obs, 16, 0).mean
    b = ref.forecast(ctx, obs, 16, 0).mean
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["moirai", "moment", "units"])
def test_adalora_loss_holds_the_orthogonality_term_of_every_update(backbones, kind):
    model = _build(backbones[kind], "adalora", lora_targets=("q", "k", "v", "out"))
    loss, per_scale = model.loss(*_batch())
    reg = orthogonal_regularisation(list(adalora_modules(model).values()))
    assert float(reg.detach()) > 0  # random P and Q are far from orthonormal
    torch.testing.assert_close(loss, per_scale.mean() + reg)


@pytest.mark.parametrize("kind", ["moirai", "moment"])
def test_prompt_tuning_trains_prompts_only_and_keeps_them_out_of_the_output(backbones, kind):
    loaded = backbones[kind]
    model = _build(loaded, "prompt-tuning", num_prompt_tokens=5)
    assert model.prompts.tokens.shape[0] == 5
    ctx, obs, hor, hobs = _batch()
    loss, _ = model.loss(ctx, obs, hor, hobs)
    loss.backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert graded == trainable
    expected = {"prompts.tokens"}
    if kind == "moment":  # a new forecasting head is trained with the prompts
        expected |= {n for n in trainable if n.startswith("heads.")}
    assert trainable == expected
    assert not any(p.requires_grad for p in model.backbone.parameters())
    # the prompts change the forecast, and the output has the shape it has without them
    out = model.forecast(ctx, obs, 16, 0).mean
    with torch.no_grad():
        model.prompts.tokens.add_(1.0)
    assert out.shape == (3, 16) and not torch.allclose(out, model.forecast(ctx, obs, 16, 0).mean)


def test_moirai_prompts_are_cut_before_the_head(backbones):
    model = _build(backbones["moirai"], "prompt-tuning", num_prompt_tokens=4)
    ctx, obs, hor, hobs = _batch()
    tok, layout = model.tokens(ctx, obs, hor, hobs)
    reprs, loc, _ = model.encode(tok)
    assert reprs.shape[1] == layout.num_tokens == loc.shape[1]
    # the series' tokens attend to each other as before: with the prompts' keys masked out
    # (another group id), the representations are those of the frozen backbone
    bare = _build(backbones["moirai"], "zero-shot")
    ref, _, _ = bare.encode(tok)
    bb, n = model.backbone, 4
    x = model.prompts.prepend(bb.embed(*_embed_args(bb, tok)))
    ids = torch.arange(n).expand(3, -1)
    sample_id = torch.cat([torch.full_like(ids, 99), tok.sample_id], 1)
    bias = bb.attention_bias(
        sample_id, torch.cat([torch.zeros_like(ids), tok.variate_id], 1),
        torch.cat([ids, tok.time_id + n], 1),
    )  # fmt: skip
    for layer in bb.encoder.layers:
        x = layer(x, bias)
    torch.testing.assert_close(bb.encoder.norm(x)[:, n:], ref, rtol=1e-5, atol=1e-5)


def _embed_args(bb, tok):
    scaled, _, _ = bb.standardize(
        tok.target, tok.observed, tok.sample_id, tok.variate_id, tok.prediction_mask
    )
    return scaled, tok.patch_size, tok.prediction_mask


def test_prompt_strategy_spec():
    spec = resolve_strategy("prompt-tuning", num_prompt_tokens=3)
    assert (spec.prompt_tokens, spec.num_scales, spec.lora_targets, spec.train_head) == (
        3, 1, (), False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="num_prompt_tokens"):
        resolve_strategy("prompt-tuning", num_prompt_tokens=0)
    ada = resolve_strategy("adalora", lora_rank=4)
    assert ada.adalora and ada.adalora_init_rank == 6 and ada.num_scales == 1


# ----------------------------------------------------------------------- fits and front ends
def _series(n: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.1, n)


@pytest.mark.parametrize("backbone, layers", [("moirai-tiny", 4), ("units", 2)])
def test_adalora_fit_prunes_to_the_budget_and_saved_model_forecasts_identically(
    tmp_path, tiny_units_dir, backbone, layers
):
    from msft_forecast.engine import MSFTEngine, MSFTSettings

    settings = MSFTSettings(
        backbone=str(tiny_units_dir) if backbone == "units" else backbone,
        fit_strategy="adalora", lora_rank=2, context_length=48, prediction_length=12,
        max_steps=10, batch_size=4, validation=None, random_state=0,
        patch_size=_patch_size(backbone), verbose=False, num_samples=10,
    )  # fmt: skip
    engine = MSFTEngine(settings).fit([_series()])
    model = engine.model_
    mods = [m for m in model.modules() if isinstance(m, AdaLoRA)]
    assert len(mods) == layers * 3 and all(m.rank == 3 for m in mods)
    assert 0 < sum(int(m.rank_mask.sum()) for m in mods) <= 2 * len(mods)
    for m in mods:  # pruned singular values are exactly zero
        assert not m.lora_E[~m.rank_mask].any()
    state = engine.trainable_state()
    assert any(k.endswith("rank_mask") for k in state)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & set(state)
    engine.save(tmp_path / "ada")
    loaded = MSFTEngine.load(tmp_path / "ada")
    reloaded = [m for m in loaded.model_.modules() if isinstance(m, AdaLoRA)]
    for a, b in zip(mods, reloaded, strict=True):
        assert torch.equal(a.rank_mask, b.rank_mask)
    series = [_series()]
    np.testing.assert_array_equal(
        engine.forecast(series, 12, 0, seed=1).mean, loaded.forecast(series, 12, 0, seed=1).mean
    )


#: UniTS tunes its own prompt tokens and warns that num_prompt_tokens=4 does not apply.
_UNITS_PROMPTS = "ignore:num_prompt_tokens=4 does not apply to UniTS:UserWarning"


def _folder(backbone: str, tiny_moment_dir, tiny_units_dir) -> str:
    return {"moment": str(tiny_moment_dir), "units": str(tiny_units_dir)}.get(backbone, backbone)


@pytest.mark.parametrize("strategy", NEW)
@pytest.mark.parametrize("backbone", ["moirai-tiny", "moment", "units"])
@pytest.mark.filterwarnings(_UNITS_PROMPTS)
def test_sktime_fits_and_forecasts(strategy, backbone, tiny_moment_dir, tiny_units_dir):
    from sktime.datasets import load_airline

    from msft_forecast import MSFTForecaster

    y = load_airline()
    forecaster = MSFTForecaster(
        backbone=_folder(backbone, tiny_moment_dir, tiny_units_dir),
        fit_strategy=strategy, context_length=48, prediction_length=6, max_steps=3,
        batch_size=8, num_samples=10, random_state=0, validation=None, lora_rank=2,
        num_prompt_tokens=4, verbose=False,
    )  # fmt: skip
    forecaster.fit(y, fh=list(range(1, 7)))
    pred = forecaster.predict()
    assert len(pred) == 6 and np.isfinite(pred.to_numpy()).all()
    assert forecaster.engine_.report_.steps == 3


@pytest.mark.parametrize("strategy", NEW)
@pytest.mark.parametrize("backbone", ["moirai-tiny", "moment", "units"])
@pytest.mark.filterwarnings(_UNITS_PROMPTS)
def test_darts_fits_and_forecasts(strategy, backbone, tiny_moment_dir, tiny_units_dir, airline):
    from msft_forecast.darts import MSFTModel

    model = MSFTModel(
        input_chunk_length=64 if backbone == "moment" else 48, output_chunk_length=12,
        backbone=_folder(backbone, tiny_moment_dir, tiny_units_dir),
        fit_strategy=strategy, max_steps=3, batch_size=8, patch_size=_patch_size(backbone),
        random_state=0, validation=None, lora_rank=2, num_prompt_tokens=4,
    )  # fmt: skip
    model.fit(airline[:-12], verbose=False)
    pred = model.predict(12, num_samples=5)
    assert len(pred) == 12 and np.isfinite(pred.all_values()).all()
