"""The benchmark runner end to end on a small synthetic stand-in for ETTh1 (runs in CI)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msft_forecast.benchmarks import lsf, peers
from msft_forecast.benchmarks.resources import PeakMemory

REPO = Path(__file__).resolve().parents[1]


def _load_reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake_lsf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``ETTh1.csv`` with the real file's shape and columns, made of seasonal noise."""
    root = tmp_path_factory.mktemp("lsf")
    rows = 17420
    t = np.arange(rows)
    rng = np.random.default_rng(0)
    columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    data = {"date": pd.date_range("2016-07-01", periods=rows, freq="h").astype(str)}
    for k, name in enumerate(columns):
        data[name] = 5 + np.sin(2 * np.pi * t / 24 + k) + 0.3 * rng.normal(size=rows)
    pd.DataFrame(data).to_csv(root / "ETTh1.csv", index=False)
    return root


def test_reproduce_smoke_regenerates_every_section(fake_lsf_root: Path, tmp_path: Path) -> None:
    """The one command behind docs/benchmarks.md runs every section and splices its tables."""
    reproduce = _load_reproduce()
    if not all(peers.available(p) for p in reproduce.PEERS):
        pytest.fail('the benchmark peers need the bench extra: pip install -e ".[bench]"')
    page = tmp_path / "page.md"

    def markers(sections) -> str:
        return "intro\n" + "".join(
            f"<!-- reproduce:{s} -->\nSTALE-TABLE\n<!-- /reproduce:{s} -->\nprose {s}\n"
            for s in sections
        )

    page.write_text(
        markers(s for s in reproduce.SECTIONS if s not in reproduce.SECTION_PAGES),
        encoding="utf-8",
    )
    pages: dict[str, list[str]] = {}  # a page may hold several sections (backbones.md: two)
    for section, name in reproduce.SECTION_PAGES.items():
        pages.setdefault(name, []).append(section)
    for name, sections in pages.items():
        (tmp_path / name).write_text(markers(sections), encoding="utf-8")
    out = tmp_path / "out"
    reproduce.main(
        ["--smoke", "--no-verify", "--root", str(fake_lsf_root), "--out-dir", str(out),
         "--page", str(page)]
    )  # fmt: skip
    text = page.read_text(encoding="utf-8")
    text += "".join((tmp_path / name).read_text() for name in pages)
    assert "STALE-TABLE" not in text
    for section in reproduce.SECTIONS:
        assert f"prose {section}" in text  # prose outside the markers is kept
        assert (out / f"{section}.md").is_file()

    results = json.loads((out / "foundation_h96.json").read_text())["results"]
    results += json.loads((out / "peers_h96.json").read_text())["results"]
    names = {r["strategy"] for r in results}
    expected = set(reproduce.STRATEGIES + reproduce.PEERS + reproduce.BASELINES)
    assert names == expected
    headline = (out / "headline.md").read_text()
    assert "| dataset | zero-shot | msft | dlinear | autoets | autotheta |" in headline
    # MSFT against the best other model, paired over the windows (model, MSEs, change)
    assert re.search(r"\| ETTh1 \| [\w-]+ \| \d\.\d{4} \| \d\.\d{4} \| [+-]\d", headline)
    assert "| ETTh1 | dlinear | " in headline  # the two budgets side by side
    fair = json.loads((out / "fair_h96.json").read_text())["results"]
    assert {r["settings"]["max_time"] for r in fair if r["strategy"] != "zero-shot"} == {5}
    classical = json.loads((out / "classical_h96.json").read_text())["results"]
    assert {r["strategy"] for r in classical} == {"autoets", "autotheta", "seasonal-naive"}
    assert all(r["crps"] is not None for r in classical if r["strategy"] != "seasonal-naive")
    own = (out / "own_data.md").read_text()
    assert "co2_weekly: 1 series x 2284 steps at frequency W-SAT, season 52" in own
    for r in results:
        assert math.isfinite(r["mse"]) and math.isfinite(r["mae"]), r["strategy"]
        assert r["windows"] > 0
        if r["strategy"] in reproduce.PEERS:
            assert r["trainable_parameters"] > 0 and 1 <= r["steps"] <= 2
    samplings = {r["sampling"] for r in results if r["strategy"] == "msft"}
    assert samplings == {"blend", "mixture"}

    weighting = json.loads((out / "scale_weighting_h96.json").read_text())["results"]
    labels = {(r["strategy"], r["sampling"]) for r in weighting}
    expected_labels = {
        ("msft", "mixture"),
        ("msft", "blend"),
        ("msft@uniform", "mixture"),
        ("msft@finest", "mixture"),
        ("msft-paper", "mixture"),
        ("lora", "-"),
    }
    assert expected_labels <= labels
    section = (out / "scale_weighting_h96.md").read_text()
    for heading in ("MSE (of the mean forecast)", "Coverage of the 80% interval", "seed by seed",
                    "Scale weights used at inference"):  # fmt: skip
        assert heading in section
    blend, mixture = (
        next(r for r in results if r["strategy"] == "msft" and r["sampling"] == s)
        for s in ("blend", "mixture")
    )
    # the same fit, combined two ways: identical means, different sample paths
    assert blend["mse"] == pytest.approx(mixture["mse"])
    assert blend["crps"] != mixture["crps"]

    ablations = json.loads((out / "ablations.json").read_text())["results"]
    assert {r["strategy"] for r in ablations} == set(reproduce.ABLATIONS)
    assert "| lora | 1 | 64 |" in (out / "training_cost.md").read_text()
    assert "| msft | 2 | 64 |" in (out / "training_cost_units.md").read_text()
    assert "| moirai-tiny | 64 | 0 |" in (out / "inference.md").read_text()
    assert "Reported, not reproduced" in (out / "reported.md").read_text()
    precision = (out / "precision.md").read_text()
    assert "`precision=32-true`" in precision and "`precision=bf16-mixed`" in precision
    sampling = (out / "sampling.md").read_text()
    assert "| ETTh1 | msft | 0 |" in sampling and "| ETTh1 | msft-k0 |" not in sampling


def test_runner_rejects_unknown_model_with_the_choices(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        lsf.main(["--strategies", "prophet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown strategy or model 'prophet'" in err and "msft-no-aggregator" in err


def test_resolve_model_maps_ablations_to_msft_settings() -> None:
    assert lsf.resolve_model("msft-k0") == ("engine", "msft", {"num_scales": 1})
    assert lsf.resolve_model("msft-no-mixing") == (
        "engine",
        "msft",
        {"scale_weighting": "finest"},
    )
    assert lsf.resolve_model("patchtst")[0] == "peer"
    assert lsf.resolve_model("theta")[0] == "baseline"


def _result(dataset: str, strategy: str, mse: float, seed: int = 0, sampling: str = "-"):
    return lsf.RunResult(
        dataset=dataset, strategy=strategy, horizon=96, seed=seed, settings={}, mse=mse,
        mae=mse, crps=None, coverage80=None, val_loss=None, initial_val_loss=None, steps=0,
        trainable_parameters=0, patch_size=0, scale_weights=[], fit_seconds=0.0, windows=1,
        sampling=sampling,
    )  # fmt: skip


def test_summary_table_averages_seeds_and_marks_the_best() -> None:
    results = [
        _result("ETTh1", "msft", 0.30, seed=0, sampling="mixture"),
        _result("ETTh1", "msft", 0.40, seed=1, sampling="mixture"),
        _result("ETTh1", "msft", 0.35, seed=0, sampling="blend"),
        _result("ETTh1", "dlinear", 0.36),
        _result("ETTm1", "dlinear", 0.20),
    ]
    table = lsf.summary_table(results, "mae").splitlines()
    assert table[0] == "| dataset | msft | msft (blend) | dlinear |"
    assert table[2] == "| ETTh1 | **0.3500 ± 0.0500** | **0.3500** | 0.3600 |"
    assert table[3] == "| ETTm1 | - | - | **0.2000** |"
    # the MSE does not depend on the sampling: one column per fitted model
    assert lsf.summary_table(results, "mse").splitlines()[0] == "| dataset | msft | dlinear |"


def test_unavailable_peer_library_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "available", lambda name: False)
    with pytest.raises(ModuleNotFoundError, match=r"msft-forecast\[bench\]"):
        peers.require("timemixer")
    with pytest.raises(ValueError, match="unknown peer"):
        peers.require("nbeats")


def test_peak_memory_sees_an_allocation_inside_the_block() -> None:
    import time

    with PeakMemory() as mem:
        # 256 MB, touched: above glibc's largest mmap threshold (32 MB), so the pages are new
        # even when earlier tests left freed heap memory resident (a 32 MB block was then
        # served from it and the RSS did not grow)
        block = np.ones((8192, 4096))
        block.sum()
        # held long enough for the 5 ms sampler to run even on a loaded machine (it missed
        # the block when another job kept both cores busy)
        time.sleep(0.3)
    if mem.peak_mb is None:
        pytest.skip("no /proc on this platform")
    assert mem.peak_mb > 200


def test_per_dataset_values_fall_back_to_the_default() -> None:
    values = ["512", "ETTm1=1024", "weather=2048"]
    assert lsf.per_dataset(values, "ETTm1") == "1024"
    assert lsf.per_dataset(values, "Weather") == "2048"
    assert lsf.per_dataset(values, "ETTh1") == "512"
    with pytest.raises(ValueError, match="add a default"):
        lsf.per_dataset(["ETTm1=1024"], "ETTh1")
