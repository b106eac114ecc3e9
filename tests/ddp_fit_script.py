"""Fine-tune with Lightning's DDP on two CPU processes (gloo); run by tests/test_ddp.py.

Lightning's "ddp" strategy re-launches this script for rank 1, so everything here runs in both
processes; only rank 0 writes the result.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from msft_forecast.engine import MSFTEngine  # noqa: E402


def main(checkpoint: str, out: str) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(400)
    series = [np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, t.size) for _ in range(3)]
    engine = MSFTEngine(
        backbone=checkpoint,
        context_length=64,
        prediction_length=16,
        max_steps=4,
        batch_size=4,
        patch_size=16,
        random_state=0,
        val_check_interval=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
    ).fit(series)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        fc = engine.forecast(series[:1], 16, num_samples=8, seed=0)
        shapes = {k: list(v.shape) for k, v in engine.trainable_state().items()}
        with open(out, "w") as fh:
            json.dump(
                {
                    "steps": engine.report_.steps,
                    "shapes": shapes,
                    "finite": bool(np.isfinite(fc.samples).all()),
                },
                fh,
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
