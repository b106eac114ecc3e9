"""Tests of the synthetic pre-training loop and the zero-shot evaluation helper."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.pretrain.pretrain import (
    STATE_FILE,
    PretrainConfig,
    TokenizedWindow,
    build_model,
    learning_rate,
    main,
    pack_windows,
    packed_nll,
    pretrain,
    tokenize_window,
)
from tools.pretrain.synthetic import SyntheticSeries


def micro_config(**overrides: object) -> PretrainConfig:
    """A model and batch small enough for a step to take milliseconds."""
    base = {
        "d_model": 64,
        "num_layers": 1,
        "patch_sizes": (8, 16),
        "max_seq_len": 64,
        "row_tokens": 64,
        "batch_size": 4,
        "min_length": 64,
        "max_length": 300,
        "typical_length": 160,
        "warmup_steps": 2,
        "lr": 1e-3,
        "max_steps": 6,
        "precision": "fp32",
        "log_every": 2,
    }
    base.update(overrides)
    return PretrainConfig(**base)  # type: ignore[arg-type]


def quiet(_: str) -> None:
    """Swallow log lines."""


# ---------------------------------------------------------------------------------------------
# Tokens, packing, loss
# ---------------------------------------------------------------------------------------------


def test_tokenize_eval_like_window_matches_inference_layout() -> None:
    cfg = micro_config(
        patch_sizes=(8, 16, 32), eval_like_prob=1.0, missing_prob=0.0, any_patch_prob=0.0
    )
    values = np.arange(608, dtype=np.float64)
    series = SyntheticSeries(values=values, freq="h", periods=(24,), kind="parametric")
    seen = set()
    for seed in range(20):
        w = tokenize_window(np.random.default_rng(seed), series, cfg)
        p = w.patch_size
        assert p in (16, 32)  # hourly -> (16, 32, 64) intersected with the configured sizes
        n_h = int(w.prediction.sum())
        horizon = 96 if n_h == -(-96 // p) else 192
        assert n_h == -(-horizon // p)  # standard horizons that fit in half the window
        assert w.prediction[-n_h:].all() and not w.prediction[:-n_h].any()
        context = 608 - horizon
        lpad = -context % p  # context left-padded to whole patches, horizon right-padded
        flat = w.target[:, :p].reshape(-1)
        obs = w.observed[:, :p].reshape(-1)
        assert not w.observed[:, p:].any()
        np.testing.assert_array_equal(flat[obs], values)
        assert not obs[:lpad].any() and obs[lpad : lpad + 608].all() and not obs[lpad + 608 :].any()
        ctx = values[:context]
        assert w.log_scale == pytest.approx(0.5 * np.log(ctx.var(ddof=1) + 1e-5))
        seen.add((p, horizon))
    assert len(seen) >= 3


def test_tokenize_crops_long_windows_to_row_capacity() -> None:
    cfg = micro_config(missing_prob=0.0)
    series = SyntheticSeries(values=np.ones(2000), freq="M", periods=(), kind="parametric")
    for seed in range(10):
        w = tokenize_window(np.random.default_rng(seed), series, cfg)
        assert w.n_tokens <= cfg.row_tokens
        assert w.prediction.any() and not w.prediction.all()


def _window(n: int, n_pred: int, patch: int, fill: float) -> TokenizedWindow:
    target = np.zeros((n, 16), np.float32)
    target[:, :patch] = fill
    observed = np.zeros((n, 16), bool)
    observed[:, :patch] = True
    prediction = np.zeros(n, bool)
    prediction[n - n_pred :] = True
    return TokenizedWindow(target, observed, prediction, patch, log_scale=fill)


def test_pack_windows_keeps_windows_apart() -> None:
    windows = [_window(30, 5, 8, 1.0), _window(20, 4, 16, 2.0), _window(40, 10, 8, 3.0)]
    batch = pack_windows(windows, row_tokens=64)
    assert batch.target.shape[0] == 2 and batch.target.shape[1] <= 64
    assert batch.n_tokens == 90
    for i, w in enumerate(windows):
        sel = batch.group_id == i
        assert int(sel.sum()) == w.n_tokens
        assert len(set(batch.sample_id[sel].tolist())) == 1 and int(batch.sample_id[sel][0]) > 0
        assert batch.time_id[sel].tolist() == list(range(w.n_tokens))
        assert batch.prediction_mask[sel].tolist() == w.prediction.tolist()
        assert set(batch.patch_size[sel].tolist()) == {w.patch_size}
        assert torch.all(batch.target[sel][:, : w.patch_size] == w.log_scale)
    pad = batch.group_id < 0
    assert torch.all(batch.sample_id[pad] == 0) and not batch.observed_mask[pad].any()


def test_packed_nll_is_mean_per_window_then_over_windows() -> None:
    windows = [_window(10, 2, 8, 0.0), _window(12, 6, 16, 1.0)]
    batch = pack_windows(windows, row_tokens=64)
    gen = torch.Generator().manual_seed(0)
    log_prob = torch.randn(batch.target.shape, dtype=torch.float32, generator=gen)
    loss, scaled = packed_nll(log_prob, batch)
    expected = []
    for i in range(2):
        m = (batch.group_id == i).unsqueeze(-1) & batch.prediction_mask.unsqueeze(-1)
        m = m & batch.observed_mask
        expected.append(float(-log_prob[m].mean()))
    # float32 sums in another order: an absolute tolerance (the scaled value may be near 0)
    assert float(loss) == pytest.approx(np.mean(expected), abs=1e-6)
    assert float(scaled) == pytest.approx(np.mean(expected) - np.mean([0.0, 1.0]), abs=1e-6)


def test_learning_rate_warmup_stable_decay() -> None:
    cfg = micro_config(lr=1.0, min_lr=0.0, warmup_steps=10)
    sched = {"decay_start": 80, "total_steps": 100}
    assert learning_rate(cfg, 0, sched) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, sched) == pytest.approx(1.0)
    assert learning_rate(cfg, 50, sched) == 1.0
    assert learning_rate(cfg, 90, sched) == pytest.approx(0.5)
    assert learning_rate(cfg, 50, {"decay_start": None, "total_steps": None}) == 1.0


# ---------------------------------------------------------------------------------------------
# Training loop: health, determinism, resume, export
# ---------------------------------------------------------------------------------------------


def test_training_step_gradients_are_finite() -> None:
    cfg = micro_config(missing_prob=1.0)  # missing blocks everywhere: masks must hold up
    _, module = build_model(cfg)
    from tools.pretrain.pretrain import make_batch
    from tools.pretrain.synthetic import iter_training_windows

    rng = np.random.default_rng(0)
    batch = make_batch(rng, iter_training_windows(rng, min_length=64, max_length=300), cfg)
    loss, _ = packed_nll(module(**batch.model_inputs()).log_prob(batch.target), batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_same_seed_reproduces_losses_exactly(tmp_path: Path) -> None:
    cfg = micro_config(max_steps=5)
    a = pretrain(cfg, tmp_path / "a", log=quiet)
    b = pretrain(cfg, tmp_path / "b", log=quiet)
    assert len(a.loss) == 5
    assert a.loss == b.loss
    assert a.nll_scaled == b.nll_scaled
    c = pretrain(dataclasses.replace(cfg, seed=1), tmp_path / "c", log=quiet)
    assert c.loss != a.loss


def test_resume_after_interruption_equals_straight_run(tmp_path: Path) -> None:
    cfg = micro_config(max_steps=6)
    straight = pretrain(cfg, tmp_path / "straight", log=quiet)
    first = pretrain(cfg, tmp_path / "split", stop_at_step=3, log=quiet)
    assert first.step == 3 and (tmp_path / "split" / STATE_FILE).exists()
    assert not (tmp_path / "split" / "model.safetensors").exists()
    resumed = pretrain(cfg, tmp_path / "split", log=quiet)
    assert resumed.step == 6
    assert resumed.loss == straight.loss
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "straight" / "model.safetensors"))
    wb = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    pretrain(micro_config(max_steps=2), tmp_path, stop_at_step=1, log=quiet)
    with pytest.raises(ValueError, match="lr"):
        pretrain(micro_config(max_steps=2, lr=5e-4), tmp_path, log=quiet)


def test_state_file_loads_with_weights_only(tmp_path: Path) -> None:
    pretrain(micro_config(max_steps=2), tmp_path, log=quiet)
    payload = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert payload["format"].startswith("msft_forecast.pretrain.state")
    assert json.loads(payload["train_state"])["step"] == 2


def test_export_writes_published_format(tmp_path: Path) -> None:
    cfg = micro_config(max_steps=4)
    st = pretrain(cfg, tmp_path, log=quiet)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["d_model"] == 64 and config["patch_sizes"] == [8, 16]
    assert config["distr_output"]["_target_"].endswith("MixtureOutput")
    from msft_forecast.backbones.checkpoint import load_backbone

    bb = load_backbone(str(tmp_path), allow_fallback=False)
    assert all(p.dtype == torch.float32 for p in bb.module.parameters())
    record = json.loads((tmp_path / "training_record.json").read_text())
    assert record["steps"] == st.step == 4
    assert record["windows_seen"] == 4 * cfg.batch_size
    assert record["seed"] == 0 and record["threads"] == 1
    assert record["versions"]["torch"] == torch.__version__
    assert [p["step"] for p in record["loss_curve"]] == [2, 4]
    assert record["corpus"]["data"].startswith("synthetic only")


def test_default_model_fits_size_budget() -> None:
    _, module = build_model(PretrainConfig(max_steps=1))
    n_bytes = 4 * sum(p.numel() for p in module.parameters())
    assert n_bytes <= 10 * 1024 * 1024


def test_bf16_step_is_finite_and_close_to_fp32() -> None:
    losses = {}
    from tools.pretrain.pretrain import keep_head_fp32, make_batch
    from tools.pretrain.synthetic import iter_training_windows

    cfg = micro_config()
    rng = np.random.default_rng(3)
    batch = make_batch(rng, iter_training_windows(rng, min_length=64, max_length=300), cfg)
    for precision in ("fp32", "bf16"):
        _, module = build_model(cfg)
        if precision == "bf16":
            keep_head_fp32(module)
        with (
            torch.no_grad(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
        ):
            distr = module(**batch.model_inputs())
        losses[precision] = float(packed_nll(distr.log_prob(batch.target), batch)[0])
    assert np.isfinite(losses["bf16"])
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_cli_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--max-steps", "2", "--d-model", "64", "--num-layers", "1"]
    args += ["--patch-sizes", "8", "16", "--max-seq-len", "64", "--row-tokens", "64"]
    args += ["--batch-size", "2", "--log-every", "1", "--precision", "fp32"]
    assert main(args) == 0
    assert "step      2" in capsys.readouterr().out
    assert (tmp_path / "model.safetensors").exists()
    assert main(["--out", str(tmp_path)]) == 2  # no budget


# ---------------------------------------------------------------------------------------------
# Zero-shot evaluation helper
# ---------------------------------------------------------------------------------------------


def test_init_starts_from_a_backbone_and_records_it(tmp_path: Path) -> None:
    """``init`` copies a bundled backbone's weights and the record names them by SHA-256."""
    import hashlib

    from msft_forecast.backbones.checkpoint import bundled_checkpoint_dir

    record_v1 = json.loads(
        (bundled_checkpoint_dir("moirai-tiny-v1") / "training_record.json").read_text()
    )
    arch = {k: record_v1["settings"][k] for k in ("d_model", "num_layers", "max_seq_len")}
    cfg = micro_config(
        **arch,
        patch_sizes=tuple(record_v1["settings"]["patch_sizes"]),
        row_tokens=64,
        max_steps=2,
        corpus="v2",
        init="moirai-tiny-v1",
        min_length=48,
    )
    pretrain(cfg, tmp_path, log=quiet)
    record = json.loads((tmp_path / "training_record.json").read_text())
    weights = bundled_checkpoint_dir("moirai-tiny-v1") / "model.safetensors"
    assert record["init"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["init"]["steps"] == record_v1["steps"]
    assert record["corpus"]["corpus"] == "v2" and "corpus v2" in record["what"]
    with pytest.raises(ValueError, match="another architecture"):
        pretrain(micro_config(init="moirai-tiny-v1"), tmp_path / "other", log=quiet)
