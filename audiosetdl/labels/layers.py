"""The Keras layers the classifier networks (`model.py`) are made of, beyond Keras's own: the
dequantization of the released bytes, and the two poolings over a clip's real frames (the
explicit frame mask gives padded frames no weight).
"""

from __future__ import annotations

import numpy as np

from audiosetdl.tfenv import import_tensorflow
from audiosetdl.vggish.postprocess import dequantize

import_tensorflow()  # quietly: Keras's TensorFlow backend would otherwise load it with its C++ log lines
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

ATTENTION_EPSILON = 1e-7  # Kong's clamp of the attention weights


class Dequantize(layers.Layer):
    """AudioSet byte values -> float32, exactly `vggish.postprocess.dequantize` (an affine map)."""

    def call(self, frames):
        bias = float(dequantize(np.uint8(0)))
        scale = float(dequantize(np.uint8(1))) - bias
        return ops.cast(frames, "float32") * scale + bias


class _PoolsOverTime(layers.Layer):
    """A layer that pools over time with the explicit frame mask: a Keras mask arriving from a GRU
    (`recurrent`) is used up here, not passed on (and not warned about)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None


class AttentionPooling(_PoolsOverTime):
    """Decision-level attention over the real frames: sum_t w_t * classifier_t, w = attention normalised.
    The two projections run in the layer's compute dtype; the sigmoids, the clamp and the weighted
    sum in float32 (under bfloat16, 1 - 1e-7 would round to 1 and probabilities would tie)."""

    def __init__(self, units: int, bias_initializer="zeros", activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.classifier = layers.Dense(units, bias_initializer=bias_initializer, dtype=self.dtype_policy)
        self.attention = layers.Dense(units, dtype=self.dtype_policy)
        self.activation = keras.activations.get(activation)

    def call(self, hidden, frame_mask):
        weights = ops.sigmoid(ops.cast(self.attention(hidden), "float32"))
        weights = ops.clip(weights, ATTENTION_EPSILON, 1.0 - ATTENTION_EPSILON)
        weights = weights * ops.expand_dims(ops.cast(frame_mask, "float32"), -1)
        weights = weights / ops.sum(weights, axis=1, keepdims=True)
        return ops.sum(weights * self.activation(ops.cast(self.classifier(hidden), "float32")), axis=1)


class MaskedMean(_PoolsOverTime):
    def call(self, hidden, frame_mask):
        mask = ops.expand_dims(frame_mask, -1)
        return ops.sum(hidden * mask, axis=1) / ops.sum(mask, axis=1)
