"""The YAMNet network in TensorFlow 2 (no Keras), on the released weights; batched embeddings and scores.

Owns the network of the reference `yamnet.py` and `Embedder`, the object the extract stage
and (later) `label` use:

    (N, 96, 64) log-mel patches, NHWC with one channel
    layer1: conv 3x3 stride 2, 32 filters                          -> (48, 32, 32)
    layer2..14: depthwise 3x3 (stride 1 or 2) then pointwise 1x1   -> (3, 2, 1024)
    global average pool -> 1024-d embedding -> logits (521) -> sigmoid scores

Every convolution is 'same' (TensorFlow's SAME: for stride 2 on an even size, one row and
column of zeros after, none before) without bias, followed by inference-mode batch norm
(center, no scale, epsilon 1e-4: (x - mean) / sqrt(var + 1e-4) + beta) and ReLU. The batch
norm's affine map is folded into the convolution (kernel x 1/sqrt(var + eps) per output
channel, bias beta - mean/sqrt(var + eps), both computed in float64 and stored as float32):
the same function, fewer passes over memory. Everything runs in float32, with no reduced
precision anywhere, unless another `precision` is asked for (`audiosetdl.precision`): building
an `Embedder` sets TensorFlow's process-wide TF32 switch, off for fp32 (TensorFlow otherwise
uses TensorFloat-32 for float32 convolutions and matmuls on Ampere and later GPUs).

`Embedder.embed` runs batches through one `tf.function`, on the first GPU when there is one
(memory growth on), else on CPU; `Embedder.frames` is the per-clip API: waveform in, patch
start times, embeddings and class scores out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import logging

import numpy as np

from audiosetdl import precision as precisions
from audiosetdl.tfenv import device_description, import_tensorflow
from audiosetdl.vggish.model import configure_gpu_memory_growth, default_device
from audiosetdl.yamnet import features, params
from audiosetdl.yamnet.modelfiles import locate_models
from audiosetdl.yamnet.weightsfile import BN_WEIGHTS, WeightsError, expected_weights, read_weights

tf = import_tensorflow()  # quietly (audiosetdl.tfenv)
log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = params.DEFAULT_BATCH_SIZE


def fold_batch_norm(kernel: np.ndarray, bn: Mapping[str, np.ndarray],
                    depthwise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A convolution kernel and its batch norm -> (kernel scaled per output channel, bias), float32.

    The output channel is the kernel's last axis, except for depthwise kernels (k, k, C, 1),
    whose output channel is the input channel C.
    """
    beta, mean, variance = (np.asarray(bn[name], dtype=np.float64) for name in BN_WEIGHTS)
    inverse = 1.0 / np.sqrt(variance + params.BATCHNORM_EPSILON)
    kernel = np.asarray(kernel, dtype=np.float64)
    scale = inverse[:, None] if depthwise else inverse
    return (kernel * scale).astype(np.float32), (beta - mean * inverse).astype(np.float32)


class YAMNet(tf.Module):
    """The YAMNet network with frozen weights, keyed as `weightsfile.read_weights` returns them, stored
    and run in `dtype` (float32, or bfloat16 for `--precision bf16`); inputs and outputs are float32."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype=tf.float32):
        super().__init__(name="yamnet")
        self.dtype = dtype
        for name, shape in expected_weights().items():
            if name not in weights or np.shape(weights[name]) != shape:
                got = list(np.shape(weights[name])) if name in weights else "nothing"
                raise WeightsError(f"weight {name}: expected shape {list(shape)}, got {got}")
        self.steps: list[tuple[str, int, tf.Variable, tf.Variable]] = []  # (op, stride, kernel, bias)
        for name, kind, stride, _filters in params.LAYERS:
            convolutions = [(f"{name}/conv", "kernel", "conv", stride)] if kind == params.CONV else [
                (f"{name}/depthwise_conv", "depthwise_kernel", "depthwise", stride),
                (f"{name}/pointwise_conv", "kernel", "pointwise", 1),
            ]
            for layer, kernel_name, op, step_stride in convolutions:
                bn = {w: weights[f"{layer}/bn/{w}"] for w in BN_WEIGHTS}
                kernel, bias = fold_batch_norm(weights[f"{layer}/{kernel_name}"], bn, depthwise=op == "depthwise")
                safe = layer.replace("/", "_")
                self.steps.append((op, step_stride,
                                   tf.Variable(tf.cast(kernel, dtype), trainable=False, name=f"{safe}_kernel"),
                                   tf.Variable(tf.cast(bias, dtype), trainable=False, name=f"{safe}_bias")))
        self.logits_kernel = tf.Variable(tf.cast(np.asarray(weights[f"{params.CLASSIFIER_LAYER}/kernel"], np.float32),
                                                 dtype), trainable=False, name="logits_kernel")
        self.logits_bias = tf.Variable(tf.cast(np.asarray(weights[f"{params.CLASSIFIER_LAYER}/bias"], np.float32),
                                               dtype), trainable=False, name="logits_bias")

    def forward(self, patches: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(N, 96, 64) float32 -> (embeddings (N, 1024), logits (N, 521)), float32."""
        x = tf.expand_dims(tf.cast(patches, self.dtype), -1)
        for op, stride, kernel, bias in self.steps:
            if op == "depthwise":
                x = tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1], padding="SAME")
            else:
                x = tf.nn.conv2d(x, kernel, strides=stride, padding="SAME")
            x = tf.nn.relu(tf.nn.bias_add(x, bias))
        embeddings = tf.reduce_mean(x, axis=[1, 2])
        logits = tf.nn.bias_add(tf.matmul(embeddings, self.logits_kernel), self.logits_bias)
        return tf.cast(embeddings, tf.float32), tf.cast(logits, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, params.PATCH_FRAMES, params.NUM_MEL_BINS], tf.float32)])
    def __call__(self, patches: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(N, 96, 64) -> (embeddings (N, 1024), sigmoid scores (N, 521))."""
        embeddings, logits = self.forward(patches)
        return embeddings, tf.math.sigmoid(logits)


@dataclass(frozen=True)
class Frames:
    """One clip's YAMNet output, one row per 0.96 s patch (patch i starts at 0.48 i s)."""

    starts: np.ndarray  # float64 (N,) seconds
    embeddings: np.ndarray  # float32 (N, 1024)
    scores: np.ndarray  # float32 (N, 521), columns as yamnet_class_map.csv


class Embedder:
    """YAMNet embeddings and class scores for batches of patches, or for whole clips.

    `weights` is the path of `yamnet.h5`. `device` is a TensorFlow device string; None picks
    the first GPU, else the CPU. `precision` is one of `audiosetdl.precision.PRECISIONS`.
    """

    def __init__(self, weights: str | Path, batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None,
                 precision: str = precisions.DEFAULT_PRECISION):
        self._build(read_weights(weights), batch_size, device, precision)

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
                     device: str | None = None, precision: str = precisions.DEFAULT_PRECISION) -> "Embedder":
        """An Embedder on weights already in memory (`<layer>/<weight>` names), e.g. for benchmarks."""
        embedder = cls.__new__(cls)
        embedder._build(weights, batch_size, device, precision)
        return embedder

    @classmethod
    def from_models_dir(cls, models_dir: str | Path | None = None, **options) -> "Embedder":
        """An Embedder over `yamnet.h5` in `models_dir` (see `modelfiles.locate_models`)."""
        return cls(locate_models(models_dir).weights, **options)

    def _build(self, weights: Mapping[str, np.ndarray], batch_size: int, device: str | None, precision: str) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.precision = precision
        dtype = precisions.apply(precision)
        configure_gpu_memory_growth()
        self.device = device or default_device()
        with tf.device(self.device):
            self.model = YAMNet(weights, dtype)
        log.info("YAMNet on %s, %s", device_description(self.device), precision)

    def embed(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 96, 64) patches -> (embeddings float32 (N, 1024), scores float32 (N, 521)), in batches."""
        patches = np.asarray(patches, dtype=np.float32)
        expected = (params.PATCH_FRAMES, params.NUM_MEL_BINS)
        if patches.ndim != 3 or patches.shape[1:] != expected:
            raise ValueError(f"expected patches of shape (N, {expected[0]}, {expected[1]}), got {patches.shape}")
        embeddings = np.empty((len(patches), params.EMBEDDING_SIZE), dtype=np.float32)
        scores = np.empty((len(patches), params.NUM_CLASSES), dtype=np.float32)
        with tf.device(self.device):
            for start in range(0, len(patches), self.batch_size):
                batch = patches[start: start + self.batch_size]
                batch_embeddings, batch_scores = self.model(tf.constant(batch))
                embeddings[start: start + len(batch)] = batch_embeddings.numpy()
                scores[start: start + len(batch)] = batch_scores.numpy()
        return embeddings, scores

    def frames(self, samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> Frames:
        """One clip -> its patches' start times, embeddings and class scores (the reference's outputs)."""
        patches = features.waveform_to_patches(samples, sample_rate)
        embeddings, scores = self.embed(patches)
        return Frames(features.patch_start_seconds(len(patches)), embeddings, scores)
