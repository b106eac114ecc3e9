"""Pre-train a small Moirai on the synthetic corpus with Moirai's masked-forecast objective.

Run ``python -m tools.pretrain.pretrain --out DIR --minutes M --seed S``.  A run is a
pure function of its settings and seed (for a fixed number of threads): the data stream comes
from one seeded :class:`numpy.random.Generator`, the model from a seeded torch generator.

Objective (as in uni2ts' Moirai pre-training): each synthetic window is split into a context and
a horizon at the end, patched with a patch size suited to its simulated sampling rate, the
horizon tokens are flagged in ``prediction_mask`` (the model replaces them with its mask
embedding and never sees their values, nor uses them for scaling), and the loss is the negative
log-likelihood of the mixture distribution on the observed horizon entries: averaged over the
entries of each series, then over the series of the batch (uni2ts ``PackedNLLLoss``).  There is
no loss on the context.  Several windows are packed into each row of the batch (``sample_id``
separates them; attention stays inside a window).

Files written to ``--out``:

* ``state.pt`` every few minutes and at the end: model, optimizer, data-RNG and torch-RNG states,
  step, schedule, per-step losses; a killed run restarted with the same command resumes exactly.
* At the end: ``config.json`` (published Moirai format), ``model.safetensors`` (float32 weights
  only) and ``training_record.json`` (settings, corpus, counts, versions, wall time, loss curve).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from msft_forecast.backbones.distributions import distr_output_to_dict, moirai_mixture_spec
from tools.pretrain.synthetic import (
    CORPORA,
    SyntheticSeries,
    corpus_description,
    iter_training_windows,
)

STATE_FILE = "state.pt"
RECORD_FILE = "training_record.json"

#: Patch sizes suited to each simulated sampling rate (after uni2ts' frequency constraints,
#: widened by one size towards the small end for hourly data).
FREQ_PATCH_SIZES: dict[str, tuple[int, ...]] = {
    "h": (16, 32, 64),
    "15min": (32, 64, 128),
    "10min": (32, 64, 128),
    "D": (16, 32),
    "W": (16, 32),
    "M": (8, 16, 32),
    # corpus v2's rates: uni2ts' sizes for quarterly and yearly data; any small size unlabelled
    "Q": (8,),
    "Y": (8,),
    "int": (8, 16, 32),
}

#: Horizons of the long-horizon benchmarks; "eval-like" windows use one of them.
STANDARD_HORIZONS: tuple[int, ...] = (96, 192, 336, 720)

# Settings that may change between a run and its resumption (they do not alter the trajectory,
# except that a different thread count may change floating-point rounding).
_RESUMABLE_CHANGES = frozenset({"minutes", "threads", "log_every", "checkpoint_minutes"})


@dataclass
class PretrainConfig:
    """All settings of a pre-training run.

    Attributes
    ----------
    d_model, num_layers, patch_sizes, max_seq_len
        Moirai architecture (the mixture head is always the published four-component one).
    batch_size : int
        Windows per optimisation step.
    row_tokens : int
        Capacity (tokens) of one packed row; windows longer than this are cropped on the left.
    min_length, max_length, typical_length, typical_prob
        Window lengths (steps), see
        :func:`~tools.pretrain.synthetic.iter_training_windows`.
    eval_like_prob : float
        Probability that the horizon is one of :data:`STANDARD_HORIZONS` (when it fits in half
        the window) rather than a uniform fraction in ``[min_horizon_frac, max_horizon_frac]``.
    min_horizon_frac, max_horizon_frac : float
        Range of the horizon fraction (uni2ts uses 0.15 to 0.5).
    any_patch_prob : float
        Probability of ignoring :data:`FREQ_PATCH_SIZES` and drawing any patch size.
    missing_prob : float
        Probability that a window gets a block of missing values (1 % to 10 % of its length).
    lr, min_lr, weight_decay, beta1, beta2, warmup_steps, decay_fraction, grad_clip
        AdamW and a warmup-stable-decay schedule: linear warmup, constant, then linear decay to
        ``min_lr`` over the last ``decay_fraction`` of the run.  With ``max_steps`` the decay
        start is a step count; with only ``minutes`` it is decided when that share of the time
        budget remains, from the measured step rate (and stored in the state).
    precision : str
        ``"bf16"`` (autocast on CPU for the encoder; float32 master weights, output head and
        loss) or ``"fp32"``.
    seed : int
        Seeds the data stream and the weight initialisation.
    threads : int
        ``torch.set_num_threads``.
    minutes : float or None
        Training wall-time budget (summed over resumptions).
    max_steps : int or None
        Step budget.  At least one of ``minutes`` and ``max_steps`` must be set.
    log_every : int
        Steps per line of the log and per point of the recorded loss curve.
    checkpoint_minutes : float
        Wall time between two writes of ``state.pt``.
    corpus : {"v1", "v2"}
        Synthetic corpus (:mod:`tools.pretrain.synthetic`).
    init : str or None
        Backbone whose weights the run starts from (a bundled name such as
        ``"moirai-tiny-v1"``, or a checkpoint folder) instead of a random initialisation; its
        architecture must equal this one.  The optimizer starts fresh.
    """

    d_model: int = 128
    num_layers: int = 4
    patch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    max_seq_len: int = 512
    batch_size: int = 64
    row_tokens: int = 256
    min_length: int = 200
    max_length: int = 2304
    typical_length: int = 608
    typical_prob: float = 0.5
    eval_like_prob: float = 0.5
    min_horizon_frac: float = 0.15
    max_horizon_frac: float = 0.5
    any_patch_prob: float = 0.1
    missing_prob: float = 0.1
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 300
    decay_fraction: float = 0.2
    grad_clip: float = 1.0
    precision: str = "bf16"
    seed: int = 0
    threads: int = 1
    minutes: float | None = None
    max_steps: int | None = None
    log_every: int = 25
    checkpoint_minutes: float = 5.0
    corpus: str = "v1"
    init: str | None = None

    def __post_init__(self) -> None:
        self.patch_sizes = tuple(int(p) for p in self.patch_sizes)
        if self.minutes is None and self.max_steps is None:
            raise ValueError("set a budget: minutes, max_steps, or both")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.row_tokens > self.max_seq_len:
            raise ValueError(
                f"row_tokens ({self.row_tokens}) must not exceed max_seq_len ({self.max_seq_len})"
            )
        if not 0.0 < self.min_horizon_frac <= self.max_horizon_frac < 1.0:
            raise ValueError("need 0 < min_horizon_frac <= max_horizon_frac < 1")
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {CORPORA}, got {self.corpus!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["patch_sizes"] = list(self.patch_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise ``TypeError``)."""
        d = dict(d)
        d["patch_sizes"] = tuple(d.get("patch_sizes", cls.patch_sizes))
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def moirai_config_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """Published-format ``config.json`` content for the architecture in ``cfg``."""
    return {
        "d_model": cfg.d_model,
        "num_layers": cfg.num_layers,
        "patch_sizes": list(cfg.patch_sizes),
        "max_seq_len": cfg.max_seq_len,
        "attn_dropout_p": 0.0,
        "dropout_p": 0.0,
        "scaling": True,
        # the published four-component mixture, as the package writes it
        "distr_output": distr_output_to_dict(moirai_mixture_spec()),
    }


def keep_head_fp32(module: nn.Module) -> None:
    """Run ``module.param_proj`` outside bf16 autocast, on float32 inputs.

    The output head is ~5 % of the compute but sets the mixture parameters, among them the
    location of the fixed-scale (``1e-3``) Normal component, which bf16's 8-bit mantissa cannot
    resolve.  Only the instance's ``forward`` is wrapped: the state dict is unchanged.
    """
    head = module.param_proj
    inner = head.forward

    def forward(x: Tensor, patch_size: Tensor | int) -> Any:
        with torch.autocast("cpu", enabled=False):
            return inner(x.float(), patch_size)

    head.forward = forward


def build_model(cfg: PretrainConfig) -> tuple[Any, nn.Module]:
    """Build a freshly initialised Moirai from ``cfg`` (initialisation seeded by ``cfg.seed``).

    Returns
    -------
    moirai_config : MoiraiConfig
        The parsed architecture config.
    module : torch.nn.Module
        The ``MoiraiModule``, float32, in train mode.
    """
    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

    moirai_config = MoiraiConfig.from_dict(moirai_config_dict(cfg))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        module = MoiraiModule(moirai_config)
    return moirai_config, module.float().train()


# --------------------------------------------------------------------------------------------
# Data: windows -> tokens -> packed rows
# --------------------------------------------------------------------------------------------


@dataclass
class TokenizedWindow:
    """One window in Moirai's token layout (before packing).

    Attributes
    ----------
    target : numpy.ndarray
        ``(n, max_patch)`` float32; token values in the first ``patch_size`` columns.
    observed : numpy.ndarray
        ``(n, max_patch)`` bool.
    prediction : numpy.ndarray
        ``(n,)`` bool, True on the horizon tokens (the last ones).
    patch_size : int
        Patch size of every token.
    log_scale : float
        ``log`` of the scale Moirai's scaler computes from the observed context values
        (used only to report a scale-free NLL).
    """

    target: np.ndarray
    observed: np.ndarray
    prediction: np.ndarray
    patch_size: int
    log_scale: float

    @property
    def n_tokens(self) -> int:
        """Number of tokens."""
        return int(self.prediction.shape[0])


def _choose_patch_size(
    rng: np.random.Generator, freq: str, context_len: int, cfg: PretrainConfig
) -> int:
    usable = [p for p in cfg.patch_sizes if 2 * p <= context_len] or [min(cfg.patch_sizes)]
    suited = [p for p in FREQ_PATCH_SIZES.get(freq, ()) if p in usable]
    pool = usable if (not suited or rng.random() < cfg.any_patch_prob) else suited
    return int(pool[int(rng.integers(len(pool)))])


def tokenize_window(
    rng: np.random.Generator, series: SyntheticSeries, cfg: PretrainConfig
) -> TokenizedWindow:
    """Split a window into context and horizon, choose a patch size and patch it.

    The context is left-padded to a whole number of patches and the horizon right-padded, with
    the padding unobserved (the zero-shot inference layout); a window that would exceed
    ``cfg.row_tokens`` tokens is cropped on the left.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (horizon, patch size, missing block).
    series : SyntheticSeries
        The window.
    cfg : PretrainConfig
        Settings.

    Returns
    -------
    TokenizedWindow
    """
    values = np.asarray(series.values, dtype=np.float32)
    length = values.shape[0]
    fitting = [h for h in STANDARD_HORIZONS if h <= 0.5 * length]
    if fitting and rng.random() < cfg.eval_like_prob:
        horizon = int(fitting[int(rng.integers(len(fitting)))])
    else:
        frac = rng.uniform(cfg.min_horizon_frac, cfg.max_horizon_frac)
        horizon = max(1, int(round(frac * length)))
    patch = _choose_patch_size(rng, series.freq, length - horizon, cfg)
    n_h = -(-horizon // patch)
    max_context = (cfg.row_tokens - n_h) * patch
    context = min(length - horizon, max_context)
    values = values[length - horizon - context :]
    observed = np.ones(values.shape[0], dtype=bool)
    if rng.random() < cfg.missing_prob:
        block = max(1, int(values.shape[0] * rng.uniform(0.01, 0.1)))
        start = int(rng.integers(0, values.shape[0] - block + 1))
        observed[start : start + block] = False
        if observed[:context].sum() < 2:
            observed[:] = True
    values = np.where(observed, values, np.float32(0.0))
    n_c = -(-context // patch)
    lpad, rpad = n_c * patch - context, n_h * patch - horizon
    seq = np.concatenate([np.zeros(lpad, np.float32), values, np.zeros(rpad, np.float32)])
    obs = np.concatenate([np.zeros(lpad, bool), observed, np.zeros(rpad, bool)])
    n = n_c + n_h
    max_patch = max(cfg.patch_sizes)
    target = np.zeros((n, max_patch), np.float32)
    obs_tok = np.zeros((n, max_patch), bool)
    target[:, :patch] = seq.reshape(n, patch)
    obs_tok[:, :patch] = obs.reshape(n, patch)
    prediction = np.zeros(n, bool)
    prediction[n_c:] = True
    ctx_vals = values[:context][observed[:context]].astype(np.float64)
    var = ctx_vals.var(ddof=1) if ctx_vals.size > 1 else 0.0
    return TokenizedWindow(target, obs_tok, prediction, patch, 0.5 * math.log(var + 1e-5))


@dataclass
class PackedBatch:
    """Windows packed into rows, as tensors for ``MoiraiModule.forward``.

    Attributes
    ----------
    target, observed_mask : torch.Tensor
        ``(rows, tokens, max_patch)``, float32 and bool.
    sample_id, time_id, variate_id, patch_size : torch.Tensor
        ``(rows, tokens)`` long; ``sample_id`` is 0 on padding tokens.
    prediction_mask : torch.Tensor
        ``(rows, tokens)`` bool.
    group_id : torch.Tensor
        ``(rows, tokens)`` long: index of the window each token belongs to (padding: ``-1``).
    log_scale : torch.Tensor
        ``(windows,)`` float64, see :class:`TokenizedWindow`.
    n_tokens : int
        Real (non-padding) tokens in the batch.
    """

    target: Tensor
    observed_mask: Tensor
    sample_id: Tensor
    time_id: Tensor
    variate_id: Tensor
    prediction_mask: Tensor
    patch_size: Tensor
    group_id: Tensor
    log_scale: Tensor
    n_tokens: int

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments of ``MoiraiModule.forward``."""
        return {
            "target": self.target,
            "observed_mask": self.observed_mask,
            "sample_id": self.sample_id,
            "time_id": self.time_id,
            "variate_id": self.variate_id,
            "prediction_mask": self.prediction_mask,
            "patch_size": self.patch_size,
        }


def pack_windows(windows: Sequence[TokenizedWindow], row_tokens: int) -> PackedBatch:
    """Pack windows into rows of at most ``row_tokens`` tokens (first fit, longest first).

    Parameters
    ----------
    windows : sequence of TokenizedWindow
        Each has at most ``row_tokens`` tokens.
    row_tokens : int
        Row capacity.

    Returns
    -------
    PackedBatch
        Rows are padded to the longest row; ``time_id`` restarts at 0 in every window.
    """
    order = sorted(range(len(windows)), key=lambda i: -windows[i].n_tokens)
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in order:
        n = windows[i].n_tokens
        if n > row_tokens:
            raise ValueError(f"window with {n} tokens exceeds row capacity {row_tokens}")
        for r, used in enumerate(fill):
            if used + n <= row_tokens:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    n_rows, width = len(rows), max(fill)
    max_patch = windows[0].target.shape[1]
    target = np.zeros((n_rows, width, max_patch), np.float32)
    observed = np.zeros((n_rows, width, max_patch), bool)
    sample_id = np.zeros((n_rows, width), np.int64)
    time_id = np.zeros((n_rows, width), np.int64)
    prediction = np.zeros((n_rows, width), bool)
    patch_size = np.full((n_rows, width), min(w.patch_size for w in windows), np.int64)
    group_id = np.full((n_rows, width), -1, np.int64)
    for r, members in enumerate(rows):
        pos = 0
        for s, i in enumerate(members, start=1):
            w = windows[i]
            sl = slice(pos, pos + w.n_tokens)
            target[r, sl] = w.target
            observed[r, sl] = w.observed
            sample_id[r, sl] = s
            time_id[r, sl] = np.arange(w.n_tokens)
            prediction[r, sl] = w.prediction
            patch_size[r, sl] = w.patch_size
            group_id[r, sl] = i
            pos += w.n_tokens
    return PackedBatch(
        target=torch.from_numpy(target),
        observed_mask=torch.from_numpy(observed),
        sample_id=torch.from_numpy(sample_id),
        time_id=torch.from_numpy(time_id),
        variate_id=torch.zeros((n_rows, width), dtype=torch.long),
        prediction_mask=torch.from_numpy(prediction),
        patch_size=torch.from_numpy(patch_size),
        group_id=torch.from_numpy(group_id),
        log_scale=torch.tensor([w.log_scale for w in windows], dtype=torch.float64),
        n_tokens=int(sum(fill)),
    )


def make_batch(
    rng: np.random.Generator, stream: Iterator[SyntheticSeries], cfg: PretrainConfig
) -> PackedBatch:
    """Draw ``cfg.batch_size`` windows from ``stream``, tokenize and pack them."""
    windows = [tokenize_window(rng, next(stream), cfg) for _ in range(cfg.batch_size)]
    return pack_windows(windows, cfg.row_tokens)


def packed_nll(log_prob: Tensor, batch: PackedBatch) -> tuple[Tensor, Tensor]:
    """Moirai's packed NLL: mean over each window's observed horizon entries, then over windows.

    Parameters
    ----------
    log_prob : torch.Tensor
        ``(rows, tokens, max_patch)`` elementwise log-likelihood of ``batch.target``.
    batch : PackedBatch
        The batch.

    Returns
    -------
    loss : torch.Tensor
        Scalar, the training objective (in the data's own units).
    nll_scaled : torch.Tensor
        Scalar, detached: the same NLL measured on the model's standardised scale (``loss``
        minus the mean log scale), comparable across series of any magnitude.
    """
    mask = batch.prediction_mask.unsqueeze(-1) & batch.observed_mask
    nll = torch.where(mask, -log_prob.float(), torch.zeros((), dtype=torch.float32))
    per_token = nll.sum(-1).flatten()
    count = mask.sum(-1).flatten().to(torch.float32)
    gid = batch.group_id.flatten()
    keep = gid >= 0
    n_groups = batch.log_scale.shape[0]
    sums = torch.zeros(n_groups, dtype=torch.float32).index_add(0, gid[keep], per_token[keep])
    counts = torch.zeros(n_groups, dtype=torch.float32).index_add(0, gid[keep], count[keep])
    valid = counts > 0
    per_group = sums[valid] / counts[valid]
    loss = per_group.mean()
    scaled = (per_group.detach().double() - batch.log_scale[valid]).mean().float()
    return loss, scaled


# --------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Not msft_forecast.training.lightning.parameter_groups, on purpose: that one also exempts
    # every "bias" from weight decay, including the 2-D per-patch-size biases of in_proj and
    # param_proj that are decayed here.  Using it changes the run from its third step on (the
    # first 25-step block's mean gradient norm by 1.5 %), so the shipped loss curves would no
    # longer be retraced (tests/test_bundled_backbone.py).
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = "emb" in name or "mask_encoding" in name
        (decay if p.ndim >= 2 and not is_embedding else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def learning_rate(cfg: PretrainConfig, step: int, schedule: dict[str, int | None]) -> float:
    """Warmup-stable-decay learning rate for optimisation step ``step`` (0-based).

    Parameters
    ----------
    cfg : PretrainConfig
        Settings (``lr``, ``min_lr``, ``warmup_steps``).
    step : int
        Index of the step about to be taken.
    schedule : dict
        ``decay_start`` and ``total_steps`` (``None`` while the decay is not yet decided).

    Returns
    -------
    float
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    start, total = schedule.get("decay_start"), schedule.get("total_steps")
    if start is None or total is None or step < start:
        return cfg.lr
    frac = min(1.0, (step - start) / max(1, total - start))
    return cfg.lr + (cfg.min_lr - cfg.lr) * frac


@dataclass
class TrainState:
    """Everything needed to continue a run exactly."""

    step: int = 0
    windows_seen: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    schedule: dict[str, int | None] = field(
        default_factory=lambda: {"decay_start": None, "total_steps": None}
    )
    loss: list[float] = field(default_factory=list)
    nll_scaled: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)


def _save_state(
    path: Path,
    cfg: PretrainConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    st: TrainState,
) -> None:
    payload = {
        "format": "msft_forecast.pretrain.state/1",
        "config": cfg.to_dict(),
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "train_state": json.dumps(dataclasses.asdict(st)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_state(
    path: Path,
    cfg: PretrainConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> TrainState:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = payload["config"]
    now = cfg.to_dict()
    differing = sorted(
        k
        for k in set(saved) | set(now)
        if saved.get(k) != now.get(k) and k not in _RESUMABLE_CHANGES
    )
    if differing:
        raise ValueError(
            f"{path} was written by a run with different settings ({', '.join(differing)}): "
            "resume with the same settings, or use another --out folder (or --fresh)."
        )
    module.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    torch.set_rng_state(payload["torch_rng"])
    return TrainState(**json.loads(payload["train_state"]))


def loss_curve(st: TrainState, every: int) -> list[dict[str, float]]:
    """Loss curve averaged over consecutive blocks of ``every`` steps.

    Parameters
    ----------
    st : TrainState
        State with per-step losses.
    every : int
        Block length.

    Returns
    -------
    list of dict
        One entry per block: last ``step`` (1-based count), mean ``loss``, ``nll_scaled``,
        ``grad_norm`` and the block's last ``lr``.
    """
    out = []
    for end in range(every, len(st.loss) + 1, every):
        sl = slice(end - every, end)
        out.append(
            {
                "step": end,
                "loss": float(np.mean(st.loss[sl])),
                "nll_scaled": float(np.mean(st.nll_scaled[sl])),
                "grad_norm": float(np.mean(st.grad_norm[sl])),
                "lr": st.lr[end - 1],
            }
        )
    return out


def _count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def pretrain(
    cfg: PretrainConfig,
    out_dir: str | os.PathLike,
    *,
    fresh: bool = False,
    stop_at_step: int | None = None,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Run (or resume) pre-training and export the checkpoint when the budget is spent.

    Parameters
    ----------
    cfg : PretrainConfig
        Settings; ``cfg.minutes`` and/or ``cfg.max_steps`` bound the run.
    out_dir : path-like
        Output folder; an existing ``state.pt`` there is resumed unless ``fresh``.
    fresh : bool, optional
        Start over even if ``state.pt`` exists (it is overwritten at the first checkpoint).
    stop_at_step : int, optional
        Stop after this many steps, writing ``state.pt`` but not the final files (an
        interruption at a known point, for tests).
    log : callable, optional
        Receives one line of text per log event.

    Returns
    -------
    TrainState
        The state at the end.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    moirai_config, module = build_model(cfg)
    optimizer = torch.optim.AdamW(
        _param_groups(module, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
    )
    rng = np.random.default_rng(cfg.seed)
    state_path = out / STATE_FILE
    if state_path.exists() and not fresh:
        st = _load_state(state_path, cfg, module, optimizer, rng)
        log(f"resumed from {state_path} at step {st.step} ({st.elapsed_s / 60:.1f} min trained)")
    else:
        st = TrainState()
        if cfg.init is not None:
            _load_init(module, cfg)
            log(f"initialised from {cfg.init}")
        if cfg.max_steps is not None:
            total = cfg.max_steps
            st.schedule = {
                "decay_start": int(round(total * (1.0 - cfg.decay_fraction))),
                "total_steps": total,
            }
    stream = iter_training_windows(
        rng,
        min_length=cfg.min_length,
        max_length=cfg.max_length,
        typical_length=cfg.typical_length,
        typical_prob=cfg.typical_prob,
        corpus=cfg.corpus,
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    if cfg.precision == "bf16":
        keep_head_fp32(module)
    budget_s = None if cfg.minutes is None else cfg.minutes * 60.0
    log(
        f"Moirai d_model={cfg.d_model} layers={cfg.num_layers} "
        f"params={_count_parameters(module):,} precision={cfg.precision} threads={cfg.threads} "
        f"batch={cfg.batch_size} budget: minutes={cfg.minutes} max_steps={cfg.max_steps}"
    )
    module.train()
    last_ckpt = time.monotonic()
    recent: list[float] = []  # durations of recent steps, for the decay decision
    data_s = 0.0
    t_log = time.monotonic()
    windows_at_log = st.windows_seen
    while True:
        if cfg.max_steps is not None and st.step >= cfg.max_steps:
            break
        if budget_s is not None and st.elapsed_s >= budget_s:
            break
        if st.schedule["total_steps"] is not None and st.step >= st.schedule["total_steps"]:
            break
        if stop_at_step is not None and st.step >= stop_at_step:
            break
        t0 = time.monotonic()
        batch = make_batch(rng, stream, cfg)
        t1 = time.monotonic()
        lr = learning_rate(cfg, st.step, st.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            distr = module(**batch.model_inputs())
        log_prob = distr.log_prob(batch.target)
        loss, nll_scaled = packed_nll(log_prob, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip))
        optimizer.step()
        dt = time.monotonic() - t0
        data_s += t1 - t0
        st.step += 1
        st.windows_seen += cfg.batch_size
        st.tokens_seen += batch.n_tokens
        st.elapsed_s += dt
        st.loss.append(float(loss.detach()))
        st.nll_scaled.append(float(nll_scaled))
        st.lr.append(lr)
        st.grad_norm.append(grad_norm)
        recent = (recent + [dt])[-50:]
        if not math.isfinite(st.loss[-1]):
            raise FloatingPointError(f"non-finite loss at step {st.step}; aborting")
        if budget_s is not None and st.schedule["decay_start"] is None:
            remaining = budget_s - st.elapsed_s
            if remaining <= cfg.decay_fraction * budget_s:
                est = int(remaining / (sum(recent) / len(recent)))
                st.schedule = {"decay_start": st.step, "total_steps": st.step + max(1, est)}
                log(f"decay phase: steps {st.step} -> {st.schedule['total_steps']} (estimated)")
        if st.step % cfg.log_every == 0:
            now = time.monotonic()
            k = cfg.log_every
            log(
                f"step {st.step:6d} | loss {np.mean(st.loss[-k:]):9.4f} | "
                f"nll_scaled {np.mean(st.nll_scaled[-k:]):8.4f} | lr {lr:.2e} | "
                f"gnorm {np.mean(st.grad_norm[-k:]):7.3f} | "
                f"{(st.windows_seen - windows_at_log) / (now - t_log):6.1f} win/s | "
                f"data {100 * data_s / max(now - t_log, 1e-9):4.1f}% | "
                f"{st.elapsed_s / 60:6.1f} min"
            )
            t_log, windows_at_log, data_s = now, st.windows_seen, 0.0
        if time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60.0:
            _save_state(state_path, cfg, module, optimizer, rng, st)
            last_ckpt = time.monotonic()
    _save_state(state_path, cfg, module, optimizer, rng, st)
    if stop_at_step is not None and st.step >= stop_at_step:
        return st
    export(cfg, moirai_config, module, st, out)
    log(f"done: {st.step} steps, {st.windows_seen} windows, wrote {out}")
    return st


def _load_init(module: nn.Module, cfg: PretrainConfig) -> None:
    """Copy the weights of the backbone ``cfg.init`` into ``module`` (same architecture)."""
    from msft_forecast.backbones.checkpoint import load_backbone

    init = load_backbone(cfg.init, allow_fallback=False)
    theirs = init.module.state_dict()
    ours = module.state_dict()
    if set(theirs) != set(ours) or any(theirs[k].shape != ours[k].shape for k in ours):
        raise ValueError(
            f"init backbone {cfg.init!r} has another architecture than d_model={cfg.d_model}, "
            f"num_layers={cfg.num_layers}, patch_sizes={list(cfg.patch_sizes)}"
        )
    module.load_state_dict(theirs)
    module.float().train()


def init_description(name: str | None) -> dict[str, Any] | None:
    """Where the initial weights came from: location, weights' SHA-256, and the settings and
    seed of the run that made them (from its training record, when it has one)."""
    if name is None:
        return None
    import hashlib

    from msft_forecast.backbones.checkpoint import resolve_checkpoint

    source = resolve_checkpoint(name, allow_fallback=False)
    folder = Path(source.folder)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    out: dict[str, Any] = {"name": name, "location": source.location, "sha256": digest}
    record = folder / RECORD_FILE
    if record.exists():
        earlier = json.loads(record.read_text(encoding="utf-8"))
        out.update(
            what=earlier.get("what"),
            settings=earlier.get("settings"),
            steps=earlier.get("steps"),
            train_wall_time_s=earlier.get("train_wall_time_s"),
        )
    return out


def export(
    cfg: PretrainConfig, moirai_config: Any, module: nn.Module, st: TrainState, out: Path
) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``training_record.json`` to ``out``.

    Parameters
    ----------
    cfg : PretrainConfig
        The run's settings.
    moirai_config : MoiraiConfig
        Architecture config (serialised with its ``to_dict``).
    module : torch.nn.Module
        The trained module (weights saved as float32).
    st : TrainState
        Final state (counts and losses for the record).
    out : pathlib.Path
        Output folder.
    """
    from msft_forecast.backbones.checkpoint import save_checkpoint

    module = module.float().eval()
    save_checkpoint(out, moirai_config.to_dict(), module)
    size = (out / "model.safetensors").stat().st_size
    record = {
        "what": (
            "moirai-tiny: Moirai 1.x architecture pre-trained on synthetic data only (corpus "
            f"{cfg.corpus}" + (f", starting from {cfg.init}" if cfg.init else "") + ")"
        ),
        "init": init_description(cfg.init),
        "settings": cfg.to_dict(),
        "seed": cfg.seed,
        "moirai_config": moirai_config.to_dict(),
        "parameters": _count_parameters(module),
        "weights_bytes": size,
        "corpus": corpus_description(cfg.corpus),
        "objective": (
            "masked forecasting: mixture NLL on observed horizon entries, mean per window then "
            "over windows (uni2ts PackedNLLLoss); horizon = standard horizon or 15-50 % of window"
        ),
        "patch_sizes_by_freq": {k: list(v) for k, v in FREQ_PATCH_SIZES.items()},
        "steps": st.step,
        "windows_seen": st.windows_seen,
        "tokens_seen": st.tokens_seen,
        "schedule": st.schedule,
        "train_wall_time_s": round(st.elapsed_s, 1),
        "threads": cfg.threads,
        "precision": cfg.precision,
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "platform": platform.platform(),
        "final_loss_last_100": float(np.mean(st.loss[-100:])) if st.loss else None,
        "final_nll_scaled_last_100": float(np.mean(st.nll_scaled[-100:])) if st.loss else None,
        "loss_curve_every": cfg.log_every,
        "loss_curve": loss_curve(st, cfg.log_every),
    }
    with open(out / RECORD_FILE, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    d = PretrainConfig(max_steps=1)
    p = argparse.ArgumentParser(
        prog="python -m tools.pretrain.pretrain",
        description="Pre-train a small Moirai on synthetic data (resumable, seeded).",
    )
    p.add_argument("--out", required=True, help="output folder (state.pt, final checkpoint)")
    p.add_argument("--minutes", type=float, default=None, help="training wall-time budget")
    p.add_argument("--max-steps", type=int, default=None, help="step budget")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (default 1)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=d.precision)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--row-tokens", type=int, default=d.row_tokens)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--decay-fraction", type=float, default=d.decay_fraction)
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--num-layers", type=int, default=d.num_layers)
    p.add_argument("--patch-sizes", type=int, nargs="+", default=list(d.patch_sizes))
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    p.add_argument("--corpus", choices=list(CORPORA), default=d.corpus)
    p.add_argument(
        "--init", default=None, help="start from this backbone's weights (bundled name or folder)"
    )
    p.add_argument("--min-length", type=int, default=d.min_length)
    p.add_argument("--typical-prob", type=float, default=d.typical_prob)
    p.add_argument("--fresh", action="store_true", help="ignore an existing state.pt")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg = PretrainConfig(
            d_model=args.d_model,
            num_layers=args.num_layers,
            patch_sizes=tuple(args.patch_sizes),
            max_seq_len=args.max_seq_len,
            batch_size=args.batch_size,
            row_tokens=args.row_tokens,
            lr=args.lr,
            min_lr=args.min_lr,
            weight_decay=args.weight_decay,
            warmup_steps=args.warmup_steps,
            decay_fraction=args.decay_fraction,
            precision=args.precision,
            seed=args.seed,
            threads=args.threads,
            minutes=args.minutes,
            max_steps=args.max_steps,
            log_every=args.log_every,
            checkpoint_minutes=args.checkpoint_minutes,
            corpus=args.corpus,
            init=args.init,
            min_length=args.min_length,
            typical_prob=args.typical_prob,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pretrain(cfg, args.out, fresh=args.fresh, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
