"""The MSFT engine: fine-tune a backbone on a collection of series and forecast from it.

The engine owns every modelling and forecasting rule; the sktime, Darts and command-line front
ends only convert their data to lists of 1-D float arrays (NaN for missing; one array per
channel: channel-independent modelling), make one engine call per operation and convert the
result back.  :meth:`MSFTEngine.fit` reads top to bottom: settings, backbone, lengths, windows,
patch size, model, training (:func:`~msft_forecast.training.trainer.fine_tune`), calibration.
:meth:`MSFTEngine.forecast` batches contexts, seeds every row, rolls forward beyond a model's
horizon limit and returns the same :class:`~msft_forecast.results.Forecast` for every backbone.
The settings are documented in one place: :class:`~msft_forecast.settings.MSFTSettings`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msft_forecast.backbones.cache import get_backbone, source_label
from msft_forecast.errors import NotFittedError
from msft_forecast.msft.base import MultiScaleModel
from msft_forecast.msft.registry import model_class
from msft_forecast.msft.strategies import StrategySpec, resolve_strategy
from msft_forecast.results import FitReport, Forecast
from msft_forecast.runtime import (
    ConcurrentFitWarning,
    concurrent_fit_guard,
    derived_seed,
    row_seeds,
    torch_threads,
)
from msft_forecast.settings import DEFAULT_LEARNING_RATES, MSFTSettings
from msft_forecast.training import joint
from msft_forecast.training.covariates import SeriesCovariates, as_covariates, forecast_covariates
from msft_forecast.training.lengths import FitLengths, choose_lengths
from msft_forecast.training.patch_size import choose_patch_size
from msft_forecast.training.windows import cut_window, split_windows
from msft_forecast.validation import (
    as_float_series,
    check_observed_contexts,
    check_one_patch,
    unit_scale,
)

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "ConcurrentFitWarning",
    "FitReport",
    "Forecast",
    "MSFTEngine",
    "MSFTSettings",
    "NotFittedError",
    "source_label",
    "torch_threads",
]

if TYPE_CHECKING:  # Lightning loads at the first fit
    from msft_forecast.training.trainer import TrainerExtras

logger = logging.getLogger(__name__)

STATE_FORMAT = "msft_forecast.engine/1"


class MSFTEngine:
    """Fine-tune a foundation model with a strategy and forecast with it.

    Parameters
    ----------
    settings : MSFTSettings, optional
        All settings (see :class:`~msft_forecast.settings.MSFTSettings`); keyword arguments
        override single fields.

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
        self.model_: MultiScaleModel | None = None
        self.report_: FitReport | None = None
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

    def _fitted_model(self) -> MultiScaleModel:
        if self.model_ is None:
            raise NotFittedError("This engine")
        return self.model_

    @property
    def is_fitted(self) -> bool:
        return self.model_ is not None

    @property
    def residuals_(self) -> torch.Tensor | None:
        """Held-out residuals behind the intervals of a model without a predictive
        distribution (MOMENT); None otherwise."""
        return None if self.model_ is None else self.model_.residuals

    @property
    def scale_weights(self) -> np.ndarray:
        """Mixing weights used at inference, finest scale first (``[1.0]`` for one scale)."""
        return self._fitted_model().mixing_weights().detach().cpu().double().numpy()

    def _seed(self) -> int:
        rs = self.settings.random_state
        if rs is None:
            return int(np.random.default_rng().integers(0, 2**31 - 1))
        return int(rs) % (2**31 - 1)

    def build_model(
        self, patch_size: int | None, horizon_length: int, spec: StrategySpec | None = None
    ) -> MultiScaleModel:
        """A fresh, untrained multi-scale model for these settings (or for ``spec``)."""
        loaded = self._backbone()
        return model_class(loaded.kind).build(
            loaded,
            self.settings.strategy_spec() if spec is None else spec,
            patch_size=patch_size,
            horizon_length=horizon_length,
            pooling=self.settings.pooling,
        )

    def candidate_patch_sizes(
        self, freq: str | None = None, context_length: int | None = None
    ) -> list[int]:
        """Patch sizes the backbone allows for this frequency and context, smallest first."""
        loaded = self._backbone()
        context = int(self.settings.context_length if context_length is None else context_length)
        return model_class(loaded.kind).candidate_patch_sizes(loaded.config, freq, context)

    # ------------------------------------------------------------------------------------- fit
    def fit(
        self,
        series: Sequence[np.ndarray],
        *,
        freq: str | None = None,
        warm_start: bool = False,
        max_steps: int | None = None,
        extras: TrainerExtras | None = None,
        past_covariates: Sequence | None = None,
        future_covariates: Sequence | None = None,
        covariate_names: tuple[Sequence[str], Sequence[str]] | None = None,
        channels: int | Sequence[int] = 1,
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
        extras : TrainerExtras, optional
            Lightning callbacks, loggers and a learning-rate scheduler for this call
            (:class:`~msft_forecast.training.trainer.TrainerExtras`): runtime objects, not
            settings, so never saved nor pickled with the engine.
        past_covariates, future_covariates : sequence of array-like, optional
            Per series, its past-only ``(T, P)`` and known-future ``(T', F)`` covariates,
            aligned with the series from its first step (the rules:
            :mod:`msft_forecast.training.covariates`); only for a backbone whose model
            ``supports_covariates`` (Moirai).  The model is then fitted to read them, and
            every forecast must pass them too.
        covariate_names : (list of str, list of str), optional
            Names of the past and known-future covariates (recorded, used in messages).
        channels : int or sequence of int, default 1
            Channels per multivariate series (or of each series) when ``series`` lists the
            channels of each series one after another (instance-major): with the setting
            ``multivariate="joint"`` each channel reads its series' other channels
            (:mod:`msft_forecast.training.joint`), and forecasts take series of as many
            channels; ignored by channel-independent models.

        Raises
        ------
        ValueError
            Bad input (see :func:`msft_forecast.validation.as_float_series`: no series, empty,
            non-numeric, infinite or all-missing series), series too short for one training
            window (the message gives the minimum), an accelerator that does not exist here,
            or covariates that do not fit their series or that the backbone cannot read.
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
        from msft_forecast.memory import check_training_memory
        from msft_forecast.training.trainer import check_devices, quiet_lightning

        series = as_float_series(series)
        covs = as_covariates(series, past_covariates, future_covariates, names=covariate_names)
        s = self.settings
        check_devices(s)
        # load (or fetch from the process cache) before seeding: building a module draws from
        # the global RNG, which would otherwise make the first fit in a process differ
        self._backbone()
        channels = joint.channel_count(channels) if s.multivariate == "joint" else 1
        covs = joint.with_other_channels(covs, series, channels, self._backbone().kind)
        start_from = self if warm_start and self.model_ is not None else None
        lengths = self._lengths(series, freq, start_from)
        if s.strategy_spec().trains:
            patch = s.patch_size
            if patch == "auto":  # the smallest candidate: the estimate is an upper bound
                patch = self.candidate_patch_sizes(freq, lengths.context_length)[0]
            check_training_memory(s, self._backbone().config, series, lengths, int(patch), covs)
        seed = self._seed()
        devices = [] if not torch.cuda.is_available() else list(range(torch.cuda.device_count()))
        steps = int(s.max_steps if max_steps is None else max_steps)
        with (
            concurrent_fit_guard(),
            torch_threads(s.num_threads),
            torch.random.fork_rng(devices=devices),
            quiet_lightning(),
        ):
            torch.manual_seed(seed)
            model, report = self._fit(series, freq, seed, start_from, steps, lengths, extras, covs)
        report.channels = channels
        self.model_, self.report_ = model, report
        logger.info(report.summary())  # also the front ends' fit_summary_ / fit_summary
        self.backbone_source_ = self._source_record()
        return self

    @property
    def backbone_used(self) -> str:
        """The checkpoint the fitted model runs on, in words: the hub id (and revision) or
        folder, or for the offline fallback ``"bundled:moirai-tiny (offline fallback for
        'moirai': ...)"``, so that no result is mistaken for the one asked for."""
        if self.backbone_source_ is None:
            raise NotFittedError("This engine")
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
        chose at fit); forecasts beyond a model's horizon limit roll forward."""
        if self.report_ is not None and self.report_.prediction_length:
            return int(self.report_.prediction_length)
        if self.settings.prediction_length == "auto":
            raise NotFittedError(
                "This engine", 'prediction_length="auto" is chosen from the data at fit; call fit()'
            )
        return int(self.settings.prediction_length)

    def planned_lengths(self, series_lengths: Sequence[int], freq: str | None = None) -> FitLengths:
        """The context and training horizon a fit on series of these lengths uses (see
        :func:`~msft_forecast.training.lengths.choose_lengths`)."""
        s = self.settings
        return choose_lengths(
            list(series_lengths), int(s.context_length), s.prediction_length, freq
        )

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
        extras: TrainerExtras | None = None,
        covariates: SeriesCovariates = SeriesCovariates(),  # noqa: B008 (frozen)
    ) -> tuple[MultiScaleModel, FitReport]:
        from msft_forecast.training.trainer import fine_tune

        start = time.perf_counter()
        s = self.settings
        H, C = lengths.prediction_length, lengths.context_length
        spec = s.strategy_spec()
        model_class(self._backbone().kind).check_strategy(spec)
        names = (covariates.past_names, covariates.future_names)
        model_class(self._backbone().kind).check_covariates(*map(len, names), self._backbone())
        scales = [unit_scale(x) for x in series]
        try:
            split = split_windows(
                series, C, H, validation=s.validation, scales=scales, covariates=covariates.pairs
            )
        except ValueError:
            if spec.trains:
                raise
            split = None  # zero-shot needs no training window
        patch_size, scores, why = self._patch_size(split, freq, C, H, start_from)
        choices = list(lengths.reasons)
        if why is not None:
            logger.info(why)
            choices.append(why)
        check_one_patch(series, int(patch_size))
        model = self.build_model(patch_size, H)
        if start_from is not None:
            model.load_trainable(start_from.trainable_state())
        report = FitReport(
            patch_size=patch_size,
            patch_size_scores=scores,
            context_length=C,
            prediction_length=H,
            choices=choices,
            past_covariates=names[0],
            future_covariates=names[1],
        )
        report.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if spec.trains and max_steps > 0:
            outcome = fine_tune(model, split, s, seed, max_steps, extras)
            for name, value in asdict(outcome).items():
                setattr(report, name, value)
        model.eval()
        if split is not None:
            model.calibrate(split.validation, split.train)
        report.wall_time_s = time.perf_counter() - start
        return model, report

    def _patch_size(
        self, split, freq: str | None, C: int, H: int, start_from: MSFTEngine | None
    ) -> tuple[int, dict[int, float], str | None]:
        """The fit's patch size, the candidates' validation scores and why (None: as given)."""
        s = self.settings
        if start_from is not None:
            report = start_from.report_
            return report.patch_size, dict(report.patch_size_scores), None
        if s.patch_size != "auto":
            return int(s.patch_size), {}, None
        candidates = self.candidate_patch_sizes(freq, C)
        if split is None:
            why = None
            if len(candidates) > 1:
                why = f"patch size {candidates[0]}: the smallest of {candidates}; no window to "
                why += "compare them on"
            return candidates[0], {}, why
        bare = resolve_strategy("zero-shot")
        return choose_patch_size(lambda p: self.build_model(p, H, bare), candidates, split, H)

    @classmethod
    def from_pretrained(cls, pretrained: MSFTEngine, settings: MSFTSettings) -> MSFTEngine:
        """A new engine with ``settings`` holding a copy of ``pretrained``'s tensors, for a fit
        with ``warm_start=True`` (sktime's ``pretrain`` then ``fit``).

        Goes through :meth:`state` / :meth:`from_state`, so ``pretrained`` is never modified and
        changed structural settings (strategy, ranks, ...) fail clearly.  A model whose heads
        have a fixed length (a horizon limit) keeps the pretrained horizon.
        """
        settings = copy.deepcopy(settings)
        trained = pretrained.prediction_length_
        wanted = settings.prediction_length
        if pretrained._fitted_model().horizon_limit is not None and wanted != trained:
            if wanted != "auto" and wanted > trained:
                raise ValueError(
                    f"The model was pretrained for a horizon of {trained} steps and its "
                    f"forecasting heads have that fixed length; fit needs {wanted}. Pass a "
                    f"shorter fh to fit or pretrain with fh up to {wanted}."
                )
            settings.prediction_length = trained
        state = pretrained.state()
        meta = {**state["meta"], "settings": settings.to_json()}
        return cls.from_state({"meta": meta, "tensors": state["tensors"]})

    # -------------------------------------------------------------------------------- forecast
    def forecast(
        self,
        contexts: Sequence[np.ndarray],
        horizon: int,
        num_samples: int | None = None,
        *,
        seed: int | None = None,
        batch_size: int = 256,
        past_covariates: Sequence | None = None,
        future_covariates: Sequence | None = None,
        channels: int | Sequence[int] | None = None,
    ) -> Forecast:
        """Forecast ``horizon`` steps after the end of each context series.

        Parameters
        ----------
        contexts : sequence of ndarray
            1-D series (NaN for missing); the last ``context_length`` steps are used.
        horizon : int
            Steps to forecast.  Beyond the model's horizon limit (MOMENT: its heads' length)
            the forecast rolls forward: each sample path (or the mean) is appended to its
            context and forecast again.
        num_samples : int, optional
            Sample paths (default the setting ``num_samples``); 0 skips sampling (mean only).
        seed : int, optional
            Seed of the sampling stream (default derived from ``random_state``); the same seed
            gives the same samples. Row ``i`` samples from its own stream seeded by
            ``(seed, i)``, so a series' sample paths do not depend on the other series in the
            call nor on ``batch_size``.
        batch_size : int, default 256
            Contexts per model call.
        past_covariates, future_covariates : sequence of array-like, optional
            The covariates the model was fitted with, per context, aligned with it from its
            first step; known-future ones reach ``horizon`` steps past its end (the rules:
            :mod:`msft_forecast.training.covariates`).
        channels : int or sequence of int, optional
            Channels per series (as at :meth:`fit`); a joint model checks that they are the
            ones it was fitted on (default: it assumes so).

        Raises
        ------
        NotFittedError
            The engine is not fitted.
        ValueError
            Bad contexts (empty, non-numeric, infinite values, or no observed value in the last
            ``context_length`` steps), ``horizon < 1``, ``num_samples < 0``, or covariates
            other than the fitted ones or too short.
        """
        model = self._fitted_model()
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
        others = partial(joint.forecast_with_other_channels, contexts=contexts, channels=channels,
                         backbone=self._backbone().kind, fitted=self.report_.channels)  # fmt: skip
        pairs = forecast_covariates(contexts, past_covariates, future_covariates, int(horizon),
                                    self.report_, model.horizon_limit, others).pairs  # fmt: skip
        seed = self._seed() if seed is None else int(seed)
        step = model.horizon_limit or int(horizon)
        first = self._forecast_once(
            contexts, min(step, int(horizon)), num_samples, seed, batch_size, pairs
        )
        if horizon <= step:
            return first
        return self._roll_forward(contexts, first, int(horizon), step, seed, batch_size)

    def _forecast_once(
        self, contexts: list[np.ndarray], horizon: int, num_samples: int, seed: int, batch: int,
        pairs: list | None = None,
    ) -> Forecast:  # fmt: skip
        """One forecast of at most the model's horizon limit, in batches."""
        from msft_forecast.memory import forecast_batch_size

        model, C = self.model_.eval(), self.context_length_
        batch = forecast_batch_size(
            model, len(contexts), C, horizon, num_samples, batch,
            attention=self._attention_shape(), covariates=pairs,
        )  # fmt: skip
        seeds = row_seeds(seed, len(contexts))
        with torch_threads(self.settings.num_threads):
            outs = self._forecast_batches(
                model, contexts, C, horizon, num_samples, seeds, batch, pairs
            )
        mean, samples, scale_means = (torch.cat(parts).numpy() for parts in zip(*outs, strict=True))
        weights = model.mixing_weights().detach().double().cpu().numpy()
        return Forecast(mean=mean, samples=samples, scale_means=scale_means, weights=weights)

    def _forecast_batches(
        self, model: MultiScaleModel, contexts: list[np.ndarray], C: int, horizon: int,
        num_samples: int, seeds: Sequence[int], batch: int, pairs: list | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:  # fmt: skip
        """The model's mean, samples and scale means for ``contexts``, ``batch`` at a time,
        back in each context's units."""
        outs = []
        for start in range(0, len(contexts), batch):
            chunk = [c[-C:] for c in contexts[start : start + batch]]
            # each context in its own units (scale-equivariant forecasts, see unit_scale)
            factors = torch.tensor([unit_scale(c) for c in chunk], dtype=torch.float64)
            rows = range(start, start + len(chunk))
            windows = [  # the full context: covariates stay aligned with it
                cut_window(contexts[i], len(contexts[i]), C, horizon if pairs else 0, float(f),
                           pairs[i] if pairs else None)
                for i, f in zip(rows, factors, strict=True)
            ]  # fmt: skip
            b = torch.utils.data.default_collate(windows)
            out = model.forecast(
                b["context"], b["context_observed"], horizon, num_samples,
                available=b["available"], seeds=seeds[start : start + batch],
                **({"covariates": b["covariates"]} if pairs else {}),
            )  # fmt: skip
            outs.append(
                (
                    out.mean.double() * factors[:, None],
                    out.samples.double() * factors[:, None, None],
                    out.scale_means.double() * factors[:, None, None],
                )
            )
        return outs

    def _roll_forward(
        self, contexts: list[np.ndarray], first: Forecast, horizon: int, step: int, seed: int,
        batch: int,
    ) -> Forecast:  # fmt: skip
        """Extend ``first`` (``step`` steps) to ``horizon`` steps: every sample path (or the
        mean, when no path was asked for) is appended to its context and forecast again, one
        draw per path, ``step`` steps at a time."""
        C = self.context_length_
        sampled = first.samples.shape[1] > 0
        paths = first.samples if sampled else first.mean[:, None, :]  # (N, S, step)
        rows, per_row = paths.shape[0], paths.shape[1]
        base = [c[-C:] for c in contexts for _ in range(per_row)]
        flat = paths.reshape(rows * per_row, -1)
        k = 1
        while flat.shape[1] < horizon:
            ext = [np.concatenate([c, p])[-C:] for c, p in zip(base, flat, strict=True)]
            nxt = self._forecast_once(ext, step, int(sampled), derived_seed(seed, k), batch)
            flat = np.concatenate([flat, nxt.samples[:, 0] if sampled else nxt.mean], axis=1)
            k += 1
        paths = flat[:, :horizon].reshape(rows, per_row, horizon)
        return Forecast(
            mean=paths.mean(axis=1),
            samples=paths if sampled else np.empty((rows, 0, horizon)),
            scale_means=np.empty((rows, 0, horizon)),
            weights=first.weights,
        )

    # ------------------------------------------------------------------------ save and restore
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors this fitted engine owns (everything except the frozen backbone)."""
        if self.model_ is None:
            return {}
        state = self.model_.trainable_tensors()
        if self.model_.residuals is not None:
            state["__residuals__"] = self.model_.residuals.cpu().contiguous()
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
        model.residuals = tensors.pop("__residuals__", None)
        model.load_trainable(tensors)
        engine.model_ = model.eval()
        engine.report_ = report
        return engine

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``msft_model.json`` (settings, backbone reference, fit report) and
        ``trainable.safetensors`` (the fine-tuned tensors only) into folder ``path``."""
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
