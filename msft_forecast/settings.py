"""The settings of a fine-tuning run (:class:`MSFTSettings`) and their defaults."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from msft_forecast.msft.strategies import (
    DEFAULT_NUM_PROMPT_TOKENS,
    FIT_STRATEGIES,
    StrategySpec,
    resolve_strategy,
)

#: Default learning rates (constant schedule), by strategy.  Parameter-efficient strategies
#: start from zero-initialised updates and need a larger step than full fine-tuning, which
#: moves pre-trained weights directly.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "msft": 1e-3,
    "lora": 1e-3,
    # prompts start from random tokens, not a zero update: a larger step (peft's
    # prompt-tuning examples use 3e-2 with AdamW); not yet measured here
    "adalora": 1e-3,
    "prompt-tuning": 1e-2,
    "linear-probe": 1e-3,
    "full": 1e-5,
    "zero-shot": 0.0,
}

#: The values of the setting ``multivariate`` (:mod:`msft_forecast.training.joint`).
MULTIVARIATE_MODES: tuple[str, ...] = ("independent", "joint")


@dataclass
class MSFTSettings:
    """Every setting of a fine-tuning run: the one documented home of the settings.

    The engine reads these; the sktime front end exposes every field as a hyper-parameter of
    the same name and default, the Darts front end too (``context_length`` and
    ``prediction_length`` as ``input_chunk_length`` and ``output_chunk_length``, the Lightning
    ones through ``pl_trainer_kwargs``), and the command line and the benchmark runner take
    their defaults from here.  JSON-serialisable (:meth:`to_json`, :meth:`from_json`).

    Parameters
    ----------
    backbone : str, default="moirai"
        Checkpoint: a short name (``"moirai"``, ``"moirai-small"``, ``"moirai-base"``,
        ``"moment-small"``, ``"moirai-tiny"`` for the small checkpoint bundled with the
        package), a Hugging Face hub id or a local folder (a folder holding one released UniTS
        ``.pth``, optionally with ``units.json``, is UniTS: ``docs/backbones.md``).
    revision : str or None, default=None
        Hub revision (branch, tag or commit) of ``backbone``.
    allow_fallback : bool, default=True
        If the hub cannot be reached for ``backbone="moirai"``, warn and use the bundled
        ``"moirai-tiny"`` instead of raising.
    fit_strategy : {"msft", "lora", "adalora", "prompt-tuning", "full", "linear-probe", \
"zero-shot"}, default="msft"
        What is trained: ``"msft"`` per-scale adapters and LoRA, cross-scale aggregator and
        head; ``"lora"`` single-scale LoRA and head; ``"adalora"`` AdaLoRA (SVD-form LoRA whose
        ranks are pruned by importance to an average of ``lora_rank``) and head;
        ``"prompt-tuning"`` ``num_prompt_tokens`` learned prefix tokens (and MOMENT's new
        heads; on UniTS the checkpoint's own prompt tokens); ``"full"`` every weight;
        ``"linear-probe"`` the head only; ``"zero-shot"`` nothing (not MOMENT, which has no
        forecasting head before fine-tuning; UniTS only with a data set it was trained on).
    context_length : int, default=512
        Steps of history the model sees; the last ``context_length`` steps of every series
        are kept for prediction.  Capped at fit by the longest series (steps before a
        series' start would be padding); ``MSFTEngine.context_length_`` is the one used.
    prediction_length : int or "auto", default="auto"
        Training horizon. ``"auto"``: 96 steps, or on series shorter than 480 steps a fifth
        of the longest series, rounded down to whole seasons (24 on 144 monthly points);
        ``MSFTEngine.prediction_length_`` is the one used and ``MSFTEngine.report_.choices``
        says why. (sktime: when ``fh`` is passed to ``fit``, ``max(fh)`` in steps instead.)
        Forecasts may be longer: Moirai forecasts any horizon directly; MOMENT, whose heads
        have this length, rolls its forecast forward.
    num_scales : int, default=4
        Scales including the original resolution (``K + 1``; each coarser scale halves the
        resolution); ``"msft"`` only.
    patch_size : int or "auto", default="auto"
        Patch size; ``"auto"`` chooses among the sizes the backbone offers for the data's
        frequency (MOMENT has one): the smallest, unless a larger one forecasts clearly
        better zero-shot on validation windows (by 2 standard errors over independent
        horizons; :mod:`msft_forecast.training.patch_size`).
    pooling : {"mean", "max", "subsample"}, default="mean"
        How coarser scales are built from finer ones.
    lora_rank : int, default=16
        LoRA rank (``"msft"``, ``"lora"``); for ``"adalora"`` the target average rank, from an
        initial rank of ``ceil(1.5 * lora_rank)``.
    lora_alpha : float, default=16.0
        LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_rank``).
    lora_targets : tuple of str, default=("q", "k", "v")
        Projections that get LoRA, among ``"q"``, ``"k"``, ``"v"``, ``"out"``, ``"ffn"``.
    shared_lora : bool, default=False
        One LoRA shared by all scales instead of one per scale (``"msft"`` ablation).
    aggregator : bool, default=True
        Cross-scale aggregator in every layer (``"msft"``).
    aggregator_rank : int or None, default=64
        Rank of the aggregator maps; None for full ``d x d`` maps.
    mixing : {"mixture", "blend"}, default="mixture"
        How the scales' sample paths are combined: a true mixture (each path drawn whole from
        one scale with probability ``w_k``; calibrated intervals, the default by measurement,
        docs/benchmarks.md) or the paper's weighted blend of one path per scale (narrower).
    scale_weighting : {"validation", "learned", "paper", "uniform", "finest"}, \
default="validation"
        Where the weights that combine the scales' forecasts come from: fitted on the
        validation windows to minimise the combined forecast's CRPS (default), trained through
        the combined forecast's NLL, the paper's trained in-loss weights, uniform, or the
        finest scale only (see :mod:`msft_forecast.msft.mixing`; the default was chosen by
        measurement, docs/benchmarks.md).
    train_head : bool, default=True
        Train the output head (Moirai's distribution projection) in ``"msft"``, ``"lora"`` and
        ``"adalora"``.
    num_prompt_tokens : int, default=8
        Learned prefix tokens of ``"prompt-tuning"``: the low end of the 8-20 that prompt
        tuning commonly uses, because every prompt lengthens the token sequence of every window
        (a 512-step context with patch size 32 has 16 context tokens).  Not used by UniTS,
        which tunes its checkpoint's own ``prompt_num`` prompt tokens (another value warns).
    multivariate : {"independent", "joint"}, default="independent"
        How the channels of a multivariate series are modelled: each channel on its own
        (channel-independent, the default), or each forecast from the history of all channels
        of its series, the others read as past covariates through Moirai's any-variate
        attention (Moirai backbones; :mod:`msft_forecast.training.joint`). ``"joint"`` costs
        ``channels`` times the tokens per window; with the bundled ``moirai-tiny`` (pre-trained
        on single series) it is not recommended (docs/benchmarks.md, "Covariates").
    learning_rate : float or None, default=None
        Constant learning rate; None for the strategy's default (1e-3 for the
        parameter-efficient strategies, 1e-2 for ``"prompt-tuning"``, 1e-5 for ``"full"``).
    scale_weight_lr : float, default=1e-2
        Learning rate of the trained scale logits (the in-loss training weights of
        ``"validation"`` and ``"paper"``; the weights of ``"learned"``).
    scale_weight_prior : float, default=0.0
        Initial logit of scale 0 (``"paper"``; the authors used 10 on some data sets).
    weight_decay : float, default=0.1
        AdamW weight decay.
    batch_size : int, default=32
        Training windows per step.
    max_steps : int, default=200
        Optimiser steps of ``fit`` (and of ``pretrain``).
    max_epochs : int or None, default=None
        Optional cap on epochs. An epoch is ``val_check_interval`` steps of windows drawn
        with replacement, ending with a validation (not one pass over the windows).
    max_time : float or None, default=None
        Optional wall-clock cap on training, in seconds.
    validation : float, int or None, default=0.1
        Held-out tail of every series (fraction or steps) for validation, early stopping and
        keeping the best weights; None for no validation.
    val_check_interval : int, default=50
        Training steps between validations.
    early_stopping_patience : int or None, default=3
        Validations without improvement before stopping; None never stops early.
    gradient_clip : float or None, default=1.0
        Gradient norm clipping value; None for no clipping.
    num_samples : int, default=100
        Sample paths behind quantiles, intervals, variances and ``predict_proba``.
    random_state : int or None, default=None
        Seed of training and sampling; the same value gives the same forecasts (on CPU).
        None draws a fresh seed per fit, on every front end: the command line too (it prints
        the seed it drew, so ``--seed`` repeats a run). Not a fixed default seed, because one
        seed's result is one draw: the seed-to-seed spread of a fine-tune is part of its
        result (docs/benchmarks.md reports it), and sklearn, sktime and Darts default to None.
    accelerator : str, default="cpu"
        Lightning accelerator for training (``"cpu"``, ``"gpu"``, ``"auto"``, ...).
    devices : int, str or list of int, default=1
        Lightning devices.
    strategy : str, default="auto"
        Lightning distribution strategy (e.g. ``"ddp"``); not the fine-tuning strategy, see
        ``fit_strategy``.
    precision : str or None, default=None
        Lightning precision; None means ``"bf16-mixed"`` on the CPU (measured 1.2-1.4x faster
        per step with the same accuracy) and ``"32-true"`` on accelerators.
    verbose : bool, default=True
        Show training progress on stderr: Lightning's progress bar where a person watches (a
        terminal, a Jupyter notebook), else a plain line at the start, every tenth of the
        step budget and every validation (logs, pipes); False silences it. Lightning's own
        banners and model summary are never shown. Every fit also logs a one-line summary at
        INFO (logger ``"msft_forecast"``; ``MSFTEngine.report_.summary()``).
    checkpoint_dir : str or None, default=None
        Folder where fine-tuning writes ``last.ckpt`` (trainable tensors, optimiser, loop and
        callback state) at every validation; None writes nothing. Use one folder per run.
    resume : bool, default=False
        Continue an interrupted fine-tune from ``checkpoint_dir/last.ckpt`` (same data and
        settings) instead of starting over; the result equals an uninterrupted fit.

    num_threads : int or None, default=None
        torch threads during fit and predict (process-wide, restored afterwards); None keeps
        torch's setting (one per core). The OpenMP threads wait passively by default, so a
        shared machine does not slow the fit down by more than its own load (see the FAQ).

    Examples
    --------
    >>> from msft_forecast.settings import MSFTSettings
    >>> settings = MSFTSettings(backbone="moirai-tiny", fit_strategy="lora")
    >>> settings.validate()
    >>> settings.resolved_learning_rate()
    0.001
    """

    backbone: str = "moirai"
    revision: str | None = None
    allow_fallback: bool = True
    fit_strategy: str = "msft"
    context_length: int = 512
    prediction_length: int | str = "auto"
    num_scales: int = 4
    patch_size: int | str = "auto"
    pooling: str = "mean"
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("q", "k", "v")
    shared_lora: bool = False
    aggregator: bool = True
    aggregator_rank: int | None = 64
    mixing: str = "mixture"
    scale_weighting: str = "validation"
    train_head: bool = True
    num_prompt_tokens: int = DEFAULT_NUM_PROMPT_TOKENS
    multivariate: str = "independent"
    learning_rate: float | None = None
    scale_weight_lr: float = 1e-2
    scale_weight_prior: float = 0.0
    weight_decay: float = 0.1
    batch_size: int = 32
    max_steps: int = 200
    max_epochs: int | None = None
    max_time: float | None = None
    validation: float | int | None = 0.1
    val_check_interval: int = 50
    early_stopping_patience: int | None = 3
    gradient_clip: float | None = 1.0
    num_samples: int = 100
    random_state: int | None = None
    accelerator: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    precision: str | None = None
    verbose: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        if self.mixing == "finest":
            warnings.warn(
                'mixing="finest" is now scale_weighting="finest" (mixing says how samples are '
                'combined: "mixture" or "blend"); using scale_weighting="finest", '
                'mixing="mixture".',
                FutureWarning,
                stacklevel=3,
            )
            self.scale_weighting, self.mixing = "finest", "mixture"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting and what it should be."""
        if self.fit_strategy not in FIT_STRATEGIES:
            raise ValueError(
                f"fit_strategy must be one of {FIT_STRATEGIES}, got {self.fit_strategy!r}."
            )
        for name in ("context_length", "prediction_length", "batch_size", "num_samples"):
            value = getattr(self, name)
            if name == "prediction_length" and value == "auto":
                continue
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                what = (
                    "a positive integer or 'auto'"
                    if name == "prediction_length"
                    else ("a positive integer")
                )
                raise ValueError(f"{name} must be {what}, got {value!r}.")
        threads = self.num_threads
        if threads is not None and (
            not isinstance(threads, int | np.integer) or isinstance(threads, bool) or threads < 1
        ):
            raise ValueError(
                f"num_threads must be a positive integer or None (torch's default), got "
                f"{threads!r}."
            )
        if not isinstance(self.max_steps, int | np.integer) or self.max_steps < 0:
            raise ValueError(f"max_steps must be an integer >= 0, got {self.max_steps!r}.")
        if self.patch_size != "auto" and (
            not isinstance(self.patch_size, int | np.integer) or self.patch_size < 1
        ):
            raise ValueError(
                f"patch_size must be 'auto' or a positive integer, got {self.patch_size!r}."
            )
        if self.pooling not in ("mean", "max", "subsample"):
            raise ValueError(f"pooling must be 'mean', 'max' or 'subsample', got {self.pooling!r}.")
        if self.multivariate not in MULTIVARIATE_MODES:
            raise ValueError(
                f"multivariate must be 'independent' or 'joint', got {self.multivariate!r}."
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if isinstance(self.validation, float) and not 0.0 <= self.validation < 1.0:
            raise ValueError(
                f"validation as a fraction must lie in [0, 1), got {self.validation!r}."
            )
        if self.val_check_interval < 1:
            raise ValueError(f"val_check_interval must be >= 1, got {self.val_check_interval!r}.")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError(
                "resume=True needs checkpoint_dir: the folder whose last.ckpt fine-tuning "
                "continues from."
            )
        resolve_strategy(**self._strategy_kwargs())  # validates the strategy settings

    def _strategy_kwargs(self) -> dict[str, Any]:
        return dict(
            fit_strategy=self.fit_strategy,
            num_scales=int(self.num_scales),
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_targets=self.lora_targets,
            shared_lora=self.shared_lora,
            aggregator=self.aggregator,
            aggregator_rank=self.aggregator_rank,
            mixing=self.mixing,
            scale_weighting=self.scale_weighting,
            scale_weight_prior=self.scale_weight_prior,
            train_head=self.train_head,
            num_prompt_tokens=self.num_prompt_tokens,
        )

    def strategy_spec(self) -> StrategySpec:
        return resolve_strategy(**self._strategy_kwargs())

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return DEFAULT_LEARNING_RATES[self.fit_strategy]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MSFTSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # saved before scale_weighting existed: the weights were the in-loss ones ("paper")
        values.setdefault("scale_weighting", "paper")
        return cls(**values)
