"""Every constant of YAMNet, as Google's reference (tensorflow/models research/audioset/yamnet) has it.

The one place for them: the front end (`features`), the network (`model`), the weights file
(`weightsfile`), the class map (`classmap`), the model files (`modelfiles`) and the smoke test
read them from here. Sample counts derived from the reference's seconds are spelled out with
the reference's own rounding (see the comments), so nobody has to redo it.
"""

from __future__ import annotations

from typing import Final

# --- front end: waveform -> log-mel patches ---
SAMPLE_RATE: Final = 16_000
STFT_WINDOW_SECONDS: Final = 0.025
STFT_HOP_SECONDS: Final = 0.010
STFT_WINDOW_SAMPLES: Final = 400  # int(round(16000 * 0.025))
STFT_HOP_SAMPLES: Final = 160  # int(round(16000 * 0.010))
FFT_LENGTH: Final = 512  # 2 ** ceil(log2(400))
NUM_SPECTROGRAM_BINS: Final = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BINS: Final = 64
MEL_MIN_HZ: Final = 125.0
MEL_MAX_HZ: Final = 7500.0
LOG_OFFSET: Final = 0.001  # log(mel + 0.001); VGGish uses 0.01
PATCH_WINDOW_SECONDS: Final = 0.96
PATCH_HOP_SECONDS: Final = 0.48
PATCH_FRAMES: Final = 96  # int(round(100 * 0.96)) spectrogram frames per patch
PATCH_HOP_FRAMES: Final = 48  # int(round(100 * 0.48))

# Padding (the reference's `pad_waveform`): zeros at the end up to one patch's worth of
# samples, then up to a whole number of patch hops beyond it. The reference casts
# (0.96 + 0.025 - 0.010) * 16000 and 0.48 * 16000 to int32 (truncation); both products are
# exact in float64 (15600.0 and 7680.0). It rounds the hop count up in float32.
MIN_SAMPLES: Final = 15_600  # 0.975 s: the first patch's 96 frames of 400 samples every 160
PATCH_HOP_SAMPLES: Final = 7_680  # 0.48 s

# --- network: MobileNetV1 on (96, 64, 1) patches ---
# (layer name, kind, stride, filters), every kernel 3x3 'same' without bias, each followed by
# batch norm (center, no scale, epsilon 1e-4) and ReLU; separable layers are a depthwise 3x3
# (with its own BN + ReLU) then a pointwise 1x1 convolution.
CONV: Final = "conv"
SEPARABLE: Final = "separable"
LAYERS: Final[tuple[tuple[str, str, int, int], ...]] = (
    ("layer1", CONV, 2, 32),
    ("layer2", SEPARABLE, 1, 64),
    ("layer3", SEPARABLE, 2, 128),
    ("layer4", SEPARABLE, 1, 128),
    ("layer5", SEPARABLE, 2, 256),
    ("layer6", SEPARABLE, 1, 256),
    ("layer7", SEPARABLE, 2, 512),
    ("layer8", SEPARABLE, 1, 512),
    ("layer9", SEPARABLE, 1, 512),
    ("layer10", SEPARABLE, 1, 512),
    ("layer11", SEPARABLE, 1, 512),
    ("layer12", SEPARABLE, 1, 512),
    ("layer13", SEPARABLE, 2, 1024),
    ("layer14", SEPARABLE, 1, 1024),
)
KERNEL_SIZE: Final = 3
BATCHNORM_EPSILON: Final = 1e-4
EMBEDDING_SIZE: Final = 1024
NUM_CLASSES: Final = 521
CLASSIFIER_LAYER: Final = "logits"  # the Dense layer's name in the released yamnet.h5
NUM_PARAMETERS: Final = 3_751_369  # every weight in yamnet.h5, moving statistics included

# Patches per model call. MobileNet's activations are small, so batches of a few hundred
# patches fit anywhere; bench/extract_yamnet.py measures the rate.
DEFAULT_BATCH_SIZE: Final = 256

# Float types the YAMNet TFRecords can hold (`extract --yamnet-dtype`), the default first.
OUTPUT_DTYPES: Final = ("float32", "float16")

# --- official model files ---
WEIGHTS_FILENAME: Final = "yamnet.h5"
CLASS_MAP_FILENAME: Final = "yamnet_class_map.csv"
WEIGHTS_URL: Final = "https://storage.googleapis.com/audioset/yamnet.h5"
CLASS_MAP_URL: Final = ("https://raw.githubusercontent.com/tensorflow/models/master/research/audioset/yamnet/"
                        "yamnet_class_map.csv")

# --- smoke test (the reference's yamnet_test.py): 3 s inputs, expected class in the top 10 ---
SMOKE_SECONDS: Final = 3
SMOKE_TOP_N: Final = 10
SMOKE_SINE_HZ: Final = 440.0
SMOKE_NOISE_SEED: Final = 51773
SMOKE_EXPECTED: Final = (("zeros", "Silence"), ("uniform noise", "White noise"), ("440 Hz sine", "Sine wave"))
