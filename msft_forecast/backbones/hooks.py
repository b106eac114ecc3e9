"""Extension slots through which the MSFT engine attaches trainable parts to a frozen backbone.

The backbones stay plain, checkpoint-compatible ``nn.Module`` s.  Each attention module owns an
empty ``lora`` :class:`torch.nn.ModuleDict` and each encoder layer an ``aggregator`` slot
(``None``).  Empty slots add no state-dict entries, so published checkpoints load unchanged, and
they cost nothing at run time.  The MSFT engine fills them (see ``msft_forecast.msft``); the
backbone only forwards an opaque ``scale_ctx`` object to whatever sits in a slot.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor


class ProjectionDelta(Protocol):
    """Additive low-rank delta on a frozen projection: ``y = W x + delta(x, scale_ctx)``."""

    def __call__(self, x: Tensor, scale_ctx: Any) -> Tensor: ...


class LayerAggregator(Protocol):
    """Residual update applied after a layer's attention block, before its FFN block."""

    def __call__(self, x: Tensor, scale_ctx: Any) -> Tensor: ...


def apply_delta(lora: Any, name: str, x: Tensor, y: Tensor, scale_ctx: Any) -> Tensor:
    """Return ``y`` plus the delta registered under ``name`` in ``lora`` (if any)."""
    if name in lora:
        return y + lora[name](x, scale_ctx)
    return y
