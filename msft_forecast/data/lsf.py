"""The long-horizon forecasting (LSF) benchmark datasets with their standard splits.

ETTh1, ETTh2 (hourly), ETTm1, ETTm2 (15 minutes) and Weather (10 minutes), as used by the
MSFT paper and its predecessors (BENCHMARK.md in the design notes):

* ETTh: 8640 / 2880 / 2880 rows for train / validation / test (12 / 4 / 4 months);
* ETTm: 34560 / 11520 / 11520;
* Weather: 7 : 1 : 2 of its 52696 rows (36887 / 5269 / 10539).

Rows are used by position, as in the literature.  Weather's upstream quirks are kept except
for its 81 values of -9999 (sensor faults), which become missing values (NaN) so that they
neither distort the normalisation nor count as targets.

Files are read from a local folder (``root``, or the environment variable
``MSFT_FORECAST_LSF_ROOT``) holding ``<name>.csv`` or ``<name>.csv.gz``.  With ``download=True``
a missing file is fetched from its public source and verified against the published SHA-256
checksum before use.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msft_forecast.frequencies import season_length

#: name -> (file stem, frequency, train rows, validation rows or None for 7:1:2)
DATASETS: dict[str, tuple[str, str, int | None, int | None]] = {
    "ETTh1": ("ETTh1", "h", 8640, 2880),
    "ETTh2": ("ETTh2", "h", 8640, 2880),
    "ETTm1": ("ETTm1", "15min", 34560, 11520),
    "ETTm2": ("ETTm2", "15min", 34560, 11520),
    "Weather": ("weather", "10min", None, None),
}

#: SHA-256 of the uncompressed files the literature uses.
SHA256 = {
    "ETTh1": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "ETTm1": "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    "ETTm2": "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
    "weather": "34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",
}

SOURCES = {
    stem: f"https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{stem}.csv"
    for stem in ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
}


@dataclass(frozen=True)
class LSFDataset:
    """A benchmark dataset: all rows, channel names and split boundaries.

    Attributes
    ----------
    name : str
    frame : pandas.DataFrame
        Channels as columns, the ``date`` column as a DatetimeIndex.
    freq : str
        pandas frequency.
    train_end, val_end, test_end : int
        Row positions where the validation split starts, the test split starts and the test
        split ends (ETT files hold more rows than the standard 20 months; those are unused).
    season : int
        Steps in one seasonal cycle, for the seasonal baselines; 0 (the default) takes it from
        the frequency (:func:`msft_forecast.frequencies.season_length`: a day for the five
        LSF sets).
    """

    name: str
    frame: pd.DataFrame
    freq: str
    train_end: int
    val_end: int
    test_end: int
    season: int = 0

    def __post_init__(self) -> None:
        if not self.season:
            object.__setattr__(self, "season", season_length(self.freq))

    def normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and scale of the training split (scale 1 for a constant channel)."""
        train = self.frame.to_numpy(dtype=np.float64)[: self.train_end]
        with warnings.catch_warnings():  # an all-missing training column: mean 0, scale 1
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
        ok = np.isfinite(std) & (std > 0)
        return np.where(np.isfinite(mean), mean, 0.0), np.where(ok, std, 1.0)

    def normalised(self) -> np.ndarray:
        """``(rows, channels)`` values z-normalised with the training split's mean and std."""
        mean, std = self.normalisation()
        return (self.frame.to_numpy(dtype=np.float64) - mean) / std


def default_root() -> Path | None:
    env = os.environ.get("MSFT_FORECAST_LSF_ROOT")
    return Path(env) if env else None


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.csv", root / f"{stem}.csv.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _download(stem: str, root: Path) -> Path:
    import urllib.request

    if stem not in SOURCES:
        raise FileNotFoundError(
            f"{stem}.csv has no download source here; get it from the Autoformer / "
            f"Time-Series-Library data bundle and put it in {root}."
        )
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{stem}.csv"
    with urllib.request.urlopen(SOURCES[stem], timeout=60) as response:  # noqa: S310
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[stem]:
        raise ValueError(f"downloaded {stem}.csv has checksum {digest}, expected {SHA256[stem]}")
    target.write_bytes(data)
    return target


def load_lsf(
    name: str, root: str | os.PathLike | None = None, *, download: bool = False, verify: bool = True
) -> LSFDataset:
    """Load one LSF dataset with its standard split.

    Parameters
    ----------
    name : {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather"}
    root : path, optional
        Folder with the CSV files (default ``$MSFT_FORECAST_LSF_ROOT``).
    download : bool, default False
        Fetch a missing file from its public source (ETT only), checksum-verified.
    verify : bool, default True
        Check the SHA-256 of the file against the published one.

    Examples
    --------
    >>> from msft_forecast.data.lsf import load_lsf
    >>> ds = load_lsf("ETTh1", "../shared/data/lsf")  # doctest: +SKIP
    >>> ds.train_end, ds.val_end, ds.frame.shape  # doctest: +SKIP
    (8640, 11520, (17420, 7))
    >>> ds.test_end  # doctest: +SKIP
    14400
    """
    key = {k.lower(): k for k in DATASETS}.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    stem, freq, n_train, n_val = DATASETS[key]
    folder = Path(root) if root is not None else default_root()
    if folder is None:
        raise FileNotFoundError(
            "No data folder: pass root=... or set MSFT_FORECAST_LSF_ROOT to the folder holding "
            f"{stem}.csv (or {stem}.csv.gz)."
        )
    path = _find(folder, stem)
    if path is None:
        if not download:
            raise FileNotFoundError(
                f"{stem}.csv(.gz) not found in {folder}; pass download=True to fetch it."
            )
        path = _download(stem, folder)
    raw = _read_bytes(path)
    if verify:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != SHA256[stem]:
            raise ValueError(
                f"{path} has SHA-256 {digest}, not the published {SHA256[stem]}: the file is "
                f"not the benchmark's version."
            )
    import io

    frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8", encoding_errors="replace")
    frame["date"] = pd.to_datetime(frame["date"])
    frame = frame.set_index("date")
    frame = frame.mask(frame == -9999.0)
    rows = len(frame)
    if n_train is None:
        n_train = int(rows * 0.7)
        n_test = int(rows * 0.2)
        n_val = rows - n_train - n_test
    else:
        n_test = n_val  # ETT: test as long as validation (4 months)
    return LSFDataset(key, frame, freq, n_train, n_train + n_val, n_train + n_val + n_test)
