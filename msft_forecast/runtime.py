"""Process-wide state around fits and forecasts: torch threads, overlapping fits, row seeds."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def row_seeds(seed: int, rows: int) -> list[int]:
    """One sampling seed per row ``i`` of a forecast call, from ``(seed, i)`` alone: a
    series' sample paths never depend on which other series share its batch."""
    states = np.random.SeedSequence(int(seed) % 2**63).spawn(rows)
    return [int(st.generate_state(1, np.uint64)[0] % (2**63 - 1)) for st in states]


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (process-wide), then restore the previous
    count; ``None`` leaves torch's setting alone."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class ConcurrentFitWarning(UserWarning):
    """Two fits overlapped in one process; their seeded results are not reproducible."""


_FITS_LOCK = threading.Lock()
_ACTIVE_FITS = 0
#: Number of fits so far that started while another was running (read by the running ones).
_OVERLAPS = 0


@contextmanager
def concurrent_fit_guard() -> Iterator[None]:
    """Warn when fits overlap in threads of one process.

    Fits seed and draw from torch's global generator (Lightning, dropout, window sampling), so
    two fits in threads interleave their draws: each gives results different from the same fit
    run alone, with no error.  Owning a generator per fit does not cover Lightning's and
    torch's global draws, so the overlap is detected and both fits warn (the second at its
    start, the first at its end).
    """
    global _ACTIVE_FITS, _OVERLAPS
    with _FITS_LOCK:
        concurrent = _ACTIVE_FITS > 0
        _ACTIVE_FITS += 1
        if concurrent:
            _OVERLAPS += 1
        seen = _OVERLAPS
    message = (
        "another fit ran in this process at the same time (threads): torch's random state is "
        "shared by the process, so these seeded results differ from the same fits run one after "
        "the other. Run fits in separate processes (e.g. backend='loky') for reproducible results."
    )
    if concurrent:
        warnings.warn(message, ConcurrentFitWarning, stacklevel=4)
    try:
        yield
    finally:
        with _FITS_LOCK:
            _ACTIVE_FITS -= 1
            overlapped_later = _OVERLAPS != seen
        if overlapped_later and not concurrent:
            warnings.warn(message, ConcurrentFitWarning, stacklevel=4)


def derived_seed(base: int, k: int) -> int:
    """Seed of the ``k``-th stream derived from ``base`` (``k = 0``: ``base`` itself), e.g. the
    ``k``-th roll-forward step of a forecast."""
    if k == 0:
        return int(base)
    state = np.random.SeedSequence([int(base) % 2**32, int(k)]).generate_state(1)[0]
    return int(state) % (2**31 - 1)
