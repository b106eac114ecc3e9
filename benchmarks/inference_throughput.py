"""Inference throughput (windows per second) of zero-shot vs MSFT, and how it grows with context.

Forecasts ``--windows`` windows of a seasonal series with horizon 96 through the public engine
(`MSFTEngine.forecast`: scaling, packing, the backbone, sampling, blending), for each backbone,
context length and strategy, with and without sample paths.  MSFT models are built untrained
(``max_steps=0``): the cost of a forward pass does not depend on the weights.  ``moirai-small``
uses the Moirai-1.1-R-small architecture with random weights written to a temporary folder in the
published format, so no download is needed.

    python benchmarks/inference_throughput.py [--backbones moirai-tiny moirai-small]
        [--contexts 256 512 1024 2048] [--windows 64] [--threads 2] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def small_checkpoint(folder: Path) -> str:
    """A Moirai-1.1-R-small-shaped checkpoint with random weights; returns its path."""
    import torch

    from msft_forecast.backbones.checkpoint import save_checkpoint
    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

    torch.manual_seed(0)
    config = MoiraiConfig.small()
    save_checkpoint(folder, config.to_dict(), MoiraiModule(config))
    return str(folder)


def measure(backbone: str, context: int, strategy: str, windows: int, samples: int) -> float:
    """Windows per second of ``MSFTEngine.forecast`` (best of three timed calls)."""
    from msft_forecast.engine import MSFTEngine, MSFTSettings

    t = np.arange(context + 96 * 4, dtype=np.float64)
    series = 10 + np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(0).normal(size=t.size)
    engine = MSFTEngine(
        MSFTSettings(
            backbone=backbone,
            fit_strategy=strategy,
            context_length=context,
            prediction_length=96,
            patch_size=32,
            max_steps=0,
            validation=None,
            random_state=0,
        )
    )
    engine.fit([series], freq="h")
    contexts = [series[: context + i] for i in range(windows)]
    engine.forecast(contexts[:2], 96, samples, seed=0)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        engine.forecast(contexts, 96, samples, seed=0)
        best = min(best, time.perf_counter() - start)
    return windows / best


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["moirai-tiny", "moirai-small"])
    parser.add_argument("--contexts", nargs="+", type=int, default=[256, 512, 1024, 2048])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--samples", nargs="+", type=int, default=[0, 100])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import torch

    from msft_forecast.benchmarks.lsf import environment

    torch.set_num_threads(args.threads)
    env = environment()
    lines = [
        f"- machine: {env['cpu']} | torch {env['torch']} | threads {args.threads} | load "
        f"{env['load']} | commit {env['commit']}",
        f"- {args.windows} windows per call, horizon 96, patch size 32, MSFT with 4 scales "
        "(untrained: cost does not depend on weights), best of 3 calls",
        "- command: python benchmarks/inference_throughput.py "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "",
        "| backbone | context | sample paths | zero-shot (windows/s) | msft (windows/s) | "
        "msft / zero-shot |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            name = small_checkpoint(Path(tmp) / "small") if backbone == "moirai-small" else backbone
            for context in args.contexts:
                for samples in args.samples:
                    zs = measure(name, context, "zero-shot", args.windows, samples)
                    ms = measure(name, context, "msft", args.windows, samples)
                    line = (
                        f"| {backbone} | {context} | {samples} | {zs:.1f} | {ms:.1f} | "
                        f"{ms / zs:.2f} |"
                    )
                    lines.append(line)
                    print(line, flush=True)
    text = "\n".join(lines) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
