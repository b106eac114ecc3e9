"""Darts front end: :class:`MSFTModel`, a global forecasting model over the MSFT engine.

The adapter only converts data (``TimeSeries`` to 1-D channel arrays and back) and calls
:class:`msft_forecast.engine.MSFTEngine`; every modelling decision lives in the engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np
import pandas as pd

from msft_forecast._extras import requiring

with requiring("darts", "msft_forecast.darts (MSFTModel)"):  # the first darts import
    from darts import TimeSeries
from darts.models.forecasting.forecasting_model import GlobalForecastingModel
from darts.utils.likelihood_models.base import Likelihood, LikelihoodType, quantile_names

from msft_forecast.darts_compat import (
    build_forecast_series,
    create_dataset_bounds,
    optimizable_historical_forecasts,
)
from msft_forecast.darts_params import (
    DEFAULT_QUANTILES,
    RESTORING,
    extreme_lags,
    parse_input_chunk_length,
    reads_covariates,
    refuse_unused,
    resolve_quantiles,
    saveable_params,
    settings_from_params,
    trainer_extras,
)
from msft_forecast.data.darts_covariates import fit_covariates, window_covariates
from msft_forecast.data.darts_series import (
    append_validation,
    as_series_list,
    channels,
    check_contexts,
    forecast_blocks,
    forecast_windows,
    historical_series,
    read_model,
    series_values,
    write_model,
)
from msft_forecast.errors import NotFittedError
from msft_forecast.settings import MSFTSettings

if TYPE_CHECKING:  # torch loads with the engine, at the first fit, not at import
    from msft_forecast.engine import MSFTEngine

__all__ = ["MSFTModel"]

_D = MSFTSettings()  # the engine's defaults, so the signature below cannot drift from them


class MSFTModel(GlobalForecastingModel):
    """Moirai / MOMENT fine-tuned with multi-scale fine-tuning (MSFT), as a Darts global model.

    ``fit`` fine-tunes once on one or many series (channel-independent: every component of
    every series is its own training series); ``predict``, ``historical_forecasts``,
    ``backtest`` and ``residuals`` then forecast any series without further training.
    Forecasts are probabilistic: ``num_samples=1`` gives the mean of the combined multi-scale
    predictive distribution, ``num_samples > 1`` its sample paths, and
    ``predict_likelihood_parameters=True`` the ``quantiles`` as components.

    **Why a** ``GlobalForecastingModel`` **and not Darts'** ``FoundationModel``. Darts'
    ``FoundationModel`` is a ``MixedCovariatesTorchModel``: Darts builds the training windows,
    runs its own Lightning ``Trainer`` over a ``PLForecastingModule`` from ``_create_model``,
    fine-tunes with ``enable_finetuning`` (whole weights, or freeze/unfreeze patterns: no
    adapters, LoRA or scale mixing) and saves with ``torch.save`` of the module plus a
    Lightning checkpoint holding every weight, frozen backbone included. Our engine already
    owns all of that (windows with a leak-free validation tail, patch-size selection, early
    stopping with best-weights restore, the multi-scale model, and a JSON + safetensors
    format with only the trainable tensors); re-hosting it inside Darts' torch stack would
    duplicate the training loop and break safe saving. ``GlobalForecastingModel`` is the
    class Darts' own non-torch global models (``SKLearnModel``, ``ConformalModel``,
    ``EnsembleModel``) subclass: it gives the full Darts API (``historical_forecasts``,
    ``backtest``, ``residuals``, ``gridsearch``, metrics) and its documented hooks
    (``supports_optimized_historical_forecasts``, ``_check_optimizable_historical_forecasts``
    and ``_optimized_historical_forecasts``) let ``retrain=False`` take our batched path:
    every forecast window of every series becomes one row of a few ``engine.forecast`` calls
    (256 contexts each) instead of one ``predict`` per window. The window bounds come from
    Darts' own helper, so ``start``, ``start_format``, ``stride``, ``overlap_end`` and
    ``last_points_only`` mean exactly what they mean for the generic loop.

    Parameters
    ----------
    input_chunk_length : int or (int, int), default 512
        Context length (the engine's ``context_length``). An ``int`` is a fixed window: series
        must be at least this long to be forecast. A Darts-style ``(min_length, max_length)``
        tuple uses up to ``max_length`` steps and also forecasts series with at least
        ``min_length`` steps (shorter contexts are padded, as the engine does).
    output_chunk_length : int, optional
        Horizon the model is fine-tuned for (the engine's ``prediction_length``). Default: chosen
        at fit from the training series (96 steps, or on series shorter than 480 steps a
        fifth of the longest, rounded down to whole seasons: 24 on 144 monthly points); the
        property then returns the chosen one (1 before fit).  Moirai forecasts longer
        horizons directly; MOMENT, whose heads have a fixed length, rolls its forecast forward
        auto-regressively (each sample path is fed back separately).
    backbone : str, default "moirai"
        Short name (``"moirai"``, ``"moirai-base"``, ``"moment-small"``, ``"moirai-tiny"``,
        ...), hub id or local folder of the pre-trained model (a folder holding one released
        UniTS ``.pth``, optionally with ``units.json``, is UniTS: ``docs/backbones.md``).
    fit_strategy : {"msft", "lora", "adalora", "prompt-tuning", "full", "linear-probe", \
"zero-shot"}, default "msft"
        What ``fit`` trains (the table in ``docs/strategies.md``; every backbone runs all
        seven, but MOMENT not "zero-shot", UniTS "zero-shot" only with a data set it knows).
    num_scales : int, default 4
        Number of temporal scales (MSFT).
    quantiles : sequence of float, default (0.1, 0.2, ..., 0.9)
        Quantile levels returned with ``predict_likelihood_parameters=True``, estimated from
        ``num_samples`` sample paths; components are named ``"{component}_q0.100"``, ...
        ``likelihood=QuantileRegression(quantiles=[...])`` sets them the Darts way.
    batch_size : int, default 32
        Training windows per optimisation step.
    max_steps : int, default 200
        Optimisation steps of ``fit`` (0: no training).
    n_epochs : int, optional
        Also stop after this many epochs (the engine's ``max_epochs``). An epoch is
        ``val_check_interval`` steps of windows drawn with replacement, ending with a
        validation, not one pass over the windows.
    validation : float, int or None, default 0.1
        Used when ``fit`` gets no ``val_series``: fraction (float) or number of steps (int) at
        the end of every training series held out for validation, early stopping and
        best-weights restore. ``None``: no validation.
    random_state : int, optional
        Seed of fine-tuning and of the sample paths (then the same call gives the same
        forecasts; ``predict(random_state=...)`` overrides it for sampling).
    pl_trainer_kwargs : dict, optional
        ``accelerator``, ``devices``, ``strategy`` and ``precision`` are passed to the engine's
        Lightning ``Trainer``; ``enable_progress_bar`` sets its verbosity (default True);
        ``callbacks`` (added to the engine's own: a ``ProgressBar`` replaces its progress
        display) and ``logger`` go to every fit's ``Trainer`` and are never saved (live
        objects: pass them again to ``load``). The engine builds the rest of the trainer
        itself, so other keys are refused with the parameter to use instead
        (``max_epochs`` -> ``n_epochs``, ``gradient_clip_val`` -> ``gradient_clip``, ...).
    likelihood : QuantileRegression, optional
        Darts' way to set ``quantiles``. The predictive distribution is the backbone's own
        (Moirai's mixture, MOMENT's residuals), so any other likelihood is refused.
    optimizer_cls : type, optional
        ``torch.optim.AdamW`` or None (the same): the optimiser is AdamW; others are refused.
    optimizer_kwargs : dict, optional
        ``{"lr": ..., "weight_decay": ...}``: the ``learning_rate`` and ``weight_decay``
        settings (other keys are refused).
    lr_scheduler_cls : type or str, optional
        A ``torch.optim.lr_scheduler`` class (``StepLR``, ``ExponentialLR``,
        ``CosineAnnealingLR``, ``OneCycleLR``, ``ReduceLROnPlateau``, ...; not the ones that
        take functions) applied to every parameter group through Lightning.
    lr_scheduler_kwargs : dict, optional
        Its arguments, plus Lightning's ``interval`` (default ``"epoch"``: here an epoch is
        ``val_check_interval`` steps, ending with a validation), ``frequency``, ``monitor``
        (default ``"val_loss"``), as in Darts.
    model_name, work_dir, save_checkpoints, force_reset
        As in Darts: ``save_checkpoints=True`` writes ``last.ckpt`` into
        ``{work_dir}/{model_name}/checkpoints`` (``work_dir`` default ``./darts_logs``,
        ``model_name`` default date, time and process id) during ``fit`` (the engine's
        ``checkpoint_dir``); a folder that already holds checkpoints is refused unless
        ``force_reset=True`` (empties it) or ``resume=True`` (continues from it). A
        ``logger`` without a folder of its own writes under ``{work_dir}/{model_name}``.
    add_encoders : dict, optional
        Refused: the model builds no covariates itself; pass them as ``past_covariates`` /
        ``future_covariates``.
    loss_fn, torch_metrics, log_tensorboard, show_warnings
        Refused when given (Darts' ``TorchForecastingModel`` arguments), with a message naming
        what to use instead: the training loss is the backbone's own, metrics come from
        ``darts.metrics`` on ``backtest``, loggers go in ``pl_trainer_kwargs``.
    revision, allow_fallback, patch_size, pooling, lora_rank, lora_alpha, lora_targets, \
shared_lora, aggregator, aggregator_rank, mixing, scale_weighting, train_head, \
num_prompt_tokens, multivariate, learning_rate, scale_weight_lr, scale_weight_prior, weight_decay, \
max_time, val_check_interval, early_stopping_patience, gradient_clip, num_samples, checkpoint_dir, \
resume, num_threads
        The :class:`~msft_forecast.engine.MSFTSettings` fields of the same names (same defaults).
        ``checkpoint_dir`` and ``resume``: write ``last.ckpt`` there during ``fit`` and
        continue an interrupted fit from it.
        ``num_samples`` here is the number of sample paths used to estimate ``quantiles``; the
        number of sample paths *returned* is ``predict``'s ``num_samples``.

    Attributes
    ----------
    engine : MSFTEngine
        The fitted engine (settings, fine-tuned tensors, ``report_``).

    Notes
    -----
    * ``val_series``: the engine validates on the tails of its training series, so ``fit``
      appends each validation series' steps that come after its training series to that
      series and holds exactly those steps out (the engine's integer ``validation``). A
      validation series must therefore overlap or directly follow its training series
      (Darts' usual ``val_series = series[-(n_val + input_chunk_length):]`` does); with
      several series, every validation tail is cut to the shortest one.
    * Covariates (Moirai backbones; ``supports_*_covariates`` is False for MOMENT): each
      component of ``past_covariates`` / ``future_covariates`` is one more variate of every
      target component in Moirai's any-variate attention, at every scale; past covariates
      over the input chunk, future covariates over the input chunk and the horizon (rules:
      :mod:`msft_forecast.data.darts_covariates`). Sample weights are not supported.
    * ``save("model.pt")`` writes one file, a zip archive of JSON and safetensors files (no
      pickle), and ``MSFTModel.load`` reads it back (and folders written by earlier
      versions); ``pickle`` of a fitted model keeps only the trainable tensors (callbacks and
      loggers in ``pl_trainer_kwargs`` are pickled as they are).
    * ``predict(batch_size=...)`` sets the contexts per model call; ``n_jobs`` is accepted
      and changes nothing (forecasts run batched on the model's torch threads).
    * With ``num_samples > 1``, ``historical_forecasts`` draws its samples from the same
      distributions as a loop of ``predict`` calls, but not from the same random stream.

    Examples
    --------
    >>> import numpy as np
    >>> from darts import TimeSeries
    >>> from msft_forecast.darts import MSFTModel
    >>> t = np.arange(300)
    >>> series = TimeSeries.from_values(np.sin(2 * np.pi * t / 24) + 0.01 * t, columns=["y"])
    >>> model = MSFTModel(input_chunk_length=96, output_chunk_length=12,
    ...                   backbone="moirai-tiny", max_steps=5, batch_size=8, random_state=0)
    >>> model = model.fit(series[:-24])
    >>> fc = model.predict(12, num_samples=50)
    >>> len(fc), fc.n_samples, fc.components.tolist()
    (12, 50, ['y'])
    >>> hist = model.historical_forecasts(series, start=200, forecast_horizon=12, retrain=False)
    >>> len(hist)  # forecast origins 200, 201, ..., 288: the last forecast ends at 299
    89
    >>> q = model.predict(12, predict_likelihood_parameters=True)
    >>> q.components.tolist()[:2]
    ['y_q0.100', 'y_q0.200']
    """

    def __init__(
        self,
        input_chunk_length: int | tuple[int, int] = _D.context_length,
        output_chunk_length: int | None = None,
        backbone: str = _D.backbone,
        fit_strategy: str = _D.fit_strategy,
        num_scales: int = _D.num_scales,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        batch_size: int = _D.batch_size,
        max_steps: int = _D.max_steps,
        n_epochs: int | None = _D.max_epochs,
        validation: float | int | None = _D.validation,
        random_state: int | None = _D.random_state,
        pl_trainer_kwargs: dict[str, Any] | None = None,
        revision: str | None = _D.revision,
        allow_fallback: bool = _D.allow_fallback,
        patch_size: int | str = _D.patch_size,
        pooling: str = _D.pooling,
        lora_rank: int = _D.lora_rank,
        lora_alpha: float = _D.lora_alpha,
        lora_targets: Sequence[str] = _D.lora_targets,
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
        max_time: float | None = _D.max_time,
        val_check_interval: int = _D.val_check_interval,
        early_stopping_patience: int | None = _D.early_stopping_patience,
        gradient_clip: float | None = _D.gradient_clip,
        num_samples: int = _D.num_samples,
        checkpoint_dir: str | None = _D.checkpoint_dir,
        resume: bool = _D.resume,
        num_threads: int | None = _D.num_threads,
        likelihood: Any = None,
        optimizer_cls: type | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        lr_scheduler_cls: type | str | None = None,
        lr_scheduler_kwargs: dict[str, Any] | None = None,
        model_name: str | None = None,
        work_dir: str | None = None,
        save_checkpoints: bool = False,
        force_reset: bool = False,
        add_encoders: dict | None = None,
        loss_fn: Any = None,
        torch_metrics: Any = None,
        log_tensorboard: bool = False,
        show_warnings: bool = False,
    ) -> None:
        super().__init__(add_encoders=None)  # refused by settings_from_params when given
        self._min_icl, self._icl = parse_input_chunk_length(input_chunk_length)
        self._ocl = None if output_chunk_length is None else int(output_chunk_length)
        self._quantiles = resolve_quantiles(self.model_params)
        self._settings = settings_from_params(self.model_params, self._icl, self._ocl)
        # model_params holds deep copies: callbacks and loggers must be the caller's own objects
        self._pl_trainer_kwargs = pl_trainer_kwargs
        self._engine: MSFTEngine | None = None

    # ------------------------------------------------------------------------ darts contract
    @property
    def input_chunk_length(self) -> int:
        """Most context steps the model reads (the engine's ``context_length``)."""
        return self._icl

    @property
    def min_input_chunk_length(self) -> int:
        """Fewest context steps a series needs to be forecast (after fit, at most the context
        the engine used: it caps the context at the longest training series)."""
        if self._engine is not None:
            return min(self._min_icl, self._engine.context_length_)
        return self._min_icl

    @property
    def output_chunk_length(self) -> int:
        """Horizon the model is fine-tuned for: the one given, else the one fit chose (before
        fit, 1: the shortest it can choose, so Darts' length checks accept any series the fit
        can use)."""
        if self._ocl is not None:
            return self._ocl
        if self._engine is not None:
            return self._engine.prediction_length_
        return 1

    @property
    def quantiles(self) -> list[float]:
        """Quantile levels of ``predict_likelihood_parameters=True``."""
        return list(self._quantiles)

    @property
    def likelihood(self) -> Likelihood:
        return Likelihood(LikelihoodType.Quantile, quantile_names(self.quantiles))

    @property
    def supports_multivariate(self) -> bool:
        return True

    @property
    def supports_probabilistic_prediction(self) -> bool:
        return True

    @property
    def supports_sample_weight(self) -> bool:
        return False

    supports_past_covariates = supports_future_covariates = property(reads_covariates)

    @property
    def _supports_val_series(self) -> bool:
        return True

    @property
    def min_train_samples(self) -> int:
        return 1

    @property
    def _target_window_lengths(self) -> tuple[int, int]:
        return self.min_input_chunk_length, self.output_chunk_length

    extreme_lags = property(extreme_lags)

    @property
    def _model_encoder_settings(self):
        return self._icl, self.output_chunk_length, False, False, None, None

    @property
    def backbone_used(self) -> str:
        """The checkpoint the fitted model runs on (see ``MSFTEngine.backbone_used``): names
        the bundled fallback when ``backbone="moirai"`` could not be downloaded."""
        return self.engine.backbone_used

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self._engine is None else f"{text}  # fitted on {self.backbone_used}"

    @property
    def fit_summary(self) -> str:
        """What the fit did, on one line: steps, best validation loss and its step, patch size,
        horizon, context, seconds (also logged at INFO by the ``msft_forecast`` logger)."""
        return self.engine.report_.summary()

    @property
    def engine(self) -> MSFTEngine:
        """The fitted :class:`~msft_forecast.engine.MSFTEngine`."""
        if self._engine is None:
            raise NotFittedError("This MSFTModel")
        return self._engine

    # ----------------------------------------------------------------------------------- fit
    def fit(
        self,
        series: TimeSeries | Sequence[TimeSeries],
        past_covariates: Any = None,
        future_covariates: Any = None,
        val_series: TimeSeries | Sequence[TimeSeries] | None = None,
        val_past_covariates: Any = None,
        val_future_covariates: Any = None,
        sample_weight: Any = None,
        val_sample_weight: Any = None,
        verbose: bool | None = None,
    ) -> MSFTModel:
        """Fine-tune the backbone on one or several series (every call starts from the backbone).

        Parameters
        ----------
        series : TimeSeries or sequence of TimeSeries
            Training series, uni- or multivariate (each component is a channel; NaN = missing).
        val_series : TimeSeries or sequence of TimeSeries, optional
            One validation series per training series, overlapping or directly following it:
            its steps after the training series' end are the validation targets (see Notes of
            the class). Overrides the ``validation`` parameter.
        verbose : bool, optional
            Show training progress (default: ``pl_trainer_kwargs["enable_progress_bar"]``,
            itself True by default: a bar in terminals and notebooks, plain lines in logs).
        past_covariates, future_covariates : TimeSeries or sequence of TimeSeries, optional
            One covariate series per training series (Moirai backbones), covering it: past
            covariates are known up to each forecast's start, future covariates also over
            its horizon (:mod:`msft_forecast.data.darts_covariates`). The model then needs
            the same covariates to forecast.
        val_past_covariates, val_future_covariates : optional
            Covariates over the validation series' tails (where the covariates above stop).
        sample_weight, val_sample_weight
            Not supported; must be ``None``.

        Returns
        -------
        MSFTModel
            The fitted model (``self``).
        """
        from msft_forecast.engine import MSFTEngine

        refuse_unused(sample_weight=sample_weight, val_sample_weight=val_sample_weight)
        train = as_series_list(series, "series")
        arrays = [col for s in train for col in channels(series_values(s))]
        settings = self._settings
        freqs = {s.freq_str for s in train if s.has_datetime_index}
        freq = freqs.pop() if len(freqs) == 1 and all(s.has_datetime_index for s in train) else None
        if val_series is not None:
            # the horizon the engine will train for on these series
            planned = MSFTEngine(settings).planned_lengths([len(c) for c in arrays], freq)
            horizon = planned.prediction_length
            arrays, steps = append_validation(
                train, as_series_list(val_series, "val_series"), horizon
            )
            settings = replace(settings, validation=steps)
        if verbose is not None:
            settings = replace(settings, verbose=bool(verbose))
        # a failed (re)fit leaves the model unfitted, never half-fitted or holding the old
        # engine next to the new settings and series
        self._engine, self._fit_called, self.training_series = None, False, None
        live = {**self.model_params, "pl_trainer_kwargs": self._pl_trainer_kwargs}
        extras = trainer_extras(live, settings.checkpoint_dir)
        covs = fit_covariates(train, arrays, past_covariates, future_covariates,
                              val_past_covariates, val_future_covariates)  # fmt: skip
        widths = [s.n_components for s in train]  # read by multivariate="joint"
        self._engine = MSFTEngine(settings).fit(
            arrays, freq=freq, extras=extras, channels=widths, **covs
        )
        super().fit(series, past_covariates, future_covariates)
        return self

    # ------------------------------------------------------------------------------- predict
    def predict(
        self,
        n: int,
        series: TimeSeries | Sequence[TimeSeries] | None = None,
        past_covariates: Any = None,
        future_covariates: Any = None,
        num_samples: int = 1,
        verbose: bool | None = None,
        predict_likelihood_parameters: bool = False,
        show_warnings: bool = True,
        random_state: int | None = None,
        batch_size: int | None = None,
        n_jobs: int = 1,
        **kwargs: Any,
    ) -> TimeSeries | list[TimeSeries]:
        """Forecast ``n`` steps after the end of each series.

        Parameters
        ----------
        n : int
            Forecast horizon.
        series : TimeSeries or sequence of TimeSeries, optional
            Series to forecast (default: the training series, when ``fit`` got a single one).
        num_samples : int, default 1
            ``1``: the mean forecast (deterministic); ``> 1``: that many sample paths (a
            stochastic ``TimeSeries``).
        predict_likelihood_parameters : bool, default False
            Return the ``quantiles`` as components ``"{component}_q{level:.3f}"`` instead
            (requires ``num_samples=1`` and ``n <= output_chunk_length``).
        random_state : int, optional
            Seed of the sample paths (default: the model's ``random_state``).
        batch_size : int, optional
            Contexts per model call (default 256, lowered when memory is short); the sample
            paths do not depend on it.
        n_jobs : int, default 1
            Accepted for Darts compatibility: forecasts run in the engine's batches on the
            model's torch threads (``num_threads``), so no worker processes are started.
        past_covariates, future_covariates : TimeSeries or sequence of TimeSeries, optional
            The covariates the model was fitted with, one per series (default: the training
            ones, when ``series`` is too): past covariates must cover the input chunk, future
            covariates the ``n`` forecast steps.
        verbose, show_warnings
            Darts arguments.
        **kwargs
            Other Darts ``TorchForecastingModel.predict`` arguments (``trainer``,
            ``dataloader_kwargs``, ``mc_dropout``, ...) are refused with a message.

        Returns
        -------
        TimeSeries or list of TimeSeries
            One forecast per input series (a list when ``series`` is a sequence).
        """
        if series is None:  # the training series, with its covariates
            past_covariates = past_covariates or self.past_covariate_series
            future_covariates = future_covariates or self.future_covariate_series
        super().predict(
            n,
            series,
            past_covariates,
            future_covariates,
            num_samples=num_samples,
            predict_likelihood_parameters=predict_likelihood_parameters,
            show_warnings=show_warnings,
        )
        refuse_unused(**kwargs)
        if series is None:
            if self.training_series is None:
                raise ValueError(
                    "This model was fitted on several series: pass `series` to predict()."
                )
            series = self.training_series
        single = isinstance(series, TimeSeries)
        inputs = as_series_list(series, "series")
        check_contexts(inputs, self.min_input_chunk_length, self._icl)
        likelihood = predict_likelihood_parameters
        arrays = [series_values(s) for s in inputs]
        levels = self._quantiles if likelihood else None
        windows = [(i, max(0, len(s) - self._icl), len(s)) for i, s in enumerate(inputs)]
        covs = window_covariates(inputs, windows, int(n), past_covariates, future_covariates)
        blocks = forecast_blocks(self.engine, arrays, self._icl, int(n), num_samples, levels,
                                 random_state, batch_size, covs)  # fmt: skip
        out = [self._to_series(b, s, likelihood) for b, s in zip(blocks, inputs, strict=True)]
        return out[0] if single else out

    def _to_series(
        self,
        values: np.ndarray,
        series: TimeSeries,
        likelihood: bool,
        time_index: pd.Index | None = None,
    ) -> TimeSeries:
        columns = self.likelihood.component_names(series=series) if likelihood else None
        return build_forecast_series(
            values,
            input_series=series,
            custom_columns=columns,
            with_static_covs=not likelihood,
            with_hierarchy=not likelihood,
            time_index=time_index,
        )

    # ------------------------------------------------------------------ historical forecasts
    def _check_optimizable_historical_forecasts(self, retrain) -> bool:
        return optimizable_historical_forecasts(retrain)

    def _optimized_historical_forecasts(
        self,
        series: Sequence[TimeSeries],
        past_covariates: Sequence[TimeSeries] | None = None,
        future_covariates: Sequence[TimeSeries] | None = None,
        num_samples: int = 1,
        start: pd.Timestamp | float | int | Literal["end"] | None = None,
        start_format: Literal["position", "value"] = "value",
        forecast_horizon: int = 1,
        stride: int = 1,
        overlap_end: bool = False,
        last_points_only: bool = True,
        verbose: bool = False,
        show_warnings: bool = True,
        predict_likelihood_parameters: bool = False,
        random_state: int | None = None,
        predict_kwargs: dict[str, Any] | None = None,
    ) -> list[TimeSeries] | list[list[TimeSeries]]:
        """``historical_forecasts(retrain=False)``: all windows through a few engine calls."""
        # the checks a loop of predict() calls would make (fitted, covariates, num_samples, ...)
        GlobalForecastingModel.predict(
            self,
            forecast_horizon,
            series,
            past_covariates,
            future_covariates,
            num_samples=num_samples,
            predict_likelihood_parameters=predict_likelihood_parameters,
            show_warnings=show_warnings,
        )
        # Darts' own bounds: first and last forecast origin (positions) of every series
        bounds, _ = create_dataset_bounds(
            model=self, series=series, past_covariates=past_covariates,
            future_covariates=future_covariates, start=start, start_format=start_format,
            forecast_horizon=forecast_horizon, stride=stride, overlap_end=overlap_end,
            show_warnings=show_warnings,
        )  # fmt: skip
        origins, blocks = forecast_windows(series, bounds, stride, self._icl)
        windows = [(i, max(0, t - self._icl), t) for i, o in enumerate(origins) for t in o]
        covs = window_covariates(series, windows, forecast_horizon, past_covariates,
                                 future_covariates)  # fmt: skip
        likelihood = predict_likelihood_parameters
        batch_size = (predict_kwargs or {}).get("batch_size")  # Darts' predict argument
        levels = self._quantiles if likelihood else None
        values = forecast_blocks(
            self.engine, blocks, self._icl, forecast_horizon, num_samples, levels, random_state,
            batch_size, covs,
        )  # fmt: skip

        def to_series(v: np.ndarray, s: TimeSeries, times: pd.Index) -> TimeSeries:
            return self._to_series(v, s, likelihood, times)

        return historical_series(
            series, origins, values, forecast_horizon, stride, last_points_only, to_series
        )

    # ---------------------------------------------------------------------------- save, load
    def save(
        self, path: str | os.PathLike | BinaryIO | None = None, clean: bool = False, **kwargs: Any
    ) -> None:
        """Write the model to the file ``path``: a zip archive of JSON and safetensors files
        (nothing is pickled), as Darts users expect from ``model.save("model.pt")``.

        Parameters
        ----------
        path : str, path-like or binary file, optional
            File to write (replaced if it exists; its folder must exist), or an open binary
            file. Default ``"MSFTModel_{date_time}.pt"``, as Darts' torch models.
        clean : bool, default False
            Leave out the training series (then ``predict`` needs ``series``) and, as in
            Darts, the ``pl_trainer_kwargs``.

        Notes
        -----
        The archive holds ``darts_model.json`` (parameters and the training series' index),
        ``engine/`` (:meth:`MSFTEngine.save`: settings and only the fine-tuned tensors; the
        frozen backbone is referenced, not copied) and ``training_series.safetensors``.
        Callbacks and loggers (``pl_trainer_kwargs``) are live objects and are not saved: pass
        them again with ``load(path, pl_trainer_kwargs=...)``. A likelihood is saved as its
        quantiles, a scheduler by its name.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)} (nothing is pickled).")
        params = saveable_params(self.model_params, self._quantiles, self._settings)
        if clean:
            params["pl_trainer_kwargs"] = None
        series = None if clean else self.training_series
        write_model(path or f"{self._default_save_path()}.pt", params, self._engine, series)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | BinaryIO,
        trusted: bool = False,
        pl_trainer_kwargs: dict[str, Any] | None = None,
    ) -> MSFTModel:
        """Load a model written by :meth:`save` (JSON and safetensors only: safe to load).

        Parameters
        ----------
        path : str, path-like or binary file
            The file written by :meth:`save`, or a folder written by earlier versions.
        trusted : bool, default False
            Accepted for Darts compatibility; nothing is unpickled either way.
        pl_trainer_kwargs : dict, optional
            Replaces the saved ``pl_trainer_kwargs`` (as in Darts): e.g. callbacks and a
            logger for a later ``fit``, or another accelerator.
        """
        params, engine, training_series = read_model(path)
        if pl_trainer_kwargs is not None:
            params["pl_trainer_kwargs"] = pl_trainer_kwargs
        token = RESTORING.set(True)  # its checkpoint folder, if any, is its own
        try:
            model = cls(**params)
        finally:
            RESTORING.reset(token)
        model._engine, model._fit_called = engine, engine is not None
        report = getattr(engine, "report_", None)  # Darts' checks: fitted with covariates
        model._uses_past_covariates = bool(report and report.past_covariates)
        model._uses_future_covariates = bool(report and report.future_covariates)
        model.training_series = training_series
        return model
