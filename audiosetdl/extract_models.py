"""The embedding models as the extract pipeline sees them: features, batched model, records.

Owns one adapter per `--model` (`vggish`, `yamnet`), the only model-specific code of
`audiosetdl.extract`. An adapter turns a clip's samples into model inputs (run in the decode
threads), a batch of inputs into one 2-D array of per-input outputs (rows stay aligned with
inputs, so batches can span clips), and a clip's rows into the record its TFRecord schema
holds:

    vggish  (N, 96, 64) examples -> uint8 (N, 128) released bytes -> tfrecords.EmbeddingRecord
    yamnet  (N, 96, 64) patches  -> float32 (N, 1024 + 521) embedding | scores
                                 -> yamnet_tfrecords.YAMNetRecord (float32 or float16)

Models are loaded once per process (a local run extracts task after task).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from audiosetdl import precision as precisions
from audiosetdl.config import ExtractOptions
from audiosetdl.vggish import params as vggish_params
from audiosetdl.yamnet import params as yamnet_params


class VGGishAdapter:
    name = "vggish"
    width = 128
    dtype = np.uint8
    too_short = "clip shorter than one 0.96 s VGGish example"

    @staticmethod
    def signature(options: ExtractOptions) -> str:
        """What, besides its clips, a key's output depends on (part of its marker's fingerprint)."""
        return precisions.signature(options.precision)

    def __init__(self, embedder, options: ExtractOptions):
        self.embedder, self.options = embedder, options

    @staticmethod
    def features(samples: np.ndarray) -> np.ndarray:
        from audiosetdl.vggish.features import waveform_to_examples

        return waveform_to_examples(samples)

    # Streaming (long files, `audiosetdl.chunks`): example i covers samples [i * hop, i * hop + window).
    hop_samples = vggish_params.EXAMPLE_HOP_FRAMES * vggish_params.STFT_HOP_SAMPLES  # 15360: no overlap
    window_samples = ((vggish_params.EXAMPLE_FRAMES - 1) * vggish_params.STFT_HOP_SAMPLES
                      + vggish_params.STFT_WINDOW_SAMPLES)  # 15600

    @staticmethod
    def window_features(samples: np.ndarray) -> np.ndarray:
        """Inputs of the whole windows in `samples` (which start at a multiple of `hop_samples`)."""
        return VGGishAdapter.features(samples)

    @staticmethod
    def tail_features(samples: np.ndarray, consumed: int, total: int) -> np.ndarray:
        """Inputs of the last samples of a file of `total` samples (`consumed` already framed): whole ones only."""
        if len(samples) < VGGishAdapter.window_samples:  # none (the usual end of a file): skip its log-mel
            return np.zeros((0, vggish_params.EXAMPLE_FRAMES, vggish_params.NUM_MEL_BINS), np.float32)
        return VGGishAdapter.features(samples)

    def run(self, examples: np.ndarray) -> np.ndarray:
        return self.embedder.postprocess(self.embedder.embed(examples))

    def record(self, video_id: str, start: float, end: float, labels, rows: np.ndarray):
        from audiosetdl import tfrecords

        return tfrecords.EmbeddingRecord(video_id, start, end, tuple(labels), rows)

    def write(self, path: Path, records: list) -> int:
        from audiosetdl import tfrecords

        return tfrecords.write(path, records, include_id=self.options.yt8m_id)


class YAMNetAdapter:
    name = "yamnet"
    too_short = "clip gave no YAMNet patch"  # never happens: the reference pads every clip
    dtype = np.float32

    def __init__(self, embedder, options: ExtractOptions):
        from audiosetdl.yamnet import params

        self.embedder, self.options = embedder, options
        self.embedding_size = params.EMBEDDING_SIZE
        self.width = params.EMBEDDING_SIZE + params.NUM_CLASSES

    @staticmethod
    def signature(options: ExtractOptions) -> str:
        return " ".join(filter(None, [f"yamnet {options.yamnet_dtype}", precisions.signature(options.precision)]))

    @staticmethod
    def features(samples: np.ndarray) -> np.ndarray:
        from audiosetdl.yamnet.features import waveform_to_patches

        return waveform_to_patches(samples)

    hop_samples = yamnet_params.PATCH_HOP_SAMPLES  # 7680 (0.48 s): patches overlap by half
    window_samples = yamnet_params.MIN_SAMPLES  # 15600 (0.975 s)

    @staticmethod
    def window_features(samples: np.ndarray) -> np.ndarray:
        from audiosetdl.yamnet.features import log_mel, log_mel_to_patches

        return np.ascontiguousarray(log_mel_to_patches(log_mel(np.asarray(samples, np.float64))), dtype=np.float32)

    @staticmethod
    def tail_features(samples: np.ndarray, consumed: int, total: int) -> np.ndarray:
        """The last patches: the reference pads the whole file (`padded_length(total)`), so the tail is padded
        to what is left of that length."""
        from audiosetdl.yamnet.features import padded_length

        rest = padded_length(total) - consumed
        if rest < YAMNetAdapter.window_samples:
            return np.zeros((0, 96, 64), np.float32)
        padded = np.zeros(rest, np.float64)
        padded[: len(samples)] = samples
        return YAMNetAdapter.window_features(padded)

    def run(self, patches: np.ndarray) -> np.ndarray:
        embeddings, scores = self.embedder.embed(patches)
        return np.concatenate([embeddings, scores], axis=1)

    def record(self, video_id: str, start: float, end: float, labels, rows: np.ndarray):
        from audiosetdl.yamnet_tfrecords import DTYPES, YAMNetRecord

        rows = rows.astype(DTYPES[self.options.yamnet_dtype])
        return YAMNetRecord(video_id, start, end, tuple(labels), rows[:, : self.embedding_size],
                            rows[:, self.embedding_size:])

    def write(self, path: Path, records: list) -> int:
        from audiosetdl import yamnet_tfrecords

        return yamnet_tfrecords.write(path, records, include_id=self.options.yt8m_id)


ADAPTERS = {adapter.name: adapter for adapter in (VGGishAdapter, YAMNetAdapter)}


def _locate_vggish(models: str | None):
    from audiosetdl.vggish.modelfiles import locate_models

    return locate_models(models)


def _locate_yamnet(models: str | None):
    from audiosetdl.yamnet.modelfiles import locate_models

    return locate_models(models)


# Each model's file check, by name: `locate(models_dir)` returns its files or raises a FileNotFoundError
# that says how to get them. It runs before TensorFlow is imported, so a missing file answers at once.
MODEL_FILES: dict[str, Callable[[str | None], object]] = {"vggish": _locate_vggish, "yamnet": _locate_yamnet}


def check_model_files(options: ExtractOptions, model: str | None = None):
    """The chosen model's files (`model`, else `options.model`) in `options.models`; its error if one is missing."""
    return MODEL_FILES[model or options.model](options.models)


def make_adapter(options: ExtractOptions, embedder=None):
    """The adapter of `options.model` around `embedder`, or around the model these options load
    (its files checked first, before TensorFlow is imported)."""
    if embedder is None:
        check_model_files(options)
    return ADAPTERS[options.model](embedder or _embedder(options.model, options.models, options.batch_size,
                                                         options.device, options.precision), options)


@functools.lru_cache(maxsize=1)
def _embedder(model: str, models: str | None, batch_size: int, device: str | None, precision: str):
    if model == "yamnet":
        from audiosetdl.yamnet.model import Embedder
    else:
        from audiosetdl.vggish.model import Embedder
    return Embedder.from_models_dir(models, batch_size=batch_size, device=device, precision=precision)
