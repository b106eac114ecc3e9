"""Untrusted files: nothing named in a checkpoint is imported, nothing is unpickled.

``test_checkpoint.py`` covers the loader itself (an unknown component ``_target_`` is refused
and not in ``sys.modules``; ``.bin`` weights are refused). These tests use payloads that would
*do* something if imported or unpickled (create a marker file) and go through the public front
ends: a backbone folder, a saved engine / Darts model, and a checkpoint to resume from.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msft_forecast import MSFTForecaster
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.darts import MSFTModel
from msft_forecast.engine import MSFTEngine


class Payload:
    """Unpickling this creates ``marker`` (builtins.open in write mode)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def y() -> pd.Series:
    t = np.arange(120)
    return pd.Series(10 + np.sin(t / 4), index=pd.date_range("2024", periods=120, freq="h"))


@pytest.fixture
def ckpt(tiny_moirai_dir, tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_moirai_dir, folder)
    return folder


TINY = dict(
    context_length=32, prediction_length=3, num_scales=2, max_steps=1, batch_size=8,
    validation=None, random_state=0,
)  # fmt: skip


@pytest.mark.parametrize("where", ["mixture", "component"])
def test_importable_target_is_refused_without_importing_it(ckpt, tmp_path, y, monkeypatch, where):
    """A module that exists and would run code on import is named in config.json."""
    marker = tmp_path / "imported"
    package = tmp_path / "site"
    package.mkdir()
    (package / "evil_target_probe.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(package))
    config = json.loads((ckpt / "config.json").read_text())
    target = "evil_target_probe.Payload"
    if where == "mixture":
        config["distr_output"]["_target_"] = target
    else:
        config["distr_output"]["components"][1]["_target_"] = target
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="refusing unknown distribution class.*evil_target"):
        MSFTForecaster(backbone=str(ckpt), **TINY).fit(y, fh=[1, 2, 3])
    assert not marker.exists() and "evil_target_probe" not in sys.modules


def test_known_class_under_a_foreign_module_is_refused(ckpt, y):
    config = json.loads((ckpt / "config.json").read_text())
    config["distr_output"]["_target_"] = "evil.uni2ts.distribution.mixture.MixtureOutput"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="refusing unknown distribution class"):
        MSFTForecaster(backbone=str(ckpt), **TINY).fit(y, fh=[1, 2, 3])


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_pickled_backbone_weights_never_run(ckpt, tmp_path, y, name):
    marker = tmp_path / "unpickled"
    (ckpt / "model.safetensors").unlink()
    (ckpt / name).write_bytes(pickle.dumps(Payload(marker)))
    match = "never loaded" if name.endswith(".bin") else "corrupt or truncated"
    with pytest.raises(CheckpointError, match=match):
        MSFTForecaster(backbone=str(ckpt), **TINY).fit(y, fh=[1, 2, 3])
    assert not marker.exists()


def test_saved_models_load_through_safetensors_only(tiny_moirai_dir, tmp_path, y):
    from darts import TimeSeries

    marker = tmp_path / "unpickled"
    model = MSFTModel(
        input_chunk_length=32, output_chunk_length=3, backbone=str(tiny_moirai_dir),
        num_scales=2, max_steps=1, batch_size=8, validation=None,
    ).fit(TimeSeries.from_series(y))  # fmt: skip
    model.save(tmp_path / "model.pt")  # one zip archive of JSON and safetensors files
    with zipfile.ZipFile(tmp_path / "model.pt") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["engine/trainable.safetensors"] = pickle.dumps(Payload(marker))
    # a member named to escape the folder it is read into is never written anywhere
    members["../escaped.txt"] = b"outside"
    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        MSFTModel.load(tmp_path / "bad.pt")
    # the same in a folder (the format of earlier versions)
    folder = tmp_path / "darts"
    for name in ("darts_model.json", "engine/msft_model.json", "engine/trainable.safetensors"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(members[name])
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        MSFTModel.load(folder)
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        MSFTEngine.load(folder / "engine")
    assert not marker.exists()
    assert not list(tmp_path.parent.rglob("escaped.txt"))


def test_resume_refuses_a_checkpoint_that_is_not_plain_tensors(tmp_path, y):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"state_dict": {}, "payload": Payload(marker)}, folder / "last.ckpt")
    params = dict(TINY, backbone="moirai-tiny", checkpoint_dir=str(folder), resume=True)
    with pytest.raises(ValueError, match="cannot be resumed from.*Delete it to start over"):
        MSFTForecaster(**params).fit(y, fh=[1, 2, 3])
    assert not marker.exists()
