"""Speed, memory and agreement of the native Moirai backbone against the uni2ts reference.

Moirai-small config, random weights, a batch of 8 rows x 512 tokens with patch size 32 (one
series per row: 448 context tokens, 64 horizon tokens), ``torch.set_num_threads(2)``.

* Timing: one fresh process per measurement holds both models (same weights) and alternates
  them, reference then ours, for ``--reps`` rounds after warm-up.  Pairing the runs keeps the
  ratio honest when other processes share the cores; the table shows the median time of each
  and the median of the per-round ratios.
* Memory: a separate fresh process per (implementation, measurement) runs one warm-up and one
  measured step and reports its peak resident size (``ru_maxrss``) and the growth of the
  resident size during the measured step (where a process's peak was set earlier, the growth
  is a lower bound).
* Agreement: max |mean ours - mean reference| on the same batch, and bf16 autocast vs float32.

The reference is sktime's vendored ``sktime.libs.uni2ts`` (needs ``einops``); its
``NegativeBinomial.sample`` default-argument bug is patched inside the worker process, as the
mixture's ``log_prob`` (used by the training loss) calls it.

Usage::

    python benchmarks/backbone_speed.py --reps 5
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
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "d_model": 384,
    "num_layers": 6,
    "patch_sizes": (8, 16, 32, 64, 128),
    "max_seq_len": 512,
    "attn_dropout_p": 0.0,
    "dropout_p": 0.0,
    "scaling": True,
}


# --------------------------------------------------------------------------------------------
# Worker side (runs in a fresh process)
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reference_model() -> Any:
    import torch
    from sktime.libs.uni2ts.distribution import negative_binomial as nb
    from sktime.libs.uni2ts.distribution.log_normal import LogNormalOutput
    from sktime.libs.uni2ts.distribution.mixture import MixtureOutput
    from sktime.libs.uni2ts.distribution.normal import NormalFixedScaleOutput
    from sktime.libs.uni2ts.distribution.student_t import StudentTOutput
    from sktime.libs.uni2ts.moirai_module import MoiraiModule

    original = nb.NegativeBinomial.sample

    def sample(self: Any, sample_shape: Any = None) -> Any:
        return original(self, torch.Size() if sample_shape is None else sample_shape)

    nb.NegativeBinomial.sample = sample  # the vendored default-argument bug, this process only
    distr = MixtureOutput(
        [
            StudentTOutput(),
            NormalFixedScaleOutput(scale=1e-3),
            nb.NegativeBinomialOutput(),
            LogNormalOutput(),
        ]
    )
    return MoiraiModule(distr_output=distr, **SMALL)


def _our_model() -> Any:
    sys.path.insert(0, str(ROOT))
    from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

    return MoiraiModule(MoiraiConfig.small())


def _models(which: tuple[str, ...]) -> dict[str, Any]:
    """The requested models with identical weights (ours loads the reference's state dict)."""
    import torch

    torch.manual_seed(0)
    models: dict[str, Any] = {}
    if "ref" in which:
        models["ref"] = _reference_model()
    if "ours" in which:
        models["ours"] = _our_model()
        if "ref" in models:
            models["ours"].load_state_dict(models["ref"].state_dict(), strict=True)
    return models


def _batch(batch: int, tokens: int, patch: int, variates: int) -> dict[str, Any]:
    """One sample per row; ``variates`` variates of ``tokens // variates`` tokens each."""
    import torch

    gen = torch.Generator().manual_seed(0)
    per = tokens // variates
    horizon = max(1, per // 8)
    target = torch.randn(batch, tokens, 128, generator=gen).cumsum(-1) / 8
    observed = (torch.arange(128) < patch).expand(batch, tokens, 128).clone()
    target = target * observed
    time_id = torch.arange(per).repeat(variates).expand(batch, tokens).clone()
    variate_id = torch.arange(variates).repeat_interleave(per).expand(batch, tokens).clone()
    prediction = (time_id >= per - horizon).clone()
    return {
        "target": target,
        "observed_mask": observed,
        "sample_id": torch.ones(batch, tokens, dtype=torch.long),
        "time_id": time_id,
        "variate_id": variate_id,
        "prediction_mask": prediction,
        "patch_size": torch.full((batch, tokens), patch, dtype=torch.long),
    }


def _step(model: Any, inputs: dict[str, Any], mode: str, bf16: bool) -> None:
    """One forward (no grad, distribution mean) or one NLL forward+backward over all weights."""
    import torch

    loss_mask = inputs["observed_mask"] & inputs["prediction_mask"].unsqueeze(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if mode == "fwd":
            with torch.no_grad():
                model(**inputs).mean  # noqa: B018 (the mean is part of the measured work)
            return
        model.zero_grad(set_to_none=True)
        distr = model(**inputs)
        loss = -distr.log_prob(inputs["target"])[loss_mask].mean()
    loss.backward()


def time_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the two contestants round by round; return their per-round times."""
    import torch

    torch.set_num_threads(args.threads)
    if args.bf16:  # ours in float32 against ours under bf16 autocast
        ours = _models(("ours",))["ours"]
        contestants = {"a": (ours, False), "b": (ours, True)}
    else:
        models = _models(("ref", "ours"))
        contestants = {"a": (models["ref"], False), "b": (models["ours"], False)}
    inputs = _batch(args.batch, args.tokens, args.patch, args.variates)
    for model, _ in contestants.values():
        model.train(args.mode == "fwdbwd")
    for _ in range(args.warmup):
        for model, bf16 in contestants.values():
            _step(model, inputs, args.mode, bf16)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(args.reps):
        for name, (model, bf16) in contestants.items():
            start = time.perf_counter()
            _step(model, inputs, args.mode, bf16)
            times[name].append(time.perf_counter() - start)
    return times


def memory_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Peak resident memory of one implementation alone in a fresh process."""
    import torch

    torch.set_num_threads(args.threads)
    model = _models((args.impl,))[args.impl]
    model.train(args.mode == "fwdbwd")
    inputs = _batch(args.batch, args.tokens, args.patch, args.variates)
    _step(model, inputs, args.mode, args.bf16)
    before = _rss_mb()
    _step(model, inputs, args.mode, args.bf16)
    peak = _peak_rss_mb()
    return {"peak_rss_mb": peak, "growth_mb": peak - before}


def compare_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Same weights and batch: ours vs reference (fp32) and ours bf16 vs ours fp32."""
    import torch

    torch.set_num_threads(args.threads)
    models = _models(("ref", "ours"))
    ref, ours = models["ref"].eval(), models["ours"].eval()
    inputs = _batch(args.batch, args.tokens, args.patch, args.variates)
    with torch.no_grad():
        ref_mean = ref(**inputs).mean
        our_mean = ours(**inputs).mean
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_mean = ours(**inputs).mean
    return {
        "max_abs_dev": (our_mean - ref_mean).abs().max().item(),
        "bf16_max_abs_dev": (bf16_mean - our_mean).abs().max().item(),
        "bf16_median_abs_dev": (bf16_mean - our_mean).abs().median().item(),
        "output_std": ref_mean.std().item(),
    }


# --------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------


def _spawn(args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--reps", str(args.reps),
        "--warmup", str(args.warmup),
        "--threads", str(args.threads),
        "--batch", str(args.batch),
        "--tokens", str(args.tokens),
        "--patch", str(args.patch),
        *extra,
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if out.returncode:
        return "none (no commit yet)"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return out.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout else "")


def _mem(cell: dict[str, Any]) -> str:
    return f"{cell['peak_rss_mb']:>5.0f} / {cell['growth_mb']:<+5.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (medians shown)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--patch", type=int, default=32)
    hidden = argparse.SUPPRESS
    parser.add_argument("--variates", type=int, default=1, help=hidden)
    parser.add_argument("--worker", choices=("time", "memory", "compare"), help=hidden)
    parser.add_argument("--impl", choices=("ref", "ours"), help=hidden)
    parser.add_argument("--mode", choices=("fwd", "fwdbwd"), default="fwd", help=hidden)
    parser.add_argument("--bf16", action="store_true", help=hidden)
    args = parser.parse_args(argv)
    workers = {"time": time_worker, "memory": memory_worker, "compare": compare_worker}
    if args.worker:
        print(json.dumps(workers[args.worker](args)))
        return

    import torch

    print("# Moirai-small backbone: native msft_forecast vs uni2ts reference (sktime 1.2.0)")
    print(f"# CPU: {_cpu_model()} ({os.cpu_count()} logical cores), torch threads: {args.threads}")
    print(f"# torch {torch.__version__}, python {platform.python_version()}, git {_git_commit()}")
    print(
        f"# batch {args.batch} x {args.tokens} tokens, patch size {args.patch}; {args.reps} "
        f"paired rounds after {args.warmup} warm-up; load average at start "
        f"{os.getloadavg()[0]:.2f}"
    )
    rows = []
    for label, mode, variates in (
        ("forward", "fwd", 1),
        ("forward+backward (NLL)", "fwdbwd", 1),
        ("forward, 4 variates/row", "fwd", 4),
    ):
        flags = ["--mode", mode, "--variates", str(variates)]
        times = _spawn(args, "--worker", "time", *flags)
        mem_ref = _spawn(args, "--worker", "memory", "--impl", "ref", *flags)
        mem_ours = _spawn(args, "--worker", "memory", "--impl", "ours", *flags)
        rows.append((label, times["a"], times["b"], mem_ref, mem_ours))
    bf16_times = _spawn(args, "--worker", "time", "--bf16")
    bf16_mem = _spawn(args, "--worker", "memory", "--impl", "ours", "--bf16")
    dev = _spawn(args, "--worker", "compare")
    dev_mv = _spawn(args, "--worker", "compare", "--variates", "4")

    header = (
        f"| {'measurement':<26} | {'reference s':>11} | {'ours s':>7} | {'speed-up':>8} | "
        f"{'ref MB peak/+':>13} | {'ours MB peak/+':>14} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")

    def row(label: str, a: list[float], b: list[float], mem_a: str, mem_b: str) -> None:
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(
            f"| {label:<26} | {statistics.median(a):>11.3f} | {statistics.median(b):>7.3f} | "
            f"{ratio:>7.2f}x | {mem_a:>13} | {mem_b:>14} |"
        )

    for label, ref, ours, mem_ref, mem_ours in rows:
        row(label, ref, ours, _mem(mem_ref), _mem(mem_ours))
    row("ours bf16 autocast fwd (*)", bf16_times["a"], bf16_times["b"], "", _mem(bf16_mem))
    print()
    print(
        f"max |mean ours - mean reference| (fp32): {dev['max_abs_dev']:.2e} univariate, "
        f"{dev_mv['max_abs_dev']:.2e} with 4 variates/row (output std {dev['output_std']:.2f})"
    )
    print(
        f"bf16 autocast vs fp32 (ours): max |dev| {dev['bf16_max_abs_dev']:.2e}, "
        f"median |dev| {dev['bf16_median_abs_dev']:.2e}"
    )
    print("speed-up: median over rounds of reference time / our time (throughput ratio).")
    print("(*) that row: 'reference s' column = ours in float32, speed-up = fp32 / bf16 time.")
    print("MB peak/+: peak RSS of a fresh process running the step / peak minus RSS just before")
    print("           the measured step (about the working memory of one step).")
    print(f"# load average at end: {os.getloadavg()[0]:.2f} (other processes share these cores)")


if __name__ == "__main__":
    main()
