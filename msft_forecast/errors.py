"""Errors every front end raises the same way."""

from __future__ import annotations


class NotFittedError(ValueError, AttributeError, RuntimeError):
    """A forecast, a fitted attribute or a save was asked of a model that is not fitted.

    Raised by the engine, the Darts front end and the plotting helpers (sktime's
    ``MSFTForecaster`` raises sktime's own ``NotFittedError``).  It has the bases of sklearn's
    and sktime's ``NotFittedError`` (``ValueError``, ``AttributeError``), so handlers written
    for those catch it, and ``RuntimeError``, which the engine raised before.  It does not
    subclass sklearn's class: that would make ``import msft_forecast.engine`` load
    scikit-learn and SciPy (seconds) for an exception.

    Examples
    --------
    >>> from msft_forecast.errors import NotFittedError
    >>> issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, RuntimeError)
    True
    """

    def __init__(self, what: str = "This model", why: str = "call fit() first") -> None:
        super().__init__(f"{what} is not fitted yet; {why}.")
