"""MOMENT-1: speed and memory of the native backbone against the vendored reference.

Compares ``msft_forecast.backbones.moment.MomentModule`` with ``sktime.libs.momentfm`` (the
reference) on the reconstruction forward (eval, no grad) and a full fine-tuning step (train
mode, forward + MSE + backward through every weight), both with identical random weights.
Every (size, implementation, mode) runs in a fresh subprocess, so each peak RSS is that run's
own (model construction included).  Nothing is downloaded: the reference's T5 is built from a
local ``T5Config`` exactly as in ``tests/test_moment_parity.py``.

Usage::

    python benchmarks/moment_speed.py                    # small, 8 x 512 steps, 2 threads
    python benchmarks/moment_speed.py --sizes small base --repeats 5 --rounds 3

Timings are the minimum over all timed steps of all rounds; rounds alternate the
implementations so that load from other processes hits them alike (the minimum is the
estimate least inflated by such load).  Workers run with ``OMP_WAIT_POLICY=PASSIVE`` unless the
caller sets it: on a shared machine, spinning OpenMP threads that lose their core make a step
several times slower and the timings meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(ROOT))

T5_SIZES = {  # flan-t5 encoder sizes used by MOMENT-1-{small,base,large}
    "small": {"d_model": 512, "d_ff": 1024, "num_heads": 6, "num_layers": 8},
    "base": {"d_model": 768, "d_ff": 2048, "num_heads": 12, "num_layers": 12},
    "large": {"d_model": 1024, "d_ff": 2816, "num_heads": 16, "num_layers": 24},
}
IMPLS = {
    "ours": "msft_forecast MomentModule",
    "ref": "sktime.libs.momentfm (HF T5, its default gradient checkpointing)",
    "ref-nockpt": "sktime.libs.momentfm with gradient checkpointing disabled",
}


# ---- checkpoint preparation (runs in a worker) -------------------------------------------------


def _t5_kwargs(size: str) -> dict[str, Any]:
    return {
        **T5_SIZES[size],
        "d_kv": 64,
        "feed_forward_proj": "gated-gelu",
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.1,
        "vocab_size": 32128,
    }


def _published_config(size: str) -> dict[str, Any]:
    from transformers import T5Config

    return {
        "task_name": "reconstruction",
        "model_name": "MOMENT",
        "transformer_type": "encoder_only",
        "d_model": None,
        "seq_len": 512,
        "patch_len": 8,
        "patch_stride_len": 8,
        "transformer_backbone": f"google/flan-t5-{size}",
        "model_kwargs": {},
        "t5_config": T5Config(**_t5_kwargs(size)).to_dict(),
    }


def _build_reference(folder: Path, size: str) -> Any:
    from sktime.libs.momentfm import MOMENTPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MOMENTPipeline(
            _published_config(size),
            model_kwargs={
                "task_name": "reconstruction",
                "transformer_backbone": str(folder / "t5"),
                "d_model": T5_SIZES[size]["d_model"],
                "randomly_initialize_backbone": True,
            },
        )
    ref.init()
    return ref


def _prepare(folder: Path, size: str) -> None:
    """Write a published-format checkpoint with perturbed random weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config

    T5Config(**_t5_kwargs(size)).save_pretrained(folder / "t5")
    ref = _build_reference(folder, size)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1 or "relative_attention_bias" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    (folder / "config.json").write_text(json.dumps(_published_config(size)), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(folder / "model.safetensors"))


# ---- measurement (runs in a worker) ------------------------------------------------------------


def _inputs(batch: int) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    x = 3.0 * torch.randn(batch, 1, 512, generator=g) + torch.linspace(-4, 9, 512)
    input_mask = torch.ones(batch, 512)
    for row in range(batch):
        input_mask[row, : (row * 61) % 512] = 0  # varied left padding, some mid-patch
    return x, input_mask


def _load(folder: Path, size: str, impl: str) -> tuple[Any, Any]:
    """Return (module, reconstruct function) for an implementation."""
    from safetensors.torch import load_file

    if impl == "ours":
        from msft_forecast.backbones.checkpoint import load_backbone

        module = load_backbone(str(folder)).module
        return module, lambda x, m: module.reconstruct(x, m)
    module = _build_reference(folder, size)
    module.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    if impl == "ref-nockpt":
        module.encoder.gradient_checkpointing_disable()
    return module, lambda x, m: module(x_enc=x, input_mask=m).reconstruction


def _measure(folder: Path, size: str, impl: str, mode: str, batch: int, repeats: int
             ) -> dict[str, Any]:
    import torch

    module, reconstruct = _load(folder, size, impl)
    x, input_mask = _inputs(batch)
    if mode == "forward":
        module.eval()

        def step() -> None:
            with torch.no_grad():
                reconstruct(x, input_mask)
    else:
        module.train().requires_grad_(True)  # full fine-tuning: gradients for every weight
        observed = input_mask[:, None, :].bool()

        def step() -> None:
            module.zero_grad(set_to_none=True)
            loss = ((reconstruct(x, input_mask) - x)[observed] ** 2).mean()
            loss.backward()

    step()  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"times": times,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _deviation(folder: Path, size: str, batch: int) -> dict[str, Any]:
    """Largest |ours - reference| of the reconstruction and the encoder output, eval mode."""
    import torch

    ours, ours_rec = _load(folder, size, "ours")
    ref, ref_rec = _load(folder, size, "ref")
    ours.eval()
    ref.eval()
    x, input_mask = _inputs(batch)
    captured: dict[str, Any] = {}
    ref.encoder.register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("h", out.last_hidden_state))
    with torch.no_grad():
        rec_dev = (ours_rec(x, input_mask) - ref_rec(x, input_mask)).abs().max().item()
        hidden, _ = ours.encode_series(x[:, 0], input_mask)
        hid_dev = (hidden - captured["h"]).abs().max().item()
    return {"reconstruction": rec_dev, "hidden": hid_dev}


def _worker(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    folder = Path(spec["folder"])
    if spec["task"] == "prepare":
        _prepare(folder, spec["size"])
        result: dict[str, Any] = {}
    elif spec["task"] == "deviation":
        result = _deviation(folder, spec["size"], spec["batch"])
    else:
        result = _measure(folder, spec["size"], spec["impl"], spec["task"], spec["batch"],
                          spec["repeats"])
    print("RESULT " + json.dumps(result))


# ---- driver ------------------------------------------------------------------------------------


def _omp_wait_policy() -> str:
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_WAIT_POLICY": _omp_wait_policy(),
           "OMP_NUM_THREADS": str(spec["threads"]),
           "MKL_NUM_THREADS": str(spec["threads"]), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")


def _header(args: argparse.Namespace) -> str:
    import torch

    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = "not installed"
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                             check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no commit yet"
    dirty = " (+ uncommitted changes)" if git("status", "--porcelain") else ""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return "\n".join([
        "MOMENT-1 speed: msft_forecast vs reference (sktime.libs.momentfm)",
        f"date        {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"git         {commit}{dirty}",
        f"machine     {cpu}; {os.cpu_count()} cores; {platform.platform()}",
        f"software    python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {tf_version}",
        f"run         batch {args.batch} x 512 steps (left-padded rows), {args.threads} threads "
        f"(OMP_WAIT_POLICY={_omp_wait_policy()}), "
        f"{args.rounds} rounds x {args.repeats} timed steps after 1 warm-up per process",
        "table       seconds per step: min (median) over all timed steps; peak RSS: max over "
        "processes",
        f"load avg    {load} at start (other processes on this machine skew timings)",
        "modes       forward = eval reconstruction, no grad; fwd+bwd = train mode, MSE, "
        "backward through all weights",
    ])


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small"], choices=sorted(T5_SIZES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return

    print(_header(args), flush=True)
    # results[(size, impl, mode)] = {"times": [...], "peak_rss_mb": float}
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    deviations: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / size
            folder.mkdir()
            base = {"folder": str(folder), "size": size, "threads": args.threads,
                    "batch": args.batch, "repeats": args.repeats}
            _run({**base, "task": "prepare"})
            deviations[size] = _run({**base, "task": "deviation"})
            for round_ in range(args.rounds):
                order = list(IMPLS) if round_ % 2 == 0 else list(reversed(IMPLS))
                for mode in ("forward", "train"):
                    for impl in order:
                        out = _run({**base, "task": mode, "impl": impl})
                        acc = results.setdefault((size, impl, mode),
                                                 {"times": [], "peak_rss_mb": 0.0})
                        acc["times"] += out["times"]
                        acc["peak_rss_mb"] = max(acc["peak_rss_mb"], out["peak_rss_mb"])

    def cell(size: str, impl: str, mode: str) -> str:
        times = results[(size, impl, mode)]["times"]
        return f"{min(times):7.3f} ({statistics.median(times):.3f})"

    print()
    print(f"{'size':<6} {'implementation':<14} {'forward s':>16} {'fwd+bwd s':>16} "
          f"{'RSS fwd MB':>11} {'RSS train MB':>13}")
    for size in args.sizes:
        for impl in IMPLS:
            print(f"{size:<6} {impl:<14} {cell(size, impl, 'forward'):>16} "
                  f"{cell(size, impl, 'train'):>16} "
                  f"{results[(size, impl, 'forward')]['peak_rss_mb']:>11.0f} "
                  f"{results[(size, impl, 'train')]['peak_rss_mb']:>13.0f}")
    print()
    for size, dev in deviations.items():
        print(f"max |ours - ref| ({size}, eval): reconstruction {dev['reconstruction']:.2e}, "
              f"encoder hidden {dev['hidden']:.2e}")
    for impl, what in IMPLS.items():
        print(f"{impl:<11} = {what}")


if __name__ == "__main__":
    main()
