"""msft_forecast: multi-scale fine-tuning (MSFT) of Moirai and MOMENT for sktime and Darts."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
    # OpenMP threads that spin while waiting (the runtime's default) steal the cores any other
    # busy process needs, and then wait for each other: next to one busy process a default fit
    # ran 12x slower than with one thread. Passive waiting removes that (benchmarks/
    # thread_policy.py). The runtime reads this once, when torch loads it, so it is set here,
    # before torch, and only where the user has not chosen a policy.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"

__all__ = ["MSFTForecaster", "MSFTModel", "__version__"]

#: Public names imported on first access, so that ``import msft_forecast`` stays cheap (no
#: torch, sktime or lightning until a front end is used). Each front end's library comes with an
#: extra (``pip install "msft-forecast[sktime]"``, ``[darts]``, ``[all]``): without it, accessing
#: the name raises the front end's ImportError, which names the extra.
_LAZY = {"MSFTForecaster": "msft_forecast.sktime", "MSFTModel": "msft_forecast.darts"}

if TYPE_CHECKING:
    from msft_forecast.darts import MSFTModel
    from msft_forecast.sktime import MSFTForecaster


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
