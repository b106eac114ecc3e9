"""Which multi-scale model serves which backbone family: the one place that knows them all.

A new backbone family adds its :class:`~msft_forecast.msft.base.MultiScaleModel` subclass to
:func:`model_classes`; nothing else in the engine or the front ends changes.
"""

from __future__ import annotations

from msft_forecast.msft.base import MultiScaleModel


def model_classes() -> dict[str, type[MultiScaleModel]]:
    """Every multi-scale model class, by the backbone kind it serves."""
    from msft_forecast.msft.moirai_model import MultiScaleMoirai
    from msft_forecast.msft.moment_model import MultiScaleMoment
    from msft_forecast.msft.units_model import MultiScaleUnits

    return {cls.kind: cls for cls in (MultiScaleMoirai, MultiScaleMoment, MultiScaleUnits)}


def model_class(kind: str) -> type[MultiScaleModel]:
    """The multi-scale model class for a backbone of this kind.

    Examples
    --------
    >>> model_class("moirai").__name__
    'MultiScaleMoirai'
    """
    classes = model_classes()
    if kind not in classes:
        raise ValueError(
            f"no multi-scale model for backbones of kind {kind!r}; known: {sorted(classes)}"
        )
    return classes[kind]
