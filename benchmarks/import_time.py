"""Import time of the front ends against the libraries they plug into, as paired ratios.

    python benchmarks/import_time.py [--rounds 7] [--markdown FILE]

Each measurement is a fresh interpreter (``python -X importtime`` is not used: it slows imports
down); rounds alternate the statements, so load from other processes hits them alike, and the
table gives the median wall time of each and the median of the per-round ratios to the
reference statement of its group.  The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

#: (label, statement, reference label): each ratio is to the reference of the same group.
STATEMENTS = [
    ("sktime BaseForecaster", "from sktime.forecasting.base import BaseForecaster", None),
    ("MSFTForecaster", "from msft_forecast import MSFTForecaster", "sktime BaseForecaster"),
    (
        "darts GlobalForecastingModel",
        "from darts.models.forecasting.forecasting_model import GlobalForecastingModel",
        None,
    ),
    ("MSFTModel", "from msft_forecast import MSFTModel", "darts GlobalForecastingModel"),
    ("import msft_forecast", "import msft_forecast", None),
    ("msft_forecast.engine", "import msft_forecast.engine", None),
    ("lightning (loaded at the first fit)", "import lightning", None),
]


def time_import(statement: str) -> float:
    """Seconds a fresh interpreter spends on ``statement`` (interpreter start-up excluded)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--markdown", default=None)
    parser.add_argument(
        "--quick", action="store_true", help="only the package's own imports (a smoke test)"
    )
    args = parser.parse_args(argv)
    statements = [s for s in STATEMENTS if s[0].startswith(("import msft", "msft_forecast."))]
    statements = statements if args.quick else STATEMENTS

    from msft_forecast.benchmarks.lsf import environment

    env = environment()  # machine, torch, commit: the header every benchmark table carries
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {label: [] for label, _, _ in statements}
    for _ in range(args.rounds):
        for label, statement, _ in statements:
            times[label].append(time_import(statement))
    load_after = os.getloadavg()
    lines = [
        f"- {env['cpu']}, {os.cpu_count()} cores | torch {env['torch']} | commit {env['commit']} "
        f"| load {fmt(load_before)} before, "
        f"{fmt(load_after)} after | {args.rounds} rounds, each statement in a fresh interpreter, "
        f"statements alternated | command: python benchmarks/import_time.py "
        f"--rounds {args.rounds}",
        "",
        "| import | median time (s) | median ratio to | ratio |",
        "|---|---|---|---|",
    ]
    for label, _, reference in statements:
        median = statistics.median(times[label])
        if reference is None:
            lines.append(f"| `{label}` | {median:.2f} | | |")
            continue
        ratios = [a / b for a, b in zip(times[label], times[reference], strict=True)]
        lines.append(
            f"| `{label}` | {median:.2f} | `{reference}` | {statistics.median(ratios):.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(table)
    return table


def fmt(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()
