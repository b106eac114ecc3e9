"""The native UniTS backbone against the reference ``models/UniTS.py`` of mims-harvard/UniTS.

The reference is the copy in ``../shared/reference/units/UniTS.py`` (MIT, LICENSE beside it);
the tests skip with a message saying so when it, or ``timm`` which it imports, is absent.  Small
reference models get seeded random weights, are saved as ``.pth`` files the way the authors'
scripts save them (a pre-training dict with ``"student"``, ``"optimizer"``, ``"epoch"`` and
``"args"``; a fine-tuned bare state dict; both from a DDP model, so with ``module.``
prefixes) and are read back with the package's loader.  Nothing touches the network.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import os
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from msft_forecast.backbones import units as units_mod
from msft_forecast.backbones import units_checkpoint
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.units import (
    PROMPT_INIT_STD,
    UnitsConfig,
    UnitsModule,
    forecast_token_counts,
    is_ignored_key,
)
from msft_forecast.backbones.units_checkpoint import infer_config, load_units

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "units" / "UniTS.py"
ATOL = 1e-5


def _import_reference() -> types.ModuleType:
    """Import the reference file (it is not a package), finding ``timm`` as it needs.

    ``timm`` declares ``torchvision`` as a dependency and its ``timm.layers`` package imports it,
    but the three names the reference uses (``Mlp``, ``DropPath``, ``to_2tuple``) do not.  Where
    ``torchvision`` cannot be imported (no build for this torch), those three modules are loaded
    from the installed ``timm`` on their own, for this import only.
    """
    if not REFERENCE.is_file():
        pytest.skip(
            f"UniTS reference not found at {REFERENCE} (../shared is absent on this machine)"
        )
    if importlib.util.find_spec("timm") is None:
        pytest.skip(
            "the UniTS reference needs timm (pip install --no-deps timm, as scripts/setup_env.sh "
            "does)"
        )
    saved = {k: v for k, v in sys.modules.items() if k == "timm" or k.startswith("timm.")}
    try:
        try:
            importlib.import_module("timm.layers")
        except ImportError:  # torchvision missing or built for another torch
            for name in [k for k in sys.modules if k == "timm" or k.startswith("timm.")]:
                del sys.modules[name]
            root = Path(importlib.util.find_spec("timm").origin).parent
            for name, folder in (("timm", root), ("timm.layers", root / "layers")):
                package = types.ModuleType(name)
                package.__path__ = [str(folder)]
                sys.modules[name] = package
            layers = sys.modules["timm.layers"]
            layers.Mlp = importlib.import_module("timm.layers.mlp").Mlp  # type: ignore[attr-defined]
            layers.DropPath = importlib.import_module("timm.layers.drop").DropPath  # type: ignore[attr-defined]
        spec = importlib.util.spec_from_file_location("units_reference", REFERENCE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name in [k for k in sys.modules if k == "timm" or k.startswith("timm.")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def ref() -> types.ModuleType:
    return _import_reference()


# ---- reference models in the published layout --------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """A small reference architecture (the reference's ``args``)."""

    d_model: int
    n_heads: int
    e_layers: int
    patch_len: int
    prompt_num: int

    def args(self, pretrain: bool = False) -> argparse.Namespace:
        extra = (
            {"right_prob": 0.5, "min_mask_ratio": 0.7, "max_mask_ratio": 0.8} if pretrain else {}
        )
        return argparse.Namespace(
            d_model=self.d_model,
            n_heads=self.n_heads,
            e_layers=self.e_layers,
            patch_len=self.patch_len,
            stride=self.patch_len,
            prompt_num=self.prompt_num,
            dropout=0.1,
            **extra,
        )


ARCHS = {
    "p16": Arch(d_model=32, n_heads=4, e_layers=2, patch_len=16, prompt_num=4),
    "p8": Arch(d_model=24, n_heads=2, e_layers=3, patch_len=8, prompt_num=3),
    "p4": Arch(d_model=16, n_heads=1, e_layers=1, patch_len=4, prompt_num=2),
}

# (architecture, data set, variables, seq_len, pred_len): padded and unpadded contexts,
# horizons that end on and off a patch boundary, one and several variables.
CASES = [
    ("p16", "ETTh1", 1, 96, 32),
    ("p16", "ECL", 3, 100, 40),  # padded context; the last 12 steps lie past the last token
    ("p16", "Weather", 2, 64, 96),
    ("p8", "ETTh1", 4, 128, 64),
    ("p8", "Traffic", 2, 50, 20),
    ("p8", "Exchange", 1, 37, 100),
    ("p4", "ETTh1", 3, 30, 17),
    ("p4", "ILI", 5, 12, 4),
]


def _configs_list(arch: str, pretrain: bool = False) -> list[list[Any]]:
    """The reference's ``configs_list``: one forecasting task per case of this architecture,
    plus a classification task (whose head and tokens the forecasting path must ignore)."""
    tasks: list[list[Any]] = []
    for i, (a, dataset, n_vars, seq_len, pred_len) in enumerate(CASES):
        if a == arch:
            task = "long_term_forecast"
            config = {"dataset": dataset, "enc_in": n_vars, "task_name": task}
            tasks.append([f"{dataset}_{i}", {**config, "seq_len": seq_len, "pred_len": pred_len}])
    cls = {"dataset": "Heartbeat", "enc_in": 2, "task_name": "classification", "num_class": 3}
    tasks.append(["Heartbeat_cls", cls])
    return tasks


@torch.no_grad()
def _perturb(model: nn.Module, seed: int) -> None:
    """Move every weight away from its initialisation (zero mask tokens, unit norms, ...) so
    that parity means something."""
    g = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        noise = torch.randn(tensor.shape, generator=g)
        if name.endswith(("norm1.weight", "norm2.weight")):
            tensor.copy_(1.0 + 0.2 * noise)
        elif "mask_tokens" in name or "prompt_tokens" in name:
            tensor.copy_(0.5 * noise)
        elif tensor.dim() == 1:
            tensor.copy_(0.1 * noise)
        else:
            tensor.add_(0.5 * tensor.std() * noise)


def _reference_model(ref: types.ModuleType, arch: str, pretrain: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = ref.Model(ARCHS[arch].args(pretrain), _configs_list(arch, pretrain), pretrain=pretrain)
    _perturb(model, seed=len(arch) + 7 * int(pretrain))
    return model.eval()


def _ddp_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """What ``DistributedDataParallel(model).state_dict()`` returns."""
    return {f"module.{k}": v for k, v in model.state_dict().items()}


def _save_pretrain(model: nn.Module, arch: str, path: Path) -> Path:
    """As ``exp/exp_pretrain.py`` saves ``pretrain_checkpoint.pth``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    first = _configs_list(arch)[0][1]  # the reference reads exactly the configured seq_len
    x = _series(first["enc_in"], first["seq_len"], seed=19)
    model(x, None, task_id=0, task_name="long_term_forecast").sum().backward()
    optimizer.step()  # the optimizer state then holds tensors, as a real one does
    optimizer.zero_grad()
    saved = {
        "student": _ddp_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "epoch": 10,
        "args": ARCHS[arch].args(pretrain=True),
    }
    torch.save(saved, path)
    return path


@pytest.fixture(scope="module")
def models(ref: types.ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per architecture: the reference and ours, loaded from a fine-tuned-layout ``.pth``."""
    out: dict[str, Any] = {}
    for arch, spec in ARCHS.items():
        reference = _reference_model(ref, arch)
        folder = tmp_path_factory.mktemp(f"units_{arch}")
        torch.save(_ddp_state_dict(reference), folder / "checkpoint.pth")  # exp/exp_sup.py
        loaded = load_units(folder, num_heads=spec.n_heads)
        out[arch] = (reference, loaded.module)
    return out


def _series(n_vars: int, seq_len: int, seed: int, batch: int = 3) -> Tensor:
    """Random walks with a level and a trend, different per variable."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(batch, seq_len, n_vars, generator=g).cumsum(1)
    level = torch.linspace(-2.0, 3.0, n_vars)
    return 0.5 * steps + level + torch.linspace(0, 1, seq_len)[None, :, None]


def _task_id(arch: str, dataset: str) -> int:
    names = [config[1]["dataset"] for config in _configs_list(arch)]
    return names.index(dataset)


# ---- parity ----------------------------------------------------------------------------------


def test_state_dict_names_and_shapes_match_the_reference(models: dict[str, Any]) -> None:
    for reference, ours in models.values():
        ref_sd = reference.state_dict()
        expected = {k: tuple(v.shape) for k, v in ref_sd.items() if not is_ignored_key(k)}
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
        ignored = {k for k in ref_sd if is_ignored_key(k)}
        # what is left out: the classification head and tokens, and the unused block proj layers
        assert any(k.startswith("cls_head.") for k in ignored)
        assert any(k.startswith("category_tokens.") for k in ignored)
        assert {k.split(".", 3)[2] for k in ignored if k.startswith("blocks.")} == {
            "seq_att_block",
            "var_att_block",
        }
        for key in expected:
            assert torch.equal(ours.state_dict()[key], ref_sd[key]), key


@pytest.mark.parametrize(("arch", "dataset", "n_vars", "seq_len", "pred_len"), CASES)
def test_units_forecast_parity(
    models: dict[str, Any], arch: str, dataset: str, n_vars: int, seq_len: int, pred_len: int
) -> None:
    reference, ours = models[arch]
    x = _series(n_vars, seq_len, seed=seq_len + pred_len)
    with torch.no_grad():
        expected = reference(
            x, None, task_id=_task_id(arch, dataset), task_name="long_term_forecast"
        )
        got = ours.forecast(x, pred_len, dataset)
    assert got.shape == (x.shape[0], pred_len, n_vars) == expected.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_units_forecast_parity_mirrors_the_steps_past_the_last_token(
    models: dict[str, Any],
) -> None:
    """seq_len 100, pred_len 40, patches of 16: 12 padded steps, one horizon token, and the last
    12 steps lie past it; the reference returns the context mean there, and so do we."""
    reference, ours = models["p16"]
    n_ctx, n_pred, padding = forecast_token_counts(100, 40, 16)
    assert (n_ctx, n_pred, padding) == (7, 1, 12)
    x = _series(3, 100, seed=3)
    with torch.no_grad():
        got = ours.forecast(x, 40, "ECL")
    tail = 40 - (padding + n_pred * 16)
    torch.testing.assert_close(got[:, -tail:], x.mean(1, keepdim=True).expand(-1, tail, -1))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_units_gradient_parity(models: dict[str, Any], arch: str) -> None:
    """Gradients of every parameter (dropout off) agree, relative to each gradient's size."""
    reference, ours = (copy.deepcopy(m) for m in models[arch])
    _, dataset, n_vars, seq_len, pred_len = next(c for c in CASES if c[0] == arch and c[2] > 1)
    x = _series(n_vars, seq_len, seed=11)
    target = _series(n_vars, pred_len, seed=12)
    ref_out = reference(x, None, task_id=_task_id(arch, dataset), task_name="long_term_forecast")
    ((ref_out - target) ** 2).mean().backward()
    ((ours.forecast(x, pred_len, dataset) - target) ** 2).mean().backward()
    ref_params = dict(reference.named_parameters())
    checked = 0
    for name, param in ours.named_parameters():
        expected = ref_params[name].grad
        if name.startswith(("prompt_tokens.", "mask_tokens.")) and name.split(".")[1] != dataset:
            assert param.grad is None and expected is None  # other data sets' tokens
            continue
        assert param.grad is not None, name
        scale = expected.abs().max().clamp_min(1e-12)
        torch.testing.assert_close(
            param.grad / scale, expected / scale, atol=1e-5, rtol=0, msg=f"gradient of {name}"
        )
        checked += 1
    assert checked > 30


def test_units_input_gradients_where_the_reference_has_none(models: dict[str, Any]) -> None:
    """The reference divides by the standard deviation in place (``x /= stdev``) after using
    ``x`` for it, so it cannot back-propagate to its input (a quirk left as is); ours can."""
    reference, ours = models["p4"]
    x = _series(5, 12, seed=13, batch=1).requires_grad_(True)
    task = _task_id("p4", "ILI")
    out = reference(x, None, task_id=task, task_name="long_term_forecast")
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.sum().backward()
    with torch.no_grad():
        torch.testing.assert_close(ours.forecast(x, 4, "ILI"), out, atol=ATOL, rtol=0)
    ours.forecast(x, 4, "ILI").sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_units_train_mode_parity_with_the_same_dropout_draws(models: dict[str, Any]) -> None:
    """In train mode the dropout layers sit where the reference's do and draw in its order."""
    reference, ours = (copy.deepcopy(m).train() for m in models["p16"])
    x = _series(2, 64, seed=14)
    torch.manual_seed(5)
    expected = reference(
        x, None, task_id=_task_id("p16", "Weather"), task_name="long_term_forecast"
    )
    torch.manual_seed(5)
    got = ours.forecast(x, 96, "Weather")
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# ---- the stage API the multi-scale engine composes ---------------------------------------------


def test_units_stages_compose_to_forecast(models: dict[str, Any]) -> None:
    _, ours = models["p8"]
    x = _series(4, 128, seed=15)
    n_ctx, n_pred, _ = forecast_token_counts(128, 64, 8)
    with torch.no_grad():
        x_norm, stats = ours.normalize(x)
        tokens = ours.embed_patches(x_norm)
        hidden = ours.encode(ours.prompt_forecast_tokens(tokens, "ETTh1", n_pred))
        y = ours.denormalize(ours.head(hidden, n_ctx + n_pred), stats)[:, -64:]
        expected = ours.forecast(x, 64, "ETTh1")
    assert tokens.shape == (3, 4, 16, 24)
    assert hidden.shape == (3, 4, 3 + 16 + 8, 24)
    assert torch.equal(y, expected)


def test_units_empty_slots_change_nothing_and_filled_slots_act(models: dict[str, Any]) -> None:
    _, ours = models["p16"]
    x = _series(2, 64, seed=16)

    class Delta(nn.Module):
        def __init__(self, out: int) -> None:
            super().__init__()
            self.out, self.seen = out, []

        def forward(self, h: Tensor, ctx: Any) -> Tensor:
            self.seen.append(ctx)
            return 0.01 * torch.ones(*h.shape[:-1], self.out)

    model = copy.deepcopy(ours)
    with torch.no_grad():
        plain = ours.forecast(x, 96, "Weather")
        assert torch.equal(model.forecast(x, 96, "Weather"), plain)
        d = model.config.d_model
        slots = []
        for block in model.blocks:
            for attn in (block.seq_att_block.attn_seq, block.var_att_block.attn_var):
                attn.lora["qkv"], attn.lora["proj"] = Delta(3 * d), Delta(d)
                slots += [attn.lora["qkv"], attn.lora["proj"]]
            block.aggregator = Delta(d)
            slots.append(block.aggregator)
        ctx = object()
        changed = model.forecast(x, 96, "Weather", scale_ctx=ctx)
    assert not torch.allclose(changed, plain)
    assert all(slot.seen == [ctx] for slot in slots)


# ---- loading the released formats --------------------------------------------------------------


def test_units_parity_pretrain_checkpoint_loads_with_its_saved_args(
    ref: types.ModuleType, tmp_path: Path
) -> None:
    """``{"student": DDP state dict, "optimizer", "epoch", "args": Namespace}``: the heads come
    from the saved ``n_heads``, the pre-training head is ignored, and forecasts agree."""
    reference = _reference_model(ref, "p8", pretrain=True)
    path = _save_pretrain(reference, "p8", tmp_path / "pretrain_checkpoint.pth")
    reference.eval()
    loaded = load_units(path)  # no num_heads given: read from args
    assert loaded.kind == "pretrain"
    assert loaded.config == UnitsConfig(
        d_model=24, num_layers=3, num_heads=2, patch_len=8, prompt_num=3
    )
    assert loaded.module.datasets == {"ETTh1": 4, "Traffic": 2, "Exchange": 1, "Heartbeat": 2}
    assert any(
        k.startswith("module.pretrain_head.") for k in units_checkpoint.read_pth(path)["student"]
    )
    x = _series(2, 50, seed=17)
    with torch.no_grad():
        task = _task_id("p8", "Traffic")
        expected = reference(x, None, task_id=task, task_name="long_term_forecast")
        torch.testing.assert_close(
            loaded.module.forecast(x, 20, "Traffic"), expected, atol=ATOL, rtol=0
        )
    with pytest.raises(CheckpointError, match="n_heads=2"):
        load_units(path, num_heads=3)


def test_units_parity_bare_state_dict_without_prefixes(
    models: dict[str, Any], tmp_path: Path
) -> None:
    reference, ours = models["p4"]
    torch.save(reference.state_dict(), tmp_path / "checkpoint.pth")
    loaded = load_units(tmp_path / "checkpoint.pth", num_heads=1)
    assert loaded.kind == "finetuned"
    for key, tensor in ours.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], tensor)


def test_units_parity_new_data_set_gets_the_authors_initialisation(
    ref: types.ModuleType, models: dict[str, Any], tmp_path: Path
) -> None:
    """A data set the checkpoint lacks: prompt tokens N(0, 0.02^2), mask token zero (what the
    reference's Model.__init__ gives it and ``load_state_dict(strict=False)`` leaves)."""
    reference, _ = models["p16"]
    torch.save(_ddp_state_dict(reference), tmp_path / "checkpoint.pth")
    g = torch.Generator().manual_seed(0)
    loaded = load_units(tmp_path, num_heads=4, datasets={"Mine": 6, "ECL": 3}, generator=g)
    assert loaded.added_datasets == ("Mine",)
    prompt, mask = loaded.module.prompt_tokens["Mine"], loaded.module.mask_tokens["Mine"]
    assert prompt.shape == (1, 6, 4, 32) and mask.shape == (1, 6, 1, 32)
    assert torch.equal(mask, torch.zeros_like(mask))
    assert abs(prompt.std().item() - PROMPT_INIT_STD) < 0.003 and abs(prompt.mean().item()) < 0.003

    # the reference with the same new data set, loaded as exp_sup.py loads, agrees once given
    # the same random prompt tokens
    configs = _configs_list("p16") + [
        [
            "Mine_new",
            {
                "dataset": "Mine",
                "enc_in": 6,
                "task_name": "long_term_forecast",
                "seq_len": 80,
                "pred_len": 48,
            },
        ]
    ]
    fresh = ref.Model(ARCHS["p16"].args(), configs)
    result = fresh.load_state_dict(reference.state_dict(), strict=False)
    assert set(result.missing_keys) == {"prompt_tokens.Mine", "mask_tokens.Mine"}
    assert torch.equal(fresh.mask_tokens["Mine"], mask)
    with torch.no_grad():
        fresh.prompt_tokens["Mine"].copy_(prompt)
    fresh.eval()
    x = _series(6, 80, seed=18)
    with torch.no_grad():
        expected = fresh(x, None, task_id=len(configs) - 1, task_name="long_term_forecast")
        torch.testing.assert_close(
            loaded.module.forecast(x, 48, "Mine"), expected, atol=ATOL, rtol=0
        )
    with pytest.raises(CheckpointError, match="3 variables"):
        load_units(tmp_path, num_heads=4, datasets={"ECL": 5})


def test_units_parity_infer_config_reads_every_size(models: dict[str, Any]) -> None:
    for arch, spec in ARCHS.items():
        reference, _ = models[arch]
        config, datasets = infer_config(reference.state_dict(), num_heads=spec.n_heads)
        assert (config.d_model, config.num_layers, config.patch_len, config.prompt_num) == (
            spec.d_model,
            spec.e_layers,
            spec.patch_len,
            spec.prompt_num,
        )
        assert (config.dynamic_width, config.max_positions) == (128, 5000)
        assert datasets["Heartbeat"] == 2


# ---- malformed and hostile files are refused ---------------------------------------------------


@pytest.fixture
def good_state(models: dict[str, Any]) -> dict[str, Tensor]:
    reference, _ = models["p4"]
    return {k: v.clone() for k, v in _ddp_state_dict(reference).items()}


def _edit_and_load(state: dict[str, Tensor], folder: Path, **kwargs: Any) -> None:
    torch.save(state, folder / "checkpoint.pth")
    load_units(folder, **{"num_heads": 1, **kwargs})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("module.blocks.0.dynamic_mlp.mlp.fc2.weight"), "missing tensors"),
        (lambda s: s.pop("module.patch_embeddings.value_embedding.weight"), "no tensor"),
        (lambda s: s.update({"module.extra.weight": torch.zeros(2)}), "unexpected tensors"),
        (
            lambda s: s.update({"module.forecast_head.proj_out.weight": torch.zeros(3, 16)}),
            "proj_out.weight",
        ),
        (lambda s: s.update({"module.prompt_tokens.ETTh1": torch.zeros(1, 3, 5, 16)}), "ETTh1"),
        (lambda s: s["module.blocks.0.seq_att_block.ls1.gate.bias"].fill_(float("nan")), "NaN"),
        (
            lambda s: s.update(
                {"module.blocks.0.var_att_block.attn_var.qkv.weight": torch.zeros(48, 16).double()}
            ),
            "float64",
        ),
        (
            lambda s: s.update({"module.blocks.3.seq_att_block.norm1.weight": torch.ones(16)}),
            "lacks blocks",
        ),
        (lambda s: s.update({"module.mask_tokens.ETTh1": torch.zeros(1, 3, 2, 16)}), "mask tokens"),
        (
            lambda s: s.update(
                {"module.patch_embeddings.value_embedding.weight": torch.zeros(9000, 4)}
            ),
            "d_model = 9000",
        ),
        (lambda s: s.update({"module.epoch": 3}), "not tensors"),
    ],
)
def test_units_parity_malformed_state_dicts_are_refused(
    good_state: dict[str, Tensor], tmp_path: Path, edit: Any, message: str
) -> None:
    edit(good_state)
    with pytest.raises(CheckpointError, match=message):
        _edit_and_load(good_state, tmp_path)


def test_units_parity_heads_must_divide_d_model(
    good_state: dict[str, Tensor], tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="divisible by num_heads"):
        _edit_and_load(good_state, tmp_path, num_heads=3)


def test_units_parity_malformed_files_are_refused(
    good_state: dict[str, Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a file written by torch.save"):
        load_units(tmp_path / "text.pth")
    torch.save(good_state, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_units(tmp_path / "truncated.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_units(tmp_path / "list.pth")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "nostudent.pth")
    with pytest.raises(CheckpointError, match="without its 'student' entry"):
        load_units(tmp_path / "nostudent.pth")
    with pytest.raises(CheckpointError, match="5 .pth files"):
        load_units(tmp_path)
    with pytest.raises(CheckpointError, match="no .pth file"):
        load_units(_empty(tmp_path))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_units(tmp_path / "absent")
    monkeypatch.setattr(units_checkpoint, "MAX_PTH_BYTES", 100)
    with pytest.raises(CheckpointError, match="above the limit"):
        load_units(tmp_path / "full.pth", num_heads=1)


def test_units_parity_compressed_archives_are_bounded_by_what_they_unpack_to(
    good_state: dict[str, Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file whose entries inflate beyond the limit is refused before torch.load."""
    torch.save(good_state, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as src:
        entries = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(tmp_path / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in entries:
            dst.writestr(name, data)
        dst.writestr(f"{entries[0][0].split('/')[0]}/padding", bytes(4 << 20))
    size = (tmp_path / "deflated.pth").stat().st_size
    monkeypatch.setattr(units_checkpoint, "MAX_PTH_BYTES", 4 << 20)
    assert size < 4 << 20
    with pytest.raises(CheckpointError, match="unpacks to"):
        load_units(tmp_path / "deflated.pth", num_heads=1)


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a hostile checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


class _Opaque:
    """An arbitrary pickled object (a custom class instance)."""

    def __init__(self) -> None:
        self.value = 1


def test_units_parity_pickled_objects_are_refused_without_running_them(
    good_state: dict[str, Tensor], tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"student": good_state, "hook": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_units(tmp_path / "evil.pth", num_heads=1)
    assert not marker.exists()
    torch.save({"student": good_state, "args": _Opaque()}, tmp_path / "opaque.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_units(tmp_path / "opaque.pth", num_heads=1)


# ---- small things ------------------------------------------------------------------------------


def test_units_forecast_token_counts_and_short_horizons_are_refused(
    models: dict[str, Any],
) -> None:
    assert forecast_token_counts(96, 96, 16) == (6, 6, 0)
    assert forecast_token_counts(37, 100, 8) == (5, 12, 3)
    with pytest.raises(ValueError, match="pred_len >= padding \\+ patch_len = 28"):
        forecast_token_counts(100, 20, 16)
    _, ours = models["p16"]
    with pytest.raises(ValueError, match="pred_len"):
        ours.forecast(_series(1, 96, seed=0), 8, "ETTh1")
    with pytest.raises(KeyError, match="add_dataset"):
        ours.forecast(_series(1, 96, seed=0), 32, "Unknown")
    with pytest.raises(ValueError, match="3 variables"):
        ours.forecast(_series(2, 96, seed=0), 32, "ECL")


def test_units_config_round_trips_and_checks_its_fields() -> None:
    config = UnitsConfig(d_model=32, num_layers=2, num_heads=4, patch_len=16, prompt_num=4)
    assert UnitsConfig.from_dict(config.to_dict()) == config
    with pytest.raises(CheckpointError, match="positive integer"):
        UnitsConfig(d_model=32, num_layers=0)
    with pytest.raises(CheckpointError, match="prompt_num"):
        UnitsConfig(d_model=32, num_layers=1, prompt_num=128)
    with pytest.raises(CheckpointError, match="unknown fields"):
        UnitsConfig.from_dict({**config.to_dict(), "n_heads": 4})


def test_units_module_builds_without_a_checkpoint() -> None:
    model = UnitsModule(
        UnitsConfig(d_model=16, num_layers=1, num_heads=2, patch_len=4, prompt_num=2)
    )
    model.add_dataset("a", 2)
    with pytest.raises(ValueError, match="already"):
        model.add_dataset("a", 2)
    with pytest.raises(ValueError, match="without '.'"):
        model.add_dataset("a.b", 2)
    assert model.eval().forecast(torch.randn(1, 9, 2), 7, "a").shape == (1, 7, 2)
    assert (
        units_mod.is_ignored_key("module.cls_head.proj_in.weight") is False
    )  # prefix stripped first
    assert units_mod.is_ignored_key("cls_head.proj_in.weight")


def test_units_fresh_module_initialises_like_the_reference(ref: types.ModuleType) -> None:
    """Without a checkpoint the position table starts sinusoidal as the reference's; built on the
    meta device (the loader's shape-only skeleton) it holds no values at all."""
    expected = ref.LearnablePositionalEmbedding(24).pe
    assert torch.equal(units_mod.LearnablePositionalEmbedding(24, 5000).pe, expected)
    config = UnitsConfig(d_model=24, num_layers=1, num_heads=2, patch_len=8, prompt_num=3)
    with torch.device("meta"):
        skeleton = UnitsModule(config, {"a": 2})
    assert all(t.is_meta for t in skeleton.state_dict().values())
    assert skeleton.prompt_tokens["a"].shape == (1, 2, 3, 24)
