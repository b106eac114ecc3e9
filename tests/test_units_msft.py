"""MSFT on a UniTS backbone, loaded through ``backbone="<folder>"`` from the released layout.

Tiny random UniTS models are saved as the authors' scripts save them
(:func:`conftest.write_random_units`) into a temp folder, with or without ``units.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_units_config
from conftest import write_random_units as write_units

from msft_forecast.backbones.cache import clear_backbone_cache
from msft_forecast.backbones.checkpoint import load_backbone, resolve_checkpoint
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.engine import MSFTEngine
from msft_forecast.msft.strategies import resolve_strategy
from msft_forecast.msft.units_model import MultiScaleUnits

pytestmark = pytest.mark.filterwarnings("ignore:Only .* validation windows:UserWarning")

CONFIG = tiny_units_config()
STRATEGIES = ["zero-shot", "linear-probe", "lora", "adalora", "prompt-tuning", "full", "msft"]
ENGINE = dict(
    context_length=32,
    prediction_length=8,
    num_scales=2,
    max_steps=2,
    batch_size=8,
    val_check_interval=1,
    num_samples=8,
    random_state=0,
    precision="32-true",
)


@pytest.fixture(scope="module")
def units_dir(tiny_units_dir) -> Path:
    return tiny_units_dir


@pytest.fixture
def series() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(160)
    return 5 + np.sin(2 * np.pi * t / 12) + 0.01 * t + rng.normal(0, 0.1, t.size)


def _window(batch: int = 3, context: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, context, generator=g).cumsum(-1) + 3.0
    return x, torch.ones_like(x, dtype=torch.bool)


# ---- loading -----------------------------------------------------------------------------------


def test_released_layout_folder_resolves_to_a_units_backbone(units_dir) -> None:
    source = resolve_checkpoint(str(units_dir))
    assert source.folder == str(units_dir.resolve())
    loaded = load_backbone(str(units_dir))
    assert loaded.kind == "units" and loaded.config == CONFIG
    assert loaded.raw_config["dataset"] == "demo" and loaded.raw_config["trained_tokens"]


def test_folder_without_settings_gets_new_prompt_tokens(tmp_path) -> None:
    folder = write_units(tmp_path / "bare", pretrain=True)  # heads read from the saved args
    loaded = load_backbone(str(folder))
    assert loaded.kind == "units" and loaded.config.num_heads == 2
    assert loaded.raw_config["dataset"] == "msft_forecast"
    assert not loaded.raw_config["trained_tokens"]
    prompt = loaded.module.prompt_tokens["msft_forecast"]
    assert prompt.shape == (1, 1, CONFIG.prompt_num, CONFIG.d_model)
    assert 0.01 < float(prompt.detach().std()) < 0.03  # the authors' N(0, 0.02^2)
    assert not loaded.module.mask_tokens["msft_forecast"].any()
    again = load_backbone(str(folder)).module.prompt_tokens["msft_forecast"]
    torch.testing.assert_close(prompt, again, rtol=0, atol=0)  # seeded: every load the same
    with pytest.raises(ValueError, match="zero-shot only with prompt tokens it was trained on"):
        MultiScaleUnits.build(
            loaded, resolve_strategy("zero-shot"), patch_size=None, horizon_length=8
        )
    # prompt tuning is how the authors start on new data: it trains exactly the new tokens
    model = MultiScaleUnits.build(
        loaded, resolve_strategy("prompt-tuning"), patch_size=None, horizon_length=8
    )
    torch.testing.assert_close(model.prompt_tokens.detach(), prompt, rtol=0, atol=0)
    assert set(model.trained_tensors()) == {"prompt_tokens", "mask_token"}


def test_converted_safetensors_folder_loads_the_same(units_dir, tmp_path) -> None:
    from safetensors.torch import save_file

    state = torch.load(next(units_dir.glob("*.pth")), weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "units.json").write_text(json.dumps({"dataset": "demo", "num_heads": 2}))
    a, b = load_backbone(str(units_dir)).module, load_backbone(str(tmp_path)).module
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"dataset": "multi", "num_heads": 2}, r'"variable": 0 \.\. 2'),
        ({"dataset": "multi", "variable": 3, "num_heads": 2}, "asks for variable 3"),
        ({"dataset": "demo", "class": "os.system"}, "unknown keys"),
        ({"dataset": "a.b"}, "without '.'"),
        ({"num_heads": 0}, "'num_heads' must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused_with_a_message(tmp_path, settings, match) -> None:
    folder = write_units(tmp_path / "f", settings)
    with pytest.raises(CheckpointError, match=match):
        load_backbone(str(folder))


def test_a_chosen_variable_gives_that_variables_tokens(tmp_path) -> None:
    folder = write_units(tmp_path / "f", {"dataset": "multi", "variable": 2, "num_heads": 2})
    loaded = load_backbone(str(folder))
    model = MultiScaleUnits.build(
        loaded, resolve_strategy("zero-shot"), patch_size=None, horizon_length=8
    )
    want = loaded.module.prompt_tokens["multi"][:, 2:3]
    torch.testing.assert_close(model.prompt_tokens.detach(), want, rtol=0, atol=0)


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a hostile checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_hostile_pth_in_a_backbone_folder_never_runs(units_dir, tmp_path) -> None:
    from msft_forecast import MSFTForecaster

    state = torch.load(next(units_dir.glob("*.pth")), weights_only=True)
    marker = tmp_path / "code-ran"
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"student": state, "hook": _Payload(str(marker))}, folder / "evil.pth")
    y = np.sin(np.arange(120) / 3.0)
    with pytest.raises(CheckpointError, match="weights_only"):
        MSFTForecaster(backbone=str(folder), context_length=32, max_steps=1).fit(y, fh=[1, 2])
    assert not marker.exists()


def test_folder_with_settings_but_no_weights_says_so(tmp_path) -> None:
    (tmp_path / "units.json").write_text("{}")
    with pytest.raises(CheckpointError, match="holds no weights"):
        load_backbone(str(tmp_path))


# ---- the model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_at_init_scale0_equals_the_frozen_backbone(units_dir, strategy) -> None:
    loaded = load_backbone(str(units_dir))
    spec = resolve_strategy(strategy, num_scales=3, lora_targets=("q", "k", "v", "out"))
    model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=16).eval()
    x, obs = _window()
    frozen = loaded.module.forecast(x[:, :, None], 16, "demo")[..., 0]
    out = model.forecast(x, obs, 16)
    torch.testing.assert_close(out.scale_means[:, 0], frozen, rtol=0, atol=1e-5)
    if strategy == "msft":  # every scale is UniTS' own forecast of its pooled context
        pooled = x.reshape(3, 24, 2).mean(-1)
        coarse = loaded.module.forecast(pooled[:, :, None], 8, "demo")[..., 0]
        torch.testing.assert_close(
            out.scale_means[:, 1], coarse.repeat_interleave(2, -1), rtol=0, atol=1e-5
        )


def test_scales_are_isolated_without_the_aggregator(units_dir) -> None:
    """Changing the oldest context steps changes scale 0; a scale whose pooled input is
    unchanged keeps its forecast unless the aggregator links them."""
    loaded = load_backbone(str(units_dir))
    spec = resolve_strategy("msft", num_scales=2, aggregator=False)
    model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=8).eval()
    x, obs = _window(context=32)
    y = x.clone()
    y[:, :2] = y[:, :2].flip(-1)  # the same pair means: scale 1's input is unchanged
    a, b = model.forecast(x, obs, 8).scale_means, model.forecast(y, obs, 8).scale_means
    assert not torch.allclose(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 1], b[:, 1], rtol=0, atol=1e-5)
    with torch.no_grad():  # a trained aggregator is the path between scales
        spec = resolve_strategy("msft", num_scales=2)
        linked = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=8).eval()
        for block in linked.backbone.blocks:
            for proj in block.aggregator.coarse_to_fine:
                proj.up.weight.normal_()
            for proj in block.aggregator.fine_to_coarse:
                proj.up.weight.normal_()
    a, b = linked.forecast(x, obs, 8).scale_means, linked.forecast(y, obs, 8).scale_means
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_odd_lengths_and_missing_values_run(units_dir) -> None:
    loaded = load_backbone(str(units_dir))
    spec = resolve_strategy("msft", num_scales=3, lora_targets=("v",))  # one third of qkv
    model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=19)
    x, obs = _window(context=45)
    obs[:, :10] = False
    obs[0] = False  # a row with nothing observed
    horizon = torch.randn(3, 19)
    loss, per_scale = model.train().loss(x, obs, horizon, torch.ones_like(horizon, dtype=bool))
    loss.backward()
    assert torch.isfinite(loss) and per_scale.shape == (3,)
    out = model.eval().forecast(x, obs, 11)
    assert out.mean.shape == (3, 11) and torch.isfinite(out.mean).all()


@pytest.mark.parametrize("strategy", ["lora", "adalora"])
def test_lora_on_the_mlp_is_refused(units_dir, strategy) -> None:
    spec, match = resolve_strategy(strategy, lora_targets=("q", "ffn")), r"lora_targets \['ffn'\]"
    with pytest.raises(ValueError, match=match):
        MultiScaleUnits.check_strategy(spec)
    with pytest.raises(ValueError, match=match):
        MultiScaleUnits.build(
            load_backbone(str(units_dir)), spec, patch_size=None, horizon_length=8
        )


def test_prompt_tuning_trains_the_data_sets_own_tokens(units_dir) -> None:
    """UniTS' prompt tuning is the authors': its own prompt and mask tokens get gradients, no
    other tensor does, and no prompts are added (num_prompt_tokens does not apply)."""
    loaded = load_backbone(str(units_dir))
    spec = resolve_strategy("prompt-tuning")
    model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=8)
    assert model.prompt_tokens.shape[2] == CONFIG.prompt_num
    assert not model.msft_modules()
    x, obs = _window(context=32)
    horizon = torch.randn(3, 8)
    loss, _ = model.loss(x, obs, horizon, torch.ones_like(horizon, dtype=torch.bool))
    loss.backward()
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    assert graded == set(model.trained_tensors()) == {"prompt_tokens", "mask_token"}
    before = model.eval().forecast(x, obs, 8).mean
    with torch.no_grad():
        model.prompt_tokens.add_(1.0)
    assert not torch.allclose(before, model.forecast(x, obs, 8).mean)
    with pytest.warns(UserWarning, match="num_prompt_tokens=4 does not apply to UniTS"):
        MultiScaleUnits.build(
            loaded, resolve_strategy("prompt-tuning", num_prompt_tokens=4),
            patch_size=None, horizon_length=8,
        )  # fmt: skip


def test_adalora_fills_every_lora_slot(units_dir) -> None:
    """The rank allocator finds an update on q, k, v (thirds of the fused qkv) and out of
    every block's time attention (the loss's orthogonality term and a fit that prunes:
    ``tests/test_peft_strategies.py``, on every backbone)."""
    from msft_forecast.msft.adalora import AdaLoRA, RankAllocator

    loaded = load_backbone(str(units_dir))
    spec = resolve_strategy("adalora", lora_rank=2, lora_targets=("q", "k", "v", "out"))
    model = MultiScaleUnits.build(loaded, spec, patch_size=None, horizon_length=8)
    modules = RankAllocator.for_model(model, total_step=10).modules
    assert len(modules) == 4 * CONFIG.num_layers
    assert all(isinstance(m, AdaLoRA) and m.rank == 3 for m in modules.values())
    assert sum(".lora.qkv.parts." in n for n in modules) == 3 * CONFIG.num_layers
    assert sum(n.endswith(".lora.proj") for n in modules) == CONFIG.num_layers


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_and_forecasts_through_the_engine(units_dir, series, strategy):
    engine = MSFTEngine(backbone=str(units_dir), fit_strategy=strategy, **ENGINE)
    before = {k: v.clone() for k, v in engine._backbone().module.state_dict().items()}
    engine.fit([series])
    fc = engine.forecast([series], horizon=12, num_samples=8, seed=1)  # rolls past 8
    assert fc.mean.shape == (1, 12) and fc.samples.shape == (1, 8, 12)
    assert np.isfinite(fc.samples).all()
    model = engine.model_
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert bool(trained) == (strategy != "zero-shot")
    if strategy != "zero-shot":
        assert {"prompt_tokens", "mask_token"} <= trained
    head = {n for n in trained if n.startswith("backbone.forecast_head.")}
    assert bool(head) == (strategy not in ("zero-shot", "prompt-tuning"))
    if strategy == "prompt-tuning":  # the authors' prompt tuning: the data set's tokens alone
        assert trained == {"prompt_tokens", "mask_token"}
    if strategy == "adalora":  # AdaLoRA on the time attention, the tokens and the head
        ada = {n for n in trained if ".lora." in n}
        assert ada and all(n.rsplit(".", 1)[-1] in ("lora_A", "lora_E", "lora_B") for n in ada)
        assert trained == {"prompt_tokens", "mask_token"} | head | ada
        assert any(n.endswith("rank_mask") for n in model.trained_tensors())
    if strategy == "msft":
        assert any(".lora.qkv." in n for n in trained) and any("aggregator" in n for n in trained)
        assert any(n.startswith("adapters.") for n in trained)
    after = engine._backbone().module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared copy is untouched


def test_trainable_only_save_and_load_forecast_identically(units_dir, series, tmp_path) -> None:
    engine = MSFTEngine(backbone=str(units_dir), fit_strategy="msft", **ENGINE).fit([series])
    folder = engine.save(tmp_path / "model")
    saved = json.loads((folder / "msft_model.json").read_text())
    assert saved["backbone"]["location"] == str(units_dir.resolve())
    clear_backbone_cache()  # the frozen weights come from the UniTS folder again
    loaded = MSFTEngine.load(folder)
    a = engine.forecast([series], horizon=8, num_samples=8, seed=3)
    b = loaded.forecast([series], horizon=8, num_samples=8, seed=3)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_sktime_fits_and_predicts_on_a_units_folder(units_dir) -> None:
    from sktime.datasets import load_airline

    from msft_forecast import MSFTForecaster

    y = load_airline()
    forecaster = MSFTForecaster(
        backbone=str(units_dir), fit_strategy="msft", max_steps=2, context_length=32,
        num_scales=2, batch_size=8, num_samples=8, random_state=0, validation=None,
    )  # fmt: skip
    forecaster.fit(y, fh=list(range(1, 9)))
    pred = forecaster.predict()
    assert len(pred) == 8 and np.isfinite(pred.to_numpy()).all()
    intervals = forecaster.predict_interval(coverage=0.8)
    assert np.isfinite(intervals.to_numpy()).all()


def test_darts_fits_and_predicts_on_a_units_folder(units_dir, airline) -> None:
    from msft_forecast.darts import MSFTModel

    model = MSFTModel(
        backbone=str(units_dir), input_chunk_length=32, output_chunk_length=8, max_steps=2,
        num_scales=2, batch_size=8, random_state=0,
    )  # fmt: skip
    model.fit(airline[:-8])
    pred = model.predict(n=8, num_samples=4)
    assert len(pred) == 8 and np.isfinite(pred.values()).all()
