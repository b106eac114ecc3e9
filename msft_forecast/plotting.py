"""Plots of what is particular to MSFT: the forecast with its interval and every scale's forecast
with its mixing weight."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plot_forecast(
    history_index: Sequence,
    history: np.ndarray,
    forecast_index: Sequence,
    mean: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    *,
    scale_means: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    coverage: float = 0.8,
    title: str | None = None,
    ax=None,
):
    """Plot history, the blended forecast, its interval and (optionally) each scale's forecast.

    Parameters
    ----------
    history_index, history : sequence, ndarray
        Time stamps and values of the observed series (the tail you want to show).
    forecast_index, mean : sequence, ndarray
        Time stamps and point forecast.
    lower, upper : ndarray, optional
        Interval bounds.
    scale_means : ndarray, optional
        ``(K+1, H)`` per-scale forecasts at the original resolution.
    weights : ndarray, optional
        ``(K+1,)`` mixing weights, shown in the legend.
    coverage : float
        Interval coverage, for the legend.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.plotting import plot_forecast
    >>> ax = plot_forecast(range(10), np.arange(10.0), range(10, 13), np.array([10.0, 11, 12]),
    ...                    np.array([9.0, 10, 11]), np.array([11.0, 12, 13]))
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    ax.plot(list(history_index), history, color="black", lw=1, label="history")
    fi = list(forecast_index)
    if lower is not None and upper is not None:
        ax.fill_between(fi, lower, upper, alpha=0.25, label=f"{coverage:.0%} interval")
    if scale_means is not None:
        for k, values in enumerate(scale_means):
            w = "" if weights is None else f" (w={weights[k]:.2f})"
            ax.plot(fi, values, lw=0.8, ls=":", label=f"scale {k} (1/{2**k}){w}")
    ax.plot(fi, mean, lw=1.5, label="forecast (mean)")
    ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    return ax
