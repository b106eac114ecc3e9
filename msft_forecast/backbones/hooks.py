"""Extension slots through which the MSFT engine attaches trainable parts to a frozen backbone.

The backbones stay plain, checkpoint-compatible ``nn.Module`` s.  Each attention module owns an
empty ``lora`` :class:`torch.nn.ModuleDict` and each encoder layer an ``aggregator`` slot
(``None``).  Empty slots add no state-dict entries, so published checkpoints load unchanged, and
they cost nothing at run time.  The MSFT engine fills them (see ``msft_forecast.msft``): a
``lora`` entry adds ``delta(x, scale_ctx)`` to its projection's output (:func:`apply_delta`), an
``aggregator`` updates the residual stream after the attention block.  The backbone only
forwards an opaque ``scale_ctx`` object to whatever sits in a slot.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def apply_delta(lora: Any, name: str, x: Tensor, y: Tensor, scale_ctx: Any) -> Tensor:
    """Return ``y`` plus the delta registered under ``name`` in ``lora`` (if any)."""
    if name in lora:
        return y + lora[name](x, scale_ctx)
    return y
