"""Self-contained pre-training of the bundled tiny Moirai backbone on synthetic data.

- :mod:`msft_forecast.pretraining.synthetic` -- the seeded synthetic corpus.
- :mod:`msft_forecast.pretraining.pretrain` -- the resumable pre-training loop
  (``python -m msft_forecast.pretraining.pretrain --help``).

Zero-shot quality on the long-horizon benchmark is measured by the benchmark runner
(``python -m msft_forecast.benchmarks.lsf --strategies zero-shot last-value seasonal-naive theta``).
"""

from msft_forecast.pretraining.synthetic import (
    FREQUENCIES,
    SyntheticSeries,
    generate_sample,
    generate_series,
    iter_training_windows,
)

__all__ = [
    "FREQUENCIES",
    "SyntheticSeries",
    "generate_sample",
    "generate_series",
    "iter_training_windows",
]
