"""The Lightning side of fine-tuning: the LightningModule, data module and callbacks.

Lightning owns the loop (devices, precision, DDP, gradient clipping, early stopping, progress
bar, time limit); this module only says what a step computes and which tensors the optimiser
sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Sampler

from msft_forecast.msft.mixing import CombinationStatistics
from msft_forecast.training.windows import WindowDataset

#: Seed of the validation sample paths (plus the batch index).
VALIDATION_SEED = 20_250_614

_NO_DECAY_HINTS = ("norm", "bias", "embedding", "mask_encoding", "scale_logits")


def parameter_groups(
    model: nn.Module, learning_rate: float, scale_weight_lr: float, weight_decay: float
) -> list[dict]:
    """AdamW groups: decayed weights, undecayed norms/biases/embeddings, and the scale weights
    with their own learning rate (the fitted ``mixing_logits`` get no gradient: unchanged)."""
    decay, no_decay, scale = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(("scale_logits", "mixing_logits")):
            scale.append(param)
        elif param.ndim < 2 or any(h in name for h in _NO_DECAY_HINTS):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": learning_rate},
        {"params": no_decay, "weight_decay": 0.0, "lr": learning_rate},
        {"params": scale, "weight_decay": 0.0, "lr": scale_weight_lr},
    ]
    return [g for g in groups if g["params"]]


def adamw(groups: list[dict], fused: bool = True) -> torch.optim.Optimizer:
    """AdamW (betas 0.9, 0.98 as in the paper), fused where torch supports it for these
    parameters: one kernel per step instead of a loop over tensors (3x faster on the CPU, the
    same parameters to float32 rounding); the ordinary implementation otherwise."""
    if fused:
        try:
            return torch.optim.AdamW(groups, betas=(0.9, 0.98), fused=True)
        except (RuntimeError, ValueError):  # a device or dtype the fused kernel lacks
            pass
    return torch.optim.AdamW(groups, betas=(0.9, 0.98))


def _fused_allowed(module: L.LightningModule) -> bool:
    """Fused unless a gradient scaler is in play ("16-mixed"): the fused step unscales the
    gradients itself, after the point where they would have to be clipped."""
    try:
        precision = str(module.trainer.precision)
    except RuntimeError:  # not attached to a trainer
        return True
    return not precision.startswith("16")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; fitting stops and nothing is kept."""


class FineTuneModule(L.LightningModule):
    """Wraps a multi-scale model: a training step computes its loss over the scales; a
    validation pass scores the combined forecast (``val_loss``, see
    :mod:`msft_forecast.msft.mixing`) and, for ``scale_weighting="validation"``, fits the
    inference weights.

    Parameters
    ----------
    model : nn.Module
        A :class:`~msft_forecast.msft.base.MultiScaleModel`: ``loss(**batch)`` returning
        ``(loss, per_scale_losses)``, ``validation_scores(**batch, generator=...)`` returning
        ``(per_scale_losses, CombinationStatistics)``, and the scale-weight methods of
        :class:`~msft_forecast.msft.base.MultiScaleModel`.
    learning_rate, scale_weight_lr, weight_decay : float
        AdamW settings (betas 0.9, 0.98 as in the paper).
    """

    def __init__(
        self,
        model: nn.Module,
        learning_rate: float,
        scale_weight_lr: float = 1e-2,
        weight_decay: float = 0.1,
    ) -> None:
        super().__init__()
        self.model = model
        self.learning_rate = learning_rate
        self.scale_weight_lr = scale_weight_lr
        self.weight_decay = weight_decay
        # checkpoints hold the trainable tensors only (the frozen backbone is loaded from its
        # own files), so loading one must not ask for the frozen ones
        self.strict_loading = False
        self._val_stats: CombinationStatistics | None = None
        #: Optional ``(scheduler class, its arguments, Lightning's scheduler configuration)``.
        self.lr_scheduler: tuple[type, dict[str, Any], dict[str, Any]] | None = None

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Only the trainable tensors (what a resumable checkpoint needs)."""
        full = super().state_dict(*args, **kwargs)
        trainable = {f"model.{n}" for n in self.model.trained_tensors()}
        return {k: v for k, v in full.items() if k in trainable}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the global torch stream (dropout, if the backbone has any) continues where it was
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("torch_rng_state")
        if isinstance(state, torch.Tensor):
            torch.set_rng_state(state)

    def _log_scales(self, prefix: str, per_scale: torch.Tensor, on_step: bool) -> None:
        for k, value in enumerate(per_scale):
            self.log(f"{prefix}_loss_scale{k}", value, on_step=on_step, on_epoch=not on_step)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, per_scale = self.model.loss(**batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at step {self.global_step}. Lower the "
                f"learning_rate, check the data for extreme values, or use precision='32-true'."
            )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        if per_scale.numel() > 1:
            self._log_scales("train", per_scale, on_step=True)
            for k, w in enumerate(self.model.mixing_weights()):
                self.log(f"scale_weight{k}", w, on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_stats = None

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # the same sample paths at every validation pass (common random numbers: checkpoints
        # are compared on equal terms), independent of the training stream (resume-exact)
        generator = torch.Generator(device=batch["context"].device)
        generator.manual_seed(VALIDATION_SEED + batch_idx)
        per_scale, stats = self.model.validation_scores(**batch, generator=generator)
        self._val_stats = stats if self._val_stats is None else self._val_stats + stats
        if per_scale.numel() > 1:
            self._log_scales("val", per_scale, on_step=False)

    def on_validation_epoch_end(self) -> None:
        """The combined forecast's validation loss (``val_loss``), after fitting the inference
        weights to this pass when the model's weighting says so."""
        stats = self._val_stats
        if stats is None:
            return
        reduce = self.trainer.strategy.reduce
        stats = CombinationStatistics(
            reduce(stats.linear, reduce_op="sum"),
            reduce(stats.quadratic, reduce_op="sum"),
            reduce(stats.count, reduce_op="sum"),
        )
        if self.model.fits_weights_on_validation:
            self.model.fit_mixing_weights(stats)
        weights = self.model.mixing_weights().detach().double()
        self.log("val_loss", stats.loss(weights.cpu().numpy()), prog_bar=True, sync_dist=False)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Lightning's norm clipping, also for the fused optimizer, which Lightning refuses to
        clip because under a gradient scaler its step unscales internally; it is used only
        without a scaler (see :func:`_fused_allowed`), where the gradients are unscaled."""
        fused = getattr(optimizer, "defaults", {}).get("fused")
        if fused and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(gradient_clip_val))
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        groups = parameter_groups(
            self.model, self.learning_rate, self.scale_weight_lr, self.weight_decay
        )
        optimizer = adamw(groups, fused=_fused_allowed(self))
        if self.lr_scheduler is None:
            return optimizer
        cls, kwargs, config = self.lr_scheduler
        try:
            scheduler = cls(optimizer, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"lr_scheduler_kwargs {kwargs} do not fit {cls.__name__} ({err}); pass the "
                f"arguments {cls.__name__} takes besides the optimizer."
            ) from err
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **config}}


class StepSeededSampler(Sampler[int]):
    """``num_samples`` window indices drawn with replacement from a stream seeded by
    ``(seed, step)``, ``step`` being the optimiser step at which iteration starts.

    A fit resumed from a checkpoint written at the end of an epoch draws exactly what the
    uninterrupted fit drew from that step on. (Seeding by epoch number is not enough: Lightning
    counts the epoch of such a checkpoint as unfinished and starts an extra, empty one.)
    """

    def __init__(self, size: int, num_samples: int, seed: int, step: Callable[[], int]) -> None:
        self.size = size
        self.num_samples = num_samples
        self.seed = seed
        self.step = step

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * int(self.step()))
        yield from torch.randint(self.size, (self.num_samples,), generator=generator).tolist()


class WindowDataModule(L.LightningDataModule):
    """Random training windows (``batches_per_epoch`` batches per epoch) and fixed validation
    windows.  Each DDP rank draws its own reproducible stream of training windows, and each
    epoch its own, keyed by its first step (a resumed fit draws what an uninterrupted one
    would)."""

    def __init__(
        self,
        train: WindowDataset,
        validation: WindowDataset | None,
        batch_size: int,
        batches_per_epoch: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.train = train
        self.validation = validation
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = StepSeededSampler(
            len(self.train),
            self.batches_per_epoch * self.batch_size,
            self.seed + 7919 * rank,
            lambda: self.trainer.global_step if self.trainer is not None else 0,
        )
        return DataLoader(self.train, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        if self.validation is None:
            return []
        return DataLoader(self.validation, batch_size=self.batch_size, shuffle=False)


class KeepBestTrainable(Callback):
    """Keep the trainable tensors of the best validation step in memory; restore them at the end.

    Lightning's ``ModelCheckpoint`` writes the whole model, frozen backbone included, to disk;
    only the few trainable tensors change, so they are all that is kept.
    """

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_step = -1
        self.initial: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "initial": self.initial,
            "state": self.state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
        self.best_step = int(state_dict["best_step"])
        self.initial = state_dict.get("initial")
        self.state = state_dict.get("state")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not torch.isfinite(value) or float(value) >= self.best:
            return
        self.best = float(value)
        self.best_step = trainer.global_step
        self.state = {
            name: t.detach().clone() for name, t in pl_module.model.trained_tensors().items()
        }

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is None:
            return
        params = pl_module.model.trained_tensors()
        with torch.no_grad():
            for name, value in self.state.items():
                params[name].copy_(value)


class RankAllocation(Callback):
    """AdaLoRA's rank allocation after every optimiser step, while the step's gradients are
    still on the parameters (Lightning zeroes them in the next step's closure); its importance
    statistics travel in checkpoints (:class:`~msft_forecast.msft.adalora.RankAllocator`)."""

    def __init__(self, allocator: Any) -> None:
        self.allocator = allocator

    @classmethod
    def for_model(cls, model: nn.Module, max_steps: int) -> list[Callback]:
        """``[RankAllocation]`` for a model with AdaLoRA updates, else ``[]``."""
        from msft_forecast.msft.adalora import RankAllocator

        allocator = RankAllocator.for_model(model, max_steps)
        return [] if allocator is None else [cls(allocator)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.allocator.update_and_allocate(int(trainer.global_step))

    def state_dict(self) -> dict[str, Any]:
        return self.allocator.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.allocator.load_state_dict(state_dict)


class TrainingHistory(Callback):
    """Records the training loss of every step, and the validation loss and scale weights of
    every validation run, for reports and the fitted model's ``history``."""

    def __init__(self) -> None:
        self.train_loss: list[tuple[int, float]] = []
        self.val_loss: list[tuple[int, float]] = []
        self.scale_weights: list[tuple[int, list[float]]] = []

    def state_dict(self) -> dict[str, Any]:
        return self.as_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_loss = [tuple(r) for r in state_dict["train_loss"]]
        self.val_loss = [tuple(r) for r in state_dict["val_loss"]]
        self.scale_weights = [tuple(r) for r in state_dict["scale_weights"]]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.train_loss.append((trainer.global_step, float(loss)))

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or value is None:
            return
        self.val_loss.append((trainer.global_step, float(value)))
        weights = pl_module.model.mixing_weights().detach().cpu().tolist()
        self.scale_weights.append((trainer.global_step, weights))

    def as_dict(self) -> dict[str, list]:
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "scale_weights": self.scale_weights,
        }
