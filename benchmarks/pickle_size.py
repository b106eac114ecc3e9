"""Size of a pickled fitted MSFTForecaster (it keeps only the trainable tensors) and a check
that it predicts identically after unpickling, for moirai-tiny and the Moirai-small
architecture (random weights in a temporary folder: the size does not depend on the values).

    python benchmarks/pickle_size.py
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from msft_forecast import MSFTForecaster
from msft_forecast.backbones.checkpoint import bundled_checkpoint_dir, save_checkpoint
from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule


def main() -> None:
    torch.set_num_threads(1)
    small = Path(tempfile.mkdtemp()) / "moirai-small-random"
    save_checkpoint(small, MoiraiConfig.small().to_dict(), MoiraiModule(MoiraiConfig.small()))
    y = pd.Series(
        np.sin(np.arange(600) / 4.0), index=pd.period_range("2020", periods=600, freq="h")
    )
    print("| backbone | train_head | pickle (bytes) | frozen weights file (bytes) | identical |")
    print("|---|---|---|---|---|")
    backbones = (
        ("moirai-tiny", "moirai-tiny", bundled_checkpoint_dir("moirai-tiny")),
        ("Moirai-small architecture", str(small), small),
    )
    for name, backbone, folder in backbones:
        weights = os.path.getsize(folder / "model.safetensors")
        for head in (True, False):
            f = MSFTForecaster(
                backbone=backbone,
                context_length=128,
                prediction_length=24,
                max_steps=1,
                batch_size=4,
                validation=None,
                random_state=0,
                train_head=head,
            ).fit(y)
            blob = pickle.dumps(f)
            g = pickle.loads(blob)
            fh = list(range(1, 25))
            same = np.array_equal(f.predict(fh=fh).to_numpy(), g.predict(fh=fh).to_numpy())
            print(f"| {name} | {head} | {len(blob):,} | {weights:,} | {same} |")


if __name__ == "__main__":
    main()
