"""Fixtures for the YAMNet tests: model files with the official layout, names and shapes.

The official `yamnet.h5` cannot be downloaded here, so `write_keras_h5` writes a file in the
layout Keras 2's `save_weights` gives (root attribute `layer_names` listing every layer, weight
or not; one group per layer, nested at each '/'; attribute `weight_names` with `:0` names;
datasets at `<layer>/<weight name>`) holding the 110 official weights with random values.
The class map is built from the real `class_labels_indices.csv` minus the six classes
YAMNet's README says it dropped (no copy of shared data is committed); its row count and a
few rows of the real `yamnet_class_map.csv` are checked in tests/test_yamnet_model.py.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from audiosetdl.yamnet import params
from audiosetdl.yamnet.weightsfile import expected_weights

SEED = 20200301


@dataclass(frozen=True)
class YAMNetTestModels:
    directory: Path
    weights_path: Path
    class_map: Path
    weights: dict[str, np.ndarray]  # `<layer>/<weight>` -> float32, for the reference model


def random_weights(seed: int = SEED) -> dict[str, np.ndarray]:
    """Official names and shapes; He-normal kernels and plausible batch-norm statistics."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_weights().items():
        if name.endswith("kernel"):
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in name else shape[0] * shape[1]
            gain = 1.0 if name.startswith("logits") else 2.0
            value = rng.standard_normal(shape) * np.sqrt(gain / fan_in)
        elif name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        else:  # beta, moving_mean, bias
            value = 0.1 * rng.standard_normal(shape)
        weights[name] = value.astype(np.float32)
    return weights


def keras_layers(weights: dict[str, np.ndarray]) -> list[tuple[str, list[str]]]:
    """(layer name, its weights' short names) in model order, with Keras's weight-less layers too."""
    with_weights: dict[str, list[str]] = {}
    for name in weights:
        layer, weight = name.rsplit("/", 1)
        with_weights.setdefault(layer, []).append(weight)
    layers: list[tuple[str, list[str]]] = [("input_1", []), ("reshape", [])]
    for layer, kept in with_weights.items():
        layers.append((layer, kept))
        if layer.endswith("/bn"):  # each batch norm is followed by its ReLU layer
            layers.append((layer[: -len("/bn")].replace("/conv", "") + "/relu", []))
        if layer == f"{params.LAYERS[-1][0]}/pointwise_conv/bn":
            layers.append(("global_average_pooling2d", []))
    layers.append(("activation", []))
    return layers


def _names(values: list[str]) -> np.ndarray:
    return np.array([value.encode("utf-8") for value in values], dtype=bytes) if values else np.zeros(0, "S1")


def write_keras_h5(path: Path, weights: dict[str, np.ndarray], *, under_model_weights: bool = False,
                   split_layer_names: bool = False) -> Path:
    """Write `weights` as Keras 2's HDF5 weights file (or a whole-model file's /model_weights)."""
    import h5py

    layers = keras_layers(weights)
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if under_model_weights else handle
        names = [layer for layer, _ in layers]
        if split_layer_names:  # as Keras does for attributes over HDF5's 64 KB header limit
            root.attrs["layer_names0"] = _names(names[:20])
            root.attrs["layer_names1"] = _names(names[20:])
        else:
            root.attrs["layer_names"] = _names(names)
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.3.0-tf"
        for layer, kept in layers:
            group = root.require_group(layer)
            group.attrs["weight_names"] = _names([f"{layer}/{weight}:0" for weight in kept])
            for weight in kept:
                group.create_dataset(f"{layer}/{weight}:0", data=weights[f"{layer}/{weight}"])
    return path


def write_class_map(path: Path, audioset_labels: Path) -> Path:
    """yamnet_class_map.csv as released: AudioSet's classes minus the six absent ones, renumbered."""
    from audiosetdl.yamnet.classmap import ABSENT_CLASSES

    with open(audioset_labels, encoding="utf-8", newline="") as fh:
        rows = [row for row in list(csv.reader(fh))[1:] if row[1] not in ABSENT_CLASSES]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, mid, name] for i, (_, mid, name) in enumerate(rows))
    return path


@pytest.fixture(scope="session")
def yamnet_weights() -> dict[str, np.ndarray]:
    return random_weights()


@pytest.fixture(scope="session")
def yamnet_models(tmp_path_factory: pytest.TempPathFactory, yamnet_weights, shared_audioset) -> YAMNetTestModels:
    """A models directory with `yamnet.h5` (random weights, Keras 2 layout) and `yamnet_class_map.csv`."""
    directory = tmp_path_factory.mktemp("yamnet_models")
    weights_path = write_keras_h5(directory / params.WEIGHTS_FILENAME, yamnet_weights)
    class_map = write_class_map(directory / params.CLASS_MAP_FILENAME, shared_audioset / "class_labels_indices.csv")
    return YAMNetTestModels(directory, weights_path, class_map, yamnet_weights)


@pytest.fixture(scope="session")
def yamnet_embedder(tmp_path_factory: pytest.TempPathFactory, yamnet_weights):
    """An `Embedder` loaded from a fixture `yamnet.h5` (CPU unless a GPU is present)."""
    from audiosetdl.yamnet.model import Embedder

    path = write_keras_h5(tmp_path_factory.mktemp("yamnet_h5") / params.WEIGHTS_FILENAME, yamnet_weights)
    return Embedder(path, batch_size=8)
