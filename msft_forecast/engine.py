"""The MSFT engine: fine-tune a backbone on a collection of series and forecast from it.

This is the one place where settings, backbone, strategy, windows and the Lightning loop meet.
The sktime, Darts and command-line front ends convert their data to lists of 1-D float arrays
(NaN for missing; one array per channel: channel-independent modelling), call
:meth:`MSFTEngine.fit` and :meth:`MSFTEngine.forecast`, and convert the result back.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msft_forecast.backbones.cache import get_backbone, structural_copy
from msft_forecast.frequencies import MOIRAI_PATCH_SIZES_BY_FREQ, frequency_key
from msft_forecast.msft.strategies import FIT_STRATEGIES, StrategySpec, resolve_strategy
from msft_forecast.training.lengths import FitLengths, choose_lengths
from msft_forecast.training.windows import cut_window, split_windows
from msft_forecast.validation import (
    as_float_series,
    check_accelerator,
    check_observed_contexts,
    unit_scale,
)

logger = logging.getLogger(__name__)

#: Default learning rates (constant schedule), by strategy.  Parameter-efficient strategies
#: start from zero-initialised updates and need a larger step than full fine-tuning, which
#: moves pre-trained weights directly.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "msft": 1e-3,
    "lora": 1e-3,
    "linear-probe": 1e-3,
    "full": 1e-5,
    "zero-shot": 0.0,
}

STATE_FORMAT = "msft_forecast.engine/1"
#: Fewest held-out windows from which MOMENT's residual intervals are drawn alone.
MIN_RESIDUAL_WINDOWS = 30


@dataclass
class MSFTSettings:
    """Every setting of a fine-tuning run (JSON-serialisable; see the front ends' docstrings).

    The front ends expose these as hyper-parameters with the same names.
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
    verbose: bool = False
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


@dataclass
class Forecast:
    """Forecasts for a batch of series.

    Attributes
    ----------
    mean : ndarray
        ``(n, H)`` point forecast: the **mean** of the blended predictive distribution
        (MSE-optimal).  Use :meth:`quantiles` with 0.5 for the median (MAE-optimal).
    samples : ndarray
        ``(n, S, H)`` sample paths (for MOMENT: the point forecast plus held-out residuals).
    scale_means : ndarray
        ``(n, K+1, H)`` each scale's mean forecast, upsampled to the original resolution.
    weights : ndarray
        ``(K+1,)`` mixing weights used.
    """

    mean: np.ndarray
    samples: np.ndarray
    scale_means: np.ndarray
    weights: np.ndarray

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """``(n, len(levels), H)`` empirical quantiles of the sample paths (monotone in level)."""
        q = np.quantile(self.samples, np.asarray(levels, dtype=np.float64), axis=1)
        return np.moveaxis(q, 0, 1)


@dataclass
class FitReport:
    """What happened during :meth:`MSFTEngine.fit`."""

    patch_size: int
    patch_size_scores: dict[int, float] = field(default_factory=dict)
    #: Context and training horizon the fit used (see :mod:`msft_forecast.training.lengths`);
    #: 0 in reports saved before they were recorded (the settings' values were used).
    context_length: int = 0
    prediction_length: int = 0
    #: One sentence per length or patch size chosen from the data, saying what and why.
    choices: list[str] = field(default_factory=list)
    steps: int = 0
    best_step: int = -1
    initial_val_loss: float | None = None
    best_val_loss: float | None = None
    history: dict[str, list] = field(default_factory=dict)
    trainable_parameters: int = 0
    wall_time_s: float = 0.0


@contextmanager
def _quiet_lightning(verbose: bool):
    """Silence Lightning's banner lines ("GPU available: ...") unless verbose."""
    import lightning  # noqa: F401  (importing it sets its loggers' levels; do that first)

    names = ["lightning.pytorch", "lightning.fabric", "pytorch_lightning"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.filterwarnings("ignore", module="lightning")
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _row_seeds(seed: int, rows: int) -> list[int]:
    """One sampling seed per row ``i`` of a forecast call, from ``(seed, i)`` alone: a
    series' sample paths never depend on which other series share its batch."""
    states = np.random.SeedSequence(int(seed) % 2**63).spawn(rows)
    return [int(st.generate_state(1, np.uint64)[0] % (2**63 - 1)) for st in states]


class MSFTEngine:
    """Fine-tune a foundation model with a strategy and forecast with it.

    Parameters
    ----------
    settings : MSFTSettings, optional
        All settings; keyword arguments override single fields.

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.engine import MSFTEngine
    >>> y = np.sin(np.arange(400) * 2 * np.pi / 24) + 0.1 * np.arange(400) / 400
    >>> engine = MSFTEngine(backbone="moirai-tiny", context_length=96, prediction_length=24,
    ...                     max_steps=5, batch_size=8, random_state=0)
    >>> engine = engine.fit([y])
    >>> fc = engine.forecast([y], horizon=24, num_samples=20)
    >>> fc.mean.shape, fc.samples.shape
    ((1, 24), (1, 20, 24))
    """

    def __init__(self, settings: MSFTSettings | None = None, **overrides: Any) -> None:
        settings = copy.deepcopy(settings) if settings is not None else MSFTSettings()
        for key, value in overrides.items():
            if not hasattr(settings, key):
                raise TypeError(f"unknown setting {key!r}")
            setattr(settings, key, value)
        settings.__post_init__()
        settings.validate()
        self.settings = settings
        self.model_: torch.nn.Module | None = None
        self.report_: FitReport | None = None
        self.residuals_: torch.Tensor | None = None
        self.backbone_source_: dict[str, Any] | None = None

    # -------------------------------------------------------------------------------- backbone
    def _backbone(self):
        s = self.settings
        name = s.backbone
        recorded = (self.backbone_source_ or {}).get("location")
        if (
            isinstance(name, str)
            and recorded
            and os.path.isabs(recorded)
            and os.path.isdir(recorded)
            and not os.path.isdir(name)
        ):
            # a fitted engine restored elsewhere (pickle, save/load from another working
            # directory): the folder resolved at fit time, not a relative name that no longer
            # points at it
            name = recorded
        return get_backbone(name, s.revision, allow_fallback=s.allow_fallback)

    @property
    def is_fitted(self) -> bool:
        return self.model_ is not None

    @property
    def scale_weights(self) -> np.ndarray:
        """Mixing weights used at inference, finest scale first (``[1.0]`` for one scale)."""
        if self.model_ is None:
            raise RuntimeError("This engine is not fitted yet; call fit() first.")
        return self.model_.mixing_weights().detach().cpu().double().numpy()

    def _seed(self) -> int:
        rs = self.settings.random_state
        if rs is None:
            return int(np.random.default_rng().integers(0, 2**31 - 1))
        return int(rs) % (2**31 - 1)

    def build_model(
        self, patch_size: int | None, horizon_length: int, spec: StrategySpec | None = None
    ) -> torch.nn.Module:
        """A fresh, untrained multi-scale model for these settings (or for ``spec``)."""
        from msft_forecast.msft.moirai_model import MultiScaleMoirai
        from msft_forecast.msft.moment_model import MultiScaleMoment

        loaded = self._backbone()
        spec = self.settings.strategy_spec() if spec is None else spec
        module = (
            copy.deepcopy(loaded.module) if spec.train_backbone else structural_copy(loaded.module)
        )
        if loaded.kind == "moirai":
            if spec.train_head and not spec.train_backbone and spec.trains:
                # the head is trained: own a copy instead of writing into the shared backbone
                module.param_proj = copy.deepcopy(module.param_proj)
            return MultiScaleMoirai(module, spec, int(patch_size), self.settings.pooling)
        return MultiScaleMoment(module, spec, horizon_length, self.settings.pooling)

    def candidate_patch_sizes(
        self, freq: str | None = None, context_length: int | None = None
    ) -> list[int]:
        """Patch sizes the backbone allows for this frequency and context, smallest first."""
        loaded = self._backbone()
        if loaded.kind == "moment":
            return [int(loaded.config.patch_len)]
        context = int(self.settings.context_length if context_length is None else context_length)
        sizes = sorted(int(p) for p in loaded.config.patch_sizes)
        if freq:
            allowed = MOIRAI_PATCH_SIZES_BY_FREQ.get(frequency_key(freq))
            if allowed:
                sizes = [p for p in sizes if p in allowed] or sizes
        # at least two context tokens, else there is nothing to attend over
        fitting = [p for p in sizes if context >= 2 * p]
        return fitting or [min(sizes)]

    # ------------------------------------------------------------------------------------- fit
    def fit(
        self,
        series: Sequence[np.ndarray],
        *,
        freq: str | None = None,
        warm_start: bool = False,
        max_steps: int | None = None,
    ) -> MSFTEngine:
        """Fine-tune on a collection of 1-D series (NaN = missing).

        On any error (including ``KeyboardInterrupt``) the engine is left as it was before the
        call: a failed fine-tune never leaves a half-fitted model behind.

        Parameters
        ----------
        series : sequence of ndarray
            1-D float series; one per channel of every series (channel-independent).
        freq : str, optional
            pandas frequency of the data; narrows the patch sizes tried by ``patch_size="auto"``.
        warm_start : bool, default False
            Continue from the current fitted weights (same patch size) instead of starting
            from the backbone: sktime's ``update(update_params=True)`` and fine-tuning a
            pre-trained (``pretrain``) model on new series.
        max_steps : int, optional
            Step budget of this call (default the setting ``max_steps``).

        Raises
        ------
        ValueError
            Bad input (see :func:`msft_forecast.validation.as_float_series`: no series, empty,
            non-numeric, infinite or all-missing series), series too short for one training
            window (the message gives the minimum), or an accelerator that does not exist here.
        NonFiniteLossError
            The training loss became NaN or infinite.
        KeyboardInterrupt
            Fine-tuning was interrupted (with ``checkpoint_dir`` set, ``resume=True`` continues
            from the last checkpoint).

        Warns
        -----
        UserWarning
            No series has one patch of observed values (the model then reads a partial,
            padded patch; the message gives the minimum).
        ConcurrentFitWarning
            Another fit ran in this process at the same time (threads): torch's random state
            is global to the process, so seeded results then differ from the same fits run
            one after the other.  Use processes (sktime/joblib ``backend="loky"``) instead.

        Notes
        -----
        Every series is divided by its :func:`~msft_forecast.validation.unit_scale` before
        windows are cut (forecasts divide each context by its own), so fine-tuning and
        forecasts do not depend on the data's units.
        """
        series = as_float_series(series)
        s = self.settings
        with _quiet_lightning(s.verbose):
            precision = s.precision or default_precision(s.accelerator)
            check_accelerator(s.accelerator, s.devices, s.strategy, precision)
        # load (or fetch from the process cache) before seeding: building a module draws from
        # the global RNG, which would otherwise make the first fit in a process differ
        self._backbone()
        start_from = self if warm_start and self.model_ is not None else None
        lengths = self._lengths(series, freq, start_from)
        self._check_training_memory(series, freq, lengths)
        seed = self._seed()
        devices = [] if not torch.cuda.is_available() else list(range(torch.cuda.device_count()))
        steps = int(self.settings.max_steps if max_steps is None else max_steps)
        with (
            _concurrent_fit_guard(),
            torch_threads(s.num_threads),
            torch.random.fork_rng(devices=devices),
            _quiet_lightning(self.settings.verbose),
        ):
            torch.manual_seed(seed)
            model, report, residuals = self._fit(series, freq, seed, start_from, steps, lengths)
        self.model_, self.report_, self.residuals_ = model, report, residuals
        self.backbone_source_ = self._source_record()
        return self

    @property
    def backbone_used(self) -> str:
        """The checkpoint the fitted model runs on, in words: the hub id (and revision) or
        folder, or for the offline fallback ``"bundled:moirai-tiny (offline fallback for
        'moirai': ...)"``, so that no result is mistaken for the one asked for."""
        if self.backbone_source_ is None:
            raise RuntimeError("This engine is not fitted yet; call fit() first.")
        return source_label(self.backbone_source_)

    @property
    def context_length_(self) -> int:
        """Context the fitted model reads: ``context_length``, capped at fit by the longest
        series (see :func:`~msft_forecast.training.lengths.choose_lengths`)."""
        if self.report_ is not None and self.report_.context_length:
            return int(self.report_.context_length)
        return int(self.settings.context_length)

    @property
    def prediction_length_(self) -> int:
        """Horizon the model was fine-tuned for (``prediction_length``, or the one ``"auto"``
        chose at fit).  Moirai forecasts any horizon; MOMENT at most this one."""
        if self.report_ is not None and self.report_.prediction_length:
            return int(self.report_.prediction_length)
        if self.settings.prediction_length == "auto":
            raise RuntimeError(
                'prediction_length="auto" is chosen from the data at fit; call fit() first.'
            )
        return int(self.settings.prediction_length)

    def _lengths(
        self, series: list[np.ndarray], freq: str | None, start_from: MSFTEngine | None
    ) -> FitLengths:
        """Context and training horizon of this fit (a warm start keeps its head's horizon)."""
        s = self.settings
        horizon = s.prediction_length
        if start_from is not None and horizon == "auto":
            horizon = start_from.prediction_length_
        lengths = choose_lengths([len(x) for x in series], int(s.context_length), horizon, freq)
        for reason in lengths.reasons:
            logger.info(reason)
        return lengths

    def _attention_shape(self) -> tuple[int, int] | None:
        """``(patch_size, heads)`` of the fitted model's attention, for memory estimates."""
        if self.report_ is None or not self.report_.patch_size:
            return None
        return int(self.report_.patch_size), int(self._backbone().config.num_heads)

    def _check_training_memory(
        self, series: list[np.ndarray], freq: str | None, lengths: FitLengths
    ) -> None:
        """Refuse settings whose training step cannot fit in memory, before any allocation."""
        from msft_forecast.memory import check_memory, training_step_bytes

        s = self.settings
        if not s.strategy_spec().trains or not _runs_on_cpu(s.accelerator):
            return  # an accelerator's memory is its own; this reads the host's
        loaded = self._backbone()
        config = loaded.config
        C, H = lengths.context_length, lengths.prediction_length
        patch = (
            int(s.patch_size)
            if s.patch_size != "auto"
            else min(self.candidate_patch_sizes(freq, C))
        )
        need = training_step_bytes(
            batch_size=int(s.batch_size),
            context_length=C,
            horizon=H,
            patch_size=patch,
            num_scales=int(getattr(s, "num_scales", 1) or 1),
            d_model=int(config.d_model),
            num_layers=int(config.num_layers),
            num_heads=int(config.num_heads),
        )
        longest = max(len(x) for x in series)
        check_memory(
            need,
            what=(
                f"fine-tuning with context_length={C}, prediction_length={H} and "
                f"batch_size={s.batch_size}"
            ),
            fixes=(f"lower context_length (the longest series has {longest} steps) or batch_size"),
        )

    def _source_record(self) -> dict[str, Any]:
        src = self._backbone().source
        return {
            "name": src.name,
            "location": src.location,
            "revision": src.revision,
            "fell_back": src.fell_back,
        }

    def _fit(
        self,
        series: list[np.ndarray],
        freq: str | None,
        seed: int,
        start_from: MSFTEngine | None,
        max_steps: int,
        lengths: FitLengths,
    ):
        import time

        start = time.perf_counter()
        s = self.settings
        H, C = lengths.prediction_length, lengths.context_length
        spec = s.strategy_spec()
        scales = [unit_scale(x) for x in series]
        try:
            split = split_windows(series, C, H, validation=s.validation, scales=scales)
        except ValueError:
            if spec.trains:
                raise
            split = None  # zero-shot needs no training window
        if spec.name == "zero-shot" and self._backbone().kind == "moment":
            self.build_model(None, H)  # raises the explanatory error
        scores: dict[int, float] = {}
        why = None  # the patch size's reason, when it was chosen from the data
        if start_from is not None:
            patch_size = start_from.report_.patch_size
            scores = dict(start_from.report_.patch_size_scores)
        elif s.patch_size == "auto" and split is None:
            candidates = self.candidate_patch_sizes(freq, C)
            patch_size = candidates[0]
            if len(candidates) > 1:
                why = f"patch size {patch_size}: the smallest of {candidates}; no window to "
                why += "compare them on"
        elif s.patch_size == "auto":
            patch_size, scores, why = self._choose_patch_size(split, freq, C, H)
        else:
            patch_size = int(s.patch_size)
        choices = list(lengths.reasons)
        if why is not None:
            logger.info(why)
            choices.append(why)
        _check_one_patch(series, int(patch_size))
        model = self.build_model(patch_size, H)
        if start_from is not None:
            _load_trainable(model, start_from.trainable_state())
        report = FitReport(
            patch_size=patch_size,
            patch_size_scores=scores,
            context_length=C,
            prediction_length=H,
            choices=choices,
        )
        report.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if spec.trains and max_steps > 0:
            self._train(model, split, seed, report, max_steps)
        model.eval()
        residuals = None
        if self._backbone().kind == "moment":
            residuals = self._residuals(model, split)
        report.wall_time_s = time.perf_counter() - start
        return model, report, residuals

    def _choose_patch_size(
        self, split, freq: str | None, context_length: int, horizon: int
    ) -> tuple[int, dict[int, float], str]:
        """The patch size for this data, its candidates' validation scores, and why.

        Every candidate's zero-shot forecast (the scale-0 forecast of an untrained model, which
        is the frozen backbone's) is scored on the validation windows (the training windows when
        there is no validation tail), never anything later.  Then the **smallest** candidate is
        kept unless the best one beats it clearly (:func:`prefer_smaller_patch`): overlapping
        windows of a short series hold little evidence, and a wrong large patch is costly (a
        few tokens of context, a first forecast step far from the last value).
        """
        candidates = self.candidate_patch_sizes(freq, context_length)
        if len(candidates) == 1:
            return candidates[0], {}, f"patch size {candidates[0]}: the only candidate"
        data = split.validation if split.validation is not None else split.train
        n = min(len(data), 64)
        idx = np.unique(np.linspace(0, len(data) - 1, n).round().astype(int))
        batch = torch.utils.data.default_collate([data[int(i)] for i in idx])
        # score each window in units of its context's spread, so no series dominates
        spread = _spread(batch["context"], batch["context_observed"])
        spread = spread.clamp(min=1e-3 * float(spread.median()) + 1e-8)
        errors = {}
        for p in candidates:
            bare = resolve_strategy("zero-shot")
            model = self.build_model(p, horizon, bare).eval()
            with torch.no_grad():
                out = model.forecast(
                    batch["context"],
                    batch["context_observed"],
                    batch["horizon"].shape[-1],
                    num_samples=1,
                    available=batch["available"],
                )
            err = ((out["scale_means"][:, 0] - batch["horizon"]) / spread[:, None]) ** 2
            err = torch.where(batch["horizon_observed"], err, torch.nan)
            errors[p] = np.nanmean(err.double().numpy(), axis=1)  # one error per window
        origins = [data.origin(int(i)) for i in idx]
        independent = independent_windows(origins, horizon)
        chosen, why = prefer_smaller_patch(errors, independent)
        scores = {p: float(np.nanmean(e)) for p, e in errors.items()}
        return chosen, scores, why

    def _trainer_kwargs(self, max_steps: int) -> dict[str, Any]:
        s = self.settings
        precision = s.precision or default_precision(s.accelerator)
        kwargs: dict[str, Any] = dict(
            accelerator=s.accelerator,
            devices=s.devices,
            strategy=s.strategy,
            precision=precision,
            max_steps=max_steps,
            max_epochs=-1 if s.max_epochs is None else int(s.max_epochs),
            gradient_clip_val=s.gradient_clip,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=bool(s.verbose),
            enable_model_summary=bool(s.verbose),
            num_sanity_val_steps=0,
            # cached layout tensors built during validation are reused in training steps
            inference_mode=False,
            use_distributed_sampler=False,
            default_root_dir=os.path.join(os.getcwd(), "lightning_logs") if s.verbose else None,
        )
        if s.max_time is not None:
            from datetime import timedelta

            kwargs["max_time"] = timedelta(seconds=float(s.max_time))
        return kwargs

    def _train(
        self, model: torch.nn.Module, split, seed: int, report: FitReport, max_steps: int
    ) -> None:
        import lightning as L
        from lightning.pytorch.callbacks import EarlyStopping

        from msft_forecast.training.lightning import (
            FineTuneModule,
            KeepBestTrainable,
            TrainingHistory,
            WindowDataModule,
        )

        s = self.settings
        module = FineTuneModule(
            model, s.resolved_learning_rate(), s.scale_weight_lr, s.weight_decay
        )
        interval = max(1, min(int(s.val_check_interval), max_steps))
        data = WindowDataModule(split.train, split.validation, int(s.batch_size), interval, seed)
        history, best = TrainingHistory(), KeepBestTrainable()
        callbacks: list = [history]
        if split.validation is not None:
            callbacks.append(best)
            if s.early_stopping_patience is not None:
                callbacks.append(
                    EarlyStopping("val_loss", patience=int(s.early_stopping_patience), mode="min")
                )
        kwargs = self._trainer_kwargs(max_steps)
        resume_from = None
        if s.checkpoint_dir is not None:
            callbacks.append(_checkpoint_callback(s.checkpoint_dir))
            kwargs["enable_checkpointing"] = True
            last = Path(s.checkpoint_dir) / "last.ckpt"
            if s.resume and last.is_file():
                _check_resumable(last)
                resume_from = str(last)
        if split.validation is None and getattr(model, "fits_weights_on_validation", False):
            logger.warning(
                'scale_weighting="validation" needs validation windows; without them the scales '
                "keep uniform weights. Pass validation=... (a held-out tail) to fit the weights."
            )
        trainer = L.Trainer(callbacks=callbacks, **kwargs)
        if split.validation is not None and resume_from is None:
            # the starting point competes too: fine-tuning never returns something worse than
            # it began with on the validation windows
            trainer.validate(module, datamodule=data, verbose=False)
            best.initial = best.best if math.isfinite(best.best) else None
        _fit_interruptible(trainer, module, data, resume_from)
        report.initial_val_loss = best.initial
        report.steps = int(trainer.global_step)
        report.best_step = best.best_step
        report.best_val_loss = best.best if math.isfinite(best.best) else None
        report.history = history.as_dict()

    def _residuals(self, model: torch.nn.Module, split) -> torch.Tensor:
        """Held-out residuals in units of each window's context spread (MOMENT intervals)."""
        data = split.validation if split.validation is not None else split.train
        if len(data) < MIN_RESIDUAL_WINDOWS and data is not split.train:
            # too few held-out windows for a distribution: training windows are in-sample and
            # give narrower intervals, but a handful of rows would give nearly none
            warnings.warn(
                f"Only {len(data)} validation windows for MOMENT's residual intervals; training "
                f"windows are used too, so intervals may be too narrow. Hold out more data "
                f"(validation=...) for calibrated intervals.",
                UserWarning,
                stacklevel=3,
            )
            data = torch.utils.data.ConcatDataset([data, split.train])
        n = min(len(data), 512)
        idx = np.linspace(0, len(data) - 1, n).round().astype(int)
        rows = []
        for chunk in np.array_split(idx, max(1, -(-n // 128))):
            batch = torch.utils.data.default_collate([data[int(i)] for i in chunk])
            out = model.forecast(
                batch["context"], batch["context_observed"], batch["horizon"].shape[-1]
            )
            spread = _spread(batch["context"], batch["context_observed"])
            res = (batch["horizon"] - out["mean"]) / spread[:, None]
            rows.append(torch.where(batch["horizon_observed"], res, torch.nan))
        return torch.cat(rows).float()

    # -------------------------------------------------------------------------------- forecast
    def forecast(
        self,
        contexts: Sequence[np.ndarray],
        horizon: int,
        num_samples: int | None = None,
        *,
        seed: int | None = None,
        batch_size: int = 256,
    ) -> Forecast:
        """Forecast ``horizon`` steps after the end of each context series.

        Parameters
        ----------
        contexts : sequence of ndarray
            1-D series (NaN for missing); the last ``context_length`` steps are used.
        horizon : int
            Steps to forecast (Moirai: any length its sequence limit allows; MOMENT: at most
            the training ``prediction_length``).
        num_samples : int, optional
            Sample paths (default the setting ``num_samples``); 0 skips sampling (mean only).
        seed : int, optional
            Seed of the sampling stream (default derived from ``random_state``); the same seed
            gives the same samples. Row ``i`` samples from its own stream seeded by
            ``(seed, i)``, so a series' sample paths do not depend on the other series in the
            call nor on ``batch_size``.
        batch_size : int, default 256
            Contexts per model call.

        Raises
        ------
        RuntimeError
            The engine is not fitted.
        ValueError
            Bad contexts (empty, non-numeric, infinite values, or no observed value in the last
            ``context_length`` steps), ``horizon < 1`` or ``num_samples < 0``.
        """
        if self.model_ is None:
            raise RuntimeError("This engine is not fitted yet; call fit() first.")
        contexts = as_float_series(contexts, what="context", require_observed=False)
        C = self.context_length_
        check_observed_contexts(contexts, C)
        if not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}.")
        num_samples = int(self.settings.num_samples if num_samples is None else num_samples)
        if num_samples < 0:
            raise ValueError(
                f"num_samples must be >= 1 (or 0 for the mean alone), got {num_samples}."
            )
        seed = self._seed() if seed is None else int(seed)
        seeds = _row_seeds(seed, len(contexts))
        model = self.model_.eval()
        batch_size = _forecast_batch_size(
            model, len(contexts), C, int(horizon), num_samples, batch_size,
            attention=self._attention_shape(),
        )  # fmt: skip
        with torch_threads(self.settings.num_threads):
            outs = self._forecast_batches(
                model, contexts, C, int(horizon), num_samples, seeds, batch_size
            )
        cat = {
            k: torch.cat([o[k] for o in outs]).numpy() for k in ("mean", "samples", "scale_means")
        }
        return Forecast(weights=outs[0]["weights"].double().numpy(), **cat)

    def _forecast_batches(
        self,
        model: torch.nn.Module,
        contexts: list[np.ndarray],
        C: int,
        horizon: int,
        num_samples: int,
        seeds: Sequence[int],
        batch_size: int,
    ) -> list[dict[str, torch.Tensor]]:
        """The model's forecasts of ``contexts`` in batches, back in each context's units."""
        outs = []
        for start in range(0, len(contexts), batch_size):
            chunk = [c[-C:] for c in contexts[start : start + batch_size]]
            # each context in its own units (scale-equivariant forecasts, see unit_scale)
            factors = torch.tensor([unit_scale(c) for c in chunk], dtype=torch.float64)
            windows = [
                cut_window(c, len(c), C, 0, float(f)) for c, f in zip(chunk, factors, strict=True)
            ]
            batch = torch.utils.data.default_collate(windows)
            rows = seeds[start : start + batch_size]
            out = model.forecast(
                batch["context"],
                batch["context_observed"],
                int(horizon),
                num_samples,
                available=batch["available"],
                seeds=rows,
            )
            if "samples" not in out:
                out["samples"] = self._residual_samples(batch, out["mean"], num_samples, rows)
            out["mean"] = out["mean"].double() * factors[:, None]
            for key in ("samples", "scale_means"):
                out[key] = out[key].double() * factors[:, None, None]
            outs.append(out)
        return outs

    def _residual_samples(
        self, batch, mean: torch.Tensor, num_samples: int, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Point forecast plus resampled held-out residual paths (split-conformal style); row
        ``i`` draws its residuals from a stream seeded by ``seeds[i]``."""
        res = self.residuals_
        horizon = mean.shape[-1]
        if num_samples == 0:
            return mean.new_zeros(mean.shape[0], 0, horizon)
        if res is None or res.shape[0] == 0:
            return mean.unsqueeze(1).expand(-1, num_samples, -1).clone()
        res = torch.nan_to_num(res[:, :horizon], nan=0.0)
        rows = torch.stack(
            [
                torch.randint(
                    0, res.shape[0], (num_samples,), generator=torch.Generator().manual_seed(sd)
                )
                for sd in seeds
            ]
        )
        spread = _spread(batch["context"], batch["context_observed"])
        return mean.unsqueeze(1) + res[rows] * spread[:, None, None]

    # ------------------------------------------------------------------------ save and restore
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors this fitted engine owns (everything except the frozen backbone)."""
        if self.model_ is None:
            return {}
        state = {
            name: p.detach().cpu().contiguous()
            for name, p in self.model_.named_parameters()
            if p.requires_grad
        }
        if self.residuals_ is not None:
            state["__residuals__"] = self.residuals_.cpu().contiguous()
        return state

    def state(self) -> dict[str, Any]:
        """Settings, backbone reference, fit report and trainable tensors (no frozen weights)."""
        meta = {
            "format": STATE_FORMAT,
            "settings": self.settings.to_json(),
            "backbone": self.backbone_source_,
            "report": None if self.report_ is None else asdict(self.report_),
        }
        return {"meta": meta, "tensors": self.trainable_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MSFTEngine:
        """Rebuild a fitted engine from :meth:`state` (loads the frozen backbone from cache)."""
        meta = state["meta"]
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"not an msft_forecast engine state (format {meta.get('format')!r}).")
        engine = cls(MSFTSettings.from_json(meta["settings"]))
        if meta.get("report") is None:
            return engine
        report = FitReport(**meta["report"])
        report.patch_size_scores = {int(k): v for k, v in report.patch_size_scores.items()}
        if not report.prediction_length:  # saved before the report recorded the lengths
            report.prediction_length = int(engine.settings.prediction_length)
            report.context_length = int(engine.settings.context_length)
        engine.backbone_source_ = meta.get("backbone")
        model = engine.build_model(report.patch_size, report.prediction_length)
        tensors = dict(state["tensors"])
        residuals = tensors.pop("__residuals__", None)
        _load_trainable(model, tensors)
        engine.model_ = model.eval()
        engine.report_ = report
        engine.residuals_ = residuals
        engine.backbone_source_ = meta.get("backbone")
        return engine

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``settings.json`` and ``trainable.safetensors`` into folder ``path``."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        with open(folder / "msft_model.json", "w", encoding="utf-8") as fh:
            json.dump(state["meta"], fh, indent=2)
        save_file(state["tensors"], str(folder / "trainable.safetensors"))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> MSFTEngine:
        """Load what :meth:`save` wrote (weights through safetensors only)."""
        from safetensors.torch import load_file

        folder = Path(path)
        with open(folder / "msft_model.json", encoding="utf-8") as fh:
            meta = json.load(fh)
        tensors = load_file(str(folder / "trainable.safetensors"))
        return cls.from_state({"meta": meta, "tensors": tensors})

    def __getstate__(self) -> dict[str, Any]:
        # pickling keeps the trainable tensors, never the shared frozen backbone
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(MSFTEngine.from_state(state).__dict__)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (process-wide), then restore the previous
    count; ``None`` leaves torch's setting alone."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class ConcurrentFitWarning(UserWarning):
    """Two fits overlapped in one process; their seeded results are not reproducible."""


_FITS_LOCK = threading.Lock()
_ACTIVE_FITS = 0
#: Number of fits so far that started while another was running (read by the running ones).
_OVERLAPS = 0


@contextmanager
def _concurrent_fit_guard() -> Iterator[None]:
    """Warn when fits overlap in threads of one process.

    Fits seed and draw from torch's global generator (Lightning, dropout, window sampling), so
    two fits in threads interleave their draws: each gives results different from the same fit
    run alone, with no error.  Owning a generator per fit does not cover Lightning's and
    torch's global draws, so the overlap is detected and both fits warn (the second at its
    start, the first at its end).
    """
    global _ACTIVE_FITS, _OVERLAPS
    with _FITS_LOCK:
        concurrent = _ACTIVE_FITS > 0
        _ACTIVE_FITS += 1
        if concurrent:
            _OVERLAPS += 1
        seen = _OVERLAPS
    message = (
        "another fit ran in this process at the same time (threads): torch's random state is "
        "shared by the process, so these seeded results differ from the same fits run one after "
        "the other. Run fits in separate processes (e.g. backend='loky') for reproducible results."
    )
    if concurrent:
        warnings.warn(message, ConcurrentFitWarning, stacklevel=4)
    try:
        yield
    finally:
        with _FITS_LOCK:
            _ACTIVE_FITS -= 1
            overlapped_later = _OVERLAPS != seen
        if overlapped_later and not concurrent:
            warnings.warn(message, ConcurrentFitWarning, stacklevel=4)


#: Bytes of working memory per sample-path step and scale while a row is sampled (float32
#: intermediates of the per-scale distributions over whole patches).
SAMPLING_BYTES_PER_STEP = 4 * 32


def _forecast_batch_size(
    model: torch.nn.Module,
    rows: int,
    context: int,
    horizon: int,
    samples: int,
    batch_size: int,
    attention: tuple[int, int] | None = None,
) -> int:
    """Refuse a forecast whose outputs cannot fit in memory; else the batch size that keeps the
    working memory of one model call within a quarter of what is left (never larger than
    asked).

    Per row, the working memory is the sampling's (every scale's distributions over whole
    patches) and, with ``attention = (patch_size, heads)``, one layer's attention weights over
    all tokens of all scales (inference keeps one layer's at a time).  Batches only group rows
    for speed: a row's samples come from its own stream, so a smaller batch gives the same
    forecast (up to float rounding).
    """
    from msft_forecast.memory import available_memory_bytes, check_memory, gigabytes

    scales = int(getattr(getattr(model, "spec", None), "num_scales", 1))
    outputs = 16.0 * rows * horizon * (samples + scales + 1)  # float64, and one copy when joined
    what = f"a forecast of {rows} series x {samples} sample paths x {horizon} steps"
    fixes = (
        "lower num_samples or the horizon, or forecast fewer series per call (num_samples=0 "
        "gives the mean alone)"
    )
    check_memory(outputs, what=what, fixes=fixes)
    per_row = SAMPLING_BYTES_PER_STEP * (horizon * max(samples, 1) * scales + context)
    if attention is not None:
        patch, heads = attention
        tokens = sum(-(-(context + horizon) // (patch * 2**k)) for k in range(max(1, scales)))
        per_row += 2 * 4 * heads * tokens * tokens  # float32 scores and their softmax
    available = available_memory_bytes()
    if available is None:
        return batch_size
    budget = 0.25 * max(available - outputs, 0)
    if per_row > budget:
        from msft_forecast.memory import InsufficientMemoryError

        raise InsufficientMemoryError(
            f"forecasting {horizon} steps ({samples} sample paths) for one series needs about "
            f"{gigabytes(per_row)} of working memory, more than the {gigabytes(budget)} this "
            f"call can use; {fixes}."
        )
    return max(1, min(batch_size, int(budget // per_row)))


def default_precision(accelerator: str) -> str:
    """``"bf16-mixed"`` on the CPU, ``"32-true"`` elsewhere.

    On the CPU, bf16-mixed fine-tuning ran 1.2-1.4x faster per step than float32 with the same
    validation loss and test MSE (``benchmarks/training_cost.py``, docs/benchmarks.md); on GPUs
    float32 stays the default until measured there: pass ``precision="bf16-mixed"`` to opt in.
    """
    return "bf16-mixed" if _runs_on_cpu(accelerator) else "32-true"


def _runs_on_cpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` resolves to the CPU on this machine."""
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def _load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable tensors into a freshly built model, checking names and shapes."""
    tensors = {k: v for k, v in tensors.items() if k != "__residuals__"}
    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    if set(tensors) != wanted:
        missing, unexpected = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
        raise ValueError(
            "The saved tensors do not match the model these settings build (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}); were the settings changed?"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise ValueError(
                    f"Saved tensor {name!r} has shape {tuple(value.shape)}, the model needs "
                    f"{tuple(params[name].shape)}."
                )
            params[name].copy_(value)


def _checkpoint_callback(folder: str):
    """Lightning's ``ModelCheckpoint`` writing ``last.ckpt`` at the end of every training epoch
    (one epoch is ``val_check_interval`` steps, after its validation): the trainable tensors,
    optimiser, loops, callbacks (best weights, early stopping, history) and the torch stream."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    # without a monitor and with save_top_k=1 the latest checkpoint replaces the previous one
    # (save_last alone writes only when a top-k checkpoint was written in the same step)
    return ModelCheckpoint(
        dirpath=folder,
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def _check_resumable(path: Path) -> None:
    """Open a checkpoint with ``weights_only=True`` (tensors and plain containers only, no
    arbitrary objects unpickled) before Lightning does, so a foreign or damaged file fails with
    a message that says what to do."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        raise ValueError(
            f"{path} cannot be resumed from: it is not a checkpoint this package wrote, or it is "
            f"damaged, and it is never unpickled beyond tensors ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}). Delete it to start over, or fit with "
            f"resume=False."
        ) from err


def _fit_interruptible(trainer, module, data, ckpt_path: str | None) -> None:
    """``trainer.fit`` that turns a Ctrl+C into ``KeyboardInterrupt`` for the caller.

    Lightning handles ``KeyboardInterrupt`` itself by ignoring SIGINT from then on and calling
    ``sys.exit(1)``: a library must not exit its caller's process (a notebook kernel, a
    pipeline) nor leave Ctrl+C disabled. The SIGINT handler is restored and the interrupt
    re-raised; the engine then stays as it was before ``fit``.
    """
    import signal

    handler = signal.getsignal(signal.SIGINT)
    try:
        if ckpt_path is None:
            trainer.fit(module, datamodule=data)
        else:
            # checkpoints hold tensors and plain containers only: load them without unpickling
            # arbitrary objects
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as err:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt(
            "fine-tuning was interrupted; the model was not fitted (with checkpoint_dir set, "
            "fit again with resume=True to continue from the last checkpoint)"
        ) from err
    finally:
        if handler is not None and signal.getsignal(signal.SIGINT) != handler:
            try:
                signal.signal(signal.SIGINT, handler)
            except ValueError:  # not the main thread: Lightning could not change it either
                pass
    if trainer.interrupted:
        raise KeyboardInterrupt("fine-tuning was interrupted; the model was not fitted")


def _check_one_patch(series: list[np.ndarray], patch_size: int) -> None:
    """Warn when no series has one patch of observed values: the model then reads a partial
    patch padded with masked steps (as Moirai does for any series), which works but carries
    little information."""
    most = max(int(np.isfinite(x).sum()) for x in series)
    if most < patch_size:
        warnings.warn(
            f"The longest series has {most} observed values, fewer than one patch of "
            f"{patch_size} steps: the model reads one partial, padded patch. Pass at least "
            f"{patch_size} observations for a full patch (or a smaller patch_size, e.g. 8).",
            UserWarning,
            stacklevel=4,
        )


def source_label(record: dict[str, Any], detail: bool = True) -> str:
    """A backbone source record (``MSFTEngine.backbone_source_``) in words.

    The hub id (with ``@revision``) or folder; for the offline fallback, also what was asked
    for and (``detail``) that these are not its weights.

    Examples
    --------
    >>> record = {"name": "moirai", "location": "bundled:moirai-tiny", "fell_back": True}
    >>> source_label(record, detail=False)
    "bundled:moirai-tiny (offline fallback for 'moirai')"
    """
    used = str(record["location"]) + (f"@{record['revision']}" if record.get("revision") else "")
    if not record.get("fell_back"):
        return used
    name = record["name"]
    if not detail:
        return f"{used} (offline fallback for {name!r})"
    return (
        f"{used} (offline fallback for {name!r}: the small bundled backbone pre-trained on "
        f"synthetic data, not {name!r}'s weights; allow_fallback=False makes this an error)"
    )


#: How many standard errors a larger patch size must beat a smaller one by to be chosen.
PATCH_EVIDENCE_SE = 2.0


def independent_windows(origins: Sequence[tuple[int, int]], horizon: int) -> int:
    """How many non-overlapping horizons the windows at ``(series, origin)`` span in total.

    Overlapping windows of one series share most of their targets, so the evidence they hold
    is about that of the horizons that fit side by side in the span they cover (and never more
    than the number of windows).
    """
    spans: dict[int, list[int]] = {}
    for series, origin in origins:
        spans.setdefault(series, []).append(origin)
    # never more than the windows themselves: windows far apart leave gaps between horizons
    return sum(min(len(set(o)), (max(o) - min(o) + horizon) // horizon) for o in spans.values())


def prefer_smaller_patch(errors: dict[int, np.ndarray], independent: int) -> tuple[int, str]:
    """The smallest patch size the best-scoring one does not beat clearly, and why.

    ``errors`` maps each candidate to its per-window errors (the same windows for all).  The
    best candidate replaces a smaller one only if its mean error is lower by more than
    :data:`PATCH_EVIDENCE_SE` standard errors of the paired differences, counting
    ``independent`` windows (fewer than two: never).
    """
    sizes = sorted(errors)
    means = {p: float(np.nanmean(errors[p])) for p in sizes}
    best = min(sizes, key=lambda p: means[p])
    listed = ", ".join(f"{p}: {means[p]:.3g}" for p in sizes)
    chosen = best
    for p in sizes:
        if p == best:
            break
        diff = errors[best] - errors[p]
        diff = diff[np.isfinite(diff)]
        if independent >= 2 and diff.size >= 2:
            se = float(np.std(diff, ddof=1)) / math.sqrt(min(independent, diff.size))
            if float(np.mean(diff)) < -PATCH_EVIDENCE_SE * se:
                continue  # the best is clearly better than p: look at the next size
        chosen = p  # no clear evidence against p: keep the smaller size
        break
    if chosen == best:
        why = "the lowest zero-shot validation error" + (
            f", clearly below the smaller sizes over {independent} independent horizons"
            if chosen != sizes[0]
            else ""
        )
    else:
        why = (
            f"the smallest size that {best} does not beat by {PATCH_EVIDENCE_SE:g} standard "
            f"errors over {independent} independent horizon(s)"
        )
    return chosen, f"patch size {chosen}: {why} (mean squared error per size, {listed})"


def _spread(context: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the observed context steps of each row (at least 1e-8)."""
    n = observed.sum(-1).clamp(min=1)
    mean = torch.where(observed, context, 0.0).sum(-1) / n
    var = torch.where(observed, (context - mean[:, None]) ** 2, 0.0).sum(-1) / n
    return var.sqrt().clamp(min=1e-8)
