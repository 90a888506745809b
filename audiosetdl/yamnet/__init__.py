"""YAMNet exactly as Google's reference (tensorflow/models research/audioset/yamnet), beside VGGish.

Layout, as `audiosetdl.vggish`: `params` (every constant), `features` (waveform -> padded
waveform -> log-mel patches, numpy), `weightsfile` (reading `yamnet.h5` by layer name with
h5py; no Keras), `model` (the TF2 network; `Embedder`, with `frames` giving a clip's per-patch
embeddings and class scores), `classmap` (the 521 classes and their AudioSet indices; the six
AudioSet classes YAMNet lacks), `modelfiles` (locating and fetching the official files),
`smoke` (the install check).

    from audiosetdl.yamnet import Embedder, load_class_map, locate_models
    files = locate_models("models")
    frames = Embedder(files.weights).frames(samples)      # 16 kHz float samples
    frames.starts, frames.embeddings, frames.scores       # (N,), (N, 1024), (N, 521)
    load_class_map(files.class_map).top(frames.scores.mean(axis=0))

Names from `model` and `smoke` load TensorFlow, so they are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audiosetdl.yamnet.classmap import ABSENT_CLASSES, ClassMap, ClassMapError, load_class_map
from audiosetdl.yamnet.features import num_patches, pad_waveform, waveform_to_log_mel, waveform_to_patches
from audiosetdl.yamnet.modelfiles import ModelFiles, fetch_models, locate_models
from audiosetdl.yamnet.weightsfile import WeightsError, expected_weights, read_weights

if TYPE_CHECKING:  # pragma: no cover
    from audiosetdl.yamnet.model import Embedder, Frames, YAMNet
    from audiosetdl.yamnet.smoke import smoke_test

_LAZY = {"Embedder": "model", "Frames": "model", "YAMNet": "model", "smoke_test": "smoke"}

__all__ = [
    "ABSENT_CLASSES",
    "ClassMap",
    "ClassMapError",
    "Embedder",
    "Frames",
    "ModelFiles",
    "WeightsError",
    "YAMNet",
    "expected_weights",
    "fetch_models",
    "load_class_map",
    "locate_models",
    "num_patches",
    "pad_waveform",
    "read_weights",
    "smoke_test",
    "waveform_to_log_mel",
    "waveform_to_patches",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"audiosetdl.yamnet.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
