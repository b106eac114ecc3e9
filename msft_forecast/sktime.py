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

from msft_forecast._extras import requiring

with requiring("sktime", "msft_forecast.sktime (MSFTForecaster)"):
    from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from msft_forecast.data import exogenous, panel
from msft_forecast.engine import MSFTEngine
from msft_forecast.settings import MSFTSettings

__all__ = ["MSFTForecaster"]

_INNER_MTYPES = ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"]

_REMEMBER_DATA_NOTICE = "The default of config ``remember_data`` will change"

#: Hyper-parameters that are engine settings (everything but ``update_steps``).
_SETTING_NAMES = tuple(f.name for f in fields(MSFTSettings))
_D = MSFTSettings()  # the engine's defaults, so the signature below cannot drift from them


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
    masks them. Exogenous data ``X`` (Moirai backbones) is read as **known-future
    covariates** through Moirai's any-variate attention: ``X`` in ``fit`` (and ``update``)
    at ``y``'s time points, ``X`` in ``predict`` at the forecast time points (it must reach
    the last one); a forecaster fitted with ``X`` needs ``X`` in ``predict``, one fitted
    without ignores it (see :mod:`msft_forecast.data.exogenous`). ``pretrain`` ignores ``X``.

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
        heads; on UniTS its own prompt tokens); ``"full"`` every weight; ``"linear-probe"`` the
        head only; ``"zero-shot"`` nothing (not MOMENT, which has no forecasting head before
        fine-tuning; UniTS only with a data set it knows).
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
        Train the output head (Moirai's distribution projection) in ``"msft"``, ``"lora"`` and
        ``"adalora"``.
    num_prompt_tokens : int, default=8
        Learned prefix tokens of ``"prompt-tuning"`` (not UniTS: it tunes its own).
    multivariate : {"independent", "joint"}, default="independent"
        Channels of a multivariate ``y`` modelled one by one, or each forecast from the
        history of all of ``y``'s columns (Moirai backbones; see ``MSFTSettings``).
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
        Show training progress: a bar in terminals and notebooks, a plain line every tenth
        of the steps and at every validation elsewhere (logs); False silences it.
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
    fit_summary_ : str
        What the last fit (or ``update`` that fine-tuned) did, on one line: steps, best
        validation loss and its step, patch size, horizon, context, seconds (also logged at
        INFO by the ``msft_forecast`` logger).
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
        "capability:exogenous": True,
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
        backbone: str = _D.backbone,
        revision: str | None = _D.revision,
        allow_fallback: bool = _D.allow_fallback,
        fit_strategy: str = _D.fit_strategy,
        context_length: int = _D.context_length,
        prediction_length: int | str = _D.prediction_length,
        num_scales: int = _D.num_scales,
        patch_size: int | str = _D.patch_size,
        pooling: str = _D.pooling,
        lora_rank: int = _D.lora_rank,
        lora_alpha: float = _D.lora_alpha,
        lora_targets: tuple[str, ...] = _D.lora_targets,
        shared_lora: bool = _D.shared_lora,
        aggregator: bool = _D.aggregator,
        aggregator_rank: int | None = _D.aggregator_rank,
        mixing: str = _D.mixing,
        scale_weighting: str = _D.scale_weighting,
        train_head: bool = _D.train_head,
        num_prompt_tokens: int = _D.num_prompt_tokens,
        multivariate: str = _D.multivariate,
        learning_rate: float | None = _D.learning_rate,
        scale_weight_lr: float = _D.scale_weight_lr,
        scale_weight_prior: float = _D.scale_weight_prior,
        weight_decay: float = _D.weight_decay,
        batch_size: int = _D.batch_size,
        max_steps: int = _D.max_steps,
        max_epochs: int | None = _D.max_epochs,
        max_time: float | None = _D.max_time,
        validation: float | int | None = _D.validation,
        val_check_interval: int = _D.val_check_interval,
        early_stopping_patience: int | None = _D.early_stopping_patience,
        gradient_clip: float | None = _D.gradient_clip,
        num_samples: int = _D.num_samples,
        random_state: int | None = _D.random_state,
        accelerator: str = _D.accelerator,
        devices: int | str | list[int] = _D.devices,
        strategy: str = _D.strategy,
        precision: str | None = _D.precision,
        verbose: bool = _D.verbose,
        checkpoint_dir: str | None = _D.checkpoint_dir,
        resume: bool = _D.resume,
        update_steps: int = 20,
        num_threads: int | None = _D.num_threads,
    ) -> None:
        # sktime's get_params reads each parameter back from the attribute of the same name
        params = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        for name, value in params.items():
            setattr(self, name, value)
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

    # ----------------------------------------------------------------------------------- fit
    def _fit(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Fine-tune one engine on every channel of every series in ``y``.

        After ``pretrain``, continues from the pretrained weights instead of the backbone.
        """
        panel.check_time_indexes(y)
        horizon = self._training_horizon(fh, self.cutoff)
        settings = self._settings(horizon)
        series = panel.channels(y)
        freq = panel.frequency_key_of(self.cutoff)
        pretrained = getattr(self, "pretrained_engine_", None)
        covariates = exogenous.covariate_arguments(y, X)
        if pretrained is None:
            engine = MSFTEngine(settings).fit(series, freq=freq, **covariates)
        else:
            engine = MSFTEngine.from_pretrained(pretrained, settings)
            engine.fit(series, freq=freq, warm_start=True, **covariates)
        self.engine_ = engine
        self.backbone_used_ = engine.backbone_used
        self.fit_summary_ = engine.report_.summary()
        self.history_ = panel.tail(y, self._history_length())
        self.X_history_ = None if X is None else panel.tail(X, self._history_length())
        return self

    def __repr__(self, n_char_max: int = 700) -> str:
        """The parameters, and once fitted the checkpoint actually used (``backbone_used_``):
        ``backbone="moirai"`` offline runs on the bundled fallback, which must not pass for
        Moirai in a backtest or a grid search."""
        text = super().__repr__(n_char_max)
        used = getattr(self, "backbone_used_", None)
        return text if used is None else f"{text}  # fitted on {used}"

    def _history_length(self) -> int:
        """Steps of every series kept: a context plus one training horizon (for ``update``)."""
        return int(self.context_length) + self.engine_.prediction_length_

    # ------------------------------------------------------------------------------ pretrain
    def _pretrain(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Global fine-tune on a panel; a later ``fit`` continues from these weights."""
        from sktime.datatypes import get_cutoff

        panel.check_time_indexes(y)
        cutoff = get_cutoff(y, return_index=True)
        settings = self._settings(self._training_horizon(fh, cutoff))
        engine = MSFTEngine(settings).fit(
            panel.channels(y), freq=panel.frequency_key_of(cutoff), channels=y.shape[1]
        )
        self.pretrained_engine_ = engine
        return self

    def _pretrain_update(self, y: pd.DataFrame, X=None, fh: ForecastingHorizon | None = None):
        """Continue pretraining on another panel (``max_steps`` more steps)."""
        from sktime.datatypes import get_cutoff

        freq = panel.frequency_key_of(get_cutoff(y, return_index=True))
        self.pretrained_engine_.fit(panel.channels(y), freq=freq, warm_start=True,
                                    channels=y.shape[1])  # fmt: skip
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

        panel.check_time_indexes(y)
        # new data that starts after a gap: the missing time points become missing values on
        # the series' grid, never glued on as if they followed the old data directly
        history = panel.on_grid(update_data(self.history_, y), panel.grid_step(self.history_))
        self.history_ = panel.tail(history, self._history_length())
        X_all = None if self.X_history_ is None else update_data(self.X_history_, X)
        self.X_history_ = None if X_all is None else panel.tail(X_all, self._history_length())
        if update_params and int(self.update_steps) > 0:
            self.engine_.fit(
                panel.channels(history),
                freq=panel.frequency_key_of(self.cutoff),
                warm_start=True,
                max_steps=int(self.update_steps),
                **exogenous.covariate_arguments(history, X_all),
            )
            self.fit_summary_ = self.engine_.report_.summary()
        return self

    # ------------------------------------------------------------------------------- predict
    def _forecast(self, fh: ForecastingHorizon, X=None, num_samples: int | None = None):
        """Engine forecast for ``fh`` (``num_samples`` paths; default the setting, 0 for the
        mean alone) and how to lay it out.

        Returns the :class:`Forecast`, the ``(instances, len(fh))`` zero-based step of each
        requested time point in the forecast arrays, the row index of the output and the
        number of instances.
        """
        from sktime.datatypes import get_cutoff

        parts = panel.instances(self.history_)
        cutoff = self.cutoff
        if isinstance(cutoff, pd.DatetimeIndex) and cutoff.freq is None:
            # hierarchies built by sktime's Aggregator lose the cutoff's frequency; the series
            # themselves keep their (common, checked at fit) time step
            step = panel.grid_step(self.history_)
            if step is not None:
                cutoff = pd.DatetimeIndex(cutoff, freq=step)
                fh = ForecastingHorizon(fh.to_pandas(), is_relative=fh.is_relative, freq=step)
        fh_abs = fh.to_absolute(cutoff)
        times = fh.to_absolute_index(cutoff)
        # instances of a panel may end before the common cutoff: count steps from each own end
        steps_by_end: dict[Any, np.ndarray] = {}
        steps = []
        for _, frame in parts:
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
        panel.check_on_grid(times, steps, parts)
        covariates = {}
        if self.engine_.report_.future_covariates:  # fitted with X: X covers the horizon
            covariates["future_covariates"] = exogenous.forecast_covariates(
                self.history_, self.X_history_, X, int(steps.max()), self.X_history_.columns
            )
        forecast = self.engine_.forecast(
            panel.channels(self.history_), horizon=int(steps.max()), num_samples=num_samples,
            **covariates,
        )  # fmt: skip
        index = panel.output_index(self.history_, [k for k, _ in parts], times)
        return forecast, steps - 1, index, len(parts)

    def _predict(self, fh: ForecastingHorizon, X=None) -> pd.DataFrame:
        """Point forecast: the mean of the predictive distribution (``Forecast.mean``), computed
        from the distributions without drawing sample paths."""
        forecast, steps, index, n = self._forecast(fh, X, num_samples=0)
        values = panel.select_steps(forecast.mean, steps, n)  # (instances, fh, vars)
        return pd.DataFrame(
            values.reshape(len(index), -1), index=index, columns=self._get_varnames()
        )

    def _predict_quantiles(self, fh: ForecastingHorizon, X, alpha: list[float]) -> pd.DataFrame:
        """Empirical quantiles of the sample paths (``Forecast.quantiles``), monotone in alpha."""
        forecast, steps, index, n = self._forecast(fh, X)
        values = panel.select_steps(forecast.quantiles(alpha), steps, n)  # (inst, fh, vars, alpha)
        columns = self._get_columns(method="predict_quantiles", alpha=alpha)
        return pd.DataFrame(values.reshape(len(index), -1), index=index, columns=columns)

    def _predict_var(self, fh: ForecastingHorizon, X=None, cov: bool = False) -> pd.DataFrame:
        """Variance of the sample paths (population variance, as skpro's ``Empirical``)."""
        if cov:
            raise NotImplementedError(
                f"{type(self).__name__}.predict_var supports marginal variances only (cov=False)."
            )
        forecast, steps, index, n = self._forecast(fh, X)
        values = panel.select_steps(forecast.samples.var(axis=1), steps, n)
        return pd.DataFrame(
            values.reshape(len(index), -1), index=index, columns=self._get_varnames()
        )

    def _predict_proba(self, fh: ForecastingHorizon, X=None, marginal: bool = True):
        """skpro ``Empirical`` distribution of the sample paths.

        With ``marginal=False`` the sample paths are kept whole (``time_indep=False``), so
        sampling from the distribution returns coherent paths.
        """
        from skpro.distributions import Empirical

        forecast, steps, index, n = self._forecast(fh, X)
        values = panel.select_steps(forecast.samples, steps, n)  # (inst, fh, vars, samples)
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
