"""Darts front end: :class:`MSFTModel`, a global forecasting model over the MSFT engine.

The adapter only converts data (``TimeSeries`` to 1-D channel arrays and back) and calls
:class:`msft_forecast.engine.MSFTEngine`; every modelling decision lives in the engine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
    parse_input_chunk_length,
    parse_quantiles,
    settings_from_params,
)
from msft_forecast.data.darts_series import (
    append_validation,
    as_series_list,
    channels,
    forecast_windows,
    historical_series,
    read_model_folder,
    series_values,
    write_model_folder,
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
        ...), hub id or local folder of the pre-trained model.
    fit_strategy : {"msft", "lora", "full", "linear-probe", "zero-shot"}, default "msft"
        What ``fit`` trains.
    num_scales : int, default 4
        Number of temporal scales (MSFT).
    quantiles : sequence of float, default (0.1, 0.2, ..., 0.9)
        Quantile levels returned with ``predict_likelihood_parameters=True``, estimated from
        ``num_samples`` sample paths; components are named ``"{component}_q0.100"``, ...
    batch_size : int, default 32
        Training windows per optimisation step.
    max_steps : int, default 200
        Optimisation steps of ``fit`` (0: no training).
    n_epochs : int, optional
        Also stop after this many passes over the training windows (the engine's
        ``max_epochs``).
    validation : float, int or None, default 0.1
        Used when ``fit`` gets no ``val_series``: fraction (float) or number of steps (int) at
        the end of every training series held out for validation, early stopping and
        best-weights restore. ``None``: no validation.
    random_state : int, optional
        Seed of fine-tuning and of the sample paths (then the same call gives the same
        forecasts; ``predict(random_state=...)`` overrides it for sampling).
    pl_trainer_kwargs : dict, optional
        ``accelerator``, ``devices``, ``strategy`` and ``precision`` are passed to the engine's
        Lightning ``Trainer``; ``enable_progress_bar`` sets its verbosity. The engine builds the
        rest of the trainer itself, so other keys are rejected.
    revision, allow_fallback, patch_size, pooling, lora_rank, lora_alpha, lora_targets, \
shared_lora, aggregator, aggregator_rank, mixing, scale_weighting, train_head, learning_rate, \
scale_weight_lr, scale_weight_prior, weight_decay, max_time, val_check_interval, \
early_stopping_patience, gradient_clip, num_samples, checkpoint_dir, resume, num_threads
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
    * Covariates and sample weights are not supported (``supports_*_covariates`` is False).
    * ``save(path)`` writes a folder (JSON + safetensors, no pickle) and ``MSFTModel.load``
      reads it back; ``pickle`` of a fitted model keeps only the trainable tensors.
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
        quantiles: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
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
    ) -> None:
        super().__init__(add_encoders=None)
        self._min_icl, self._icl = parse_input_chunk_length(input_chunk_length)
        self._ocl = None if output_chunk_length is None else int(output_chunk_length)
        self._quantiles = parse_quantiles(quantiles)
        self._settings = settings_from_params(self.model_params, self._icl, self._ocl)
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

    @property
    def _supports_val_series(self) -> bool:
        return True

    @property
    def min_train_samples(self) -> int:
        return 1

    @property
    def _target_window_lengths(self) -> tuple[int, int]:
        return self.min_input_chunk_length, self.output_chunk_length

    @property
    def extreme_lags(self):
        return -self.min_input_chunk_length, self.output_chunk_length - 1, None, None, None, None, 0

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
        past_covariates, future_covariates, sample_weight, val_past_covariates, \
val_future_covariates, val_sample_weight
            Not supported; must be ``None``.

        Returns
        -------
        MSFTModel
            The fitted model (``self``).
        """
        from msft_forecast.engine import MSFTEngine

        unsupported = (past_covariates, future_covariates, sample_weight, val_past_covariates,
                       val_future_covariates, val_sample_weight)  # fmt: skip
        names = ("past_covariates", "future_covariates", "sample_weight", "val_past_covariates",
                 "val_future_covariates", "val_sample_weight")  # fmt: skip
        given = [name for name, value in zip(names, unsupported, strict=True) if value is not None]
        if given:
            raise ValueError(f"MSFTModel does not use covariates or sample weights; got {given}.")
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
        self._engine = MSFTEngine(settings).fit(arrays, freq=freq)
        super().fit(series)
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
        past_covariates, future_covariates, verbose, show_warnings
            Darts arguments; covariates must be ``None``.

        Returns
        -------
        TimeSeries or list of TimeSeries
            One forecast per input series (a list when ``series`` is a sequence).
        """
        super().predict(
            n,
            series,
            past_covariates,
            future_covariates,
            num_samples=num_samples,
            predict_likelihood_parameters=predict_likelihood_parameters,
            show_warnings=show_warnings,
        )
        if past_covariates is not None or future_covariates is not None:
            raise ValueError("MSFTModel does not use covariates.")
        if series is None:
            if self.training_series is None:
                raise ValueError(
                    "This model was fitted on several series: pass `series` to predict()."
                )
            series = self.training_series
        single = isinstance(series, TimeSeries)
        inputs = as_series_list(series, "series")
        for i, s in enumerate(inputs):
            self._check_context(s, i)
        likelihood = predict_likelihood_parameters
        arrays = [series_values(s) for s in inputs]
        blocks = self._forecast_blocks(arrays, int(n), num_samples, likelihood, random_state)
        out = [self._to_series(b, s, likelihood) for b, s in zip(blocks, inputs, strict=True)]
        return out[0] if single else out

    def _check_context(self, series: TimeSeries, index: int) -> None:
        need = self.min_input_chunk_length
        if len(series) < need:
            raise ValueError(
                f"The series at index {index} has {len(series)} steps; this model needs at least "
                f"{need} (input_chunk_length). Pass input_chunk_length=(min_length, "
                f"{self._icl}) to forecast shorter series."
            )

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

    def _forecast_blocks(
        self,
        blocks: Sequence[np.ndarray],
        n: int,
        num_samples: int,
        likelihood: bool,
        random_state: int | None,
    ) -> list[np.ndarray]:
        """Forecast ``(time, components)`` contexts: one engine call for all of them.

        Returns one ``(n, components, samples)`` array per block, or with ``likelihood``
        ``(n, components * len(quantiles), 1)`` (quantiles vary fastest, as Darts names them).
        """
        if not likelihood and (
            not isinstance(num_samples, int | np.integer)
            or isinstance(num_samples, bool)
            or num_samples < 1
        ):
            raise ValueError(
                f"num_samples must be a positive integer (1 for the mean forecast, more for "
                f"sample paths), got {num_samples!r}."
            )
        engine = self.engine
        contexts = [b[-self._icl :, j] for b in blocks for j in range(b.shape[1])]
        # the mean forecast comes from the distributions; no sample path is drawn for it
        # (quantiles: from the setting's num_samples paths)
        draws = None if likelihood else (0 if num_samples == 1 else int(num_samples))
        seed = random_state if random_state is not None else engine.settings.random_state
        fc = engine.forecast(contexts, n, draws, seed=seed)
        if likelihood:
            flat = fc.quantiles(self._quantiles)  # (rows, Q, n)
        else:
            flat = fc.mean[:, None, :] if draws == 0 else fc.samples  # (rows, 1 or S, n)
        out, pos = [], 0
        for b in blocks:
            part = flat[pos : pos + b.shape[1]].transpose(2, 0, 1)  # (n, C, S or Q)
            pos += b.shape[1]
            out.append(part.reshape(n, -1, 1) if likelihood else part)
        return out

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
        if past_covariates is not None or future_covariates is not None:
            raise ValueError("MSFTModel does not use covariates.")
        # Darts' own bounds: first and last forecast origin (positions) of every series
        bounds, _ = create_dataset_bounds(
            model=self,
            series=series,
            start=start,
            start_format=start_format,
            forecast_horizon=forecast_horizon,
            stride=stride,
            overlap_end=overlap_end,
            show_warnings=show_warnings,
        )
        origins, blocks = forecast_windows(series, bounds, stride, self._icl)
        likelihood = predict_likelihood_parameters
        values = self._forecast_blocks(
            blocks, forecast_horizon, num_samples, likelihood, random_state
        )

        def to_series(v: np.ndarray, s: TimeSeries, times: pd.Index) -> TimeSeries:
            return self._to_series(v, s, likelihood, times)

        return historical_series(
            series, origins, values, forecast_horizon, stride, last_points_only, to_series
        )

    # ---------------------------------------------------------------------------- save, load
    def save(
        self, path: str | os.PathLike | None = None, clean: bool = False, **kwargs: Any
    ) -> None:
        """Write the model into folder ``path`` (JSON and safetensors; nothing is pickled).

        Parameters
        ----------
        path : str or path-like, optional
            Folder to write (created if needed). Default ``"MSFTModel_{date_time}"``.
        clean : bool, default False
            Leave out the training series (then ``predict`` needs ``series``).

        Notes
        -----
        The folder holds ``darts_model.json`` (parameters and the training series' index),
        ``engine/`` (:meth:`MSFTEngine.save`: settings and only the fine-tuned tensors; the
        frozen backbone is referenced, not copied) and ``training_series.safetensors``.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)} (nothing is pickled).")
        if path is None:
            path = self._default_save_path()
        if not isinstance(path, str | os.PathLike):
            raise ValueError(
                "MSFTModel.save writes a folder: pass its path (file handles are not supported)."
            )
        series = None if clean else self.training_series
        write_model_folder(Path(path), self.model_params, self._engine, series)

    @classmethod
    def load(cls, path: str | os.PathLike, trusted: bool = False) -> MSFTModel:
        """Load a model written by :meth:`save` (JSON and safetensors only: safe to load).

        Parameters
        ----------
        path : str or path-like
            The folder written by :meth:`save`.
        trusted : bool, default False
            Accepted for Darts compatibility; nothing is unpickled either way.
        """
        params, engine, training_series = read_model_folder(Path(path))
        model = cls(**params)
        model._engine, model._fit_called = engine, engine is not None
        model.training_series = training_series
        return model
