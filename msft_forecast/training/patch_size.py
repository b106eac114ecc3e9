"""Choosing the patch size from the data: smaller unless a larger one is clearly better.

Used by ``patch_size="auto"`` (see the ``patch_size`` setting): the candidates are the sizes the
backbone offers for the data's frequency; each is scored zero-shot on validation windows, and
the evidence is counted in independent horizons, because overlapping windows of a short
series say little more than one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from msft_forecast.msft.base import MultiScaleModel, context_spread


def choose_patch_size(
    build: Callable[[int], MultiScaleModel], candidates: list[int], split, horizon: int
) -> tuple[int, dict[int, float], str]:
    """The patch size for this data, its candidates' validation scores, and why.

    Every candidate's zero-shot forecast (the scale-0 forecast of an untrained model, which
    is the frozen backbone's) is scored on the validation windows (the training windows when
    there is no validation tail), never anything later.  Then the **smallest** candidate is
    kept unless the best one beats it clearly (:func:`prefer_smaller_patch`): overlapping
    windows of a short series hold little evidence, and a wrong large patch is costly (a
    few tokens of context, a first forecast step far from the last value).

    Parameters
    ----------
    build : callable
        ``build(p)``: a zero-shot model (nothing trained) with patch size ``p``.
    candidates : list of int
        Patch sizes to compare, smallest first.
    split : WindowSplit
        The fit's windows; only the validation windows (else the training ones) are read.
    horizon : int
        The training horizon (for counting independent horizons).
    """
    if len(candidates) == 1:
        return candidates[0], {}, f"patch size {candidates[0]}: the only candidate"
    data = split.validation if split.validation is not None else split.train
    n = min(len(data), 64)
    idx = np.unique(np.linspace(0, len(data) - 1, n).round().astype(int))
    batch = torch.utils.data.default_collate([data[int(i)] for i in idx])
    # score each window in units of its context's spread, so no series dominates
    spread = context_spread(batch["context"], batch["context_observed"])
    spread = spread.clamp(min=1e-3 * float(spread.median()) + 1e-8)
    errors = {}
    for p in candidates:
        model = build(p).eval()
        with torch.no_grad():
            # one sample path, drawn from torch's global stream as since the first release:
            # fewer draws would shift the stream the training that follows starts from
            out = model.forecast(
                batch["context"],
                batch["context_observed"],
                batch["horizon"].shape[-1],
                num_samples=1,
                available=batch["available"],
                **({"covariates": batch["covariates"]} if "covariates" in batch else {}),
            )
        err = ((out.scale_means[:, 0] - batch["horizon"]) / spread[:, None]) ** 2
        err = torch.where(batch["horizon_observed"], err, torch.nan)
        errors[p] = np.nanmean(err.double().numpy(), axis=1)  # one error per window
    origins = [data.origin(int(i)) for i in idx]
    independent = independent_windows(origins, horizon)
    chosen, why = prefer_smaller_patch(errors, independent)
    scores = {p: float(np.nanmean(e)) for p, e in errors.items()}
    return chosen, scores, why


#: How many standard errors a larger patch size must beat a smaller one by to be chosen.
PATCH_EVIDENCE_SE = 2.0


def independent_windows(origins: Sequence[tuple[int, int]], horizon: int) -> int:
    """How many non-overlapping horizons the windows at ``(series, origin)`` span in total.

    Overlapping windows of one series share most of their targets, so the evidence they hold
    is about that of the horizons that fit side by side in the span they cover (and never more
    than the number of windows).
    """
    spans: dict[int, list[int]] = {}
    for series, origin in origins:
        spans.setdefault(series, []).append(origin)
    # never more than the windows themselves: windows far apart leave gaps between horizons
    return sum(min(len(set(o)), (max(o) - min(o) + horizon) // horizon) for o in spans.values())


def prefer_smaller_patch(errors: dict[int, np.ndarray], independent: int) -> tuple[int, str]:
    """The smallest patch size the best-scoring one does not beat clearly, and why.

    ``errors`` maps each candidate to its per-window errors (the same windows for all).  The
    best candidate replaces a smaller one only if its mean error is lower by more than
    :data:`PATCH_EVIDENCE_SE` standard errors of the paired differences, counting
    ``independent`` windows (fewer than two: never).
    """
    sizes = sorted(errors)
    means = {p: float(np.nanmean(errors[p])) for p in sizes}
    best = min(sizes, key=lambda p: means[p])
    listed = ", ".join(f"{p}: {means[p]:.3g}" for p in sizes)
    chosen = best
    for p in sizes:
        if p == best:
            break
        diff = errors[best] - errors[p]
        diff = diff[np.isfinite(diff)]
        if independent >= 2 and diff.size >= 2:
            se = float(np.std(diff, ddof=1)) / math.sqrt(min(independent, diff.size))
            if float(np.mean(diff)) < -PATCH_EVIDENCE_SE * se:
                continue  # the best is clearly better than p: look at the next size
        chosen = p  # no clear evidence against p: keep the smaller size
        break
    if chosen == best:
        why = "the lowest zero-shot validation error" + (
            f", clearly below the smaller sizes over {independent} independent horizons"
            if chosen != sizes[0]
            else ""
        )
    else:
        why = (
            f"the smallest size that {best} does not beat by {PATCH_EVIDENCE_SE:g} standard "
            f"errors over {independent} independent horizon(s)"
        )
    return chosen, f"patch size {chosen}: {why} (mean squared error per size, {listed})"
