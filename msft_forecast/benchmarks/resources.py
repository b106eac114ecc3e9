"""Peak resident memory of a block of code, sampled from ``/proc`` in a background thread.

``resource.getrusage`` only reports the process's all-time peak, which after the first fit of a
benchmark run says nothing about later ones.  :class:`PeakMemory` samples the resident set
size every few milliseconds while its block runs and reports the peak above the level at entry
(what the block itself added), so runs in one process can be compared.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int | None:
    """Resident set size of this process in bytes (None where ``/proc`` is unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Context manager measuring the peak resident memory a block adds, in MB.

    Parameters
    ----------
    interval : float
        Seconds between samples.

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.benchmarks.resources import PeakMemory
    >>> with PeakMemory() as mem:
    ...     block = np.ones((4096, 4096))  # 128 MB
    >>> mem.peak_mb is None or mem.peak_mb > 100
    True
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start_bytes: int | None = None
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = current_rss_bytes()
            if rss is not None and (self.peak_bytes is None or rss > self.peak_bytes):
                self.peak_bytes = rss
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start_bytes = self.peak_bytes = current_rss_bytes()
        if self.start_bytes is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = current_rss_bytes()
        if rss is not None and self.peak_bytes is not None:
            self.peak_bytes = max(self.peak_bytes, rss)

    @property
    def peak_mb(self) -> float | None:
        """Peak resident memory above the level at entry, in MB (None without ``/proc``)."""
        if self.start_bytes is None or self.peak_bytes is None:
            return None
        return (self.peak_bytes - self.start_bytes) / 2**20
