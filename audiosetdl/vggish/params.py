"""Every constant of VGGish, as Google's reference (tensorflow/models research/audioset/vggish) has it.

This module is the one place for them: the front end (`features`), the network (`model`),
the postprocessing (`postprocess`), the model files (`modelfiles`) and the smoke test read
them from here. Derived sample counts are spelled out so nobody has to redo the rounding.
"""

from __future__ import annotations

from typing import Final

# --- front end: waveform -> log-mel examples ---
SAMPLE_RATE: Final = 16_000
STFT_WINDOW_SECONDS: Final = 0.025
STFT_HOP_SECONDS: Final = 0.010
STFT_WINDOW_SAMPLES: Final = 400  # round(0.025 * 16000)
STFT_HOP_SAMPLES: Final = 160  # round(0.010 * 16000)
FFT_LENGTH: Final = 512  # next power of two above the window
NUM_SPECTROGRAM_BINS: Final = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BINS: Final = 64
MEL_MIN_HZ: Final = 125.0
MEL_MAX_HZ: Final = 7500.0
MEL_BREAK_FREQUENCY_HZ: Final = 700.0  # HTK mel: 1127 ln(1 + f / 700)
MEL_HIGH_FREQUENCY_Q: Final = 1127.0
LOG_OFFSET: Final = 0.01  # log(mel + LOG_OFFSET)
EXAMPLE_FRAMES: Final = 96  # one example = 0.96 s of 10 ms frames, no overlap
EXAMPLE_HOP_FRAMES: Final = 96
EXAMPLE_SECONDS: Final = 0.96
INT16_SCALE: Final = 1.0 / 32768.0  # the reference reads 16-bit WAV as int16 / 32768

# --- network ---
EMBEDDING_SIZE: Final = 128

# Examples per model call. On a 2-core CPU throughput still rises from 64 (~85-115/s) to 256
# (~120-136/s); on a GPU larger batches only help. bench/extract.py measures it.
DEFAULT_BATCH_SIZE: Final = 256
FC1_SIZE: Final = 4096
FLATTENED_SIZE: Final = 6 * 4 * 512  # 96x64 after four 2x2 pools, times conv4's channels

# Checkpoint variable name -> shape, in the order the network applies them. The official
# `vggish_model.ckpt` holds exactly these 18 variables (72,141,184 float32 parameters).
CHECKPOINT_SCOPE: Final = "vggish"
LAYERS: Final[tuple[tuple[str, tuple[int, ...]], ...]] = (
    ("conv1", (3, 3, 1, 64)),
    ("conv2", (3, 3, 64, 128)),
    ("conv3/conv3_1", (3, 3, 128, 256)),
    ("conv3/conv3_2", (3, 3, 256, 256)),
    ("conv4/conv4_1", (3, 3, 256, 512)),
    ("conv4/conv4_2", (3, 3, 512, 512)),
    ("fc1/fc1_1", (FLATTENED_SIZE, FC1_SIZE)),
    ("fc1/fc1_2", (FC1_SIZE, FC1_SIZE)),
    ("fc2", (FC1_SIZE, EMBEDDING_SIZE)),
)
# A 2x2 stride-2 SAME max pool follows these convolution layers (conv3 and conv4 pool after
# their second convolution only).
POOL_AFTER: Final = frozenset({"conv1", "conv2", "conv3/conv3_2", "conv4/conv4_2"})
NUM_PARAMETERS: Final = 72_141_184


def checkpoint_variables() -> dict[str, tuple[int, ...]]:
    """`vggish/<layer>/weights` and `.../biases` -> expected shape, for all 18 variables."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, weight_shape in LAYERS:
        shapes[f"{CHECKPOINT_SCOPE}/{layer}/weights"] = weight_shape
        shapes[f"{CHECKPOINT_SCOPE}/{layer}/biases"] = (weight_shape[-1],)
    return shapes


# --- postprocessing (PCA, clip, 8-bit quantization) ---
PCA_EIGEN_VECTORS_NAME: Final = "pca_eigen_vectors"
PCA_MEANS_NAME: Final = "pca_means"
QUANTIZE_MIN_VAL: Final = -2.0
QUANTIZE_MAX_VAL: Final = 2.0

# --- official model files ---
MODELS_BASE_URL: Final = "https://storage.googleapis.com/audioset/"
CHECKPOINT_FILENAME: Final = "vggish_model.ckpt"
PCA_PARAMS_FILENAME: Final = "vggish_pca_params.npz"
MODELS_DIR_ENV: Final = "AUDIOSETDL_MODELS"
DEFAULT_MODELS_DIR: Final = "~/.cache/audiosetdl/models"

# --- smoke test (the reference's vggish_smoke_test.py, official checkpoint) ---
SMOKE_SECONDS: Final = 3
SMOKE_FREQUENCY_HZ: Final = 1000.0
SMOKE_EMBEDDING_MEAN: Final = 0.000657
SMOKE_EMBEDDING_STD: Final = 0.343
SMOKE_POSTPROCESSED_MEAN: Final = 126.0
SMOKE_POSTPROCESSED_STD: Final = 89.3
SMOKE_RELATIVE_TOLERANCE: Final = 0.1
