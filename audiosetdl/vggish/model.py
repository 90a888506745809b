"""The VGGish network in TensorFlow 2, loaded from the official TF1 checkpoint; batched embedding.

Owns the network (the reference `vggish_slim.py`, without tf_slim or sessions), reading
`vggish_model.ckpt` by variable name, and `Embedder`, the object the extract stage uses:

    (N, 96, 64) log-mel examples, NHWC with one channel
    conv1 64 -> pool -> conv2 128 -> pool -> conv3_1, conv3_2 256 -> pool
    -> conv4_1, conv4_2 512 -> pool -> flatten (h, w, c) 12288
    -> fc1_1 4096 ReLU -> fc1_2 4096 ReLU -> fc2 128, no activation

Convolutions are 3x3, stride 1, SAME, with ReLU; pools are 2x2, stride 2, SAME. Weights are
read with `tf.train.load_checkpoint` (it reads the V1 format Google released), checking the
18 variables' names and shapes against `params.LAYERS` before anything is built.

`Embedder.embed` runs fixed-size batches through one `tf.function`, on the first GPU when
there is one (with memory growth turned on, so other processes can share it), else on CPU, in
exact float32 unless asked for another `precision` (`audiosetdl.precision`: building an Embedder
sets TensorFlow's TF32 switch, off for fp32).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import logging

import numpy as np

from audiosetdl import precision as precisions
from audiosetdl.tfenv import device_description, import_tensorflow
from audiosetdl.vggish import features, params
from audiosetdl.vggish.modelfiles import CheckpointError, FETCH_HINT, ModelFiles, locate_models
from audiosetdl.vggish.postprocess import PCAParams, PCAParamsError, postprocess

tf = import_tensorflow()  # quietly (audiosetdl.tfenv)
log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = params.DEFAULT_BATCH_SIZE


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The 18 VGGish variables of a TF1 checkpoint, by name, after checking every shape.

    Extra variables (a global step, optimizer slots) are ignored.
    """
    path = Path(path)
    try:
        reader = tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot read VGGish checkpoint {path}: {exc}. {FETCH_HINT}") from exc
    available = reader.get_variable_to_shape_map()
    weights: dict[str, np.ndarray] = {}
    for name, expected in params.checkpoint_variables().items():
        if name not in available:
            raise CheckpointError(f"{path}: variable {name} is missing (expected shape {list(expected)}). {FETCH_HINT}")
        actual = tuple(available[name])
        if actual != expected:
            raise CheckpointError(
                f"{path}: variable {name} has shape {list(actual)}, expected {list(expected)}. {FETCH_HINT}"
            )
        weights[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
    return weights


class VGGish(tf.Module):
    """The VGGish network with frozen weights, keyed by checkpoint variable name, stored and run in
    `dtype` (float32, or bfloat16 for `--precision bf16`); inputs and outputs are float32."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype=tf.float32):
        super().__init__(name="vggish")
        self.dtype = dtype
        self.kernels: dict[str, tf.Variable] = {}
        self.biases: dict[str, tf.Variable] = {}
        for name, shape in params.checkpoint_variables().items():
            value = np.asarray(weights[name], dtype=np.float32)
            if value.shape != shape:
                raise CheckpointError(f"variable {name} has shape {list(value.shape)}, expected {list(shape)}")
        for layer, _ in params.LAYERS:
            prefix = f"{params.CHECKPOINT_SCOPE}/{layer}"
            safe = layer.replace("/", "_")
            self.kernels[layer] = tf.Variable(tf.cast(weights[f"{prefix}/weights"], dtype), trainable=False,
                                              name=f"{safe}_weights")
            self.biases[layer] = tf.Variable(tf.cast(weights[f"{prefix}/biases"], dtype), trainable=False,
                                             name=f"{safe}_biases")

    def forward(self, examples: tf.Tensor, activations: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        """(N, 96, 64) float32 -> (N, 128) float32; fills `activations` per layer when given."""
        x = tf.expand_dims(tf.cast(examples, self.dtype), -1)
        for layer, shape in params.LAYERS:
            kernel, bias = self.kernels[layer], self.biases[layer]
            if len(shape) == 4:
                x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias))
                if layer in params.POOL_AFTER:
                    x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
            else:
                if x.shape.rank == 4:
                    x = tf.reshape(x, [-1, params.FLATTENED_SIZE])  # NHWC, so (h, w, c) order
                x = tf.nn.bias_add(tf.matmul(x, kernel), bias)
                if layer != "fc2":
                    x = tf.nn.relu(x)
            if activations is not None:
                activations[layer] = x
        return tf.cast(x, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, params.EXAMPLE_FRAMES, params.NUM_MEL_BINS], tf.float32)])
    def __call__(self, examples: tf.Tensor) -> tf.Tensor:
        return self.forward(examples)


def configure_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed rather than all of it at start.

    The environment variable covers GPUs that something else initialises first (any eager
    op does); the explicit call covers the rest. Both are no-ops without a GPU.
    """
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # the GPU is already initialised; its setting can no longer change


def default_device() -> str:
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


configure_gpu_memory_growth()  # before anything places a tensor on a GPU


class Embedder:
    """VGGish embeddings and released-format bytes for batches of examples.

    `checkpoint` and `pca_params` are paths to `vggish_model.ckpt` and `vggish_pca_params.npz`
    (or a loaded `PCAParams`). `device` is a TensorFlow device string; None picks the first
    GPU, else the CPU. `precision` is one of `audiosetdl.precision.PRECISIONS`.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        pca_params: str | Path | PCAParams,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        precision: str = precisions.DEFAULT_PRECISION,
    ):
        if isinstance(pca_params, PCAParams):
            pca = pca_params
        else:
            try:
                pca = PCAParams.load(pca_params)
            except PCAParamsError as exc:
                raise PCAParamsError(f"{exc}. {FETCH_HINT}") from None
        self._build(read_checkpoint(checkpoint), pca, batch_size, device, precision)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, np.ndarray],
        pca: PCAParams,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        precision: str = precisions.DEFAULT_PRECISION,
    ) -> "Embedder":
        """An Embedder on weights already in memory (checkpoint names), e.g. for benchmarks."""
        embedder = cls.__new__(cls)
        embedder._build(weights, pca, batch_size, device, precision)
        return embedder

    def _build(self, weights: Mapping[str, np.ndarray], pca: PCAParams, batch_size: int, device: str | None,
               precision: str) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.pca = pca
        self.precision = precision
        dtype = precisions.apply(precision)
        configure_gpu_memory_growth()
        self.device = device or default_device()
        with tf.device(self.device):
            self.model = VGGish(weights, dtype)
        log.info("VGGish on %s, %s", device_description(self.device), precision)

    @classmethod
    def from_models_dir(cls, models_dir: str | Path | None = None, **options) -> "Embedder":
        """An Embedder over the files in `models_dir` (see `modelfiles.locate_models`)."""
        files: ModelFiles = locate_models(models_dir)
        return cls(files.checkpoint, files.pca_params, **options)

    def embed(self, examples: np.ndarray) -> np.ndarray:
        """(N, 96, 64) log-mel examples -> float32 (N, 128) raw embeddings, in batches."""
        examples = np.asarray(examples, dtype=np.float32)
        expected = (params.EXAMPLE_FRAMES, params.NUM_MEL_BINS)
        if examples.ndim != 3 or examples.shape[1:] != expected:
            raise ValueError(f"expected examples of shape (N, {expected[0]}, {expected[1]}), got {examples.shape}")
        embeddings = np.empty((len(examples), params.EMBEDDING_SIZE), dtype=np.float32)
        with tf.device(self.device):
            for start in range(0, len(examples), self.batch_size):
                batch = examples[start : start + self.batch_size]
                embeddings[start : start + len(batch)] = self.model(tf.constant(batch)).numpy()
        return embeddings

    def postprocess(self, embeddings: np.ndarray) -> np.ndarray:
        """Raw (N, 128) embeddings -> uint8 (N, 128) as the released AudioSet features."""
        return postprocess(embeddings, self.pca)

    def embed_waveform(self, samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> np.ndarray:
        """One clip -> float32 (N, 128) raw embeddings, one per whole 0.96 s."""
        return self.embed(features.waveform_to_examples(samples, sample_rate))
