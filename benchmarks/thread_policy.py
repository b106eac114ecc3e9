"""Fit time on an idle machine and next to one busy process, by OpenMP wait policy and threads.

    python benchmarks/thread_policy.py                  # the table of docs/faq.md
    python benchmarks/thread_policy.py --steps 10 --repeats 1   # quick look

Each cell is the median wall time of ``--repeats`` fits, each in a fresh process (the OpenMP
runtime reads its wait policy once, when torch loads it): MSFT on the bundled backbone, a
2,000-step hourly series, ``--steps`` training steps, batch 32, context 512.  "busy" runs one
single-threaded process spinning on the CPU next to the fit.  Policies: ``spin`` is the
OpenMP runtime's own default (torch imported before ``msft_forecast``, so the library leaves
the environment alone), ``PASSIVE`` the library's default.  The ratio column is busy / idle
for the same policy and threads: how much a shared machine slows a fit down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import os, sys, time
if os.environ.get("POLICY") == "spin":
    import torch  # loaded before msft_forecast: the runtime keeps its own (spinning) default
import numpy as np
from msft_forecast.engine import MSFTEngine
import torch
threads = int(os.environ["THREADS"])
if threads:
    torch.set_num_threads(threads)
noise = 0.1 * np.random.default_rng(0).normal(size=2000)
y = [10 + np.sin(np.arange(2000) * 2 * np.pi / 24) + noise]
engine = MSFTEngine(backbone="moirai-tiny", fit_strategy="msft", context_length=512,
                    prediction_length=24, max_steps=int(os.environ["STEPS"]), batch_size=32,
                    validation=None, patch_size=32, random_state=0)
start = time.perf_counter()
engine.fit(y)
print(time.perf_counter() - start, torch.get_num_threads())
"""

SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def fit_seconds(policy: str, threads: int, steps: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(POLICY=policy, THREADS=str(threads), STEPS=str(steps))
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    seconds, used = out.stdout.split()[-2:]
    return float(seconds), int(used)


def _without_markdown(argv: list[str]) -> list[str]:
    """The arguments less ``--markdown PATH`` (where the table goes is not how it was made)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--markdown":
            skip = True
        elif not arg.startswith("--markdown="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--policies", nargs="+", default=["spin", "PASSIVE"], choices=["spin", "PASSIVE"]
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[0, 1], help="0: torch's default")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    from msft_forecast.benchmarks.lsf import environment

    env = environment()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cpus = os.cpu_count()
    cells = [(p, t, c) for p in args.policies for t in args.threads for c in ("idle", "busy")]
    runs: dict[tuple[str, int, str], list[tuple[float, int]]] = {cell: [] for cell in cells}
    # round robin: every repeat visits every cell once, so drift in the machine's speed over the
    # run (shared cores) spreads over all cells instead of landing on the ones measured last
    for _ in range(args.repeats):
        for policy, threads, condition in cells:
            spinner = None
            if condition == "busy":
                spinner = subprocess.Popen([sys.executable, "-c", SPIN])
                time.sleep(0.5)
            try:
                runs[policy, threads, condition].append(fit_seconds(policy, threads, args.steps))
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    rows = []
    for policy in args.policies:
        for threads in args.threads:
            times = {
                c: statistics.median(r[0] for r in runs[policy, threads, c])
                for c in ("idle", "busy")
            }
            used = runs[policy, threads, "idle"][0][1]
            rows.append((policy, f"{used}" + (" (default)" if threads == 0 else ""), times))
    lines = [
        f"- {env['cpu']} ({cpus} CPUs), torch {env['torch']}, commit {env['commit']}, load "
        f"{load} at the start, {args.steps} steps per fit, median of "
        f"{args.repeats} fresh processes per cell, cells visited in turn; command: "
        "python benchmarks/thread_policy.py "
        + " ".join(_without_markdown(argv if argv is not None else sys.argv[1:])),
        "",
        "| wait policy | torch threads | idle (s) | next to one busy process (s) | busy / idle |",
        "|---|---|---|---|---|",
    ]
    for policy, threads, t in rows:
        lines.append(
            f"| {policy} | {threads} | {t['idle']:.1f} | {t['busy']:.1f} | "
            f"{t['busy'] / t['idle']:.2f}x |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
