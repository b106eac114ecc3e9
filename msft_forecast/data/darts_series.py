"""Darts ``TimeSeries`` to the engine's channel arrays and back, and to JSON for saving.

Format conversion only: the Darts front end (:mod:`msft_forecast.darts`) calls these.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from darts import TimeSeries
from darts.utils.ts_utils import series2seq
from darts.utils.utils import generate_index

#: ``format`` of ``darts_model.json`` in a folder written by ``MSFTModel.save``.
SAVE_FORMAT = "msft_forecast.darts/1"


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
