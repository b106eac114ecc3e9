"""sktime front end: :class:`MSFTForecaster`, a thin adapter around :class:`MSFTEngine`.

This module only converts data: sktime containers to lists of 1-D float arrays (one per channel
of every series: channel-independent modelling) for :meth:`MSFTEngine.fit` and
:meth:`MSFTEngine.forecast`, and the engine's :class:`Forecast` back to sktime's output formats.
All modelling (scales, adapters, training, sampling) lives in the engine.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from msft_forecast.engine import MSFTEngine, MSFTSettings
from msft_forecast.frequencies import frequency_key
from msft_forecast.validation import check_time_index, regular_grid

__all__ = ["MSFTForecaster"]

_INNER_MTYPES = ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"]

_REMEMBER_DATA_NOTICE = "The default of config ``remember_data`` will change"

#: Hyper-parameters that are engine settings (everything but ``update_steps``).
_SETTING_NAMES = tuple(f.name for f in fields(MSFTSettings))


class MSFTForecaster(BaseForecaster):
    """Fine-tune a Moirai or MOMENT foundation model with multi-scale fine-tuning (MSFT).

    One global fine-tune over every series and channel passed to ``fit`` (univariate,
    multivariate: each column its own channel, panel and hierarchical data alike), then
    probabilistic forecasts for every series. The frozen backbone is loaded once per process
    and shared by all clones, folds and fitted forecasters; a fitted forecaster owns (and
    pickles) only its small trainable tensors.

    Point forecasts (``predict``) are the **mean** of the predictive distribution
    (MSE-optimal; use ``predict_quantiles(alpha=0.5)`` for the median). ``predict_quantiles``,
    ``predict_interval``, ``predict_var`` and ``predict_proba`` (an skpro ``Empirical``) come from
    the same ``num_samples`` sample paths. Missing values (NaN) in ``y`` are allowed: the engine
    masks them. Exogenous data ``X`` is not used (``capability:exogenous`` is False): MSFT
    adapts univariate foundation models, which have no covariate input.

    Parameters
    ----------
    backbone : str, default="moirai"
        Checkpoint: a short name (``"moirai"``, ``"moirai-small"``, ``"moirai-base"``,
        ``"moment-small"``, ``"moirai-tiny"`` for the small checkpoint bundled with the
        package), a Hugging Face hub id or a local folder.
    revision : str or None, default=None
        Hub revision (branch, tag or commit) of ``backbone``.
    allow_fallback : bool, default=True
        If the hub cannot be reached for ``backbone="moirai"``, warn and use the bundled
        ``"moirai-tiny"`` instead of raising.
    fit_strategy : {"msft", "lora", "full", "linear-probe", "zero-shot"}, default="msft"
        What is trained: ``"msft"`` per-scale adapters and LoRA, cross-scale aggregator and
        head; ``"lora"`` single-scale LoRA and head; ``"full"`` every weight;
        ``"linear-probe"`` the head only; ``"zero-shot"`` nothing (Moirai only: MOMENT has no
        forecasting head before fine-tuning).
    context_length : int, default=512
        Steps of history the model sees; the last ``context_length`` steps of every series
        are kept for prediction.  Capped at fit by the longest series (steps before a
        series' start would be padding); ``engine_.context_length_`` is the one used.
    prediction_length : int or "auto", default="auto"
        Training horizon when ``fh`` is not passed to ``fit``. ``"auto"``: 96 steps, or on
        series shorter than 480 steps a fifth of the longest series, rounded down to whole
        seasons (24 on 144 monthly points); ``engine_.prediction_length_`` is the one used
        and ``engine_.report_.choices`` says why. When ``fh`` is passed to ``fit``, the
        training horizon is ``max(fh)`` in steps instead. Moirai forecasts any horizon
        later; MOMENT at most its training horizon.
    num_scales : int, default=4
        Scales including the original resolution (``K + 1``; each coarser scale halves the
        resolution); ``"msft"`` only.
    patch_size : int or "auto", default="auto"
        Moirai patch size; ``"auto"`` picks the one with the best zero-shot validation error
        among those Moirai uses for the data's frequency.
    pooling : {"mean", "max", "subsample"}, default="mean"
        How coarser scales are built from finer ones.
    lora_rank : int, default=16
        LoRA rank (``"msft"``, ``"lora"``).
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
        Train the output head (Moirai's distribution projection) in ``"msft"`` / ``"lora"``.
    learning_rate : float or None, default=None
        Constant learning rate; None for the strategy's default (1e-3 for the
        parameter-efficient strategies, 1e-5 for ``"full"``).
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
        Optional cap on passes over the training windows.
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
    verbose : bool, default=False
        Show Lightning's progress bar and messages.
    checkpoint_dir : str or None, default=None
        Folder where fine-tuning writes ``last.ckpt`` (trainable tensors, optimiser, loop and
        callback state) at every validation; None writes nothing. Use one folder per run.
    resume : bool, default=False
        Continue an interrupted fine-tune from ``checkpoint_dir/last.ckpt`` (same data and
        settings) instead of starting over; the result equals an uninterrupted fit.
    update_steps : int, default=20
        Steps of continued fine-tuning in ``update(update_params=True)``, on the windows of
        the most recent ``context_length + training horizon`` steps plus the new data;
        0 only moves the context forward, as ``update_params=False`` does.
    num_threads : int or None, default=None
        torch threads during fit and predict (process-wide, restored afterwards); None keeps
        torch's setting (one per core). The OpenMP threads wait passively by default, so a
        shared machine does not slow the fit down by more than its own load (see the FAQ).

    Attributes
    ----------
    engine_ : MSFTEngine
        The fitted engine (its ``report_`` says what the fine-tune did, and ``report_.choices``
        what it chose from the data: context, training horizon, patch size, and why).
    backbone_used_ : str
        The checkpoint actually fine-tuned: hub id (and revision), folder, or
        ``"bundled:moirai-tiny (offline fallback for 'moirai': ...)"`` when the default
        backbone could not be downloaded (``allow_fallback=False`` makes that an error).
        Also shown at the end of the fitted forecaster's ``repr``.
    history_ : pd.DataFrame
        The last ``context_length`` plus training-horizon steps of every series (inner mtype),
        the context of the next forecast.
    pretrained_engine_ : MSFTEngine
        Only after ``pretrain``: the engine fine-tuned on the pretraining panel, from which
        every later ``fit`` continues.

    See Also
    --------
    msft_forecast.engine.MSFTEngine : the engine behind this forecaster.

    Notes
    -----
    ``update(y, update_params=False)`` only moves the context: the cheap, realistic backtest
    is ``evaluate(..., strategy="no-update_params")`` (fine-tune once, roll the context).
    ``update_params=True`` continues fine-tuning for ``update_steps`` steps. After
    ``pretrain(y_panel)``, ``fit`` fine-tunes from the pretrained weights (clones keep them).
    The forecaster keeps its own short context, so
    ``set_config(remember_data=False)`` changes nothing but the size of a pickle (the base
    class then stops storing the whole training series).

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from msft_forecast import MSFTForecaster
    >>> y = load_airline()
    >>> y_train, y_new = y.iloc[:-12], y.iloc[-12:]
    >>> forecaster = MSFTForecaster(
    ...     backbone="moirai-tiny", context_length=48, max_steps=2, batch_size=8,
    ...     num_samples=20, random_state=0,
    ... )
    >>> forecaster = forecaster.fit(y_train, fh=[1, 2, 3, 4, 5, 6])
    >>> forecaster.predict().shape
    (6,)
    >>> forecaster.predict_interval(coverage=0.8).shape
    (6, 2)
    >>> forecaster = forecaster.update(y_new, update_params=False)  # the context moves
    >>> forecaster.predict_quantiles(alpha=[0.1, 0.5, 0.9]).index[0]
    Period('1961-01', 'M')
    """

    _tags = {
        # packaging info
        # --------------
        "authors": ["msft_forecast developers"],
        "maintainers": ["msft_forecast developers"],
        "python_version": ">=3.10",
        "python_dependencies": [
            "torch>=2.6",
            "lightning>=2.4",
            "safetensors>=0.4",
            "huggingface_hub>=0.24",
            "skpro>=2.9",
        ],
        # estimator type
        # --------------
        "y_inner_mtype": _INNER_MTYPES,
        "X_inner_mtype": _INNER_MTYPES,
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": True,
        "capability:pred_int:insample": False,
        "capability:missing_values": True,
        "capability:unequal_length": True,
        "capability:update": True,
        "capability:pretrain": True,
        "pretrain:fitted_params": ["pretrained_engine_"],
        "capability:random_state": True,
        "property:randomness": "derandomized",
        "requires-fh-in-fit": False,
        "fit_is_empty": False,
    }

    def __init__(
        self,
        backbone: str = "moirai",
        revision: str | None = None,
        allow_fallback: bool = True,
        fit_strategy: str = "msft",
        context_length: int = 512,
        prediction_length: int | str = "auto",
        num_scales: int = 4,
        patch_size: int | str = "auto",
        pooling: str = "mean",
        lora_rank: int = 16,
        lora_alpha: float = 16.0,
        lora_targets: tuple[str, ...] = ("q", "k", "v"),
        shared_lora: bool = False,
        aggregator: bool = True,
        aggregator_rank: int | None = 64,
        mixing: str = "mixture",
        scale_weighting: str = "validation",
        train_head: bool = True,
        learning_rate: float | None = None,
        scale_weight_lr: float = 1e-2,
        scale_weight_prior: float = 0.0,
        weight_decay: float = 0.1,
        batch_size: int = 32,
        max_steps: int = 200,
        max_epochs: int | None = None,
        max_time: float | None = None,
        validation: float | int | None = 0.1,
        val_check_interval: int = 50,
        early_stopping_patience: int | None = 3,
        gradient_clip: float | None = 1.0,
        num_samples: int = 100,
        random_state: int | None = None,
        accelerator: str = "cpu",
        devices: int | str | list[int] = 1,
        strategy: str = "auto",
        precision: str | None = None,
        verbose: bool = False,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        update_steps: int = 20,
        num_threads: int | None = None,
    ) -> None:
        self.backbone = backbone
        self.revision = revision
        self.allow_fallback = allow_fallback
        self.fit_strategy = fit_strategy
        self.context_length = context_length
        self.prediction_length = prediction_length
        self.num_scales = num_scales
        self.patch_size = patch_size
        self.pooling = pooling
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_targets = lora_targets
        self.shared_lora = shared_lora
        self.aggregator = aggregator
        self.aggregator_rank = aggregator_rank
        self.mixing = mixing
        self.scale_weighting = scale_weighting
        self.train_head = train_head
        self.learning_rate = learning_rate
        self.scale_weight_lr = scale_weight_lr
        self.scale_weight_prior = scale_weight_prior
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.validation = validation
        self.val_check_interval = val_check_interval
        self.early_stopping_patience = early_stopping_patience
        self.gradient_clip = gradient_clip
        self.num_samples = num_samples
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.precision = precision
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.update_steps = update_steps
        self.num_threads = num_threads
        with warnings.catch_warnings():
            # sktime 1.2 announces that ``remember_data`` will default to False, which changes
            # what the *default* update does; this class has its own update and keeps its own
            # context (``history_``), so the change does not affect it
            warnings.filterwarnings("ignore", _REMEMBER_DATA_NOTICE, FutureWarning)
            super().__init__()

    # ------------------------------------------------------------------------------ settings
    def _settings(self, horizon: int | str) -> MSFTSettings:
        """Engine settings from the hyper-parameters, with the training horizon ``horizon``."""
        values = {name: getattr(self, name) for name in _SETTING_NAMES}
        values["prediction_length"] = horizon
        return MSFTSettings(**values)

    def _training_horizon(self, fh: ForecastingHorizon | None, cutoff) -> int | str:
        """``max(fh)`` in steps after ``cutoff`` if ``fh`` is given, else ``prediction_length``
        (``"auto"``: the engine chooses it from the data)."""
        if fh is None:
            return self.prediction_length
        steps = fh.to_relative(cutoff).to_numpy()
        return max(1, int(np.max(steps)))

    def _backbone(self):
        """The shared frozen backbone, loaded now if this process has not loaded it yet.

        Called before every ``MSFTEngine.fit``: a backbone first loaded inside ``fit`` builds
        its modules after the engine has seeded torch, which shifts the random stream of the
        trainable tensors' initialisation, so the first fit in a process would differ from
        later fits with the same ``random_state``.
        """
        from msft_forecast.backbones.cache import get_backbone

        return get_backbone(self.backbone, self.revision, allow_fallback=self.allow_fallback)

    # ----------------------------------------------------------------------------------- fit
    def _fit(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Fine-tune one engine on every channel of every series in ``y``.

        After ``pretrain``, continues from the pretrained weights instead of the backbone.
        """
        _check_time_indexes(y)
        horizon = self._training_horizon(fh, self.cutoff)
        settings = self._settings(horizon)
        series = _channels(y)
        freq = _frequency_key(self.cutoff)
        pretrained = getattr(self, "pretrained_engine_", None)
        self._backbone()
        if pretrained is None:
            engine = MSFTEngine(settings).fit(series, freq=freq)
        else:
            engine = self._from_pretrained(pretrained, settings)
            engine.fit(series, freq=freq, warm_start=True)
        self.engine_ = engine
        self.backbone_used_ = engine.backbone_used
        self.history_ = _tail(y, self._history_length())
        return self

    def __repr__(self, n_char_max: int = 700) -> str:
        """The parameters, and once fitted the checkpoint actually used (``backbone_used_``):
        ``backbone="moirai"`` offline runs on the bundled fallback, which must not pass for
        Moirai in a backtest or a grid search."""
        text = super().__repr__(n_char_max)
        used = getattr(self, "backbone_used_", None)
        return text if used is None else f"{text}  # fitted on {used}"

    def _from_pretrained(self, pretrained: MSFTEngine, settings: MSFTSettings) -> MSFTEngine:
        """A new engine with the current settings holding a copy of the pretrained tensors.

        Goes through the engine's public ``state``/``from_state`` so the pretrained engine is
        never modified, and changed structural settings (strategy, ranks, ...) fail clearly.
        """
        trained_horizon = pretrained.prediction_length_
        if self._backbone().kind == "moment" and settings.prediction_length != trained_horizon:
            # MOMENT's forecasting head has a fixed output length: keep the pretrained one
            if (
                settings.prediction_length != "auto"
                and settings.prediction_length > trained_horizon
            ):
                raise ValueError(
                    f"The MOMENT model was pretrained for a horizon of {trained_horizon} "
                    f"steps; fit needs {settings.prediction_length}. Pass a shorter fh to fit "
                    f"or pretrain with fh up to {settings.prediction_length}."
                )
            settings.prediction_length = trained_horizon
        state = pretrained.state()
        meta = {**state["meta"], "settings": settings.to_json()}
        return MSFTEngine.from_state({"meta": meta, "tensors": state["tensors"]})

    def _history_length(self) -> int:
        """Steps of every series kept: a context plus one training horizon (for ``update``)."""
        return int(self.context_length) + self.engine_.prediction_length_

    # ------------------------------------------------------------------------------ pretrain
    def _pretrain(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Global fine-tune on a panel; a later ``fit`` continues from these weights."""
        from sktime.datatypes._utilities import get_cutoff

        _check_time_indexes(y)
        cutoff = get_cutoff(y, return_index=True)
        settings = self._settings(self._training_horizon(fh, cutoff))
        self._backbone()
        engine = MSFTEngine(settings).fit(_channels(y), freq=_frequency_key(cutoff))
        self.pretrained_engine_ = engine
        return self

    def _pretrain_update(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Continue pretraining on another panel (``max_steps`` more steps)."""
        from sktime.datatypes._utilities import get_cutoff

        freq = _frequency_key(get_cutoff(y, return_index=True))
        self._backbone()
        self.pretrained_engine_.fit(_channels(y), freq=freq, warm_start=True)
        return self

    # -------------------------------------------------------------------------------- update
    def _update(self, y: pd.DataFrame, X=None, update_params: bool = True):
        """Move the context forward; with ``update_params`` also continue fine-tuning.

        Continued fine-tuning runs ``update_steps`` steps on the kept history plus ``y``, so
        the windows it trains on are the ones that see the new observations.

        The context moves before fine-tuning: sktime has already moved the cutoff, so if
        fine-tuning fails (the engine then keeps its weights) the forecaster is left exactly as
        ``update_params=False`` would leave it, never forecasting from an old context.
        """
        from sktime.datatypes import update_data

        _check_time_indexes(y)
        # new data that starts after a gap: the missing time points become missing values on
        # the series' grid, never glued on as if they followed the old data directly
        history = _on_grid(update_data(self.history_, y), _grid_step(self.history_))
        self.history_ = _tail(history, self._history_length())
        if update_params and int(self.update_steps) > 0:
            self._backbone()
            self.engine_.fit(
                _channels(history),
                freq=_frequency_key(self.cutoff),
                warm_start=True,
                max_steps=int(self.update_steps),
            )
        return self

    # ------------------------------------------------------------------------------- predict
    def _forecast(self, fh: ForecastingHorizon, num_samples: int | None = None):
        """Engine forecast for ``fh`` (``num_samples`` paths; default the setting, 0 for the
        mean alone) and how to lay it out.

        Returns the :class:`Forecast`, the ``(instances, len(fh))`` zero-based step of each
        requested time point in the forecast arrays, the row index of the output and the
        number of instances.
        """
        from sktime.datatypes._utilities import get_cutoff

        instances = _instances(self.history_)
        cutoff = self.cutoff
        if isinstance(cutoff, pd.DatetimeIndex) and cutoff.freq is None:
            # hierarchies built by sktime's Aggregator lose the cutoff's frequency; the series
            # themselves keep their (common, checked at fit) time step
            step = _grid_step(self.history_)
            if step is not None:
                cutoff = pd.DatetimeIndex(cutoff, freq=step)
                fh = ForecastingHorizon(fh.to_pandas(), is_relative=fh.is_relative, freq=step)
        fh_abs = fh.to_absolute(cutoff)
        times = fh.to_absolute_index(cutoff)
        # instances of a panel may end before the common cutoff: count steps from each own end
        steps_by_end: dict[Any, np.ndarray] = {}
        steps = []
        for _, frame in instances:
            end = get_cutoff(frame, return_index=True)
            key = end[0]
            if key not in steps_by_end:
                steps_by_end[key] = fh_abs.to_relative(end).to_numpy().astype(np.int64)
            steps.append(steps_by_end[key])
        steps = np.stack(steps)
        if steps.min() < 1:
            raise NotImplementedError(
                f"{type(self).__name__} can not perform in-sample prediction; found fh {fh}."
            )
        _check_on_grid(times, steps, instances)
        forecast = self.engine_.forecast(
            _channels(self.history_), horizon=int(steps.max()), num_samples=num_samples
        )
        index = _output_index(self.history_, [k for k, _ in instances], times)
        return forecast, steps - 1, index, len(instances)

    def _select(self, values: np.ndarray, steps: np.ndarray, n_instances: int) -> np.ndarray:
        """``(series, ..., H)`` engine array -> ``(instances, fh, variables, ...)``."""
        n_vars = values.shape[0] // n_instances
        per = values.reshape(n_instances, n_vars, *values.shape[1:])
        idx = steps.reshape(n_instances, 1, *([1] * (values.ndim - 2)), steps.shape[1])
        picked = np.take_along_axis(per, idx, axis=-1)  # (instances, vars, ..., fh)
        return np.moveaxis(picked, -1, 1)

    def _predict(self, fh: ForecastingHorizon, X=None) -> pd.DataFrame:
        """Point forecast: the mean of the predictive distribution (``Forecast.mean``), computed
        from the distributions without drawing sample paths."""
        forecast, steps, index, n = self._forecast(fh, num_samples=0)
        values = self._select(forecast.mean, steps, n)  # (instances, fh, vars)
        return pd.DataFrame(
            values.reshape(len(index), -1), index=index, columns=self._get_varnames()
        )

    def _predict_quantiles(self, fh: ForecastingHorizon, X, alpha: list[float]) -> pd.DataFrame:
        """Empirical quantiles of the sample paths (``Forecast.quantiles``), monotone in alpha."""
        forecast, steps, index, n = self._forecast(fh)
        values = self._select(forecast.quantiles(alpha), steps, n)  # (inst, fh, vars, alpha)
        columns = self._get_columns(method="predict_quantiles", alpha=alpha)
        return pd.DataFrame(values.reshape(len(index), -1), index=index, columns=columns)

    def _predict_var(self, fh: ForecastingHorizon, X=None, cov: bool = False) -> pd.DataFrame:
        """Variance of the sample paths (population variance, as skpro's ``Empirical``)."""
        if cov:
            raise NotImplementedError(
                f"{type(self).__name__}.predict_var supports marginal variances only (cov=False)."
            )
        forecast, steps, index, n = self._forecast(fh)
        values = self._select(forecast.samples.var(axis=1), steps, n)
        return pd.DataFrame(
            values.reshape(len(index), -1), index=index, columns=self._get_varnames()
        )

    def _predict_proba(self, fh: ForecastingHorizon, X=None, marginal: bool = True):
        """skpro ``Empirical`` distribution of the sample paths.

        With ``marginal=False`` the sample paths are kept whole (``time_indep=False``), so
        sampling from the distribution returns coherent paths.
        """
        from skpro.distributions import Empirical

        forecast, steps, index, n = self._forecast(fh)
        values = self._select(forecast.samples, steps, n)  # (inst, fh, vars, samples)
        num_samples = values.shape[-1]
        values = np.moveaxis(values, -1, 0).reshape(num_samples * len(index), -1)
        rows = np.tile(np.arange(len(index)), num_samples)
        sample_ids = np.repeat(np.arange(num_samples), len(index))
        if isinstance(index, pd.MultiIndex):
            arrays = [index.get_level_values(i)[rows] for i in range(index.nlevels)]
        else:
            arrays = [index[rows]]
        spl_index = pd.MultiIndex.from_arrays([sample_ids, *arrays], names=["sample", *index.names])
        columns = pd.Index(self._get_varnames())
        spl = pd.DataFrame(values, index=spl_index, columns=columns)
        return Empirical(spl, time_indep=marginal, index=index, columns=columns)

    # ------------------------------------------------------------------------- test settings
    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict[str, Any]]:
        """Tiny offline settings (bundled ``"moirai-tiny"``) that fit in about a second.

        Parameters
        ----------
        parameter_set : str, default="default"
            Name of the set of test parameters (only the default exists).

        Returns
        -------
        list of dict
            ``MyClass(**params)`` creates a valid test instance for each dict.
        """
        tiny = {
            "backbone": "moirai-tiny",
            "context_length": 32,
            "prediction_length": 3,
            "max_steps": 2,
            "batch_size": 8,
            "num_samples": 10,
            "random_state": 0,
            "update_steps": 1,
        }
        return [
            {**tiny, "fit_strategy": "msft", "num_scales": 2, "validation": None},
            {**tiny, "fit_strategy": "lora", "lora_rank": 2, "validation": 3},
        ]


# ------------------------------------------------------------------------- data conversion
def _instances(y: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """``(instance key, frame indexed by time)`` of every series, in order of appearance."""
    if not isinstance(y.index, pd.MultiIndex):
        return [((), y)]
    levels = list(range(y.index.nlevels - 1))
    out = []
    for key, frame in y.groupby(level=levels, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((key, frame.droplevel(levels)))
    return out


def _check_time_indexes(y: pd.DataFrame) -> None:
    """Duplicated, unsorted or irregular time points of any series, or series of a panel at
    different frequencies: a clear ``ValueError``."""
    steps: dict[str, str] = {}
    for key, frame in _instances(y):
        name = "y" if not key else f"y[{key if len(key) > 1 else key[0]!r}]"
        check_time_index(frame.index, name=name)
        step = _grid_step(frame) if len(frame) > 2 else None
        if step is not None:
            steps.setdefault(str(getattr(step, "freqstr", step)), name)
    if len(steps) > 1:
        (a, first), (b, second) = list(steps.items())[:2]
        raise ValueError(
            f"the series of y come at different frequencies: {first} every {a}, {second} every "
            f"{b}. One model forecasts one frequency: fit one forecaster per frequency (split "
            "the panel, or resample its series to a common frequency)."
        )


def _grid_step(y: pd.DataFrame) -> Any:
    """The time step of ``y``'s series: a pandas offset (datetime, period) or an integer."""
    _, frame = _instances(y)[0]
    index = frame.index
    if isinstance(index, pd.PeriodIndex):
        return index.freq
    if isinstance(index, pd.DatetimeIndex):
        return index.freq or (
            pd.tseries.frequencies.to_offset(pd.infer_freq(index)) if len(index) > 2 else None
        )
    if len(index) > 1 and pd.api.types.is_integer_dtype(index):
        return int(np.min(np.diff(index.to_numpy())))
    return None


def _on_grid(y: pd.DataFrame, step: Any) -> pd.DataFrame:
    """Every series of ``y`` on a regular grid of ``step``: missing time points become rows of
    missing values.  A time point off the grid is refused."""
    if step is None:
        return y

    def regular(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        index = frame.index
        grid, off = regular_grid(index, step)
        if len(off):
            raise ValueError(
                f"the time points of {name} are not on the series' grid (step {step} from "
                f"{index[0]}), e.g. {off[0]}; update with data at the same frequency"
            )
        return frame if len(grid) == len(index) else frame.reindex(grid)

    if not isinstance(y.index, pd.MultiIndex):
        return regular(y, "y")
    parts = []
    for key, frame in _instances(y):
        out = regular(frame, f"y[{key if len(key) > 1 else key[0]!r}]")
        out.index = pd.MultiIndex.from_arrays(
            [*(pd.Index([k] * len(out)) for k in key), out.index], names=y.index.names
        )
        parts.append(out)
    return pd.concat(parts)


def _check_on_grid(times: pd.Index, steps: np.ndarray, instances: list) -> None:
    """Refuse forecast time points that fall between the series' time steps."""
    from sktime.datatypes._utilities import get_cutoff

    if not isinstance(times, pd.DatetimeIndex):
        return  # integer steps and periods are on the grid by construction
    for _, frame in instances:
        freq = _grid_step(frame)
        if freq is None:
            continue
        end = get_cutoff(frame, return_index=True)[0]
        grid = pd.date_range(end, periods=int(max(steps.max(), 0)) + 2, freq=freq)
        off = times.difference(grid)
        if len(off):
            raise ValueError(
                f"fh asks for {off[0]}, which is not on the series' grid (frequency "
                f"{freq.freqstr}, last observation {end}); ask for time points on that grid, "
                f"e.g. {grid[1]}"
            )


def _channels(y: pd.DataFrame) -> list[np.ndarray]:
    """One 1-D float array (NaN for missing) per column of every series, instance-major."""
    out = []
    for _, frame in _instances(y):
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        out.extend(values[:, j].copy() for j in range(values.shape[1]))
    return out


def _tail(y: pd.DataFrame, length: int) -> pd.DataFrame:
    """The last ``length`` rows of every series."""
    if not isinstance(y.index, pd.MultiIndex):
        return y.iloc[-length:]
    levels = list(range(y.index.nlevels - 1))
    return y.groupby(level=levels, sort=False, group_keys=False).tail(length)


def _output_index(history: pd.DataFrame, keys: list[tuple], times: pd.Index) -> pd.Index:
    """Row index of a forecast: ``times`` for one series, ``(instance..., time)`` for panels."""
    names = list(history.index.names)
    if not isinstance(history.index, pd.MultiIndex):
        return times.rename(names[0])
    n_times = len(times)
    arrays = [
        pd.Index([key[level] for key in keys]).repeat(n_times) for level in range(len(names) - 1)
    ]
    arrays.append(times[np.tile(np.arange(n_times), len(keys))])
    return pd.MultiIndex.from_arrays(arrays, names=names)


def _frequency_key(cutoff) -> str | None:
    """One unambiguous frequency letter for the engine, or None when the index has none.

    The letter comes from the index's offset object (for a PeriodIndex too), read by
    :func:`msft_forecast.frequencies.frequency_key`: never from the first letter of a
    frequency string, which is ambiguous for pandas' current aliases ("min" and "ms" start like
    monthly "M", "SME" like seconds), nor from the string itself, whose period aliases ("M",
    "Q", "Y") pandas 3 no longer reads as offsets.  ``frequency_key`` maps every letter it
    returns to itself, so the engine reads it back unchanged.
    """
    offset = getattr(cutoff, "freq", None)
    return None if offset is None else frequency_key(offset)
