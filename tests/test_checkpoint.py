"""Checkpoint resolution and loading: sources, caching and every error a user can meet."""

from __future__ import annotations

import json
import shutil
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from msft_forecast.backbones import cache, checkpoint
from msft_forecast.backbones.cache import (
    clear_backbone_cache,
    disk_loads,
    get_backbone,
    structural_copy,
)
from msft_forecast.backbones.checkpoint import load_backbone, resolve_checkpoint
from msft_forecast.backbones.errors import CheckpointError, HubUnavailableError


@pytest.fixture
def ckpt(tiny_moirai_dir, tmp_path):
    """A private copy of the random tiny Moirai checkpoint that a test may damage."""
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_moirai_dir, folder)
    return folder


def test_local_folder_loads_and_matches_the_files(ckpt) -> None:
    loaded = load_backbone(str(ckpt))
    assert loaded.kind == "moirai"
    assert loaded.source.location == str(ckpt.resolve())
    saved = load_file(str(ckpt / "model.safetensors"))
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_moment_folder_loads_and_skips_the_unused_embedding(tiny_moment_dir, tmp_path) -> None:
    folder = tmp_path / "moment"
    shutil.copytree(tiny_moment_dir, folder)
    weights = load_file(str(folder / "model.safetensors"))
    weights["encoder.embed_tokens.weight"] = torch.zeros(32128, 64)  # as published files have
    save_file(weights, str(folder / "model.safetensors"))
    loaded = load_backbone(str(folder))
    assert loaded.kind == "moment"
    assert "encoder.embed_tokens.weight" not in loaded.module.state_dict()


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nowhere"))


def test_unknown_short_name() -> None:
    with pytest.raises(CheckpointError, match="Unknown backbone 'moirai-giant'"):
        resolve_checkpoint("moirai-giant")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file(ckpt, missing: str) -> None:
    (ckpt / missing).unlink()
    with pytest.raises(CheckpointError, match=f"lacks {missing}"):
        load_backbone(str(ckpt))


def test_pickled_weights_are_refused_with_a_reason(ckpt) -> None:
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="never loaded"):
        load_backbone(str(ckpt))


def test_truncated_weights(ckpt) -> None:
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_backbone(str(ckpt))


def test_garbage_weights(ckpt) -> None:
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_backbone(str(ckpt))


def test_invalid_json(ckpt) -> None:
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_backbone(str(ckpt))


def test_unknown_target_is_refused_before_import(ckpt) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config["distr_output"]["components"][0]["_target_"] = "evil_module_xyz.Payload"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="evil_module_xyz"):
        load_backbone(str(ckpt))
    assert "evil_module_xyz" not in sys.modules


def test_shape_mismatch_names_the_tensor(ckpt) -> None:
    weights = load_file(str(ckpt / "model.safetensors"))
    key = "encoder.layers.0.self_attn.q_proj.weight"
    weights[key] = torch.zeros(3, 3)
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_backbone(str(ckpt))


def test_config_of_another_size_is_a_clear_mismatch(ckpt) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config["num_layers"] = 3
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_backbone(str(ckpt))


def test_neither_moirai_nor_moment(ckpt) -> None:
    (ckpt / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(CheckpointError, match="neither a Moirai"):
        load_backbone(str(ckpt))


def _offline_hub(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        raise ConnectionError("network is unreachable")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    return calls


def test_hub_unreachable_says_how_to_work_offline(monkeypatch) -> None:
    calls = _offline_hub(monkeypatch)
    with pytest.raises(HubUnavailableError, match="moirai-tiny") as err:
        resolve_checkpoint("moirai-base", revision="abc123")
    assert "local folder" in str(err.value)
    assert calls[0]["repo_id"] == "Salesforce/moirai-1.1-R-base"
    assert all(c["revision"] == "abc123" for c in calls)
    assert calls[0]["local_files_only"] is True  # the cache is tried before the network


def test_cached_hub_checkpoint_needs_no_network(monkeypatch, ckpt) -> None:
    import huggingface_hub

    def cached_only(repo_id, local_files_only=False, **kwargs):
        if not local_files_only:
            raise AssertionError("the network was used although the checkpoint is cached")
        return str(ckpt)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_only)
    source = resolve_checkpoint("owner/some-moirai", revision="v1")
    assert source.folder == str(ckpt) and source.revision == "v1"


def test_default_falls_back_to_the_bundled_backbone(monkeypatch, ckpt) -> None:
    _offline_hub(monkeypatch)
    monkeypatch.setattr(checkpoint, "bundled_checkpoint_dir", lambda name: ckpt)
    with pytest.warns(UserWarning, match="allow_fallback=False"):
        source = resolve_checkpoint("moirai")
    assert source.fell_back and source.folder == str(ckpt)
    with pytest.raises(HubUnavailableError):
        resolve_checkpoint("moirai", allow_fallback=False)
    # only the default falls back: an explicit hub model is an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HubUnavailableError):
            resolve_checkpoint("moirai-small")


def test_backbone_is_read_once_per_process_and_shared(ckpt) -> None:
    clear_backbone_cache()
    before = disk_loads()
    a = get_backbone(str(ckpt))
    b = get_backbone(str(ckpt))
    assert a is b and disk_loads() == before + 1
    assert not any(p.requires_grad for p in a.module.parameters())
    copy_ = structural_copy(a.module)
    assert copy_ is not a.module
    for p, q in zip(copy_.parameters(), a.module.parameters(), strict=True):
        assert p is q  # same tensors: the frozen weights exist once in memory
    copy_.encoder.layers[0].aggregator = torch.nn.Identity()
    assert a.module.encoder.layers[0].aggregator is None
    assert cache._CACHE  # noqa: SLF001


# --- untrusted checkpoints: refused before anything large is allocated ---------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_layers", 10**6), ("d_model", 2**30), ("patch_sizes", [8, 2**31]),
     ("max_seq_len", 10**9)],
)  # fmt: skip
def test_absurd_sizes_are_refused_naming_the_field(ckpt, field: str, value) -> None:
    import resource

    config = json.loads((ckpt / "config.json").read_text())
    config[field] = value
    (ckpt / "config.json").write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=f"field '{field}' is .*above the limit"):
        load_backbone(str(ckpt))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # refused from the numbers, not after trying


def test_absurd_moment_size_in_t5_config_is_refused(tiny_moment_dir, tmp_path) -> None:
    folder = tmp_path / "moment"
    shutil.copytree(tiny_moment_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["t5_config"]["d_ff"] = 2**40
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"field 't5_config\.d_ff'"):
        load_backbone(str(folder))


def test_deeply_nested_json_is_a_checkpoint_error(ckpt) -> None:
    (ckpt / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply|nested deeper"):
        load_backbone(str(ckpt))
    nested: list = [1]
    for _ in range(20):
        nested = [nested]
    (ckpt / "config.json").write_text(json.dumps({"a": nested}))
    with pytest.raises(CheckpointError, match="nested deeper than 16"):
        load_backbone(str(ckpt))


def test_huge_config_file_is_refused(ckpt) -> None:
    (ckpt / "config.json").write_text(json.dumps({"pad": "x" * (2 << 20)}))
    with pytest.raises(CheckpointError, match="a backbone config is a few KiB"):
        load_backbone(str(ckpt))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.float64])
def test_weights_of_another_dtype_are_refused_naming_the_tensor(ckpt, dtype) -> None:
    weights = load_file(str(ckpt / "model.safetensors"))
    key = "encoder.layers.0.self_attn.q_proj.weight"
    weights[key] = weights[key].to(dtype)
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"{key.replace('.', '[.]')}' is stored as"):
        load_backbone(str(ckpt))


def test_non_finite_weights_are_refused(ckpt) -> None:
    weights = load_file(str(ckpt / "model.safetensors"))
    key = "encoder.layers.0.self_attn.q_proj.weight"
    weights[key][0, 0] = float("nan")
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="NaN or infinite values"):
        load_backbone(str(ckpt))


def test_cli_reports_a_hostile_checkpoint_in_one_line(ckpt, tmp_path, capsys) -> None:
    import numpy as np
    import pandas as pd

    from msft_forecast import cli

    config = json.loads((ckpt / "config.json").read_text())
    config["num_layers"] = 10**6
    (ckpt / "config.json").write_text(json.dumps(config))
    data = tmp_path / "y.csv"
    pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=200, freq="h"), "y": np.arange(200.0)}
    ).to_csv(data, index=False)
    code = cli.main(["forecast", str(data), "--horizon", "4", "--backbone", str(ckpt),
                     "--strategy", "zero-shot", "--output", str(tmp_path / "out.csv")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "num_layers" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_pickled_forecaster_finds_a_relative_backbone_from_elsewhere(
    tiny_moirai_dir, tmp_path, monkeypatch
) -> None:
    """The folder resolved at fit time is kept: unpickling in another working directory works."""
    import pickle

    import numpy as np
    import pandas as pd

    from msft_forecast import MSFTForecaster

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    shutil.copytree(tiny_moirai_dir, work / "my_backbone")
    monkeypatch.chdir(work)
    y = pd.Series(
        5 + np.sin(np.arange(120) / 4), index=pd.date_range("2024-01-01", periods=120, freq="h")
    )
    forecaster = MSFTForecaster(
        backbone="my_backbone", fit_strategy="zero-shot", context_length=32, random_state=0
    ).fit(y, fh=[1, 2, 3])
    expected = forecaster.predict()
    blob = pickle.dumps(forecaster)
    monkeypatch.chdir(elsewhere)
    clear_backbone_cache()  # as in a new process: the backbone is read from disk again
    restored = pickle.loads(blob)
    pd.testing.assert_series_equal(restored.predict(), expected)
