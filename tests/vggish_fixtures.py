"""Fixtures for the VGGish tests: model files with the official names, shapes and format.

The official checkpoint cannot be downloaded here, so `vggish_models` writes a real TF1 V1
checkpoint (`tf.compat.v1.train.Saver`, graph mode) holding the 18 official variables with
random He-initialised weights, and a PCA file with a random rotation, in a models directory
laid out like the real one. The package loads them through the same code path as the real
files. Import from test modules: `from tests.vggish_fixtures import vggish_models`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from audiosetdl.vggish import params

SEED = 20170305

# A PCA scale chosen so the fixture's embeddings of audio-like inputs land mostly inside the
# quantization range [-2, 2], with a few percent clipped at each end: bytes then exercise
# the whole 0..255 range, the clip, and the truncation.
PCA_SCALE = 0.18


@dataclass(frozen=True)
class VGGishTestModels:
    directory: Path
    checkpoint: Path
    pca_params: Path
    weights: dict[str, np.ndarray]  # checkpoint name -> float32 array, for the reference model
    eigen_vectors: np.ndarray  # (128, 128) float64
    means: np.ndarray  # (128, 1) float64


def random_weights(seed: int = SEED) -> dict[str, np.ndarray]:
    """Official names and shapes; He-normal weights so ReLU activations keep their scale."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for layer, shape in params.LAYERS:
        fan_in = int(np.prod(shape[:-1]))
        gain = 1.0 if layer == "fc2" else 2.0  # fc2 has no ReLU
        kernel = rng.standard_normal(shape, dtype=np.float32)
        kernel *= np.float32(np.sqrt(gain / fan_in))
        weights[f"vggish/{layer}/weights"] = kernel
        weights[f"vggish/{layer}/biases"] = (0.01 * rng.standard_normal(shape[-1])).astype(np.float32)
    return weights


def write_v1_checkpoint(path: Path, weights: dict[str, np.ndarray]) -> Path:
    """Write `weights` as a TF1 V1 checkpoint at `path` (one file), as Google's was written."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        variables, feeds = {}, {}
        for name, value in weights.items():
            variable = v1.get_variable(name, shape=value.shape, dtype=tf.float32, initializer=v1.zeros_initializer())
            placeholder = v1.placeholder(tf.float32, shape=value.shape)
            variables[name] = variable
            feeds[placeholder] = value
        assigns = [variables[name].assign(placeholder) for name, placeholder in zip(weights, feeds)]
        saver = v1.train.Saver(var_list=variables, write_version=v1.train.SaverDef.V1, sharded=False)
        with v1.Session() as session:
            session.run(assigns, feed_dict=feeds)
            saver.save(session, str(path), write_meta_graph=False, write_state=False)
    return path


def random_pca(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    rotation, _ = np.linalg.qr(rng.standard_normal((params.EMBEDDING_SIZE, params.EMBEDDING_SIZE)))
    means = 0.5 * rng.standard_normal((params.EMBEDDING_SIZE, 1))
    return rotation * PCA_SCALE, means


@pytest.fixture(scope="session")
def vggish_models(tmp_path_factory: pytest.TempPathFactory) -> VGGishTestModels:
    """A models directory with `vggish_model.ckpt` (V1, random weights) and `vggish_pca_params.npz`."""
    directory = tmp_path_factory.mktemp("vggish_models")
    weights = random_weights()
    checkpoint = write_v1_checkpoint(directory / params.CHECKPOINT_FILENAME, weights)
    eigen_vectors, means = random_pca()
    pca_params = directory / params.PCA_PARAMS_FILENAME
    np.savez(pca_params, **{params.PCA_EIGEN_VECTORS_NAME: eigen_vectors, params.PCA_MEANS_NAME: means})
    return VGGishTestModels(directory, checkpoint, pca_params, weights, eigen_vectors, means)


@pytest.fixture(scope="session")
def vggish_embedder(vggish_models: VGGishTestModels):
    """An `Embedder` on the fixture's model files (CPU unless a GPU is present)."""
    from audiosetdl.vggish.model import Embedder

    return Embedder(vggish_models.checkpoint, vggish_models.pca_params, batch_size=8)


def audio_like_signals(seconds: float = 2.0, seed: int = SEED) -> dict[str, np.ndarray]:
    """A few 16 kHz float signals with different spectra, for front-end and model tests."""
    rng = np.random.default_rng(seed)
    n = int(seconds * params.SAMPLE_RATE)
    t = np.arange(n) / params.SAMPLE_RATE
    return {
        "sine_1k": np.sin(2 * np.pi * 1000.0 * t),
        "white_noise": 0.3 * rng.standard_normal(n),
        "chirp": 0.5 * np.sin(2 * np.pi * (100.0 + 3500.0 * t / seconds) * t),
        "quiet_noise": 1e-4 * rng.standard_normal(n),
        "clicks": np.where(rng.random(n) < 0.001, 0.9, 0.0) + 0.01 * rng.standard_normal(n),
        "silence": np.zeros(n),
    }
