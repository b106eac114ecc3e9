"""Draw ``scales_and_mixing.png`` for docs/strategies.md from the package's own code.

Top: one window of an hourly series cut into the scales MSFT builds
(``msft_forecast.msft.scales.build_scales``: context and horizon pooled separately, so every
scale ends at the forecast boundary). Bottom: the bundled ``moirai-tiny`` fine-tuned with MSFT
on that series (``MSFTEngine``, 40 steps, seed 0); each scale's forecast repeated back to the
original resolution (``msft_forecast.plotting.scale_forecast``), the scale weights (fitted on
the validation windows) and the weighted mean, which is the forecast the front ends return.

Run from the repository root (about a minute on one CPU thread)::

    python docs/figures/make_scales_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from msft_forecast.engine import MSFTEngine  # noqa: E402
from msft_forecast.msft.scales import build_scales, upsample_horizon  # noqa: E402
from msft_forecast.plotting import scale_forecast  # noqa: E402

OUT = Path(__file__).with_name("scales_and_mixing.png")
CONTEXT, HORIZON, NUM_SCALES = 96, 24, 4


def series() -> pd.Series:
    """Hourly: a daily and a weekly cycle, a slow trend and noise (seeded)."""
    t = np.arange(24 * 7 * 8)
    rng = np.random.default_rng(0)
    y = (
        10
        + 2 * np.sin(2 * np.pi * t / 24)
        + np.sin(2 * np.pi * t / (24 * 7))
        + 0.003 * t
        + rng.normal(0, 0.3, t.size)
    )
    return pd.Series(y, index=pd.date_range("2024-01-01", periods=t.size, freq="h"))


def draw_scales(ax, y: np.ndarray) -> None:
    """The window of the bottom panel (last CONTEXT + HORIZON steps), every scale, offset."""
    window = torch.as_tensor(y[-(CONTEXT + HORIZON) :], dtype=torch.float32)[None]
    ctx, hor = window[:, :CONTEXT], window[:, CONTEXT:]
    scales = build_scales(
        ctx,
        torch.ones_like(ctx, dtype=torch.bool),
        hor,
        torch.ones_like(hor, dtype=torch.bool),
        NUM_SCALES,
    )
    spread = float(window.max() - window.min()) * 1.3
    for s in scales:
        k, width = s.level, 2**s.level
        offset = -k * spread
        c = s.context.values[0].numpy()
        h = s.horizon.values[0].numpy()
        # context steps end at the boundary (t = 0); horizon steps start at it
        t_ctx = -width * np.arange(len(c), 0, -1)
        t_hor = width * np.arange(len(h))
        ax.stairs(
            c + offset, np.append(t_ctx, 0), color="C0", lw=1.2, label="context" if k == 0 else None
        )
        ax.stairs(
            h + offset,
            np.append(t_hor, width * len(h)),
            color="C1",
            lw=1.2,
            label="horizon (training target)" if k == 0 else None,
        )
        ax.text(
            -CONTEXT - 4,
            offset + float(c.mean()),
            f"scale {k}\n1/{width}: {len(c)} + {len(h)} steps",
            ha="right",
            va="center",
            fontsize=8,
        )
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlim(-CONTEXT - 40, HORIZON + 4)
    ax.set_yticks([])
    ax.set_xlabel("steps relative to the forecast boundary (original resolution)")
    ax.set_title(
        "Scales: context and horizon pooled separately (pairs, mean), sharing the boundary",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8)


def draw_mixing(ax, ax_w, y: pd.Series) -> None:
    history, future = y.iloc[:-HORIZON], y.iloc[-HORIZON:]
    engine = MSFTEngine(
        backbone="moirai-tiny",
        fit_strategy="msft",
        context_length=CONTEXT,
        prediction_length=HORIZON,
        num_scales=NUM_SCALES,
        max_steps=40,
        batch_size=16,
        val_check_interval=20,
        random_state=0,
    ).fit([history.to_numpy()], freq="h")
    fc = scale_forecast(engine, history, coverage=0.8, seed=0)
    t = np.arange(HORIZON)
    past = history.iloc[-2 * HORIZON :].to_numpy()
    ax.plot(np.arange(-len(past), 0), past, color="black", lw=1, label="history")
    ax.plot(t, future.to_numpy(), color="black", lw=1, ls="--", label="actual")
    for k, name in enumerate(fc.weights.index):
        w = float(fc.weights[name])
        ax.plot(
            t,
            fc.frame[name],
            ls=":",
            lw=0.8 + 3 * w,
            color=f"C{k + 2}",
            label=f"scale {k} forecast, repeated {2**k}x (w={w:.2f})",
        )
    ax.fill_between(
        t,
        fc.frame["lower"],
        fc.frame["upper"],
        color="C1",
        alpha=0.2,
        label="80% interval (mixture of the scales)",
    )
    ax.plot(t, fc.frame["mean"], color="C1", lw=2, label=r"mean $\sum_k w_k\,$scale$_k$")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("hours relative to the forecast boundary")
    ax.set_title(
        "Mixing: each scale forecasts its own horizon; the forecast combines them with weights w",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    ax_w.bar(
        range(len(fc.weights)),
        fc.weights.to_numpy(),
        color=[f"C{k + 2}" for k in range(len(fc.weights))],
    )
    ax_w.set_xticks(range(len(fc.weights)), [f"{k}" for k in range(len(fc.weights))])
    ax_w.set_xlabel("scale")
    ax_w.set_title("scale weights w\n(fitted on validation)", fontsize=9)
    # upsampling is the package's own: check the plotted scale 1 is its repeat of itself
    s1 = torch.tensor(fc.frame["scale_1"].to_numpy()[::2].copy())
    assert np.allclose(upsample_horizon(s1, 1, HORIZON).numpy(), fc.frame["scale_1"].to_numpy())


def main() -> None:
    torch.set_num_threads(1)
    y = series()
    fig = plt.figure(figsize=(11, 8.5))
    grid = fig.add_gridspec(2, 2, width_ratios=(6, 1), height_ratios=(1.2, 1))
    draw_scales(fig.add_subplot(grid[0, :]), y.to_numpy().copy())
    draw_mixing(fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), y)
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
