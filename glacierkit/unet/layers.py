"""Keras layers of glacierkit models (registered, so saved models load in safe mode).

:class:`IndexPrior` turns a normalized index channel of the input (NDSI) back into index
values and then into a logit ``slope * (index - threshold)``: the classical threshold rule
as a log-odds map. A U-Net with ``prior="ndsi"`` adds its own output logit to it, so the
network starts as the NDSI threshold and learns corrections (water, shadow, debris,
seasonal snow) instead of relearning what snow and ice look like.
"""

from __future__ import annotations

import keras

__all__ = ["IndexPrior", "BoundedCorrection"]


@keras.saving.register_keras_serializable(package="glacierkit")
class IndexPrior(keras.layers.Layer):
    """``slope * ((x[..., channel] * std + mean) - threshold)`` as a ``(..., 1)`` logit.

    Parameters
    ----------
    channel
        Index of the (normalized) index channel in the input.
    mean, std
        The channel's normalization statistics, to undo them.
    threshold
        Index value where the prior is 0.5 (e.g. the NDSI threshold learned on the
        training scenes).
    slope
        Logit per index unit: 20 makes the prior 0.88 at 0.1 above the threshold.
    """

    def __init__(self, channel: int, mean: float, std: float, threshold: float,
                 slope: float = 20.0, **kwargs):
        super().__init__(**kwargs)
        self.channel = int(channel)
        self.mean = float(mean)
        self.std = float(std)
        self.threshold = float(threshold)
        self.slope = float(slope)

    def call(self, x):
        from keras import ops

        v = x[..., self.channel: self.channel + 1] * self.std + self.mean
        return ops.cast(self.slope * (v - self.threshold), "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "channel": self.channel, "mean": self.mean,
                "std": self.std, "threshold": self.threshold, "slope": self.slope}


@keras.saving.register_keras_serializable(package="glacierkit")
class BoundedCorrection(keras.layers.Layer):
    """The network's correction logit, bounded towards glacier: the smooth minimum
    ``x - softplus(x - max_addition)`` of ``x`` and ``max_addition``: the correction itself
    well below the bound (within ``exp(x - max_addition)``), ``max_addition`` far above it;
    smooth and increasing, so it still trains.

    Removing glacier from the prior (water, shadow, cloud, seasonal snow) stays free; adding
    it where the index says "not glacier" is limited, so pixels far below the prior's
    threshold (dark rock whose NDSI haze lifted) cannot become glacier however the network
    reacts to inputs it has never seen.
    """

    def __init__(self, max_addition: float, **kwargs):
        super().__init__(**kwargs)
        self.max_addition = float(max_addition)

    def call(self, x):
        from keras import ops

        return x - ops.softplus(x - self.max_addition)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_addition": self.max_addition}
