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
