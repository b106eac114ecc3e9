"""Scale-out goes through Lightning: two-process DDP on the CPU gives the same kind of model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from msft_forecast.engine import MSFTEngine


def test_ddp_on_two_cpu_processes(tiny_moirai_dir, tmp_path) -> None:
    out = tmp_path / "ddp.json"
    script = Path(__file__).with_name("ddp_fit_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tiny_moirai_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 4 and result["finite"]

    single = MSFTEngine(
        backbone=str(tiny_moirai_dir),
        context_length=64,
        prediction_length=16,
        max_steps=1,
        batch_size=4,
        patch_size=16,
        random_state=0,
        validation=None,
    ).fit([np.sin(np.arange(400) / 4.0)])
    expected = {k: list(v.shape) for k, v in single.trainable_state().items()}
    assert result["shapes"] == expected
