"""Models trained from scratch, scored on the same windows as the fine-tuned backbones.

The peers the MSFT paper compares against, taken from maintained libraries rather than
re-implemented: Darts' ``DLinearModel`` and ``NLinearModel`` (Darts is a core dependency) and
neuralforecast's ``PatchTST``, ``TimeMixer`` and ``iTransformer`` (the optional ``bench`` extra:
``pip install "msft-forecast[bench]"``; neuralforecast pulls ray and optuna, so it stays out of
the core install).

Two budgets (``PeerBudget``):

* **steps** (``--budget steps``): the fine-tuned strategies' step budget, at most ``max_steps``
  optimisation steps of ``batch_size`` windows, validation every ``val_check_interval`` steps on
  windows from the validation split, early stopping after ``patience`` checks without
  improvement; the libraries keep their last weights, as they do by default.
* **time** (``--budget time``, as the peers' own users train them): no step cap; training
  stops at early stopping on the validation split (the same cadence and patience) or when the
  wall-clock cap ``max_time`` is reached, and the weights of the best validation check are
  restored (:func:`best_weights_callback`), like the fine-tuned strategies' own.

MSE loss, the library's default learning rate and architecture otherwise.  Validation runs
every ``val_check_interval`` steps rather than at the libraries' default of once per epoch: an
epoch of ETTm1 is about 7,500 steps, more than a CPU budget allows, so early stopping would
never look.  DLinear, NLinear and PatchTST are channel-independent like the
fine-tuned models; TimeMixer and iTransformer are multivariate by design and see all channels
of a dataset together (their published setting), on the same windows and normalisation.
PatchTST draws its windows from one channel per step (see :func:`fit_predict`).

Data handed to a peer has its missing values filled forward (then backward): these models
cannot skip missing inputs.  Scores skip test windows whose truth has missing values, as for
every other model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Peer names accepted by the benchmark runner, with the library that provides each.
PEERS: dict[str, str] = {
    "dlinear": "darts",
    "nlinear": "darts",
    "patchtst": "neuralforecast",
    "timemixer": "neuralforecast",
    "itransformer": "neuralforecast",
}

#: Peers that model all channels of a dataset jointly.
MULTIVARIATE_PEERS = frozenset({"timemixer", "itransformer"})

#: Validation windows per dataset, split evenly over its channels (the fine-tuned strategies
#: cap theirs at 256 in total, too).
VALIDATION_WINDOWS = 256


#: Step cap standing for "no cap" under a time budget (the wall clock binds long before).
UNLIMITED_STEPS = 10_000_000


@dataclass(frozen=True)
class PeerBudget:
    """Training budget shared with the fine-tuned strategies.

    ``max_time`` (seconds) set: the time budget (no step cap, best weights restored);
    otherwise the step budget of ``max_steps`` steps.
    """

    max_steps: int = 200
    batch_size: int = 32
    val_check_interval: int = 25
    patience: int = 3
    seed: int = 0
    accelerator: str = "cpu"
    max_time: float | None = None

    @property
    def steps_cap(self) -> int:
        return UNLIMITED_STEPS if self.max_time is not None else self.max_steps

    def trainer_kwargs(self, monitor: str) -> dict:
        """Lightning Trainer arguments of the time budget (none for the step budget)."""
        if self.max_time is None:
            return {}
        from datetime import timedelta

        return {
            "max_time": timedelta(seconds=float(self.max_time)),
            "callbacks": [best_weights_callback(monitor)],
        }


@dataclass
class PeerResult:
    """Point forecasts of a peer on every (channel, origin) pair, and what training cost."""

    predictions: np.ndarray  # (channels, origins, horizon)
    fit_seconds: float
    trainable_parameters: int
    steps: int | None


def available(name: str) -> bool:
    """Whether the library providing peer ``name`` is installed."""
    import importlib.util

    return importlib.util.find_spec(PEERS[name]) is not None


def require(name: str) -> None:
    """Raise a clear error when a peer is unknown or its library is missing."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {sorted(PEERS)}")
    if not available(name):
        raise ModuleNotFoundError(
            f"peer {name!r} needs the {PEERS[name]} package, which is not installed. Install "
            f'the benchmark extra: pip install "msft-forecast[bench]" (keep your torch pin).'
        )


def fit_predict(
    name: str,
    values: np.ndarray,
    *,
    train_end: int,
    val_end: int,
    origins: np.ndarray,
    context: int,
    horizon: int,
    budget: PeerBudget,
) -> PeerResult:
    """Train peer ``name`` on the training split and forecast from every test origin.

    Parameters
    ----------
    name : str
        One of :data:`PEERS`.
    values : ndarray
        ``(T, C)`` normalised series of one dataset (channels in columns); missing values are
        filled here, on a copy.
    train_end, val_end : int
        Ends of the training and validation splits (rows).  Training windows lie inside
        ``values[:train_end]``; validation windows end inside ``values[train_end:val_end]``.
    origins : ndarray
        Forecast origins (row indices); the forecast from ``t`` covers ``t .. t + horizon - 1``
        given ``values[t - context : t]``.
    context, horizon : int
        Input and output lengths.
    budget : PeerBudget
        Steps, batch, validation cadence, patience and seed.
    """
    require(name)
    filled = fill_missing(np.asarray(values, dtype=np.float64))
    # validation windows: the last origins of the validation split, VALIDATION_WINDOWS in total
    per_series = max(1, VALIDATION_WINDOWS // filled.shape[1])
    val_start = max(0, val_end - (context + horizon + per_series - 1))
    with _quiet():
        if PEERS[name] == "darts":
            return _fit_predict_darts(
                name, filled, train_end, val_start, val_end, origins, context, horizon, budget
            )
        return _fit_predict_neuralforecast(
            name, filled, train_end, val_start, val_end, origins, context, horizon, budget
        )


def fill_missing(values: np.ndarray) -> np.ndarray:
    """A copy of ``(T, C)`` ``values`` with missing values filled forward, then backward, per
    column (for models that cannot skip missing inputs)."""
    import pandas as pd

    return pd.DataFrame(values).ffill().bfill().to_numpy()


def best_weights_callback(monitor: str):
    """A Lightning callback that keeps the weights of the best validation check in memory and
    restores them when training ends: what the fine-tuned strategies do, for libraries that
    keep their last weights (Darts without checkpoints, neuralforecast).

    ``monitor`` is the logged validation metric.  Built here so that Lightning is imported only
    when a peer trains.
    """
    from pytorch_lightning.callbacks import Callback

    class BestWeights(Callback):
        def __init__(self) -> None:
            self.best = float("inf")
            self.best_step: int | None = None
            self._state: dict | None = None

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(monitor)
            if value is None or not np.isfinite(float(value)) or float(value) >= self.best:
                return
            self.best, self.best_step = float(value), int(trainer.global_step)
            self._state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

        def on_fit_end(self, trainer, pl_module) -> None:
            if self._state is not None:
                pl_module.load_state_dict(self._state)

    return BestWeights()


def _trainable(module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _fit_predict_darts(
    name: str,
    values: np.ndarray,
    train_end: int,
    val_start: int,
    val_end: int,
    origins: np.ndarray,
    context: int,
    horizon: int,
    budget: PeerBudget,
) -> PeerResult:
    from darts import TimeSeries
    from darts.models import DLinearModel, NLinearModel
    from pytorch_lightning.callbacks import EarlyStopping

    cls = {"dlinear": DLinearModel, "nlinear": NLinearModel}[name]
    extra = budget.trainer_kwargs("val_loss")
    channels = values.shape[1]
    as_series = [TimeSeries.from_values(values[:, j].astype(np.float32)) for j in range(channels)]
    train = [s[:train_end] for s in as_series]
    val = [s[val_start:val_end] for s in as_series]
    model = cls(
        input_chunk_length=context,
        output_chunk_length=horizon,
        batch_size=budget.batch_size,
        n_epochs=10_000,  # the step cap, the time cap or early stopping binds first
        random_state=budget.seed,
        pl_trainer_kwargs={
            "accelerator": budget.accelerator,
            "max_steps": budget.steps_cap,
            "val_check_interval": budget.val_check_interval,
            "check_val_every_n_epoch": None,
            "callbacks": [
                EarlyStopping("val_loss", patience=budget.patience),
                *extra.pop("callbacks", []),
            ],
            **extra,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
        },
    )
    start = time.perf_counter()
    model.fit(train, val_series=val, verbose=False)
    fit_seconds = time.perf_counter() - start
    steps = getattr(getattr(model, "trainer", None), "global_step", None)  # predict replaces it
    contexts = [s[int(t) - context : int(t)] for s in as_series for t in origins]
    preds = model.predict(horizon, series=contexts, verbose=False, show_warnings=False)
    out = np.stack([p.values()[:, 0] for p in preds]).reshape(channels, len(origins), horizon)
    return PeerResult(out, fit_seconds, _trainable(model.model), steps)


def _long_frame(values: np.ndarray, ids: list[str], start: int = 0):
    """neuralforecast's long format: one row per (series, time step), integer time stamps."""
    import pandas as pd

    n, c = values.shape
    return pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray(ids), n),
            "ds": np.tile(np.arange(start, start + n), c),
            "y": values.T.reshape(-1).astype(np.float32),
        }
    )


def _fit_predict_neuralforecast(
    name: str,
    values: np.ndarray,
    train_end: int,
    val_start: int,
    val_end: int,
    origins: np.ndarray,
    context: int,
    horizon: int,
    budget: PeerBudget,
) -> PeerResult:
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import PatchTST, TimeMixer, iTransformer

    channels = values.shape[1]
    ids = [f"c{j:03d}" for j in range(channels)]
    common = dict(
        h=horizon,
        input_size=context,
        loss=MSE(),
        valid_loss=MSE(),
        max_steps=budget.steps_cap,
        val_check_steps=budget.val_check_interval,
        early_stop_patience_steps=budget.patience,
        windows_batch_size=budget.batch_size,
        inference_windows_batch_size=256,
        random_seed=budget.seed,
        accelerator=budget.accelerator,
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        **budget.trainer_kwargs("ptl/val_loss"),
    )
    if name == "patchtst":
        # one channel per step (its windows_batch_size windows): neuralforecast materialises
        # every window of each sampled series at every step, so all channels per step cost
        # ~6x more time on ETTm1 for no difference in what a step sees on average
        model = PatchTST(batch_size=1, **common)
    else:
        cls = {"timemixer": TimeMixer, "itransformer": iTransformer}[name]
        model = cls(n_series=channels, batch_size=channels, **common)
    nf = NeuralForecast(models=[model], freq=1)
    start = time.perf_counter()
    nf.fit(
        _long_frame(values[:train_end], ids),
        val_df=_long_frame(values[val_start:val_end], ids, start=val_start),
    )
    fit_seconds = time.perf_counter() - start
    fitted = nf.models[0]
    out = np.empty((channels, len(origins), horizon))
    if name in MULTIVARIATE_PEERS:  # every origin is one multivariate input
        for i, t in enumerate(origins):
            frame = _long_frame(values[int(t) - context : int(t)], ids)
            out[:, i] = _predictions(nf.predict(df=frame), ids, horizon)
    else:  # every (channel, origin) is its own series: one call
        pairs = [(j, i) for j in range(channels) for i in range(len(origins))]
        pair_ids = [f"c{j:03d}o{i:05d}" for j, i in pairs]
        block = np.stack([values[int(origins[i]) - context : int(origins[i]), j] for j, i in pairs])
        pred = _predictions(nf.predict(df=_long_frame(block.T, pair_ids)), pair_ids, horizon)
        out[:] = pred.reshape(channels, len(origins), horizon)
    steps = len(getattr(fitted, "train_trajectories", [])) or None
    return PeerResult(out, fit_seconds, _trainable(fitted), steps)


def _predictions(frame, ids: list[str], horizon: int) -> np.ndarray:
    """``(len(ids), horizon)`` forecasts from neuralforecast's output frame, in ``ids`` order."""
    column = [c for c in frame.columns if c not in ("unique_id", "ds")][0]
    frame = frame.sort_values(["unique_id", "ds"])
    by_id = {uid: g[column].to_numpy() for uid, g in frame.groupby("unique_id", sort=False)}
    return np.stack([by_id[uid][:horizon] for uid in ids])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' banners and per-fit warnings (results are printed by the runner)."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning", "darts")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
