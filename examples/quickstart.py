"""Fine-tune with MSFT on a real series and forecast with intervals, offline, in minutes.

The series is the weekly Mauna Loa CO2 record that ships inside statsmodels (2284 weeks, 59 of
them missing). The last two years are held out: the script fine-tunes the bundled pre-trained
``moirai-tiny`` backbone with MSFT on everything before them, prints point forecasts with 80%
intervals and the scale weights, compares MSE and interval coverage against the
zero-shot backbone on the held-out weeks, and writes ``quickstart_forecast.png``.

Run: ``python examples/quickstart.py`` (after ``bash scripts/setup_env.sh``).
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from statsmodels.datasets import co2  # noqa: E402

from msft_forecast import MSFTForecaster  # noqa: E402

HOLD_OUT = 104  # weeks


def main() -> None:
    y = co2.load_pandas().data["co2"]
    y.index = pd.PeriodIndex(y.index, freq="W-SAT")
    train, test = y.iloc[:-HOLD_OUT], y.iloc[-HOLD_OUT:]
    fh = list(range(1, HOLD_OUT + 1))
    common = dict(
        backbone="moirai-tiny", context_length=512, prediction_length=HOLD_OUT, random_state=0,
        num_samples=200,
    )

    start = time.perf_counter()
    msft = MSFTForecaster(fit_strategy="msft", max_steps=100, batch_size=16, **common)
    msft.fit(train, fh=fh)
    fit_s = time.perf_counter() - start
    zero = MSFTForecaster(fit_strategy="zero-shot", **common).fit(train, fh=fh)

    pred = msft.predict()
    interval = msft.predict_interval(coverage=0.8)
    lower, upper = interval.iloc[:, 0], interval.iloc[:, 1]
    table = pd.DataFrame({"forecast": pred, "lower 80%": lower, "upper 80%": upper, "actual": test})
    print(f"MSFT fine-tuning took {fit_s:.0f} s; first 8 forecast weeks:")
    print(table.head(8).round(2).to_string())
    weights = msft.engine_.scale_weights
    print("\nscale weights (original, /2, /4, /8):", np.round(weights, 3).tolist())

    def scores(f: MSFTForecaster) -> tuple[float, float]:
        p = f.predict()
        iv = f.predict_interval(coverage=0.8)
        ok = test.notna()
        mse = float(((p - test)[ok] ** 2).mean())
        cover = float(((test >= iv.iloc[:, 0]) & (test <= iv.iloc[:, 1]))[ok].mean())
        return mse, cover

    for name, f in (("zero-shot", zero), ("MSFT", msft)):
        mse, cover = scores(f)
        print(f"{name:>9}: MSE {mse:.3f}  80%-interval coverage {cover:.0%}")

    fig, ax = plt.subplots(figsize=(10, 4))
    recent = y.iloc[-4 * HOLD_OUT :]
    ax.plot(recent.index.to_timestamp(), recent.values, color="black", lw=1, label="CO2 (ppm)")
    t = pred.index.to_timestamp()
    ax.fill_between(t, lower.values, upper.values, alpha=0.3, label="80% interval (MSFT)")
    ax.plot(t, pred.values, label="MSFT forecast (mean)")
    ax.plot(t, zero.predict().values, ls="--", label="zero-shot forecast")
    ax.axvline(t[0], color="grey", lw=0.5)
    ax.legend(loc="upper left")
    ax.set_title("Weekly Mauna Loa CO2: MSFT fine-tuned moirai-tiny")
    fig.tight_layout()
    fig.savefig("quickstart_forecast.png", dpi=120)
    print("\nplot written to quickstart_forecast.png")


if __name__ == "__main__":
    main()
