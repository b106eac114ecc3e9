"""Shared fixtures: small random checkpoints in the published format, written to a temp folder.

Tests never use the network: the hub is switched to offline mode for the whole session.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from msft_forecast.backbones.checkpoint import save_checkpoint  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def write_random_moirai(
    folder: Path, seed: int = 0, d_model: int = 64, num_layers: int = 2
) -> Path:
    """A Moirai with random weights in the published file format."""
    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

    torch.manual_seed(seed)
    config = MoiraiConfig(d_model, num_layers, (8, 16, 32), 512)
    return save_checkpoint(folder, config.to_dict(), MoiraiModule(config))


def write_random_moment(folder: Path, seed: int = 0) -> Path:
    """A MOMENT (two layers, width 64) with random weights in the published file format."""
    from msft_forecast.backbones.moment import MomentConfig, MomentModule

    torch.manual_seed(seed)
    config = MomentConfig.preset("small", d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2)
    return save_checkpoint(folder, config.to_dict(), MomentModule(config))


def tiny_units_config():
    """The architecture of :func:`write_random_units` (width 16, two blocks, patch 8)."""
    from msft_forecast.backbones.units import UnitsConfig

    return UnitsConfig(d_model=16, num_layers=2, num_heads=2, patch_len=8, prompt_num=2)


def write_random_units(
    folder: Path, settings: dict | None = None, *, pretrain: bool = False, seed: int = 0
) -> Path:
    """A random UniTS in the released ``.pth`` layout (trained-looking prompt tokens for a
    one-variable ``"demo"`` and a three-variable ``"multi"`` data set): a DDP state dict with
    ``module.`` prefixes, as the authors' ``exp/exp_sup.py`` saves it, or a pre-training dict
    with ``"student"`` and ``"args"``, as ``exp/exp_pretrain.py``; ``settings`` go to
    ``units.json``."""
    import argparse
    import json

    from msft_forecast.backbones.units import UnitsModule

    torch.manual_seed(seed)
    module = UnitsModule(tiny_units_config(), {"demo": 1, "multi": 3})
    with torch.no_grad():  # move the tokens away from their initialisation
        for name, tensor in module.named_parameters():
            if "_tokens." in name:
                tensor.normal_(0.0, 0.5)
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    if pretrain:
        args = argparse.Namespace(d_model=16, n_heads=2, e_layers=2, patch_len=8, dropout=0.1)
        torch.save({"student": state, "optimizer": {}, "epoch": 3, "args": args},
                   folder / "pretrain_checkpoint.pth")  # fmt: skip
    else:
        torch.save(state, folder / "units_x16.pth")
    if settings is not None:
        (folder / "units.json").write_text(json.dumps(settings))
    return folder


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Test models are tiny: one thread is as fast as two on an idle machine and many times
    faster on a busy one (OpenMP workers spin-wait while the other core is taken)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_moirai_dir(tmp_path_factory) -> Path:
    return write_random_moirai(tmp_path_factory.mktemp("moirai-random"))


@pytest.fixture(scope="session")
def tiny_moment_dir(tmp_path_factory) -> Path:
    return write_random_moment(tmp_path_factory.mktemp("moment-random"))


@pytest.fixture(scope="session")
def tiny_units_dir(tmp_path_factory) -> Path:
    """A UniTS folder whose ``units.json`` names the trained ``"demo"`` data set."""
    return write_random_units(tmp_path_factory.mktemp("units"), {"dataset": "demo", "num_heads": 2})


@pytest.fixture
def seasonal_series() -> np.ndarray:
    """400 hourly-like steps: daily cycle, trend and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(400)
    return 10 + np.sin(2 * np.pi * t / 24) + 0.002 * t + rng.normal(0, 0.1, t.size)


@pytest.fixture
def shared_lsf() -> Path:
    folder = SHARED / "data" / "lsf"
    if not folder.is_dir():
        pytest.skip(f"benchmark data not found at {folder} (../shared is absent on this machine)")
    return folder


@pytest.fixture(scope="session")
def airline():
    """The airline series (144 monthly points) as a Darts ``TimeSeries``."""
    from darts import TimeSeries
    from sktime.datasets import load_airline

    y = load_airline().astype("float64")
    y.index = y.index.to_timestamp()
    return TimeSeries.from_series(y, freq="MS")
