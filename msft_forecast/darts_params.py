"""Darts-style constructor arguments of :class:`~msft_forecast.darts.MSFTModel` to engine settings.

The Darts front end names some :class:`~msft_forecast.settings.MSFTSettings` fields as Darts
models do (``input_chunk_length``, ``output_chunk_length``, ``n_epochs``, ``pl_trainer_kwargs``)
and takes the other common ``TorchForecastingModel`` arguments (``likelihood``,
``optimizer_cls``/``optimizer_kwargs``, ``lr_scheduler_cls``/``lr_scheduler_kwargs``,
``model_name``/``work_dir``/``save_checkpoints``/``force_reset``, ``add_encoders``); this module
translates them, or refuses them with a message naming what to use instead, as Darts' own
models do. Runtime objects (callbacks, loggers, the scheduler class) never become settings:
:func:`trainer_extras` hands them to one fit, and :func:`saveable_params` leaves them out of
save files.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import fields
from typing import Any

import numpy as np

from msft_forecast.settings import MSFTSettings

#: ``pl_trainer_kwargs`` keys that become settings; the engine owns the rest of the Trainer.
TRAINER_KEYS = ("accelerator", "devices", "strategy", "precision", "enable_progress_bar")
#: ``pl_trainer_kwargs`` keys passed to Lightning for each fit: live objects, never saved.
RUNTIME_KEYS = ("callbacks", "logger")
#: Other ``Trainer`` arguments Darts users pass, and the ``MSFTModel`` parameter doing their job.
TRAINER_ALTERNATIVES = {
    "max_epochs": "n_epochs",
    "max_steps": "max_steps",
    "max_time": "max_time (seconds)",
    "gradient_clip_val": "gradient_clip",
    "val_check_interval": "val_check_interval (steps)",
    "check_val_every_n_epoch": "val_check_interval (steps)",
    "default_root_dir": "work_dir",
    "enable_checkpointing": "save_checkpoints or checkpoint_dir",
}
#: ``optimizer_kwargs`` keys and the settings they set.
OPTIMIZER_KEYS = {"lr": "learning_rate", "weight_decay": "weight_decay"}
#: ``torch.optim.lr_scheduler`` classes accepted as ``lr_scheduler_cls`` (by name: a saved
#: model names its scheduler, and a name is only ever looked up in this list).
SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
              "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "LinearLR", "ConstantLR",
              "PolynomialLR", "ReduceLROnPlateau")  # fmt: skip
#: ``lr_scheduler_kwargs`` keys that configure Lightning's scheduling (as in Darts), with
#: Darts' defaults; one epoch here is ``val_check_interval`` steps, ending with a validation.
SCHEDULER_CONFIG = {"monitor": "val_loss", "interval": "epoch", "frequency": 1, "strict": True,
                    "name": None}  # fmt: skip
#: Quantile levels of ``predict_likelihood_parameters=True`` by default.
DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: MSFTSettings fields that the constructor exposes under their Darts names (or elsewhere).
_RENAMED = {
    "context_length": "input_chunk_length",
    "prediction_length": "output_chunk_length",
    "max_epochs": "n_epochs",
    "accelerator": "pl_trainer_kwargs",
    "devices": "pl_trainer_kwargs",
    "strategy": "pl_trainer_kwargs",
    "precision": "pl_trainer_kwargs",
    "verbose": "fit(verbose=...)",
}
#: True while ``MSFTModel.load`` rebuilds a model: its checkpoint folder is its own.
RESTORING: ContextVar[bool] = ContextVar("msft_forecast_darts_restoring", default=False)


def settings_from_params(params: dict[str, Any], icl: int, ocl: int | None) -> MSFTSettings:
    """Engine settings from ``MSFTModel.model_params`` (context ``icl``; training horizon
    ``ocl``, None for ``"auto"``); Darts arguments this model cannot honour are refused with
    the alternative (see :func:`check_darts_arguments`)."""
    check_darts_arguments(params)
    trainer = dict(params.get("pl_trainer_kwargs") or {})
    unknown = sorted(set(trainer) - set(TRAINER_KEYS) - set(RUNTIME_KEYS))
    if unknown:
        hints = [f"{k} -> {TRAINER_ALTERNATIVES[k]}" for k in unknown if k in TRAINER_ALTERNATIVES]
        raise ValueError(
            f"pl_trainer_kwargs keys {unknown} are not supported: the engine builds its own "
            f"Lightning Trainer and takes only {list(TRAINER_KEYS + RUNTIME_KEYS)} from "
            f"pl_trainer_kwargs; use the MSFTModel parameters instead"
            + (f" ({', '.join(hints)})." if hints else ".")
        )
    values = {
        f.name: params[f.name]
        for f in fields(MSFTSettings)
        if f.name not in _RENAMED and f.name in params
    }
    values.update(optimizer_settings(params))
    verbose = bool(trainer.pop("enable_progress_bar", MSFTSettings.verbose))
    values.update({k: v for k, v in trainer.items() if k in TRAINER_KEYS})
    values.update(
        context_length=icl,
        prediction_length="auto" if ocl is None else ocl,
        max_epochs=params.get("n_epochs"),
        verbose=verbose,
    )
    folder = checkpoint_folder(params)
    if folder is not None:
        values["checkpoint_dir"] = folder
    settings = MSFTSettings(**values)
    settings.validate()
    return settings


#: Darts ``TorchForecastingModel`` constructor arguments MSFTModel refuses when given, and what
#: to use instead.
_REFUSED_WHY = {
    "loss_fn": "the training loss is the backbone's own, per scale (Moirai: the NLL of its "
    "predictive mixture; MOMENT and UniTS: MSE); for quantile outputs pass "
    "likelihood=QuantileRegression(quantiles)",
    "torch_metrics": "validation uses the training loss and the combined forecast's CRPS; "
    "score forecasts with darts.metrics, e.g. model.backtest(series, metric=mae)",
    "log_tensorboard": "pass a logger instead: pl_trainer_kwargs={'logger': "
    "TensorBoardLogger(...)} (or any Lightning logger)",
    "show_warnings": "MSFTModel's own warnings always show and Lightning's banners are "
    "silenced; filter warnings with Python's warnings module",
}


def check_darts_arguments(params: dict[str, Any]) -> None:
    """Refuse the Darts arguments this model cannot honour, naming what to use instead."""
    for name, why in _REFUSED_WHY.items():
        if params.get(name) not in (None, False):
            raise ValueError(f"{name} is not supported: {why}.")
    if params.get("add_encoders") is not None:
        raise ValueError(
            "add_encoders is not supported: MSFTModel does not build covariates itself. Leave "
            "add_encoders=None and pass the covariates you want (e.g. calendar features) as "
            "past_covariates / future_covariates (Moirai backbones); the backbone also reads "
            "the time structure from the target itself."
        )
    cls = params.get("optimizer_cls")
    if cls is not None and not (_is_torch_class(cls, "torch.optim") and cls.__name__ == "AdamW"):
        raise ValueError(
            f"optimizer_cls={getattr(cls, '__name__', cls)!r} is not supported: MSFTModel trains "
            f"with torch.optim.AdamW (decoupled weight decay; the scale weights have their own "
            f"learning rate, scale_weight_lr). Leave optimizer_cls out or pass "
            f"torch.optim.AdamW, and set optimizer_kwargs={{'lr': ..., 'weight_decay': ...}}."
        )
    scheduler_name(params.get("lr_scheduler_cls"))
    if params.get("lr_scheduler_kwargs") and params.get("lr_scheduler_cls") is None:
        raise ValueError("lr_scheduler_kwargs needs lr_scheduler_cls (the scheduler to build).")


def _is_torch_class(cls: Any, module: str) -> bool:
    return isinstance(cls, type) and str(getattr(cls, "__module__", "")).startswith(module)


def scheduler_name(cls: Any) -> str | None:
    """The allow-listed name of an ``lr_scheduler_cls`` (a class or a saved name), or None."""
    if cls is None:
        return None
    name = cls if isinstance(cls, str) else getattr(cls, "__name__", None)
    if isinstance(cls, type) and not _is_torch_class(cls, "torch.optim.lr_scheduler"):
        name = None
    if name not in SCHEDULERS:
        raise ValueError(
            f"lr_scheduler_cls={getattr(cls, '__name__', cls)!r} is not supported: pass one of "
            f"torch.optim.lr_scheduler's {list(SCHEDULERS)} (schedulers taking functions, such "
            f"as LambdaLR, cannot be saved), or leave it out for a constant learning rate."
        )
    return name


def optimizer_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``learning_rate`` and ``weight_decay`` from ``optimizer_kwargs`` (Darts' ``lr``)."""
    given = dict(params.get("optimizer_kwargs") or {})
    unknown = sorted(set(given) - set(OPTIMIZER_KEYS))
    if unknown:
        raise ValueError(
            f"optimizer_kwargs keys {unknown} are not supported: MSFTModel's AdamW takes "
            f"{list(OPTIMIZER_KEYS)} from optimizer_kwargs (the same as the parameters "
            f"learning_rate and weight_decay; betas are fixed at (0.9, 0.98))."
        )
    out = {}
    for key, name in OPTIMIZER_KEYS.items():
        if key not in given:
            continue
        default = getattr(MSFTSettings, name)
        if params.get(name, default) != default and params.get(name) != given[key]:
            raise ValueError(
                f"optimizer_kwargs[{key!r}]={given[key]!r} and {name}={params[name]!r} disagree; "
                f"pass one of them."
            )
        out[name] = given[key]
    return out


def resolve_quantiles(params: dict[str, Any]) -> tuple[float, ...]:
    """Quantile levels from ``likelihood=QuantileRegression(...)`` or ``quantiles``."""
    quantiles = params.get("quantiles", DEFAULT_QUANTILES)
    likelihood = params.get("likelihood")
    if likelihood is None:
        return parse_quantiles(quantiles)
    levels = getattr(likelihood, "quantiles", None)
    if type(likelihood).__name__ != "QuantileRegression" or levels is None:
        raise ValueError(
            f"likelihood={type(likelihood).__name__} is not supported: the predictive "
            f"distribution is the backbone's own (Moirai's mixture; MOMENT's held-out "
            f"residuals), not one a likelihood chooses. Pass "
            f"likelihood=QuantileRegression(quantiles=[...]) or quantiles=[...] to choose the "
            f"levels that predict_likelihood_parameters=True returns."
        )
    if tuple(quantiles) != DEFAULT_QUANTILES and parse_quantiles(quantiles) != parse_quantiles(
        levels
    ):
        raise ValueError(
            f"likelihood's quantiles {list(levels)} and quantiles={list(quantiles)} disagree; "
            f"pass one of them."
        )
    return parse_quantiles(levels)


def checkpoint_folder(params: dict[str, Any]) -> str | None:
    """``work_dir/model_name/checkpoints`` with ``save_checkpoints=True`` (Darts' folder).

    As in Darts, a folder that already holds checkpoints is refused unless ``force_reset``
    (which empties it) or ``resume`` (which continues from its ``last.ckpt``).
    """
    if not params.get("save_checkpoints"):
        return None
    if params.get("checkpoint_dir") is not None:
        raise ValueError(
            "save_checkpoints=True writes to work_dir/model_name/checkpoints and checkpoint_dir "
            "names a folder itself: pass one of them."
        )
    work_dir = params.get("work_dir") or os.path.join(os.getcwd(), "darts_logs")
    name = params.get("model_name") or default_model_name()
    folder = os.path.join(work_dir, name, "checkpoints")
    if os.path.isdir(folder) and os.listdir(folder) and not RESTORING.get():
        if params.get("force_reset"):
            shutil.rmtree(folder)
        elif not params.get("resume"):
            raise ValueError(
                f"Some model data already exists for model_name {name!r} in {folder}. Pass "
                f"force_reset=True to delete it and start over, resume=True to continue its "
                f"fit, or another model_name."
            )
    return folder


def default_model_name() -> str:
    """Darts' default ``model_name``: local date and time, and the process id."""
    now = datetime.datetime.now().strftime("%Y-%m-%d_%H_%M_%S")
    return f"{now}_torch_model_run_{os.getpid()}"


def trainer_extras(params: dict[str, Any], folder: str | None):
    """The runtime objects of one fit (:class:`~msft_forecast.training.trainer.TrainerExtras`):
    ``pl_trainer_kwargs``' callbacks and logger, the scheduler, and Lightning's root folder
    (``work_dir/model_name``, Darts' logs folder, when a logger is given)."""
    import torch

    from msft_forecast.training.trainer import TrainerExtras

    trainer = params.get("pl_trainer_kwargs") or {}
    callbacks = trainer.get("callbacks") or []
    extras = TrainerExtras(
        callbacks=list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks],
        logger=trainer.get("logger", False),
    )
    if extras.logger is not False and (params.get("model_name") or params.get("work_dir")):
        work_dir = params.get("work_dir") or os.path.join(os.getcwd(), "darts_logs")
        extras.default_root_dir = os.path.join(work_dir, params.get("model_name") or "")
    elif folder is not None:
        extras.default_root_dir = os.path.dirname(folder)
    name = scheduler_name(params.get("lr_scheduler_cls"))
    if name is not None:
        kwargs = dict(params.get("lr_scheduler_kwargs") or {})
        config = {k: kwargs.pop(k, v) for k, v in SCHEDULER_CONFIG.items()}
        extras.lr_scheduler = (getattr(torch.optim.lr_scheduler, name), kwargs, config)
    return extras


def saveable_params(
    params: dict[str, Any], quantiles: Sequence[float], settings: MSFTSettings | None = None
) -> dict[str, Any]:
    """``model_params`` as a save file holds them: the quantiles instead of the likelihood
    object, the scheduler's name instead of its class, no optimizer class (AdamW is the only
    one), no callbacks or loggers (live objects: pass them again to ``load``), and with
    ``save_checkpoints`` the ``model_name`` drawn at construction (``settings``), so that the
    loaded model keeps its checkpoint folder."""
    out = dict(params)
    if params.get("save_checkpoints") and not params.get("model_name") and settings is not None:
        out["model_name"] = os.path.basename(os.path.dirname(str(settings.checkpoint_dir)))
    out.update(likelihood=None, quantiles=list(quantiles), optimizer_cls=None)
    out["lr_scheduler_cls"] = scheduler_name(params.get("lr_scheduler_cls"))
    trainer = {k: v for k, v in (params.get("pl_trainer_kwargs") or {}).items()
               if k not in RUNTIME_KEYS}  # fmt: skip
    out["pl_trainer_kwargs"] = trainer or None
    return out


#: Why a Darts argument that ``MSFTModel`` does not use is refused.
_UNUSED_WHY = {
    "sample_weight": "MSFTModel does not weight training samples",
    "trainer": "forecasts run in the engine, without a Lightning Trainer",
    "mc_dropout": "the predictive distribution is the backbone's own; ask for sample paths "
    "with num_samples",
    "dataloader_kwargs": "batch_size is the forecasting batch setting",
    "roll_size": "longer horizons roll forward by the model's own horizon limit",
}


def extreme_lags(model: Any) -> tuple:
    """Darts' ``extreme_lags`` of the model: the input chunk and the output chunk of the
    target; past covariates over the input chunk and future covariates over the input and
    output chunks when the model was fitted with them (else None, as Darts asks)."""
    first, last = -model.min_input_chunk_length, model.output_chunk_length - 1
    past = (first, -1) if model.uses_past_covariates else (None, None)
    future = (first, last) if model.uses_future_covariates else (None, None)
    return first, last, *past, *future, 0


def reads_covariates(model: Any) -> bool:
    """Whether the model's backbone reads covariates (Moirai; not MOMENT): the fitted
    model's class, or before fit the class of the backbone the settings name."""
    from msft_forecast.backbones.cache import get_backbone
    from msft_forecast.msft.registry import model_class

    if model._engine is not None:
        return type(model._engine.model_).supports_covariates
    s = model._settings
    kind = get_backbone(s.backbone, s.revision, allow_fallback=s.allow_fallback).kind
    return model_class(kind).supports_covariates


def refuse_unused(**named: Any) -> None:
    """Refuse Darts arguments given a value (not None or False) that MSFTModel does not use,
    saying why; unknown names are a ``TypeError``, as for any Python function."""
    unknown = sorted(k for k in named if not any(k.endswith(w) for w in _UNUSED_WHY))
    if unknown:
        raise TypeError(f"MSFTModel got unexpected keyword arguments {unknown}.")
    given = [k for k, v in named.items() if v is not None and v is not False]
    if given:
        why = sorted({w for k in given for key, w in _UNUSED_WHY.items() if k.endswith(key)})
        raise ValueError(f"MSFTModel does not use {given}: {'; '.join(why)}.")


def parse_input_chunk_length(value: int | tuple[int, int]) -> tuple[int, int]:
    """``(min_length, max_length)`` of an ``input_chunk_length`` (an int is both)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        lo = hi = int(value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        lo, hi = int(value[0]), int(value[1])
    else:
        raise ValueError(
            f"input_chunk_length must be an int or a (min_length, max_length) tuple, got {value!r}."
        )
    if not 1 <= lo <= hi:
        raise ValueError(f"input_chunk_length needs 1 <= min_length <= max_length, got {value!r}.")
    return lo, hi


def parse_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Sorted, distinct quantile levels in (0, 1)."""
    levels = tuple(sorted(float(q) for q in quantiles))
    if not levels or not all(0.0 < q < 1.0 for q in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"quantiles must be distinct levels in (0, 1), got {quantiles!r}.")
    return levels
