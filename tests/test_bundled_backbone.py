"""The bundled moirai-tiny: offline loading and forecasting, and a reproducible pre-training."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from msft_forecast.backbones.checkpoint import bundled_checkpoint_dir, resolve_checkpoint
from msft_forecast.engine import MSFTEngine


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_moirai_tiny_loads_and_forecasts_without_network(no_network, seasonal_series) -> None:
    source = resolve_checkpoint("moirai-tiny")
    assert source.location == "bundled:moirai-tiny"
    folder = bundled_checkpoint_dir("moirai-tiny")
    assert (folder / "model.safetensors").stat().st_size <= 10 * 2**20
    engine = MSFTEngine(
        backbone="moirai-tiny",
        fit_strategy="zero-shot",
        context_length=128,
        prediction_length=24,
        random_state=0,
        num_samples=50,
    ).fit([seasonal_series])
    fc = engine.forecast([seasonal_series], 24)
    assert np.isfinite(fc.samples).all()
    # it learned something: on a clean daily cycle it beats repeating the last value
    truth_t = np.arange(400, 424)
    truth = 10 + np.sin(2 * np.pi * truth_t / 24) + 0.002 * truth_t
    assert np.mean((fc.mean[0] - truth) ** 2) < np.mean((seasonal_series[-1] - truth) ** 2)


def test_bundled_weights_fit_the_wheel_budget() -> None:
    """Every bundled checkpoint together stays under the 25 MB wheel budget."""
    assets = bundled_checkpoint_dir("moirai-tiny").parent
    total = sum(f.stat().st_size for f in assets.rglob("*") if f.is_file())
    assert total < 25 * 10**6, total


def test_pretraining_code_stays_out_of_the_wheel() -> None:
    """The one-off pre-training (``tools/pretrain/``) is not packaged: the wheel's packages, as
    setup.cfg has setuptools find them, are ``msft_forecast`` and its subpackages only, none of
    them pre-training code."""
    import configparser

    setuptools = pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[1]
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(root / "setup.cfg")
    include = setup_cfg["options.packages.find"]["include"].split()
    packages = setuptools.find_packages(str(root), include=include)
    assert "msft_forecast" in packages and "msft_forecast.backbones" in packages, packages
    assert all(p.split(".")[0] == "msft_forecast" for p in packages), packages
    assert not [p for p in packages if "pretrain" in p], packages
    assert not list((root / "msft_forecast").rglob("*pretrain*"))


@pytest.mark.parametrize("name", ["moirai-tiny", "moirai-tiny-v1"])
def test_pretraining_reproduces_the_shipped_loss_curve(tmp_path: Path, name: str) -> None:
    """Re-running the pre-training from its seed retraces the shipped record's first steps.

    The shipped checkpoints were made by the commands in ``docs/backbones.md`` on the current
    backbone and pre-training code, with one thread, on an AMD machine (the current one
    starting from the bundled ``moirai-tiny-v1``, whose weights its record identifies).
    Another CPU type changes the low-order bits of float (and above all bf16) kernels, so the
    rerun is compared with the record within a relative 1e-3 (an Intel machine gave 4.8625 for
    the recorded 4.8612 at step 25); on one machine a rerun repeats itself bit for bit
    (compared through the record's 25-step block averages, the same arithmetic that wrote
    them).
    """
    from tools.pretrain.pretrain import PretrainConfig, loss_curve, pretrain

    record = json.loads((bundled_checkpoint_dir(name) / "training_record.json").read_text())
    settings = dict(record["settings"])
    settings["patch_sizes"] = tuple(settings["patch_sizes"])
    cfg = PretrainConfig(**settings)
    every = record["loss_curve_every"]
    blocks = 2
    state = pretrain(
        cfg, tmp_path / "a", fresh=True, stop_at_step=blocks * every, log=lambda _: None
    )
    rerun = loss_curve(state, every)
    assert len(rerun) == blocks
    for got, shipped in zip(rerun, record["loss_curve"][:blocks], strict=True):
        assert got["step"] == shipped["step"]
        for key in ("loss", "nll_scaled", "grad_norm", "lr"):
            assert got[key] == pytest.approx(shipped[key], rel=1e-3), (got["step"], key)
    again = pretrain(cfg, tmp_path / "b", fresh=True, stop_at_step=every, log=lambda _: None)
    assert loss_curve(again, every) == rerun[:1]  # same machine: bit for bit
