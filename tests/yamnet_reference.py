"""An independent float64 numpy reimplementation of the YAMNet reference, for numerics tests.

Written from the reference's description (FIELD-NOTES, "YAMNet reference"; tensorflow/models
research/audioset/yamnet) in a plainer style than `audiosetdl.yamnet`: integer padding
arithmetic, an explicit DFT matrix instead of an FFT, batch norm applied as written (not
folded into the convolutions), SAME padding computed from TensorFlow's rule, im2col
convolutions and a loop for the depthwise ones. Everything is float64; nothing here imports
TensorFlow or the package under test (the mel triangles come from the VGGish test reference,
itself independent of the package, because the reference's mel matrix is the same formula;
the tests also pass in tf.signal's float32 values of it, the constant the reference uses).
"""

from __future__ import annotations

import math

import numpy as np

from tests.vggish_reference import mel_weights

RATE = 16000
WINDOW = 400
HOP = 160
NFFT = 512
OFFSET = 0.001
PATCH = 96
PATCH_HOP = 48
FIRST_PATCH_SAMPLES = (PATCH - 1) * HOP + WINDOW  # 15600
PATCH_HOP_SAMPLES = PATCH_HOP * HOP  # 7680
EPSILON = 1e-4
# (stride, filters) of the first convolution and the 13 separable blocks
BLOCKS = [(2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
          (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]


def padded_length(n: int) -> int:
    if n <= FIRST_PATCH_SAMPLES:
        return FIRST_PATCH_SAMPLES
    return FIRST_PATCH_SAMPLES + PATCH_HOP_SAMPLES * -(-(n - FIRST_PATCH_SAMPLES) // PATCH_HOP_SAMPLES)


def log_mel(samples: np.ndarray, mel: np.ndarray | None = None) -> np.ndarray:
    """(frames, 64) float64 log-mel of 16 kHz samples, after the reference's zero padding.

    `mel` is the (257, 64) matrix; by default the formula's triangles in float64.
    """
    x = np.zeros(padded_length(len(samples)))
    x[: len(samples)] = samples
    count = 1 + (len(x) - WINDOW) // HOP
    n = np.arange(WINDOW)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / WINDOW)
    k = np.arange(NFFT // 2 + 1)
    dft = np.exp(-2j * math.pi * np.outer(n, k) / NFFT)  # (400, 257): zero padding to 512 implied
    frames = np.stack([x[i * HOP: i * HOP + WINDOW] * hann for i in range(count)])
    return np.log(np.abs(frames @ dft) @ (mel_weights() if mel is None else mel) + OFFSET)


def patches(samples: np.ndarray, mel: np.ndarray | None = None) -> np.ndarray:
    lm = log_mel(samples, mel)
    count = 1 + (len(lm) - PATCH) // PATCH_HOP
    return np.stack([lm[i * PATCH_HOP: i * PATCH_HOP + PATCH] for i in range(count)])


def pad_same(x: np.ndarray, stride: int, size: int = 3) -> np.ndarray:
    """TensorFlow SAME padding of (N, H, W, C): total max((out-1)*s + k - in, 0), the smaller half first."""
    pads = []
    for length in x.shape[1:3]:
        out = -(-length // stride)
        total = max((out - 1) * stride + size - length, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])


def conv(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Full convolution (k, k, C, K), SAME, via im2col."""
    size = kernel.shape[0]
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    padded = pad_same(x, stride, size)
    columns = np.empty((n, oh, ow, size, size, c))
    for dy in range(size):
        for dx in range(size):
            columns[:, :, :, dy, dx, :] = padded[:, dy: dy + stride * oh: stride, dx: dx + stride * ow: stride, :]
    return (columns.reshape(-1, size * size * c) @ kernel.reshape(size * size * c, -1)).reshape(n, oh, ow, -1)


def depthwise(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise 3x3 (k, k, C, 1), SAME: each channel with its own filter."""
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    padded = pad_same(x, stride)
    out = np.zeros((n, oh, ow, c))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy: dy + stride * oh: stride, dx: dx + stride * ow: stride, :] * kernel[dy, dx, :, 0]
    return out


def bn_relu(x: np.ndarray, weights: dict, layer: str) -> np.ndarray:
    beta, mean, var = (weights[f"{layer}/bn/{name}"].astype(np.float64) for name in ("beta", "moving_mean",
                                                                                     "moving_variance"))
    return np.maximum((x - mean) / np.sqrt(var + EPSILON) + beta, 0.0)


def forward(batch: np.ndarray, weights: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 96, 64) -> (embeddings (N, 1024), logits (N, 521), scores (N, 521)), float64."""
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    x = np.asarray(batch, dtype=np.float64)[..., None]
    for i, (stride, _filters) in enumerate(BLOCKS, 1):
        if i == 1:
            x = bn_relu(conv(x, w["layer1/conv/kernel"], stride), w, "layer1/conv")
            continue
        x = bn_relu(depthwise(x, w[f"layer{i}/depthwise_conv/depthwise_kernel"], stride), w, f"layer{i}/depthwise_conv")
        x = bn_relu(conv(x, w[f"layer{i}/pointwise_conv/kernel"], 1), w, f"layer{i}/pointwise_conv")
    embeddings = x.mean(axis=(1, 2))
    logits = embeddings @ w["logits/kernel"] + w["logits/bias"]
    return embeddings, logits, 1.0 / (1.0 + np.exp(-logits))
