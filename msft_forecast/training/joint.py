"""Joint modelling of a multivariate series' channels (``multivariate="joint"``, METHOD §2).

By default every channel of a multivariate series is its own series (channel-independent): it
is forecast from its own history alone.  With ``multivariate="joint"`` every channel is
forecast from the history of **all** channels of its series: the other channels enter as
past-only covariates, extra variates of the channel's sample in Moirai's any-variate attention
at every scale, exactly as uni2ts packs ``past_feat_dynamic_real`` (so the parity tests of
covariates cover it).  Each channel stays the target of its own row, so training windows take
every channel as a target in turn and a forecast costs one row of ``channels`` variates per
channel.  Moirai's attention tells variates apart only as "same" or "other", so the order of
the other channels does not matter.

The engine lists the channels of every series one after another (instance-major, as the
front ends convert them), all series with the same number of channels; the model records
that number (:attr:`~msft_forecast.results.FitReport.channels`) and forecasts series of as
many channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msft_forecast.training.covariates import SeriesCovariates

__all__ = [
    "channel_count", "forecast_with_other_channels", "other_channel_names", "with_other_channels",
]  # fmt: skip


def other_channel_names(channels: int) -> list[str]:
    """Names of the past covariates that carry a channel's ``channels - 1`` other channels.

    >>> other_channel_names(3)
    ['other_channel_1', 'other_channel_2']
    """
    return [f"other_channel_{j}" for j in range(1, channels)]


def channel_count(channels: int | Sequence[int], fitted: int | None = None) -> int:
    """The one number of channels per series that ``channels`` (a number, or each series'
    number) gives; ``fitted``: the number a joint model was fitted on, which it must equal.

    >>> channel_count([3, 3]), channel_count(2, fitted=2)
    (3, 2)
    """
    widths = {int(channels)} if isinstance(channels, int | np.integer) else set(map(int, channels))
    if len(widths) != 1 or min(widths) < 1:
        raise ValueError(
            f"multivariate='joint' needs series with one number of channels (at least 1); "
            f"got {sorted(widths)}. Model series of other widths channel-independently "
            f"(multivariate='independent') or with separate models."
        )
    width = widths.pop()
    if fitted is not None and width != fitted:
        raise ValueError(
            f"This joint model was fitted on series of {fitted} channels and is asked to "
            f"forecast series of {width}: each channel reads the {fitted - 1} others."
        )
    return width


def with_other_channels(
    covariates: SeriesCovariates, series: Sequence[np.ndarray], channels: int, backbone: str
) -> SeriesCovariates:
    """Each channel's past covariates with the other channels of its series put first.

    Parameters
    ----------
    covariates : SeriesCovariates
        The checked covariates of ``series`` (:func:`~msft_forecast.training.covariates.\
as_covariates`), possibly empty.
    series : sequence of ndarray
        1-D channels, those of one series after one another (instance-major).
    channels : int
        Channels per series (1: nothing to add).
    backbone : str
        The backbone's kind: its model must read covariates (any-variate attention).

    Returns
    -------
    SeriesCovariates
        Per channel: past covariates ``(T, channels - 1 + P)``, the other channels of its
        series in their order then the given past covariates; known-future ones unchanged.

    Raises
    ------
    ValueError
        ``channels`` does not divide the number of channels given, the channels of one
        series differ in length, or the backbone reads no other variates.

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.training.covariates import as_covariates
    >>> y = [np.arange(4.0), 10 + np.arange(4.0)]  # one series with two channels
    >>> joint = with_other_channels(as_covariates(y), y, 2, "moirai")
    >>> joint.past_names, joint.pairs[0][0][:, 0].tolist()
    (['other_channel_1'], [10.0, 11.0, 12.0, 13.0])
    """
    from msft_forecast.msft.registry import model_class

    if channels == 1:
        return covariates
    if not model_class(backbone).supports_covariates:
        raise ValueError(
            f"multivariate='joint' reads a series' other channels through Moirai's any-variate "
            f"attention; the {backbone} backbone has no such input. Use a Moirai backbone or "
            f"multivariate='independent'."
        )
    if len(series) % channels:
        raise ValueError(
            f"{len(series)} channels are not a whole number of series of {channels} channels: "
            f"a joint model forecasts series with the channels it was fitted on ({channels})."
        )
    pairs = covariates.pairs or [(None, None)] * len(series)
    out = []
    for first in range(0, len(series), channels):
        group = series[first : first + channels]
        if len({len(x) for x in group}) > 1:
            raise ValueError(
                f"The channels of series {first // channels} have different lengths "
                f"{[len(x) for x in group]}; channels of one series share its time points."
            )
        stacked = np.stack(group, axis=1)
        for c in range(channels):
            past, future = pairs[first + c]
            others = np.delete(stacked, c, axis=1)
            out.append((others if past is None else np.concatenate([others, past], 1), future))
    names = other_channel_names(channels) + covariates.past_names
    return SeriesCovariates(out, names, covariates.future_names)


def forecast_with_other_channels(
    covariates: SeriesCovariates, *, contexts: Sequence[np.ndarray], fitted: int,
    channels: int | Sequence[int] | None, backbone: str,
) -> SeriesCovariates:  # fmt: skip
    """:func:`with_other_channels` for a forecast of a model fitted on series of ``fitted``
    channels (1: a channel-independent model, which adds nothing); ``channels``, when given,
    must agree with ``fitted``."""
    if fitted == 1:
        return covariates
    width = fitted if channels is None else channel_count(channels, fitted)
    return with_other_channels(covariates, contexts, width, backbone)
