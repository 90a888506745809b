"""VGGish postprocessing as released with AudioSet: PCA, clip, 8-bit quantization; and back.

Owns the PCA parameters file (`vggish_pca_params.npz`: `pca_eigen_vectors` 128x128,
`pca_means` 128x1) and the exact byte recipe of the released embeddings:

    projected = (E @ (x.T - means)).T         in float64, like the reference
    clipped   = clip(projected, -2, 2)
    bytes     = uint8((clipped + 2) * 255 / 4)   truncation, not rounding

`dequantize` maps bytes back the way YouTube-8M's starter code does
(`x * 4/255 + 4/512 - 2`), which lands near the middle of each truncation bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosetdl.vggish import params

_QUANTIZE_RANGE = params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL


class PCAParamsError(ValueError):
    """The PCA parameters file is missing, unreadable, or has the wrong keys or shapes."""


@dataclass(frozen=True, eq=False)
class PCAParams:
    eigen_vectors: np.ndarray  # (128, 128) float64, rows are components
    means: np.ndarray  # (128, 1) float64

    def __post_init__(self) -> None:
        size = params.EMBEDDING_SIZE
        checks = (
            (params.PCA_EIGEN_VECTORS_NAME, self.eigen_vectors, (size, size)),
            (params.PCA_MEANS_NAME, self.means, (size, 1)),
        )
        for name, array, shape in checks:
            if np.shape(array) != shape:
                raise PCAParamsError(f"{name} has shape {np.shape(array)}, expected {shape}")
        object.__setattr__(self, "eigen_vectors", np.asarray(self.eigen_vectors, dtype=np.float64))
        object.__setattr__(self, "means", np.asarray(self.means, dtype=np.float64))

    @classmethod
    def load(cls, path: str | Path) -> "PCAParams":
        path = Path(path)
        try:
            npz = np.load(path)
        except (OSError, ValueError) as exc:
            raise PCAParamsError(f"{path}: not a readable PCA parameters file ({exc})") from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise PCAParamsError(f"{path}: not an .npz archive")
        with npz:
            missing = {params.PCA_EIGEN_VECTORS_NAME, params.PCA_MEANS_NAME} - set(npz.files)
            if missing:
                raise PCAParamsError(f"{path}: missing {sorted(missing)} (has {sorted(npz.files)})")
            try:
                return cls(npz[params.PCA_EIGEN_VECTORS_NAME], npz[params.PCA_MEANS_NAME])
            except PCAParamsError as exc:
                raise PCAParamsError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        np.savez(path, **{params.PCA_EIGEN_VECTORS_NAME: self.eigen_vectors, params.PCA_MEANS_NAME: self.means})


def pca_project(embeddings: np.ndarray, pca: PCAParams) -> np.ndarray:
    """(N, 128) embeddings -> (N, 128) float64 PCA coordinates: (E @ (x.T - means)).T."""
    x = _as_embeddings(embeddings).astype(np.float64)
    return (pca.eigen_vectors @ (x.T - pca.means)).T


def quantize(values: np.ndarray) -> np.ndarray:
    """Clip to [-2, 2] and map onto 0..255 by truncation: the released AudioSet bytes."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL)
    return ((clipped - params.QUANTIZE_MIN_VAL) * (255.0 / _QUANTIZE_RANGE)).astype(np.uint8)


def postprocess(embeddings: np.ndarray, pca: PCAParams) -> np.ndarray:
    """Raw (N, 128) embeddings -> uint8 (N, 128), exactly as the released AudioSet features."""
    return quantize(pca_project(embeddings, pca))


def dequantize(quantized: np.ndarray) -> np.ndarray:
    """uint8 bytes -> float32 the YouTube-8M way: x * 4/255 + 4/512 - 2."""
    scale = _QUANTIZE_RANGE / 255.0
    bias = _QUANTIZE_RANGE / 512.0 + params.QUANTIZE_MIN_VAL
    return (np.asarray(quantized, dtype=np.float32) * np.float32(scale) + np.float32(bias)).astype(np.float32)


def _as_embeddings(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] != params.EMBEDDING_SIZE:
        raise ValueError(f"expected embeddings of shape (N, {params.EMBEDDING_SIZE}), got {x.shape}")
    return x
