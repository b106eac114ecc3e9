"""The one-off pre-training that produced the bundled tiny Moirai backbones, on synthetic data.

Not part of the installed ``msft_forecast`` package: run it from the repository root of a source
checkout (see ``tools/pretrain/README.md``).

- :mod:`tools.pretrain.synthetic` -- the seeded synthetic corpus.
- :mod:`tools.pretrain.pretrain` -- the resumable pre-training loop
  (``python -m tools.pretrain.pretrain --help``).

Zero-shot quality on the long-horizon benchmark is measured by the benchmark runner
(``python -m msft_forecast.benchmarks.lsf --strategies zero-shot last-value seasonal-naive theta``).
"""

from tools.pretrain.synthetic import (
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
