"""Self-contained pre-training of the bundled tiny Moirai backbone on synthetic data.

- :mod:`msft_forecast.pretraining.synthetic` -- the seeded synthetic corpus.
- :mod:`msft_forecast.pretraining.pretrain` -- the resumable pre-training loop
  (``python -m msft_forecast.pretraining.pretrain --help``).
- :mod:`msft_forecast.pretraining.evaluate_zero_shot` -- a quick zero-shot check on the
  long-horizon benchmark files, when they are available.
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
