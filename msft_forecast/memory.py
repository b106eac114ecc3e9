"""Up-front memory checks: refuse (or chunk) work that cannot fit before allocating it.

A horizon of a million steps or five million sample paths used to start the work and end in
the allocator's own error, gigabytes later.  The engine estimates what a call needs from its
settings, compares it with the memory available to the process and refuses with a message that
says what to lower, or chunks the call when a smaller batch fits.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "InsufficientMemoryError",
    "available_memory_bytes",
    "check_memory",
    "gigabytes",
    "training_step_bytes",
]


class InsufficientMemoryError(MemoryError):
    """The work asked for needs more memory than this process can get; nothing was allocated."""


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: the smaller of the machine's available memory
    (``MemAvailable``) and what its cgroup limit leaves; None where neither can be read."""
    candidates = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
                candidates.append(int(limit) - int(fh.read().strip()))
    except (OSError, ValueError):
        pass
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(0, min(candidates)) if candidates else None


def gigabytes(n_bytes: float) -> str:
    """``n_bytes`` written in GB with two significant digits (``"35 GB"``, ``"0.21 GB"``)."""
    return f"{n_bytes / 1e9:.2g} GB"


def check_memory(need_bytes: float, *, what: str, fixes: str, share: float = 0.8) -> None:
    """Refuse ``what`` when it needs more than ``share`` of the available memory.

    Parameters
    ----------
    need_bytes : float
        Estimated bytes.
    what : str
        The work, for the message ("a forecast of 3 series x 100 samples x 1000000 steps").
    fixes : str
        What the caller can lower, for the message.
    share : float, default 0.8
        Fraction of the available memory the work may take.

    Raises
    ------
    InsufficientMemoryError
        With the estimate, the available memory and ``fixes``.

    Examples
    --------
    >>> check_memory(1e3, what="a tiny forecast", fixes="nothing")  # fits: no error
    """
    available = available_memory_bytes()
    if available is None or need_bytes <= share * available:
        return
    raise InsufficientMemoryError(
        f"{what} needs about {gigabytes(need_bytes)} of memory, more than the "
        f"{gigabytes(available)} available; {fixes}."
    )


def training_step_bytes(
    *,
    batch_size: int,
    context_length: int,
    horizon: int,
    patch_size: int,
    num_scales: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    variates: int = 1,
) -> float:
    """An upper estimate of the memory one fine-tuning step keeps for its backward pass.

    Tokens: every scale's context and horizon in patches (scale ``k`` pools ``2**k`` steps),
    for each of the ``variates`` (the target and its covariates, each counted whole).
    Per layer and token, about twelve activations of width ``d_model`` (projections, feed-forward,
    norms) and, per head, a row of attention weights over all tokens, all float32; the windows
    themselves (values, masks, per-scale copies) add 64 bytes a step.  The attention term grows
    with the square of the context: it is what makes an absurd ``context_length`` impossible.

    Examples
    --------
    >>> step = training_step_bytes(batch_size=32, context_length=512, horizon=96, patch_size=32,
    ...     num_scales=4, d_model=256, num_layers=6, num_heads=4)
    >>> f"{step / 1e9:.2f} GB"
    '0.09 GB'
    """
    steps = context_length + horizon
    tokens = variates * sum(-(-steps // (patch_size * 2**k)) for k in range(max(1, num_scales)))
    per_layer = tokens * d_model * 4 * 12 + num_heads * tokens * tokens * 4
    return float(batch_size) * (num_layers * per_layer + variates * steps * 64)


def _variates(pair: Any) -> int:
    """The target plus the covariates of one ``(past, future)`` covariate pair."""
    return 1 + sum(0 if a is None else int(a.shape[1]) for a in pair)


def check_training_memory(
    settings: Any, config: Any, series: list, lengths: Any, patch_size: int,
    covariates: Any = None,
) -> None:  # fmt: skip
    """Refuse settings whose training step cannot fit in the host's memory, before any
    allocation (an accelerator's memory is its own: nothing is checked there).

    Parameters
    ----------
    settings : MSFTSettings
        The fit's settings (batch size, scales, accelerator).
    config : backbone config
        ``d_model``, ``num_layers`` and ``num_heads`` of the backbone.
    series : list of ndarray
        The training series (the message names the longest).
    lengths : FitLengths
        Context and training horizon of the fit.
    patch_size : int
        The fit's patch size (the smallest candidate when it is chosen later).
    covariates : SeriesCovariates, optional
        The fit's covariates (each adds a variate's tokens).
    """
    from msft_forecast.training.trainer import runs_on_cpu

    s = settings
    if not runs_on_cpu(s.accelerator):
        return
    C, H = lengths.context_length, lengths.prediction_length
    need = training_step_bytes(
        batch_size=int(s.batch_size),
        context_length=C,
        horizon=H,
        patch_size=int(patch_size),
        num_scales=int(getattr(s, "num_scales", 1) or 1),
        d_model=int(config.d_model),
        num_layers=int(config.num_layers),
        num_heads=int(config.num_heads),
        variates=_variates(covariates.pairs[0]) if covariates and covariates.pairs else 1,
    )
    longest = max(len(x) for x in series)
    check_memory(
        need,
        what=(
            f"fine-tuning with context_length={C}, prediction_length={H} and "
            f"batch_size={s.batch_size}"
        ),
        fixes=f"lower context_length (the longest series has {longest} steps) or batch_size",
    )


#: Bytes of working memory per sample-path step and scale while a row is sampled (float32
#: intermediates of the per-scale distributions over whole patches).
SAMPLING_BYTES_PER_STEP = 4 * 32


def forecast_batch_size(
    model: Any,
    rows: int,
    context: int,
    horizon: int,
    samples: int,
    batch_size: int,
    attention: tuple[int, int] | None = None,
    covariates: list | None = None,
) -> int:
    """Refuse a forecast whose outputs cannot fit in memory; else the batch size that keeps the
    working memory of one model call within a quarter of what is left (never larger than
    asked).

    Per row, the working memory is the sampling's (every scale's distributions over whole
    patches) and, with ``attention = (patch_size, heads)``, one layer's attention weights over
    all tokens of all scales (inference keeps one layer's at a time).  Batches only group rows
    for speed: a row's samples come from its own stream, so a smaller batch gives the same
    forecast (up to float rounding).  ``covariates`` (the rows' ``(past, future)`` covariate
    pairs) add their variates' tokens.
    """
    scales = int(getattr(getattr(model, "spec", None), "num_scales", 1))
    outputs = 16.0 * rows * horizon * (samples + scales + 1)  # float64, and one copy when joined
    what = f"a forecast of {rows} series x {samples} sample paths x {horizon} steps"
    fixes = (
        "lower num_samples or the horizon, or forecast fewer series per call (num_samples=0 "
        "gives the mean alone)"
    )
    check_memory(outputs, what=what, fixes=fixes)
    per_row = SAMPLING_BYTES_PER_STEP * (horizon * max(samples, 1) * scales + context)
    if attention is not None:
        patch, heads = attention
        tokens = sum(-(-(context + horizon) // (patch * 2**k)) for k in range(max(1, scales)))
        tokens *= _variates(covariates[0]) if covariates else 1
        per_row += 2 * 4 * heads * tokens * tokens  # float32 scores and their softmax
    available = available_memory_bytes()
    if available is None:
        return batch_size
    budget = 0.25 * max(available - outputs, 0)
    if per_row > budget:
        raise InsufficientMemoryError(
            f"forecasting {horizon} steps ({samples} sample paths) for one series needs about "
            f"{gigabytes(per_row)} of working memory, more than the {gigabytes(budget)} this "
            f"call can use; {fixes}."
        )
    return max(1, min(batch_size, int(budget // per_row)))
