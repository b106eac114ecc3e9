"""The native MOMENT-1 backbone against the vendored reference ``sktime.libs.momentfm``.

The reference is built offline the way BACKBONES.md describes: a local ``T5Config`` with the
MOMENT-small sizes saved to a temporary folder and passed as ``transformer_backbone`` together
with ``d_model`` and ``randomly_initialize_backbone`` as model kwargs.  All its weights are then
perturbed (seeded), written as a published-format checkpoint (``config.json`` with ``t5_config``
and ``model.safetensors`` including the unused ``encoder.embed_tokens.weight``) and loaded with
the package's loader.  Nothing touches the network.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from msft_forecast.backbones import moment as moment_mod
from msft_forecast.backbones.checkpoint import load_backbone
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.moment import (
    IGNORED_CHECKPOINT_KEYS,
    MomentConfig,
    MomentModule,
)

transformers = pytest.importorskip("transformers", reason="the reference needs transformers<6")
momentfm = pytest.importorskip("sktime.libs.momentfm")
safetensors_torch = pytest.importorskip("safetensors.torch")

ATOL = 1e-5
SMALL_T5 = {
    "d_model": 512,
    "d_ff": 1024,
    "d_kv": 64,
    "num_heads": 6,
    "num_layers": 8,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
    "vocab_size": 32128,
}


def _published_config() -> dict[str, Any]:
    """A config.json laid out like AutonLab/MOMENT-1-small's."""
    return {
        "task_name": "reconstruction",
        "model_name": "MOMENT",
        "transformer_type": "encoder_only",
        "d_model": None,
        "seq_len": 512,
        "patch_len": 8,
        "patch_stride_len": 8,
        "device": "cpu",
        "transformer_backbone": "google/flan-t5-small",
        "model_kwargs": {},
        "t5_config": transformers.T5Config(**SMALL_T5).to_dict(),
    }


@torch.no_grad()
def _perturb(module: nn.Module, seed: int) -> None:
    """Move every weight away from its initialisation so that parity means something."""
    g = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        noise = torch.randn(tensor.shape, generator=g)
        if name.endswith("layer_norm.weight"):
            tensor.copy_(1.0 + 0.2 * noise)
        elif "relative_attention_bias" in name or name.endswith("mask_embedding"):
            tensor.copy_(noise)
        elif name.endswith("position_embedding.pe"):
            tensor.add_(0.01 * noise)  # proves the stored buffer, not a recomputed one, is used
        elif tensor.dim() == 1:
            tensor.copy_(0.1 * noise)
        else:
            tensor.add_(0.5 * tensor.std() * noise)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    t5_dir = tmp_path_factory.mktemp("t5_small_config")
    transformers.T5Config(**SMALL_T5).save_pretrained(t5_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gradient_checkpointing_enable deprecation notice
        ref = momentfm.MOMENTPipeline(
            _published_config(),
            model_kwargs={
                "task_name": "reconstruction",
                "transformer_backbone": str(t5_dir),
                "d_model": 512,
                "randomly_initialize_backbone": True,
            },
        )
    ref.init()
    _perturb(ref, seed=0)
    return ref.eval()


@pytest.fixture(scope="module")
def checkpoint_dir(reference: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("moment_small_ckpt")
    (folder / "config.json").write_text(json.dumps(_published_config()), encoding="utf-8")
    tensors = {k: v.contiguous() for k, v in reference.state_dict().items()}
    safetensors_torch.save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def ours(checkpoint_dir: Path) -> MomentModule:
    """The package's loader reading the published-format folder, as a user's call would."""
    loaded = load_backbone(str(checkpoint_dir))
    assert loaded.kind == "moment"
    assert isinstance(loaded.module, MomentModule)
    return loaded.module.eval()


def _batch(case: str, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Random series (B, C, 512) with a trend, and an input mask with left padding."""
    g = torch.Generator().manual_seed(seed)
    pads = {"full": [0, 0, 0], "left_padding": [0, 100, 257, 8, 504], "channels": [37, 0]}[case]
    channels = 3 if case == "channels" else 1
    x = 3.0 * torch.randn(len(pads), channels, 512, generator=g) + torch.linspace(-4, 9, 512)
    input_mask = torch.ones(len(pads), 512)
    for row, pad in enumerate(pads):
        input_mask[row, :pad] = 0
        x[row, :, :pad] = float("nan") if row % 2 else 0.0  # padding content must not matter
    return x, input_mask


def _with_hidden(model: nn.Module, run: Any) -> tuple[Tensor, Tensor]:
    """Output of ``run()`` and the encoder output (B * C, N, d) seen on the way."""
    captured: list[Any] = []
    hook = model.encoder.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            out = run()
    finally:
        hook.remove()
    (hidden,) = captured
    return out, getattr(hidden, "last_hidden_state", hidden)  # HF returns a ModelOutput


# ---- parity ----------------------------------------------------------------------------------


def test_state_dict_parity_names_and_shapes(reference: nn.Module, ours: MomentModule) -> None:
    ref_sd = reference.state_dict()
    own_sd = ours.state_dict()
    assert len(ref_sd) == 80  # the published MOMENT-1-small has 80 tensors
    expected = {k: tuple(v.shape) for k, v in ref_sd.items() if k not in IGNORED_CHECKPOINT_KEYS}
    assert {k: tuple(v.shape) for k, v in own_sd.items()} == expected
    assert "encoder.embed_tokens.weight" in ref_sd
    assert not hasattr(ours.encoder, "embed_tokens")
    n_ref = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_ref - 32128 * 512


@pytest.mark.parametrize("case", ["full", "left_padding", "channels"])
def test_reconstruction_and_hidden_state_parity(
    reference: nn.Module, ours: MomentModule, case: str
) -> None:
    x, input_mask = _batch(case)
    ref_out, ref_hidden = _with_hidden(reference, lambda: reference(x_enc=x, input_mask=input_mask))
    rec, hidden = _with_hidden(ours, lambda: ours.reconstruct(x, input_mask))
    ref_rec = ref_out.reconstruction
    assert rec.shape == x.shape
    assert torch.isfinite(rec).all()
    torch.testing.assert_close(rec, ref_rec, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, ref_hidden, atol=ATOL, rtol=0)


def test_reconstruction_parity_with_pretraining_mask(
    reference: nn.Module, ours: MomentModule
) -> None:
    x, input_mask = _batch("left_padding", seed=2)
    g = torch.Generator().manual_seed(3)
    patch_keep = (torch.rand(x.shape[0], 64, generator=g) > 0.3).float()
    mask = patch_keep.repeat_interleave(8, dim=-1)  # hidden patches take mask_embedding
    ref_out, ref_hidden = _with_hidden(
        reference, lambda: reference(x_enc=x, input_mask=input_mask, mask=mask)
    )
    rec, hidden = _with_hidden(ours, lambda: ours.reconstruct(x, input_mask, mask))
    ref_rec = ref_out.reconstruction
    torch.testing.assert_close(rec, ref_rec, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, ref_hidden, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["left_padding", "channels"])
def test_embed_parity(reference: nn.Module, ours: MomentModule, case: str) -> None:
    x, input_mask = _batch(case, seed=4)
    with torch.no_grad():
        expected = reference.embed(x_enc=x, input_mask=input_mask).embeddings
        got = ours.embed(x, input_mask)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_position_bias_parity(reference: nn.Module, ours: MomentModule) -> None:
    n = 300  # offsets well beyond max_distance 128 exercise the log buckets and the clamp
    attn = reference.encoder.block[0].layer[0].SelfAttention
    with torch.no_grad():
        expected = attn.compute_bias(n, n)
        got = ours.position_bias(torch.arange(n)[None])
    assert got.shape == (1, 6, n, n)
    assert torch.equal(got, expected)


def test_gradient_parity(reference: nn.Module, ours: MomentModule) -> None:
    x, input_mask = _batch("left_padding", seed=5)
    x, input_mask = x[1:4], input_mask[1:4]  # three padded rows keep the test fast
    ref = copy.deepcopy(reference).requires_grad_(True)  # the reference freezes its encoder
    own = copy.deepcopy(ours).requires_grad_(True)
    observed = input_mask[:, None, :].bool()
    target = torch.nan_to_num(x)
    for model, rec in (
        (ref, lambda: ref(x_enc=x, input_mask=input_mask).reconstruction),
        (own, lambda: own.reconstruct(x, input_mask)),
    ):
        ((rec() - target)[observed.expand_as(x)] ** 2).mean().backward()
        assert all(
            p.grad is not None
            for n, p in model.named_parameters()
            if n not in IGNORED_CHECKPOINT_KEYS
        )
    ref_params = dict(ref.named_parameters())
    for name, param in own.named_parameters():
        expected = ref_params[name].grad
        scale = expected.abs().max().clamp_min(1e-12)
        torch.testing.assert_close(
            param.grad / scale, expected / scale, atol=1e-5, rtol=0, msg=f"gradient of {name}"
        )


def test_gradient_checkpointing_gives_the_same_gradients(ours: MomentModule) -> None:
    x, input_mask = _batch("left_padding", seed=10)
    x, input_mask = x[1:3, 0], input_mask[1:3]
    grads, block_calls = [], []
    for enabled in (False, True):
        model = copy.deepcopy(ours).train()  # dropout on: the recomputation must replay it
        model.set_gradient_checkpointing(enabled)
        calls: list[int] = []
        model.encoder.block[0].layer[0].SelfAttention.q.register_forward_hook(
            lambda *_, c=calls: c.append(1)
        )
        torch.manual_seed(0)
        model.reconstruct(x, input_mask).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        block_calls.append(len(calls))
    assert block_calls == [1, 2]  # checkpointing recomputed the block during backward
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=f"gradient of {name}")


# ---- the stage API the multi-scale engine composes ---------------------------------------------


def test_stages_compose_to_reconstruct(ours: MomentModule) -> None:
    x, input_mask = _batch("left_padding", seed=6)
    x, input_mask = x[1:4, 0], input_mask[1:4]
    with torch.no_grad():
        observed = ours.patch_mask(input_mask)  # (B, 64)
        step_mask = observed.repeat_interleave(8, dim=-1)
        x_norm, stats = ours.normalize(x, step_mask)
        tokens = ours.patchify_embed(x_norm, observed)  # a patch-level mask works too
        hidden = ours.encode(tokens, ours.attention_bias(observed))
        rec = ours.denormalize(ours.head(hidden), stats)
        expected = ours.reconstruct(x, input_mask)
    assert tokens.shape == (x.shape[0], 64, 512)
    assert stats.mean.shape == stats.stdev.shape == (x.shape[0], 1)
    assert torch.equal(rec, expected)


def test_restarted_positions_and_block_mask_isolate_segments(ours: MomentModule) -> None:
    """Two scales packed into one pass get exactly what each gets when encoded alone."""
    g = torch.Generator().manual_seed(7)
    batch = 2
    x_a = torch.randn(batch, 512, generator=g).cumsum(-1)  # scale 0: 64 patches
    x_b = torch.randn(batch, 256, generator=g).cumsum(-1)  # scale 1: 32 patches
    mask_a = torch.ones(batch, 512)
    mask_a[1, :203] = 0  # left padding inside the first segment only
    with torch.no_grad():
        tok_a = ours.patchify_embed(ours.normalize(x_a, mask_a)[0], mask_a)
        tok_b = ours.patchify_embed(ours.normalize(x_b)[0])
        keys_a = ours.patch_mask(mask_a)
        alone_a = ours.encode(tok_a, ours.attention_bias(keys_a))
        alone_b = ours.encode(tok_b, ours.attention_bias(n_tokens=32))

        segment = torch.cat([torch.zeros(64), torch.ones(32)]).long()
        position_ids = torch.cat([torch.arange(64), torch.arange(32)])[None].expand(batch, -1)
        keys = torch.cat([keys_a, torch.ones(batch, 32, dtype=torch.bool)], dim=1)
        pairs = (segment[:, None] == segment[None, :])[None] & keys[:, None, :]  # (B, 96, 96)
        packed = ours.encode(torch.cat([tok_a, tok_b], 1), ours.attention_bias(pairs, position_ids))
    torch.testing.assert_close(packed[:, :64], alone_a, atol=ATOL, rtol=0)
    torch.testing.assert_close(packed[:, 64:], alone_b, atol=ATOL, rtol=0)


# ---- extension slots -------------------------------------------------------------------------


class _Delta(nn.Module):
    """A projection delta or aggregator that records the scale_ctx it was handed."""

    def __init__(self, out_features: int, value: float) -> None:
        super().__init__()
        self.out_features = out_features
        self.value = nn.Parameter(torch.tensor(value))
        self.seen: list[Any] = []

    def forward(self, x: Tensor, scale_ctx: Any) -> Tensor:
        self.seen.append(scale_ctx)
        return self.value * torch.ones(*x.shape[:-1], self.out_features)


def _fill_slots(model: MomentModule, value: float) -> list[_Delta]:
    cfg = model.config
    sizes = {
        "q": cfg.inner_dim,
        "k": cfg.inner_dim,
        "v": cfg.inner_dim,
        "o": cfg.d_model,
        "wi_0": cfg.d_ff,
        "wi_1": cfg.d_ff,
        "wo": cfg.d_model,
    }
    slots = []
    for block in model.encoder.block:
        for owner, names in (
            (block.layer[0].SelfAttention, "q k v o"),
            (block.layer[1].DenseReluDense, "wi_0 wi_1 wo"),
        ):
            for name in names.split():
                owner.lora[name] = _Delta(sizes[name], value)
                slots.append(owner.lora[name])
        block.aggregator = _Delta(cfg.d_model, value)
        slots.append(block.aggregator)
    return slots


def test_empty_slots_change_nothing(ours: MomentModule, monkeypatch: pytest.MonkeyPatch) -> None:
    x, input_mask = _batch("left_padding", seed=8)
    x, input_mask = x[1:3], input_mask[1:3]
    for block in ours.encoder.block:
        assert block.aggregator is None
        assert len(block.layer[0].SelfAttention.lora) == 0
        assert len(block.layer[1].DenseReluDense.lora) == 0
    with torch.no_grad():
        with_slots = ours.reconstruct(x, input_mask)
        # The same module with the slot code bypassed entirely.
        monkeypatch.setattr(moment_mod, "apply_delta", lambda _lora, _name, _x, y, _ctx: y)
        without_slots = ours.reconstruct(x, input_mask)
        monkeypatch.undo()
        zero_filled = copy.deepcopy(ours)
        _fill_slots(zero_filled, 0.0)
        with_zero_slots = zero_filled.reconstruct(x, input_mask)
    assert torch.equal(with_slots, without_slots)
    assert torch.equal(with_slots, with_zero_slots)


def test_filled_slots_act_and_receive_scale_ctx(ours: MomentModule) -> None:
    model = copy.deepcopy(ours)
    slots = _fill_slots(model, 0.01)
    extra = set(model.state_dict()) - set(ours.state_dict())
    assert extra and all(".lora." in k or ".aggregator." in k for k in extra)
    x, input_mask = _batch("full", seed=9)
    x, input_mask = x[:2, 0], input_mask[:2]
    ctx = object()
    with torch.no_grad():
        x_norm, _ = model.normalize(x, input_mask)
        tokens = model.patchify_embed(x_norm, input_mask)
        bias = model.attention_bias(model.patch_mask(input_mask))
        changed = model.encode(tokens, bias, scale_ctx=ctx)
        plain = ours.encode(tokens, bias)
    assert not torch.allclose(changed, plain)
    assert all(slot.seen == [ctx] for slot in slots)


# ---- config and loading ----------------------------------------------------------------------


def test_config_from_published_dict_round_trips() -> None:
    published = json.loads(json.dumps(_published_config()))  # as read from the file
    cfg = MomentConfig.from_dict(published)
    assert (cfg.d_model, cfg.d_ff, cfg.d_kv, cfg.num_heads, cfg.num_layers) == (512, 1024, 64, 6, 8)
    assert (cfg.seq_len, cfg.patch_len, cfg.n_patches, cfg.inner_dim) == (512, 8, 64, 384)
    assert not cfg.revin_affine and cfg.add_positional_embedding
    written = json.loads(json.dumps(cfg.to_dict()))
    assert MomentConfig.from_dict(written) == cfg
    assert written["t5_config"]["vocab_size"] == 32128  # unused entries survive
    assert MomentConfig.preset("small").to_dict()["t5_config"]["num_layers"] == 8


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("t5_config"), "t5_config"),
        (lambda c: c["t5_config"].pop("num_heads"), "num_heads"),
        (lambda c: c["t5_config"].update(feed_forward_proj="relu"), "gated-gelu"),
        (lambda c: c["t5_config"].update(num_layers="8"), "integer"),
        (lambda c: c.update(d_model=768), "disagrees"),
        (lambda c: c.update(patch_stride_len=4), "patch_stride_len"),
        (lambda c: c.update(transformer_type="encoder_decoder"), "encoder_only"),
        (lambda c: c.update(revin_affine="no"), "true or false"),
    ],
)
def test_config_errors_are_clear(edit: Any, message: str) -> None:
    config = _published_config()
    edit(config)
    with pytest.raises(CheckpointError, match=message):
        MomentConfig.from_dict(config)


def test_loader_skips_embed_tokens_and_names_bad_tensors(reference: nn.Module) -> None:
    module = MomentModule(MomentConfig.from_dict(_published_config()))
    state = dict(reference.state_dict())
    module.load_published_state_dict(state)  # contains encoder.embed_tokens.weight
    assert torch.equal(module.head.linear.weight, reference.head.linear.weight)
    wrong = dict(state)
    wrong["head.linear.weight"] = torch.zeros(4, 512)
    with pytest.raises(CheckpointError, match="head.linear.weight"):
        module.load_published_state_dict(wrong)
    missing = {k: v for k, v in state.items() if k != "encoder.final_layer_norm.weight"}
    with pytest.raises(CheckpointError, match="encoder.final_layer_norm.weight"):
        module.load_published_state_dict(missing)
