"""Darts ``TimeSeries`` to the engine's channel arrays and back, and to JSON for saving.

Format conversion only: the Darts front end (:mod:`msft_forecast.darts`) calls these.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from darts import TimeSeries
from darts.utils.ts_utils import series2seq
from darts.utils.utils import generate_index

#: ``format`` of ``darts_model.json`` in a folder written by ``MSFTModel.save``.
SAVE_FORMAT = "msft_forecast.darts/1"
#: Largest unpacked model :func:`read_model` accepts: full fine-tuning of Moirai-large stores
#: about 1.3 GB of trainable tensors; a bigger archive is not ours (or is a zip bomb).
MAX_MODEL_BYTES = 8 * 2**30


def as_series_list(series: Any, name: str) -> list[TimeSeries]:
    seq = series2seq(series)
    if not seq or not all(isinstance(s, TimeSeries) for s in seq):
        raise ValueError(f"`{name}` must be a TimeSeries or a non-empty sequence of TimeSeries.")
    return list(seq)


def series_values(series: TimeSeries) -> np.ndarray:
    """``(time, components)`` float64 values (first sample of a stochastic series)."""
    return np.asarray(series.values(copy=False), dtype=np.float64)


def channels(values: np.ndarray) -> list[np.ndarray]:
    return [values[:, j] for j in range(values.shape[1])]


def append_validation(
    train: list[TimeSeries], val: list[TimeSeries], horizon: int
) -> tuple[list[np.ndarray], int | None]:
    """Training channels extended by their validation tails, and the tail length."""
    if len(val) != len(train):
        raise ValueError(
            f"val_series must hold one series per training series: got {len(val)} for {len(train)}."
        )
    tails = []
    for i, (tr, va) in enumerate(zip(train, val, strict=True)):
        if va.n_components != tr.n_components or va.has_datetime_index != tr.has_datetime_index:
            raise ValueError(
                f"val_series[{i}] must have the components and index type of series[{i}]."
            )
        if va.freq != tr.freq:
            raise ValueError(f"val_series[{i}] has frequency {va.freq}, series[{i}] {tr.freq}.")
        if va.start_time() > tr.end_time() + tr.freq:
            raise ValueError(
                f"val_series[{i}] starts at {va.start_time()}, after a gap following the end of "
                f"series[{i}] ({tr.end_time()}). The engine validates on the tails of its "
                f"training series, so a validation series must overlap or directly follow its "
                f"training series."
            )
        tails.append(series_values(va)[np.asarray(va.time_index > tr.end_time())])
    steps = min(len(t) for t in tails)
    if steps < horizon:
        warnings.warn(
            f"val_series adds only {steps} steps after the training series, fewer than "
            f"output_chunk_length={horizon}: no validation window fits, so fine-tuning runs "
            f"without validation.",
            UserWarning,
            stacklevel=3,
        )
        return [c for s in train for c in channels(series_values(s))], None
    if any(len(t) > steps for t in tails):
        warnings.warn(
            f"The validation tails have different lengths; each is cut to the shortest "
            f"({steps} steps), the engine holding out the same number of steps per series.",
            UserWarning,
            stacklevel=3,
        )
    merged = [
        np.concatenate([series_values(s), t[:steps]]) for s, t in zip(train, tails, strict=True)
    ]
    return [c for m in merged for c in channels(m)], steps


def jsonable(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError as err:
        raise TypeError(f"The {what} must be JSON-serialisable to be saved: {err}") from err


def series_to_json(series: TimeSeries) -> tuple[dict[str, Any], np.ndarray]:
    """The index, names and attributes of ``series`` as JSON, and its values (exact)."""
    index = series.time_index
    meta: dict[str, Any] = {
        "length": len(series),
        "name": index.name,
        "components": [str(c) for c in series.components],
        "static_covariates": None,
        "hierarchy": series.hierarchy,
        "metadata": None,
    }
    if series.has_datetime_index:
        meta.update(start=index[0].isoformat(), freq=series.freq_str, tz=_tz_name(index))
    else:
        meta.update(start=int(index[0]), freq=int(series.freq), tz=None)
    if series.static_covariates is not None:
        meta["static_covariates"] = series.static_covariates.to_json(
            orient="split", double_precision=15
        )
    if series.metadata:
        try:
            meta["metadata"] = json.loads(json.dumps(series.metadata))
        except TypeError:
            warnings.warn(
                "The training series' metadata is not JSON-serialisable; not saved.",
                UserWarning,
                stacklevel=3,
            )
    return meta, np.ascontiguousarray(series.all_values(copy=False))


def _tz_name(index: pd.DatetimeIndex) -> str | None:
    return None if index.tz is None else str(index.tz)


def series_from_json(meta: dict[str, Any], values: np.ndarray) -> TimeSeries:
    if isinstance(meta["start"], str):
        start = pd.Timestamp(meta["start"])
        if meta.get("tz"):
            start = start.tz_convert(meta["tz"])
    else:
        start = int(meta["start"])
    times = generate_index(start=start, length=meta["length"], freq=meta["freq"], name=meta["name"])
    static = meta.get("static_covariates")
    return TimeSeries(
        times=times,
        values=values,
        components=meta["components"],
        static_covariates=None
        if static is None
        else pd.read_json(StringIO(static), orient="split"),
        hierarchy=meta.get("hierarchy"),
        metadata=meta.get("metadata"),
        copy=False,
    )


def forecast_blocks(
    engine: Any,
    blocks: Sequence[np.ndarray],
    context_length: int,
    n: int,
    num_samples: int,
    quantiles: Sequence[float] | None,
    random_state: int | None,
    batch_size: int | None = None,
    covariates: dict[str, list[np.ndarray]] | None = None,
) -> list[np.ndarray]:
    """Forecast ``(time, components)`` contexts with ``engine``: one engine call for all.

    Returns one ``(n, components, samples)`` array per block, or with ``quantiles``
    ``(n, components * len(quantiles), 1)`` (quantiles vary fastest, as Darts names them).
    ``batch_size``: contexts per model call (default the engine's).  ``covariates``: per
    block, its ``"past"`` and ``"future"`` covariate arrays aligned with the block's last
    ``context_length`` steps (:func:`~msft_forecast.data.darts_covariates.window_covariates`),
    shared by the block's components.
    """
    likelihood = quantiles is not None
    if not likelihood and (
        not isinstance(num_samples, int | np.integer)
        or isinstance(num_samples, bool)
        or num_samples < 1
    ):
        raise ValueError(
            f"num_samples must be a positive integer (1 for the mean forecast, more for "
            f"sample paths), got {num_samples!r}."
        )
    if batch_size is not None and (not isinstance(batch_size, int | np.integer) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    contexts = [b[-context_length:, j] for b in blocks for j in range(b.shape[1])]
    # the mean forecast comes from the distributions; no sample path is drawn for it
    # (quantiles: from the setting's num_samples paths)
    draws = None if likelihood else (0 if num_samples == 1 else int(num_samples))
    seed = random_state if random_state is not None else engine.settings.random_state
    batch = {} if batch_size is None else {"batch_size": int(batch_size)}
    for kind, arrays in (covariates or {}).items():
        per_channel = [a for a, b in zip(arrays, blocks, strict=True) for _ in range(b.shape[1])]
        batch[f"{kind}_covariates"] = per_channel
    widths = [b.shape[1] for b in blocks]  # a joint model checks them
    fc = engine.forecast(contexts, n, draws, seed=seed, channels=widths, **batch)
    if likelihood:
        flat = fc.quantiles(quantiles)  # (rows, Q, n)
    else:
        flat = fc.mean[:, None, :] if draws == 0 else fc.samples  # (rows, 1 or S, n)
    out, pos = [], 0
    for b in blocks:
        part = flat[pos : pos + b.shape[1]].transpose(2, 0, 1)  # (n, C, S or Q)
        pos += b.shape[1]
        out.append(part.reshape(n, -1, 1) if likelihood else part)
    return out


def forecast_windows(
    series: Sequence[TimeSeries], bounds: Any, stride: int, context: int
) -> tuple[list[range], list[np.ndarray]]:
    """Forecast origins (positions) of every series between Darts' ``bounds`` (first and last
    origin per series), every ``stride`` steps, and the ``(time, components)`` block of at
    most ``context`` steps before each origin."""
    origins = [range(int(lo), int(hi) + 1, stride) for lo, hi in bounds]
    arrays = [series_values(s) for s in series]
    blocks = [a[max(0, t - context) : t] for a, o in zip(arrays, origins, strict=True) for t in o]
    return origins, blocks


def check_contexts(series: Sequence[TimeSeries], need: int, input_chunk_length: int) -> None:
    """Refuse a series shorter than ``need`` steps (the minimum input chunk)."""
    for index, s in enumerate(series):
        if len(s) < need:
            raise ValueError(
                f"The series at index {index} has {len(s)} steps; this model needs at least "
                f"{need} (input_chunk_length). Pass input_chunk_length=(min_length, "
                f"{input_chunk_length}) to forecast shorter series."
            )


def historical_series(
    series: Sequence[TimeSeries],
    origins: list[range],
    values: list[np.ndarray],
    horizon: int,
    stride: int,
    last_points_only: bool,
    to_series: Callable[[np.ndarray, TimeSeries, pd.Index], TimeSeries],
) -> list[TimeSeries] | list[list[TimeSeries]]:
    """``historical_forecasts``' output from one forecast array per origin: every window's
    forecast, or (``last_points_only``) the last point of each, at frequency
    ``freq * stride``, as Darts' generic loop returns them."""
    out, pos = [], 0
    for s, o in zip(series, origins, strict=True):
        mine, pos = values[pos : pos + len(o)], pos + len(o)
        # one index for all windows of the series (one date_range per window is slow)
        times = generate_index(
            start=s.start_time(), length=o[-1] + horizon, freq=s.freq, name=s.time_index.name
        )
        if not last_points_only:
            out.append(
                [to_series(v, s, times[t : t + horizon]) for v, t in zip(mine, o, strict=True)]
            )
            continue
        first = to_series(mine[0], s, times[o[0] : o[0] + horizon])
        last_times = generate_index(
            start=first.end_time(),
            length=len(mine),
            freq=first.freq * stride,
            name=first.time_index.name,
        )
        last = np.concatenate([v[-1:] for v in mine], axis=0)
        out.append(first.with_times_and_values(times=last_times, values=last))
    return out


#: The files of a saved model, inside its archive or folder: the only names ever read or
#: written (an archive's own names never choose a path).
MODEL_FILES = ("darts_model.json", "engine/msft_model.json", "engine/trainable.safetensors",
               "training_series.safetensors")  # fmt: skip


def write_model(
    target: str | os.PathLike | BinaryIO,
    params: dict[str, Any],
    engine: Any,
    training_series: TimeSeries | None,
) -> None:
    """Write a model as one zip archive (the files of :func:`write_model_folder`) to a path
    or an open binary file."""
    if isinstance(target, str | os.PathLike) and Path(target).is_dir():
        raise ValueError(
            f"{target} is a folder; MSFTModel.save writes one file: give a file name such as "
            f"{Path(target) / 'model.pt'}."
        )
    with tempfile.TemporaryDirectory() as tmp:
        write_model_folder(Path(tmp), params, engine, training_series)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in MODEL_FILES:
                if (Path(tmp) / name).is_file():
                    archive.write(Path(tmp) / name, arcname=name)


def read_model(source: str | os.PathLike | BinaryIO) -> tuple[dict[str, Any], Any, Any]:
    """What :func:`write_model` wrote (or a folder of :func:`write_model_folder`)."""
    if isinstance(source, str | os.PathLike) and Path(source).is_dir():
        return read_model_folder(Path(source))
    if isinstance(source, str | os.PathLike) and not Path(source).is_file():
        raise FileNotFoundError(f"{source}: no such file (written by MSFTModel.save).")
    if not zipfile.is_zipfile(source):
        raise ValueError(f"{source} is not a model written by MSFTModel.save (not a zip archive).")
    with zipfile.ZipFile(source) as archive, tempfile.TemporaryDirectory() as tmp:
        names = set(archive.namelist())
        if "darts_model.json" not in names:
            raise ValueError(f"{source} is not a model written by MSFTModel.save.")
        members = [archive.getinfo(name) for name in MODEL_FILES if name in names]
        inflated = sum(member.file_size for member in members)
        if inflated > MAX_MODEL_BYTES:
            raise ValueError(
                f"{source} would unpack to {inflated / 2**30:.1f} GiB, more than any model "
                f"MSFTModel.save writes ({MAX_MODEL_BYTES / 2**30:.0f} GiB): not loading it."
            )
        for member in members:
            path = Path(tmp) / member.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            # streamed: zipfile stops at each member's declared size, bounded above
            with archive.open(member) as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        return read_model_folder(Path(tmp))


def write_model_folder(
    folder: Path, params: dict[str, Any], engine: Any, training_series: TimeSeries | None
) -> None:
    """Write ``darts_model.json`` (parameters, whether fitted, the training series' index),
    ``engine/`` (``MSFTEngine.save``) and ``training_series.safetensors`` into ``folder``."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": SAVE_FORMAT,
        "model_params": jsonable(params, "model parameters"),
        "fitted": engine is not None,
        "training_series": None,
    }
    if engine is not None:
        engine.save(folder / "engine")
    if training_series is not None:
        index, values = series_to_json(training_series)
        meta["training_series"] = index
        save_file({"values": values}, str(folder / "training_series.safetensors"))
    with open(folder / "darts_model.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)


def read_model_folder(folder: Path) -> tuple[dict[str, Any], Any, TimeSeries | None]:
    """What :func:`write_model_folder` wrote: the parameters, the engine (None when not
    fitted) and the training series (None when left out); JSON and safetensors only."""
    from safetensors.numpy import load_file

    from msft_forecast.engine import MSFTEngine

    if not (folder / "darts_model.json").is_file():
        raise ValueError(
            f"{folder} is not a folder written by MSFTModel.save (no darts_model.json)."
        )
    with open(folder / "darts_model.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    if meta.get("format") != SAVE_FORMAT:
        raise ValueError(f"not an MSFTModel folder (format {meta.get('format')!r}).")
    params = dict(meta["model_params"])
    for key in ("input_chunk_length", "quantiles", "lora_targets"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    engine = MSFTEngine.load(folder / "engine") if meta["fitted"] else None
    training_series = None
    if meta.get("training_series") is not None:
        values = load_file(str(folder / "training_series.safetensors"))["values"]
        training_series = series_from_json(meta["training_series"], values)
    return params, engine, training_series
