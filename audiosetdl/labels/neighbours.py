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

A second memory works the same way on other vectors: the `feature` network's pooled hidden vector of
each clip (`model.learned_vectors`, 1024 numbers), standardised, projected on its `dims` principal
axes (of the training clips) and scaled to unit length: `learned_neighbours.npz`. Clips close in
what the network learned share labels more often than clips close in mean frame, so alone it is as
good as the network itself, and blended it still errs differently from the network's own classifier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosetdl.vggish.postprocess import dequantize

NEIGHBOURS_FILENAME = "neighbours.npz"
LEARNED_NEIGHBOURS_FILENAME = "learned_neighbours.npz"
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


def _unit(vectors: np.ndarray, centre: np.ndarray, spread: np.ndarray,
          projection: np.ndarray | None = None) -> np.ndarray:
    standard = (vectors - centre) / spread
    if projection is not None:
        standard = standard @ projection
    return (standard / np.maximum(np.linalg.norm(standard, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def principal_axes(vectors: np.ndarray, centre: np.ndarray, spread: np.ndarray, dims: int) -> np.ndarray:
    """(D, dims) float32: the `dims` leading principal axes of the standardised vectors (N, D), from
    their covariance summed in blocks (N may be millions), largest variance first."""
    covariance = np.zeros((vectors.shape[1], vectors.shape[1]), np.float64)
    step = _rows_per_block(16 * vectors.shape[1])
    for start in range(0, len(vectors), step):
        block = (vectors[start:start + step].astype(np.float64) - centre) / spread
        covariance += block.T @ block
    vectors_by_variance = np.linalg.eigh(covariance)[1][:, ::-1]
    return np.ascontiguousarray(vectors_by_variance[:, :dims], dtype=np.float32)


def _units(vectors: np.ndarray, centre: np.ndarray, spread: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """`_unit` of many vectors, a block at a time (its temporaries bounded like the rest)."""
    out = np.empty((len(vectors), vectors.shape[1] if projection is None else projection.shape[1]), np.float32)
    step = _rows_per_block(12 * vectors.shape[1])
    for start in range(0, len(vectors), step):
        out[start:start + step] = _unit(vectors[start:start + step], centre, spread, projection)
    return out


@dataclass(frozen=True, eq=False)
class NeighbourMemory:
    params: NeighbourParams
    centre: np.ndarray  # (D,) mean pooled training clip
    spread: np.ndarray  # (D,) per-dimension standard deviation of the pooled training clips
    keys: np.ndarray  # (N, D or dims) float32 unit vectors of the training clips
    labels: np.ndarray  # (N, classes) uint8 multi-hot
    projection: np.ndarray | None = None  # (D, dims) principal axes, or None: keys in all D dimensions

    @classmethod
    def build(cls, frames: np.ndarray, mask: np.ndarray, labels: np.ndarray, params: NeighbourParams):
        """The memory of these training clips' mean frames (k at most their number)."""
        return cls.from_vectors(pooled(frames, mask), labels, params)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, labels: np.ndarray, params: NeighbourParams, dims: int = 0):
        """The memory of training clips given as vectors (N, D); `dims` (0 < dims < D) keeps only
        their leading principal axes."""
        params = dataclasses.replace(params, k=min(params.k, len(vectors)))
        centre, spread = vectors.mean(axis=0), np.maximum(vectors.std(axis=0), 1e-6)
        projection = principal_axes(vectors, centre, spread, dims) if 0 < dims < vectors.shape[1] else None
        return cls(params, centre, spread, _units(vectors, centre, spread, projection), labels.astype(np.uint8),
                   projection)

    def scores(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(N, classes) float32: the similarity-weighted labels of each clip's k nearest training clips."""
        return self.vector_scores(pooled(frames, mask))

    def vector_scores(self, vectors: np.ndarray) -> np.ndarray:
        """`scores` of clips given as the vectors the memory was built from."""
        queries = _units(vectors, self.centre, self.spread, self.projection)
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

    def save(self, directory: Path, filename: str = NEIGHBOURS_FILENAME) -> Path:
        path = Path(directory) / filename
        extra = {} if self.projection is None else {"projection": self.projection}
        np.savez_compressed(path, centre=self.centre, spread=self.spread, keys=self.keys,
                            labels=np.packbits(self.labels, axis=1), classes=np.int64(self.labels.shape[1]), **extra)
        return path

    @classmethod
    def load(cls, directory: Path, params: NeighbourParams, filename: str = NEIGHBOURS_FILENAME) -> "NeighbourMemory":
        with np.load(Path(directory) / filename) as stored:
            labels = np.unpackbits(stored["labels"], axis=1, count=int(stored["classes"]))
            projection = stored["projection"] if "projection" in stored.files else None
            return cls(params, stored["centre"], stored["spread"], stored["keys"], labels, projection)
