"""Fine-tuning with Lightning behind one call: :func:`fine_tune`.

Everything the engine needs from Lightning lives here: the ``Trainer`` and its settings
(devices, precision, step and time budgets, gradient clipping), validation before the first
step (the starting point competes for "best"), early stopping, best-weights restore,
checkpoints to resume from, and a Ctrl+C that reaches the caller as ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from msft_forecast.settings import MSFTSettings

logger = logging.getLogger(__name__)


@dataclass
class TrainingOutcome:
    """What :func:`fine_tune` did: steps, the best validation check and the loss history."""

    steps: int = 0
    best_step: int = -1
    initial_val_loss: float | None = None
    best_val_loss: float | None = None
    history: dict[str, list] = field(default_factory=dict)


@dataclass
class TrainerExtras:
    """Runtime objects of one fine-tune, passed through ``MSFTEngine.fit``: never settings,
    never saved (they are live objects: callbacks, loggers, a scheduler class).

    Attributes
    ----------
    callbacks : list
        Lightning callbacks added to the engine's own (early stopping, best weights, progress).
        A ``ProgressBar`` among them replaces the engine's progress display, an
        ``EarlyStopping`` the one of the setting ``early_stopping_patience``.
    logger : Lightning logger, list of loggers or bool
        Receives ``train_loss``, ``val_loss`` and the scale weights; False logs nothing.
    default_root_dir : str, optional
        Lightning's folder for loggers that have none of their own.
    lr_scheduler : (class, dict, dict), optional
        A ``torch.optim.lr_scheduler`` class, its arguments and Lightning's scheduler
        configuration (``interval``, ``frequency``, ``monitor``, ...).
    """

    callbacks: list = field(default_factory=list)
    logger: Any = False
    default_root_dir: str | None = None
    lr_scheduler: tuple[type, dict[str, Any], dict[str, Any]] | None = None


def fine_tune(
    model: torch.nn.Module,
    split,
    settings: MSFTSettings,
    seed: int,
    max_steps: int,
    extras: TrainerExtras | None = None,
) -> TrainingOutcome:
    """Train ``model`` on the windows of ``split`` for at most ``max_steps`` steps.

    Parameters
    ----------
    model : MultiScaleModel
        The model; its trainable tensors are updated in place and, with validation windows,
        end as those of the best validation check (the starting point included).
    split : WindowSplit
        Training windows and optional validation windows
        (:func:`msft_forecast.training.windows.split_windows`).
    settings : MSFTSettings
        Learning rates, batch size, budgets, validation, early stopping, devices, precision,
        checkpoints.
    seed : int
        Seed of the order in which training windows are drawn.
    max_steps : int
        Step budget of this call.
    extras : TrainerExtras, optional
        Callbacks, loggers and a learning-rate scheduler of this call only.

    Returns
    -------
    TrainingOutcome

    Raises
    ------
    NonFiniteLossError
        The training loss became NaN or infinite.
    KeyboardInterrupt
        Interrupted (with ``checkpoint_dir`` set, ``resume=True`` continues).
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ProgressBar

    from msft_forecast.training.lightning import (
        FineTuneModule,
        KeepBestTrainable,
        RankAllocation,
        TrainingHistory,
        WindowDataModule,
    )
    from msft_forecast.training.progress import progress_display

    s, extras = settings, extras or TrainerExtras()
    module = FineTuneModule(model, s.resolved_learning_rate(), s.scale_weight_lr, s.weight_decay)
    module.lr_scheduler = extras.lr_scheduler
    interval = max(1, min(int(s.val_check_interval), max_steps))
    data = WindowDataModule(split.train, split.validation, int(s.batch_size), interval, seed)
    history, best = TrainingHistory(), KeepBestTrainable()
    callbacks: list = [history, *RankAllocation.for_model(model, max_steps)]
    if split.validation is not None:
        callbacks.append(best)
        # an EarlyStopping of the caller's (a Darts habit) replaces the settings' one: two on
        # the same metric cannot share a checkpoint
        own_stopping = any(isinstance(c, EarlyStopping) for c in extras.callbacks)
        if s.early_stopping_patience is not None and not own_stopping:
            callbacks.append(
                EarlyStopping("val_loss", patience=int(s.early_stopping_patience), mode="min")
            )
    kwargs = _trainer_kwargs(s, max_steps)
    val_every = interval if split.validation is not None else None
    kwargs["enable_progress_bar"], shown = progress_display(bool(s.verbose), max_steps, val_every)
    if any(isinstance(c, ProgressBar) for c in extras.callbacks):
        kwargs["enable_progress_bar"], shown = True, []  # the caller's bar replaces ours
    callbacks.extend([*shown, *extras.callbacks])
    kwargs["logger"] = extras.logger
    if extras.default_root_dir is not None:
        kwargs["default_root_dir"] = extras.default_root_dir
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
    return TrainingOutcome(
        steps=int(trainer.global_step),
        best_step=best.best_step,
        initial_val_loss=best.initial,
        best_val_loss=best.best if math.isfinite(best.best) else None,
        history=history.as_dict(),
    )


def _trainer_kwargs(s: MSFTSettings, max_steps: int) -> dict[str, Any]:
    """Lightning ``Trainer`` arguments of a fine-tune (without callbacks)."""
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
        enable_progress_bar=False,  # fine_tune decides (training/progress.py)
        # a table of every module at every fit is noise; the fit summary counts parameters
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # cached layout tensors built during validation are reused in training steps
        inference_mode=False,
        use_distributed_sampler=False,
    )
    if s.max_time is not None:
        from datetime import timedelta

        kwargs["max_time"] = timedelta(seconds=float(s.max_time))
    return kwargs


@contextmanager
def quiet_lightning():
    """Silence Lightning's banner lines ("GPU available: ...") and its warnings about its own
    set-up (few data-loader workers, ...): the package chose that set-up. The setting
    ``verbose`` (progress, on by default) does not bring them back: every fit would print them."""
    import lightning  # noqa: F401  (importing it sets its loggers' levels; do that first)

    names = ["lightning.pytorch", "lightning.fabric", "pytorch_lightning"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def default_precision(accelerator: str) -> str:
    """``"bf16-mixed"`` on the CPU, ``"32-true"`` elsewhere.

    On the CPU, bf16-mixed fine-tuning ran 1.2-1.4x faster per step than float32 with the same
    validation loss and test MSE (``benchmarks/training_cost.py``, docs/benchmarks.md); on GPUs
    float32 stays the default until measured there: pass ``precision="bf16-mixed"`` to opt in.
    """
    return "bf16-mixed" if runs_on_cpu(accelerator) else "32-true"


def runs_on_cpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` resolves to the CPU on this machine."""
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


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


def check_devices(settings: MSFTSettings) -> None:
    """Refuse an accelerator, device list, strategy or precision this machine cannot run,
    before anything is built (see :func:`msft_forecast.validation.check_accelerator`)."""
    from msft_forecast.validation import check_accelerator

    s = settings
    with quiet_lightning():
        precision = s.precision or default_precision(s.accelerator)
        check_accelerator(s.accelerator, s.devices, s.strategy, precision)
