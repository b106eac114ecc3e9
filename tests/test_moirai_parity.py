"""The native Moirai 1.x backbone against the vendored reference ``sktime.libs.uni2ts``.

The reference ``MoiraiModule`` is built directly with the small config and its mixture output
(no hydra), every parameter is perturbed (seeded, including the masked parts of the
per-patch-size projections), and it is written with ``save_pretrained`` in the published format
(``config.json`` rewritten to the upstream ``uni2ts.`` names, ``model.safetensors``).  Our module
is loaded from that folder by the package's loader and both are run on packed batches.

Two tolerances, for a reason: in float64 the two implementations agree to ~1e-12, which proves
they compute the same function.  In float32 both carry rounding noise of ~3e-7 in the encoder
output (measured against a float64 run, ours and the reference alike), and the mixture's normal
component with fixed scale 1e-3 amplifies a location error ``e`` into a log-density error of
``|x - mu| e / 1e-6``; where a value sits within a few 1e-3 of that component's mean no
float32 implementation short of a bitwise copy agrees to 1e-5.  The float32 tests therefore
assert 1e-5 on the mean and standard deviation everywhere and on the log density where the
fixed-scale component does not dominate (over 98% of the values), and bound the rest by the
reference's own float32 error against a float64 run.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from msft_forecast.backbones.distributions import (
    ComponentSpec,
    MixtureOutputSpec,
    moirai_mixture_spec,
    parse_distr_output,
)
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

pytest.importorskip("einops", reason="the vendored uni2ts reference needs einops")
ref_module = pytest.importorskip("sktime.libs.uni2ts.moirai_module")
ref_mixture = pytest.importorskip("sktime.libs.uni2ts.distribution.mixture")
ref_student_t = pytest.importorskip("sktime.libs.uni2ts.distribution.student_t")
ref_normal = pytest.importorskip("sktime.libs.uni2ts.distribution.normal")
ref_nb = pytest.importorskip("sktime.libs.uni2ts.distribution.negative_binomial")
ref_log_normal = pytest.importorskip("sktime.libs.uni2ts.distribution.log_normal")

SMALL = {
    "d_model": 384,
    "num_layers": 6,
    "patch_sizes": (8, 16, 32, 64, 128),
    "max_seq_len": 512,
    "attn_dropout_p": 0.0,
    "dropout_p": 0.0,
    "scaling": True,
}
ATOL = RTOL = 1e-5
F64_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# Reference, checkpoint and loading
# --------------------------------------------------------------------------------------------


def _reference(**overrides: Any) -> nn.Module:
    distr = ref_mixture.MixtureOutput(
        [
            ref_student_t.StudentTOutput(),
            ref_normal.NormalFixedScaleOutput(scale=1e-3),
            ref_nb.NegativeBinomialOutput(),
            ref_log_normal.LogNormalOutput(),
        ]
    )
    return ref_module.MoiraiModule(distr_output=distr, **{**SMALL, **overrides})


def _perturb(module: nn.Module, seed: int = 0) -> None:
    """Give every parameter seeded random values, masked projection parts included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name:
                param.copy_(1.0 + 0.1 * noise)
            elif "var_attn_bias" in name:
                param.copy_(noise)  # large enough that the variate bias matters
            else:
                param.copy_(0.02 * noise)


def _upstream_targets(config: Any) -> Any:
    """Rewrite ``sktime.libs.uni2ts.`` targets to the ``uni2ts.`` spelling of published files."""
    if isinstance(config, dict):
        return {k: _upstream_targets(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_upstream_targets(v) for v in config]
    if isinstance(config, str) and config.startswith("sktime.libs.uni2ts."):
        return config[len("sktime.libs.") :]
    return config


def moirai_config_dict() -> dict[str, Any]:
    """The published Moirai-small config.json content."""
    return MoiraiConfig.small().to_dict()


def tiny_config() -> MoiraiConfig:
    """A one-layer config small enough to build in every test."""
    return MoiraiConfig(64, 1, (8, 16), 64)


def _load_ours(folder: Path) -> MoiraiModule:
    from msft_forecast.backbones.checkpoint import load_backbone

    loaded = load_backbone(folder)
    assert loaded.kind == "moirai"
    assert isinstance(loaded.module, MoiraiModule)
    return loaded.module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    ref = _reference()
    _perturb(ref)
    ref.eval()
    folder = tmp_path_factory.mktemp("moirai-small-random")
    ref.save_pretrained(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(_upstream_targets(config), indent=2))
    return ref, folder


@pytest.fixture(scope="module")
def models(checkpoint: tuple[nn.Module, Path]) -> tuple[nn.Module, MoiraiModule]:
    ref, folder = checkpoint
    return ref, _load_ours(folder)


class _Outputs:
    """Forward passes per (model, dtype, case), computed once per module: the small model is
    costly enough on two cores that the float32 and float64 tests share them."""

    def __init__(self, ref: nn.Module, ours: MoiraiModule) -> None:
        self.models = {("ref", torch.float32): ref, ("ours", torch.float32): ours}
        self.cache: dict[tuple[str, torch.dtype, str], Any] = {}

    def __call__(self, which: str, dtype: torch.dtype, case: str) -> Any:
        key = (which, dtype, case)
        if key not in self.cache:
            if (which, dtype) not in self.models:
                self.models[which, dtype] = copy.deepcopy(self.models[which, torch.float32]).to(
                    dtype
                )
            self.cache[key] = _run(self.models[which, dtype], make_batch(*CASES[case]), dtype)
        return self.cache[key]


@pytest.fixture(scope="module")
def outputs(models: tuple[nn.Module, MoiraiModule]) -> _Outputs:
    return _Outputs(*models)


@pytest.fixture
def reference_nb_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vendored ``NegativeBinomial.sample`` lacks its default ``sample_shape``; the mixture's
    ``log_prob`` calls it without one.  Patch it here, never in sktime itself."""
    original = ref_nb.NegativeBinomial.sample

    def sample(self: Any, sample_shape: torch.Size | None = None) -> Tensor:
        return original(self, torch.Size() if sample_shape is None else sample_shape)

    monkeypatch.setattr(ref_nb.NegativeBinomial, "sample", sample)


# --------------------------------------------------------------------------------------------
# Packed batches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    """``context`` + ``horizon`` tokens of one variate of one sample."""

    sample: int
    variate: int
    context: int
    horizon: int
    patch: int
    all_missing: bool = False


CASES: dict[str, tuple[list[list[Seg]], int]] = {
    # three series packed in one row plus padding; a three-variate sample; a variate with no
    # observed context at all; a sample without horizon
    "packed_multivariate": (
        [
            [Seg(1, 0, 14, 4, 16), Seg(2, 0, 20, 6, 16), Seg(3, 0, 12, 0, 16)],
            [Seg(1, 0, 14, 4, 16), Seg(1, 1, 14, 4, 16), Seg(1, 2, 14, 4, 16, all_missing=True)],
            [Seg(1, 0, 20, 4, 16), Seg(2, 0, 14, 4, 16), Seg(2, 1, 14, 4, 16)],
        ],
        16,
    ),
    "patch_8": ([[Seg(1, 0, 48, 16, 8)], [Seg(1, 0, 30, 6, 8), Seg(2, 0, 20, 6, 8)]], 8),
    "patch_32": ([[Seg(1, 0, 24, 6, 32), Seg(2, 0, 24, 6, 32)]], 32),
    "patch_64": ([[Seg(1, 0, 20, 4, 64), Seg(1, 1, 20, 4, 64)]], 64),
    "patch_128": ([[Seg(1, 0, 24, 4, 128), Seg(2, 0, 20, 4, 128)]], 128),
    # patch sizes differ across samples; padding tokens carry the unknown patch size 0
    "mixed_patch_sizes": (
        [
            [Seg(1, 0, 24, 6, 8), Seg(2, 0, 24, 6, 32)],
            [Seg(1, 0, 14, 4, 128), Seg(1, 1, 14, 4, 128), Seg(2, 0, 20, 4, 64)],
        ],
        0,
    ),
}
N_TOKENS = 64
MAX_PATCH = 128


def make_batch(rows: list[list[Seg]], pad_patch: int, seed: int = 1) -> dict[str, Tensor]:
    """Pack segments row by row (uni2ts layout), pad each row to ``N_TOKENS``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (len(rows), N_TOKENS)
    batch = {
        "target": torch.zeros(*shape, MAX_PATCH),
        "observed_mask": torch.zeros(*shape, MAX_PATCH, dtype=torch.bool),
        "sample_id": torch.zeros(shape, dtype=torch.long),
        "time_id": torch.zeros(shape, dtype=torch.long),
        "variate_id": torch.zeros(shape, dtype=torch.long),
        "prediction_mask": torch.zeros(shape, dtype=torch.bool),
        "patch_size": torch.full(shape, pad_patch, dtype=torch.long),
    }
    for r, segs in enumerate(rows):
        pos = 0
        for seg in segs:
            n = seg.context + seg.horizon
            sl = slice(pos, pos + n)
            level, spread = (
                10 * torch.randn(1, generator=gen),
                0.5 + 3 * torch.rand(1, generator=gen),
            )
            values = level + spread * torch.randn(n, MAX_PATCH, generator=gen)
            observed = torch.arange(MAX_PATCH) < seg.patch
            observed = observed & (torch.rand(n, MAX_PATCH, generator=gen) > 0.15)
            if seg.all_missing:
                observed[: seg.context] = False
            batch["target"][r, sl] = torch.where(observed, values, 0.0)  # imputed, as uni2ts does
            batch["observed_mask"][r, sl] = observed
            batch["sample_id"][r, sl] = seg.sample
            batch["variate_id"][r, sl] = seg.variate
            batch["time_id"][r, sl] = torch.arange(n)
            batch["prediction_mask"][r, pos + seg.context : pos + n] = True
            batch["patch_size"][r, sl] = seg.patch
            pos += n
        assert pos <= N_TOKENS
    return batch


def evaluation_points(batch: dict[str, Tensor], seed: int = 2) -> Tensor:
    """Values to score: noisy targets, some exact non-negative integers and zeros."""
    gen = torch.Generator().manual_seed(seed)
    target = batch["target"]
    noisy = target + 0.5 * torch.randn(target.shape, generator=gen)
    counts = target.abs().round()
    pick = torch.rand(target.shape, generator=gen)
    return torch.where(pick < 0.2, counts, noisy)


def _run(model: nn.Module, batch: dict[str, Tensor], dtype: torch.dtype) -> Any:
    args = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    with torch.no_grad():
        return model(**args)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_state_dict_parity(models: tuple[nn.Module, MoiraiModule]) -> None:
    ref, ours = models
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert len(our_sd) == 94
    assert list(our_sd) == list(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {
        k: tuple(v.shape) for k, v in ref_sd.items()
    }
    for key, value in ref_sd.items():
        assert torch.equal(our_sd[key], value), key
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in ref.parameters())
    assert 13.8e6 < n_params < 13.9e6


def test_base_config_state_dict_parity() -> None:
    """Shapes for Moirai-base, built on the meta device (no memory for weights)."""
    with torch.device("meta"):
        ref = _reference(d_model=768, num_layers=12)
        ours = MoiraiModule(MoiraiConfig.base())
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == ref_shapes
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_config_parity(checkpoint: tuple[nn.Module, Path]) -> None:
    _, folder = checkpoint
    published = json.loads((folder / "config.json").read_text())
    config = MoiraiConfig.from_dict(published)
    assert config == MoiraiConfig.small()
    assert config.distr_output == moirai_mixture_spec(1e-3)
    assert config.to_dict() == published
    assert (config.num_heads, config.head_dim, config.d_ff) == (6, 64, 1024)
    # the vendored spelling parses to the same spec
    vendored = json.loads(json.dumps(published).replace('"uni2ts.', '"sktime.libs.uni2ts.'))
    assert MoiraiConfig.from_dict(vendored) == config


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_parity_float64(outputs: _Outputs, case: str, reference_nb_fixed: None) -> None:
    expected, actual = outputs("ref", torch.float64, case), outputs("ours", torch.float64, case)
    y = evaluation_points(make_batch(*CASES[case])).double()
    tol = {"atol": F64_TOL, "rtol": F64_TOL}
    assert actual.mean.dtype == torch.float64
    assert_close(actual.mean, expected.mean, **tol)
    assert_close(actual.stddev, expected.stddev, **tol)
    assert_close(actual.log_prob(y), expected.log_prob(y), **tol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_parity_float32(outputs: _Outputs, case: str, reference_nb_fixed: None) -> None:
    expected, actual = outputs("ref", torch.float32, case), outputs("ours", torch.float32, case)
    assert actual.mean.dtype == torch.float32
    assert_close(actual.mean, expected.mean, atol=ATOL, rtol=RTOL)
    assert_close(actual.stddev, expected.stddev, atol=ATOL, rtol=RTOL)

    y = evaluation_points(make_batch(*CASES[case]))
    ours_lp, ref_lp = actual.log_prob(y), expected.log_prob(y)
    assert ours_lp.shape == y.shape
    # Responsibility of the fixed-scale normal (component 1) for each value, from the reference.
    base = expected.base_dist
    x = (y - expected.loc) / expected.scale
    normal_lp = base.weights.logits[..., 1] + base.components[1].log_prob(x)
    conditioned = (normal_lp - (ref_lp + expected.scale.log())).exp() < 1e-3
    assert conditioned.float().mean() > 0.95  # the exclusion is the exception
    assert_close(ours_lp[conditioned], ref_lp[conditioned], atol=ATOL, rtol=RTOL)
    # Elsewhere: about as far from the float64 truth as the reference itself (both ~1e-3 here;
    # a modelling error would be off by orders of magnitude more).
    truth = outputs("ref", torch.float64, case).log_prob(y.double())
    ours_err = (ours_lp.double() - truth).abs().max()
    ref_err = (ref_lp.double() - truth).abs().max()
    assert ours_err <= 4 * ref_err + 1e-4, (ours_err, ref_err)


def test_stage_api_parity(models: tuple[nn.Module, MoiraiModule]) -> None:
    """The public stages composed by hand give bit-for-bit the forward pass."""
    _, ours = models
    batch = make_batch(*CASES["packed_multivariate"])
    with torch.no_grad():
        full = ours(**batch)
        scaled, loc, scale = ours.standardize(
            batch["target"],
            batch["observed_mask"],
            batch["sample_id"],
            batch["variate_id"],
            batch["prediction_mask"],
        )
        x = ours.embed(scaled, batch["patch_size"], batch["prediction_mask"])
        ctx = ours.attention_bias(batch["sample_id"], batch["variate_id"], batch["time_id"])
        for layer in ours.encoder.layers:
            x = layer(x, ctx, scale_ctx=None)
        staged = ours.distribution(ours.encoder.norm(x), batch["patch_size"], loc, scale)
    assert torch.equal(staged.mean, full.mean)
    assert loc.shape == scale.shape == (*batch["sample_id"].shape, 1)
    assert torch.equal(loc[batch["sample_id"] == 0], torch.zeros_like(loc[batch["sample_id"] == 0]))
    assert torch.equal(
        scale[batch["sample_id"] == 0], torch.ones_like(scale[batch["sample_id"] == 0])
    )


def test_gradient_parity_float64(
    models: tuple[nn.Module, MoiraiModule], reference_nb_fixed: None
) -> None:
    """The negative log-likelihood has the same gradient for every parameter."""
    ref, ours = models
    ref64, ours64 = copy.deepcopy(ref).double().train(), copy.deepcopy(ours).double().train()
    batch = make_batch([[Seg(1, 0, 10, 4, 16), Seg(1, 1, 10, 4, 16), Seg(2, 0, 12, 4, 16)]], 16)
    args = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    y = evaluation_points(batch).double()
    loss_mask = batch["observed_mask"] & batch["prediction_mask"].unsqueeze(-1)
    for model in (ref64, ours64):
        (-model(**args).log_prob(y)[loss_mask].mean()).backward()
    ref_grads = dict(ref64.named_parameters())
    for name, param in ours64.named_parameters():
        expected = ref_grads[name].grad
        actual = param.grad if param.grad is not None else torch.zeros_like(param)
        assert_close(actual, expected, atol=1e-8, rtol=1e-7, msg=name)


class _RecordingDelta(nn.Module):
    """A LoRA-like delta: ``factor * x[..., :1] * ones`` shaped like the projection output."""

    def __init__(self, out_features: int, factor: float, calls: list[Any]) -> None:
        super().__init__()
        self.out_features, self.factor, self.calls = out_features, factor, calls

    def forward(self, x: Tensor, scale_ctx: Any) -> Tensor:
        self.calls.append(scale_ctx)
        return self.factor * x[..., :1].expand(*x.shape[:-1], self.out_features)


class _ZeroAggregator(nn.Module):
    def __init__(self, calls: list[Any]) -> None:
        super().__init__()
        self.calls = calls

    def forward(self, x: Tensor, scale_ctx: Any) -> Tensor:
        self.calls.append(scale_ctx)
        return torch.zeros_like(x)


def _fill_slots(model: MoiraiModule, factor: float, calls: list[Any]) -> None:
    d, hidden = model.config.d_model, model.config.d_ff
    for layer in model.encoder.layers:
        for name in ("q", "k", "v", "out"):
            layer.self_attn.lora[name] = _RecordingDelta(d, factor, calls)
        for name, width in (("fc1", hidden), ("fc_gate", hidden), ("fc2", d)):
            layer.ffn.lora[name] = _RecordingDelta(width, factor, calls)
        layer.aggregator = _ZeroAggregator(calls)


def test_hook_slots_parity(models: tuple[nn.Module, MoiraiModule]) -> None:
    """Empty slots add no weights and change nothing; filled slots are called with scale_ctx."""
    _, ours = models
    batch = make_batch(*CASES["mixed_patch_sizes"])
    for layer in ours.encoder.layers:
        assert len(layer.self_attn.lora) == 0 and len(layer.ffn.lora) == 0
        assert layer.aggregator is None
    assert not any("lora" in k or "aggregator" in k for k in ours.state_dict())
    with torch.no_grad():
        plain = ours(**batch).mean
        with_ctx = ours(**batch, scale_ctx=object()).mean
    assert torch.equal(plain, with_ctx)

    model = copy.deepcopy(ours)
    calls: list[Any] = []
    _fill_slots(model, 0.0, calls)  # zero deltas: bit-for-bit the backbone
    marker = object()
    with torch.no_grad():
        assert torch.equal(model(**batch, scale_ctx=marker).mean, plain)
    assert len(calls) == model.num_layers * 8 and all(c is marker for c in calls)

    _fill_slots(model, 0.05, calls)  # live deltas reach the output
    with torch.no_grad():
        assert not torch.allclose(model(**batch).mean, plain)


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "builtins.eval",
        "evil.module.Class",
        "msft_forecast_made_up_module_xyz.Payload",
        "uni2ts.distribution.made_up_module_xyz.StudentTOutput",
        "uni2ts.distribution.student_t.StudentT",
        "sktime.libs.uni2ts.distribution.mixture.MixtureOutput.__init__",
        "uni2ts.distribution.student_t.StudentTOutput.__class__",
    ],
)
def test_unknown_target_refused(target: str, tmp_path: Path) -> None:
    made_up = "msft_forecast_made_up_module_xyz"
    before = set(sys.modules)
    top = {"_target_": target, "components": []}
    nested = moirai_config_dict()
    nested["distr_output"]["components"][2] = {"_target_": target}
    for distr in (top, nested["distr_output"]):
        with pytest.raises(CheckpointError, match="refusing unknown distribution class"):
            parse_distr_output(distr)
    config = moirai_config_dict()
    config["distr_output"] = top
    with pytest.raises(CheckpointError):
        MoiraiConfig.from_dict(config)
    # through the package loader, with valid weights next to the malicious config
    from msft_forecast.backbones.checkpoint import load_backbone, save_checkpoint

    save_checkpoint(tmp_path, config, MoiraiModule(tiny_config()))
    with pytest.raises(CheckpointError):
        load_backbone(tmp_path)
    assert made_up not in sys.modules
    named_root = target.split(".")[0]
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] == named_root]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d_model": None}, "lacks required fields"),
        ({"d_model": 100.5}, "d_model must be a positive integer"),
        ({"num_layers": 0}, "num_layers must be a positive integer"),
        ({"patch_sizes": []}, "patch_sizes must be a non-empty list"),
        ({"patch_sizes": [8, 8]}, "distinct"),
        ({"patch_sizes": "8,16"}, "patch_sizes must be a non-empty list"),
        ({"dropout_p": 1.5}, "dropout_p must be in"),
        ({"scaling": "yes"}, "scaling must be true or false"),
        ({"num_experts": 32}, "unexpected fields"),
        ({"distr_output": {"_target_": "uni2ts.distribution.mixture.MixtureOutput"}}, "exactly"),
        (
            {
                "distr_output": {
                    "_target_": "uni2ts.distribution.normal.NormalFixedScaleOutput",
                    "scale": -1.0,
                }
            },
            "positive scale",
        ),
    ],
)
def test_invalid_config_errors(change: dict[str, Any], message: str) -> None:
    config = moirai_config_dict()
    for key, value in change.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    with pytest.raises(CheckpointError, match=message):
        MoiraiConfig.from_dict(config)


def test_single_component_output_parity() -> None:
    """A bare (non-mixture) output has uni2ts' layout and round-trips through config.json."""
    spec = parse_distr_output({"_target_": "uni2ts.distribution.student_t.StudentTOutput"})
    assert spec == ComponentSpec("student_t")
    ref = ref_module.MoiraiModule(
        distr_output=ref_student_t.StudentTOutput(), **{**SMALL, "num_layers": 1}
    )
    ours = MoiraiModule(MoiraiConfig(384, 1, SMALL["patch_sizes"], 512, distr_output=spec))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    _perturb(ref, seed=3)
    ours.load_state_dict(ref.state_dict())
    batch = make_batch(*CASES["patch_32"])
    ref64, ours64 = ref.eval().double(), ours.double()
    expected, actual = _run(ref64, batch, torch.float64), _run(ours64, batch, torch.float64)
    y = evaluation_points(batch).double()
    assert_close(actual.mean, expected.mean, atol=F64_TOL, rtol=F64_TOL)
    assert_close(actual.log_prob(y), expected.log_prob(y), atol=F64_TOL, rtol=F64_TOL)
    mixture = MixtureOutputSpec((ComponentSpec("normal"), ComponentSpec("log_normal")))
    assert (
        parse_distr_output(
            MoiraiConfig(64, 1, (8,), 64, distr_output=mixture).to_dict()["distr_output"]
        )
        == mixture
    )


def test_bf16_autocast_close_to_float32(models: tuple[nn.Module, MoiraiModule]) -> None:
    _, ours = models
    batch = make_batch(*CASES["packed_multivariate"])
    y = evaluation_points(batch)
    with torch.no_grad():
        fp32 = ours(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = ours(**batch)
            lp = bf16.log_prob(y)
    for value in (bf16.mean, bf16.stddev, lp):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
    scale = fp32.stddev
    assert ((bf16.mean - fp32.mean).abs() / scale).median() < 0.05
    assert ((bf16.mean - fp32.mean).abs() / scale).max() < 1.0


def test_sample_moments() -> None:
    """Samples have the model's shape and the moments of the distribution they come from."""
    torch.manual_seed(0)
    model = MoiraiModule(tiny_config()).eval()
    batch = make_batch([[Seg(1, 0, 6, 2, 8), Seg(2, 0, 5, 3, 16)]], 8)
    # the tiny config has no patch size 128: cut the batch to its max patch
    batch["target"] = batch["target"][..., :16]
    batch["observed_mask"] = batch["observed_mask"][..., :16]
    with torch.no_grad():
        distr = model(**batch)
        draws = distr.sample((4000,))
    assert distr.batch_shape == distr.mean.shape == batch["target"].shape
    assert draws.shape == (4000, *distr.batch_shape)
    assert torch.isfinite(draws).all()
    valid = batch["sample_id"] > 0
    err = (draws.mean(0) - distr.mean).abs() / (distr.stddev / 4000**0.5)
    assert err[valid].median() < 2.0  # heavy tails (Student t) make the max unreliable
