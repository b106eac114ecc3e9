"""Darts ``historical_forecasts(retrain=False)``: MSFTModel's batched path against loops.

Fits :class:`msft_forecast.darts.MSFTModel` briefly on the first part of a series, then
forecasts every window of the rest three ways and times each.  ``--data``: ``co2`` (default),
the weekly Mauna Loa CO2 series (statsmodels' bundled copy, 2,284 weeks, gaps interpolated);
``airline``, the 144 monthly airline passengers (sktime's copy; context 48, horizon 12: 85
windows); ``sine3000``, 3,000 hourly steps of a daily cycle plus noise (seed 0; context 128,
horizon 24: 2,849 windows).  Nothing is downloaded.

* ``fast``: ``historical_forecasts(retrain=False)``, the batched path (all windows go through
  one ``MSFTEngine.forecast`` call, which batches them);
* ``predict loop``: one ``model.predict(H, series=series[:origin])`` per window;
* ``darts loop``: Darts' generic loop, ``historical_forecasts(..., enable_optimization=False)``.

All three return the full ``H``-step forecast of every window (``last_points_only=False``)
and the table gives the largest absolute difference of each loop's forecasts from the fast
path's (``num_samples=1``: the mean forecast; differences come from float32 batching only).
With ``--loop-windows K`` the loops run on the first ``K`` windows only and their time is
extrapolated linearly to all windows; the table says so.

Usage::

    python benchmarks/darts_historical_forecasts.py                  # ~1,100 windows, 1 thread
    python benchmarks/darts_historical_forecasts.py --loop-windows 200 --threads 2
    python benchmarks/darts_historical_forecasts.py --data airline
    python benchmarks/darts_historical_forecasts.py --data sine3000 --loop-windows 300
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _git(*cmd: str) -> str:
    out = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def _header(args: argparse.Namespace, backbone: str, n_windows: int) -> str:
    import darts
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = _git("rev-parse", "--short", "HEAD") or "no commit yet"
    dirty = " (+ uncommitted changes)" if _git("status", "--porcelain") else ""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return "\n".join(
        [
            "Darts historical_forecasts(retrain=False): MSFTModel batched path vs loops",
            f"date        {time.strftime('%Y-%m-%d %H:%M:%S')}",
            f"git         {commit}{dirty}",
            f"machine     {cpu}; {os.cpu_count()} cores; {platform.platform()}",
            f"software    python {platform.python_version()}, torch {torch.__version__}, "
            f"darts {darts.__version__}; {torch.get_num_threads()} torch threads",
            f"load avg    {load} at start (other processes on this machine skew timings)",
            f"model       {backbone}; input_chunk_length={args.context}, "
            f"output_chunk_length={args.horizon}, fit_strategy={args.fit_strategy}, "
            f"max_steps={args.max_steps}",
            f"data        {DESCRIPTIONS[args.data]}; {n_windows} windows of "
            f"{args.horizon} steps, stride 1, from position {args.start}; num_samples=1",
        ]
    )


#: What each ``--data`` choice is, and its (context, horizon, first origin, fit steps) defaults.
DESCRIPTIONS = {
    "co2": "statsmodels co2 (weekly, 2284 steps)",
    "airline": "sktime airline (monthly, 144 steps)",
    "sine3000": "a daily cycle plus noise (hourly, 3000 steps, seed 0)",
}
DEFAULTS = {"co2": (128, 24, 1160, 20), "airline": (48, 12, 48, 20), "sine3000": (128, 24, 128, 20)}


def _series(name: str):
    """The ``--data`` series as a Darts ``TimeSeries``."""
    import numpy as np
    import pandas as pd
    from darts import TimeSeries

    if name == "co2":
        from statsmodels.datasets import co2

        data = co2.load_pandas().data["co2"].interpolate()
        return TimeSeries.from_series(data.astype("float64"), freq="W-SAT")
    if name == "airline":
        from sktime.datasets import load_airline

        y = load_airline().astype("float64")
        y.index = y.index.to_timestamp()
        return TimeSeries.from_series(y, freq="MS")
    t = np.arange(3000)
    noise = np.random.default_rng(0).normal(0, 0.1, t.size)
    values = 10 + np.sin(2 * np.pi * t / 24) + 0.001 * t + noise
    index = pd.date_range("2024-01-01", periods=t.size, freq="h")
    return TimeSeries.from_times_and_values(index, values)


def _backbone(name: str) -> tuple[str, str]:
    """The backbone to use and how it is described (a random one if it cannot be found)."""
    from msft_forecast.backbones.checkpoint import resolve_checkpoint
    from msft_forecast.backbones.errors import CheckpointError

    try:
        source = resolve_checkpoint(name, allow_fallback=False)
        return name, f"{name} ({source.location})"
    except CheckpointError:
        import torch

        from msft_forecast.backbones.checkpoint import save_checkpoint
        from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

        torch.manual_seed(0)
        config = MoiraiConfig(128, 4, (8, 16, 32), 512)
        folder = Path(tempfile.mkdtemp()) / "moirai-random"
        save_checkpoint(folder, config.to_dict(), MoiraiModule(config))
        return str(folder), f"{name} not found: random Moirai (d_model 128, 4 layers)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="moirai-tiny")
    parser.add_argument("--data", choices=sorted(DESCRIPTIONS), default="co2")
    parser.add_argument("--context", type=int, default=None, help="default: by --data")
    parser.add_argument("--horizon", type=int, default=None, help="default: by --data")
    parser.add_argument("--start", type=int, default=None, help="first forecast origin")
    parser.add_argument("--fit-strategy", default="msft")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", default=None, help="also write the report here")
    parser.add_argument(
        "--loop-windows",
        type=int,
        default=0,
        help="time the loops on this many windows and extrapolate (0: all windows)",
    )
    args = parser.parse_args(argv)
    names = ("context", "horizon", "start", "max_steps")
    for name, value in zip(names, DEFAULTS[args.data], strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)

    import numpy as np
    import torch

    from msft_forecast.darts import MSFTModel

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    series = _series(args.data)
    horizon = args.horizon
    origins = list(range(args.start, len(series) - horizon + 1))
    backbone, described = _backbone(args.backbone)
    report = [_header(args, described, len(origins))]
    print(report[0], flush=True)

    model = MSFTModel(
        input_chunk_length=args.context,
        output_chunk_length=horizon,
        backbone=backbone,
        fit_strategy=args.fit_strategy,
        max_steps=args.max_steps,
        batch_size=16,
        random_state=0,
    )
    tic = time.perf_counter()
    model.fit(series[: args.start])
    seconds = time.perf_counter() - tic
    report.append(f"fit         {seconds:.1f} s on the first {args.start} steps\n")
    print(report[-1])

    model.predict(horizon, series=series[: args.start])  # warm-up (lazy imports, caches)
    tic = time.perf_counter()
    fast = model.historical_forecasts(
        series,
        start=args.start,
        start_format="position",
        forecast_horizon=horizon,
        retrain=False,
        last_points_only=False,
    )
    t_fast = time.perf_counter() - tic
    assert len(fast) == len(origins)

    k = len(origins) if args.loop_windows <= 0 else min(args.loop_windows, len(origins))
    subset = origins[:k]
    tic = time.perf_counter()
    loop = [model.predict(horizon, series=series[:t]) for t in subset]
    t_loop = time.perf_counter() - tic
    tic = time.perf_counter()
    generic = model.historical_forecasts(
        series[: subset[-1] + horizon],
        start=args.start,
        start_format="position",
        forecast_horizon=horizon,
        retrain=False,
        last_points_only=False,
        enable_optimization=False,
    )
    t_generic = time.perf_counter() - tic
    assert len(generic) == k

    def diff(forecasts) -> float:  # the loops may cover only the first k windows
        pairs = zip(fast[: len(forecasts)], forecasts, strict=True)
        return max(float(np.abs(a.values() - b.values()).max()) for a, b in pairs)

    scale = len(origins) / k
    note = "" if k == len(origins) else f" (timed on {k} windows, x{scale:.2f})"
    rows = [
        ("fast: historical_forecasts", t_fast, "", "reference"),
        ("predict loop", t_loop * scale, note, f"{diff(loop):.2e}"),
        ("darts loop (no optimization)", t_generic * scale, note, f"{diff(generic):.2e}"),
    ]
    report.append(
        f"{'method':<30} {'windows':>8} {'seconds':>9} {'ms/window':>10} {'speed-up':>9}"
        f"  {'max |diff|':>10}"
    )
    for name, seconds, extra, d in rows:
        report.append(
            f"{name:<30} {len(origins):>8} {seconds:>9.2f} {1000 * seconds / len(origins):>10.2f}"
            f" {seconds / t_fast:>8.1f}x  {d:>10}{extra}"
        )
    level = float(np.abs(fast[0].values()).mean())
    report.append(
        f"\nforecast values are about {level:.3g}; differences come from float32 batching."
    )
    print("\n".join(report[2:]))
    if args.markdown:
        given = " ".join(argv or sys.argv[1:])
        command = f"python benchmarks/darts_historical_forecasts.py {given}"
        text = "```\n" + "\n".join(report) + f"\ncommand     {command}\n```\n"
        Path(args.markdown).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
