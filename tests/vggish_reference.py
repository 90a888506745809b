"""An independent float64 numpy reimplementation of the VGGish reference, for numerics tests.

Written from the reference's description (FIELD-NOTES, "VGGish reference"), deliberately in
a different, plainer style than `audiosetdl.vggish` (explicit loops over bands and frames,
im2col convolutions, padded max pools), so a shared mistake is unlikely. Everything is
float64; nothing here imports TensorFlow or the package under test.
"""

from __future__ import annotations

import math

import numpy as np

RATE = 16000
WINDOW = 400
HOP = 160
NFFT = 512
BANDS = 64
LOW_HZ = 125.0
HIGH_HZ = 7500.0
OFFSET = 0.01
EXAMPLE = 96

CONV_LAYERS = ("conv1", "conv2", "conv3/conv3_1", "conv3/conv3_2", "conv4/conv4_1", "conv4/conv4_2")
POOL_AFTER = ("conv1", "conv2", "conv3/conv3_2", "conv4/conv4_2")
FC_LAYERS = ("fc1/fc1_1", "fc1/fc1_2")


def mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_weights() -> np.ndarray:
    """(257, 64): triangle k rises from edge k to edge k+1 and falls to edge k+2, in mel."""
    bins = NFFT // 2 + 1
    bin_mel = mel(np.linspace(0.0, RATE / 2, bins))
    edges = np.linspace(mel(LOW_HZ), mel(HIGH_HZ), BANDS + 2)
    weights = np.zeros((bins, BANDS))
    for band in range(BANDS):
        lo, mid, hi = edges[band], edges[band + 1], edges[band + 2]
        for b in range(bins):
            m = bin_mel[b]
            up = (m - lo) / (mid - lo)
            down = (hi - m) / (hi - mid)
            weights[b, band] = max(0.0, min(up, down))
    weights[0, :] = 0.0
    return weights


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel of 16 kHz float samples."""
    x = np.asarray(samples, dtype=np.float64)
    count = 0 if len(x) < WINDOW else 1 + math.floor((len(x) - WINDOW) / HOP)
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / WINDOW) for n in range(WINDOW)])
    spectra = np.zeros((count, NFFT // 2 + 1))
    for i in range(count):
        padded = np.zeros(NFFT)
        padded[:WINDOW] = x[i * HOP : i * HOP + WINDOW] * hann
        spectra[i] = np.abs(np.fft.fft(padded)[: NFFT // 2 + 1])
    return np.log(spectra @ mel_weights() + OFFSET)


def examples(samples: np.ndarray) -> np.ndarray:
    """(N, 96, 64) float64 examples; the incomplete tail is dropped."""
    lm = log_mel(samples)
    n = len(lm) // EXAMPLE
    return np.stack([lm[i * EXAMPLE : (i + 1) * EXAMPLE] for i in range(n)]) if n else np.zeros((0, EXAMPLE, BANDS))


def conv3x3_same_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x (N, H, W, C), kernel (3, 3, C, K): stride 1, zero padding 1, then ReLU."""
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2, w + 2, c))
    padded[:, 1:-1, 1:-1, :] = x
    patches = np.empty((n, h, w, 3, 3, c))
    for dy in range(3):
        for dx in range(3):
            patches[:, :, :, dy, dx, :] = padded[:, dy : dy + h, dx : dx + w, :]
    out = patches.reshape(n * h * w, 9 * c) @ kernel.reshape(9 * c, -1) + bias
    return np.maximum(out, 0.0).reshape(n, h, w, -1)


def maxpool2x2_same(x: np.ndarray) -> np.ndarray:
    """2x2 windows, stride 2; SAME padding adds a -inf row/column at the end when odd."""
    n, h, w, c = x.shape
    oh, ow = -(-h // 2), -(-w // 2)
    padded = np.full((n, oh * 2, ow * 2, c), -np.inf)
    padded[:, :h, :w, :] = x
    return padded.reshape(n, oh, 2, ow, 2, c).max(axis=(2, 4))


def embed(batch: np.ndarray, weights: dict[str, np.ndarray], *, activations: dict | None = None) -> np.ndarray:
    """(N, 96, 64) -> (N, 128) float64 with checkpoint-named weights (`vggish/<layer>/weights`)."""
    x = np.asarray(batch, dtype=np.float64)[..., None]
    for layer in CONV_LAYERS:
        x = conv3x3_same_relu(x, weights[f"vggish/{layer}/weights"].astype(np.float64), weights[f"vggish/{layer}/biases"])
        if layer in POOL_AFTER:
            x = maxpool2x2_same(x)
        if activations is not None:
            activations[layer] = x.shape
    x = x.reshape(len(x), -1)  # (h, w, c) order, as the reference's flatten
    for layer in FC_LAYERS:
        x = np.maximum(x @ weights[f"vggish/{layer}/weights"].astype(np.float64) + weights[f"vggish/{layer}/biases"], 0.0)
    return x @ weights["vggish/fc2/weights"].astype(np.float64) + weights["vggish/fc2/biases"]


def postprocess(embeddings: np.ndarray, eigen_vectors: np.ndarray, means: np.ndarray) -> np.ndarray:
    """PCA, clip to [-2, 2], scale to [0, 255], truncate to uint8: the released bytes."""
    out = np.empty(embeddings.shape, dtype=np.uint8)
    for i, row in enumerate(np.asarray(embeddings, dtype=np.float64)):
        projected = eigen_vectors @ (row - means[:, 0])
        for j, value in enumerate(projected):
            value = min(2.0, max(-2.0, value))
            out[i, j] = int(math.floor((value + 2.0) * 255.0 / 4.0))
    return out
