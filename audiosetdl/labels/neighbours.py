"""Nearest-neighbour label transfer: the training clips kept as a memory beside the networks.

A clip is pooled to one vector (the mean of its real frames, dequantized, minus the training
clips' mean, divided by their per-dimension spread, scaled to unit length); its scores are the
labels of its `k` most similar training clips (cosine similarity), weighted by
softmax(similarity / temperature). A classifier blends them with its networks' average:
`(1 - weight) * networks + weight * neighbours` (`model.Classifier`).

It errs where the networks do not (it memorises, they generalise), which is why it helps an
ensemble more than another network does. The memory is `neighbours.npz` in the model directory:
the training clips' unit vectors (float32, 11 MB for bal_train, 1 GB for unbal_train's 2 M) and their
labels (packed bits); its parameters are in `config.json`. Pooling and scoring work in blocks of clips
whose temporaries stay under BLOCK_BYTES, whatever the memory's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosetdl.vggish.postprocess import dequantize

NEIGHBOURS_FILENAME = "neighbours.npz"
BLOCK_BYTES = 1 << 30  # the largest temporary of one block of clips: bounded for unbal_train's 2M clips too


@dataclass(frozen=True)
class NeighbourParams:
    k: int
    temperature: float
    weight: float

    def __post_init__(self) -> None:
        if self.k < 1 or self.temperature <= 0 or not 0 <= self.weight <= 1:
            raise ValueError(f"neighbours need k >= 1, temperature > 0 and 0 <= weight <= 1, got k {self.k}, "
                             f"temperature {self.temperature}, weight {self.weight}")


def _rows_per_block(bytes_per_row: int) -> int:
    return max(1, BLOCK_BYTES // max(1, bytes_per_row))


def pooled(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 128) float32: each clip's mean dequantized frame over its real frames."""
    out = np.empty((len(frames), frames.shape[2]), np.float32)
    step = _rows_per_block(2 * 4 * frames.shape[1] * frames.shape[2])  # dequantized and masked copies
    for start in range(0, len(frames), step):
        weights = mask[start:start + step].astype(np.float32)[..., None]
        values = dequantize(frames[start:start + step]) * weights
        out[start:start + step] = values.sum(axis=1) / weights.sum(axis=1)
    return out


def _unit(vectors: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    standard = (vectors - centre) / spread
    return (standard / np.maximum(np.linalg.norm(standard, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class NeighbourMemory:
    params: NeighbourParams
    centre: np.ndarray  # (128,) mean pooled training clip
    spread: np.ndarray  # (128,) per-dimension standard deviation of the pooled training clips
    keys: np.ndarray  # (N, 128) float32 unit vectors of the training clips
    labels: np.ndarray  # (N, classes) uint8 multi-hot

    @classmethod
    def build(cls, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, params: NeighbourParams):
        """The memory of these training clips (k at most their number)."""
        params = dataclasses.replace(params, k=min(params.k, len(frames)))
        vectors = pooled(frames, mask)
        centre, spread = vectors.mean(axis=0), np.maximum(vectors.std(axis=0), 1e-6)
        return cls(params, centre, spread, _unit(vectors, centre, spread), labels.astype(np.uint8))

    def scores(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(N, classes) float32: the similarity-weighted labels of each clip's k nearest training clips."""
        queries = _unit(pooled(frames, mask), self.centre, self.spread)
        k, out = self.params.k, np.zeros((len(queries), self.labels.shape[1]), np.float32)
        step = _rows_per_block(12 * len(self.keys) + 4 * k * self.labels.shape[1])  # similarities, their order, labels
        for start in range(0, len(queries), step):
            similarity = queries[start:start + step] @ self.keys.T
            nearest = np.argpartition(similarity, -k, axis=1)[:, -k:]
            closeness = np.take_along_axis(similarity, nearest, axis=1)
            weights = np.exp((closeness - closeness.max(axis=1, keepdims=True)) / self.params.temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            out[start:start + step] = np.einsum("nk,nkc->nc", weights, self.labels[nearest].astype(np.float32))
        return out

    def save(self, directory: Path) -> Path:
        path = Path(directory) / NEIGHBOURS_FILENAME
        np.savez_compressed(path, centre=self.centre, spread=self.spread, keys=self.keys,
                            labels=np.packbits(self.labels, axis=1), classes=np.int64(self.labels.shape[1]))
        return path

    @classmethod
    def load(cls, directory: Path, params: NeighbourParams) -> "NeighbourMemory":
        with np.load(Path(directory) / NEIGHBOURS_FILENAME) as stored:
            labels = np.unpackbits(stored["labels"], axis=1, count=int(stored["classes"]))
            return cls(params, stored["centre"], stored["spread"], stored["keys"], labels)
