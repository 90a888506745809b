"""YAMNet front end: waveform -> padded waveform -> log-mel spectrogram -> 0.96 s patches every 0.48 s.

Owns the reference computation (tensorflow/models research/audioset/yamnet, `features.py`:
`pad_waveform` and `waveform_to_log_mel_spectrogram_patches`), in numpy, float64 inside and
float32 out:

1. Padding: zeros at the end up to 15,600 samples (0.975 s, the first patch), then up to a
   whole number of 7,680-sample hops beyond that; the hop count is rounded up in float32 as
   the reference does. A clip of N samples therefore gives 1 + ceil(max(0, N - 15600) / 7680)
   patches: one for anything up to 0.975 s (even an empty clip), two for 1 s, 20 for 10 s.
2. STFT: frames of 400 samples every 160, no centring; periodic Hann; |rfft(512)|, as
   `tf.signal.stft` computes it. These are exactly VGGish's frames, so the code is VGGish's
   (`audiosetdl.vggish.features.stft_magnitude`).
3. Mel: the reference's own matrix, `tf.signal.linear_to_mel_weight_matrix(64, 257, 16000,
   125, 7500)`, taken once from TensorFlow (its float32 values, exactly) and applied in
   float64. Its formula is the HTK one of VGGish's numpy matrix (1127 ln(1 + f/700), 66 edges
   evenly spaced in mel, triangles in mel space, no normalisation, DC row zero), but
   TensorFlow evaluates it in float32: weights near a triangle's foot differ from the float64
   formula by up to 8e-6, which moves log-mel values by up to about 1e-4. Using the
   reference's values removes that difference; what remains is the reference's float32
   arithmetic (STFT, matmul), which this float64 front end does not repeat.
4. log(mel + 0.001); patches of 96 frames every 48, complete ones only.

Input conventions are VGGish's (`vggish.features.to_mono_16k`): int16 scaled by 1/32768,
(samples, channels) averaged, other rates resampled with soxr.
"""

from __future__ import annotations

import functools

import numpy as np

from audiosetdl.tfenv import import_tensorflow
from audiosetdl.vggish.features import frame, stft_magnitude, to_mono_16k
from audiosetdl.yamnet import params


@functools.lru_cache(maxsize=1)
def _mel_matrix_cached() -> np.ndarray:
    tf = import_tensorflow()

    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=params.NUM_MEL_BINS, num_spectrogram_bins=params.NUM_SPECTROGRAM_BINS,
        sample_rate=float(params.SAMPLE_RATE), lower_edge_hertz=params.MEL_MIN_HZ,
        upper_edge_hertz=params.MEL_MAX_HZ).numpy().astype(np.float64)
    weights.setflags(write=False)
    return weights


def mel_matrix() -> np.ndarray:
    """(257, 64) weights taking |FFT| bins to mel bands: tf.signal's float32 matrix, as float64 (read-only)."""
    return _mel_matrix_cached()


def padded_length(num_samples: int) -> int:
    """The length the reference pads a clip of `num_samples` samples to (zeros at the end)."""
    length = max(int(num_samples), params.MIN_SAMPLES)
    after_first = length - params.MIN_SAMPLES
    # tf.math.ceil(float32(after_first) / float32(hop)), as `pad_waveform` computes it.
    hops = int(np.ceil(np.float32(after_first) / np.float32(params.PATCH_HOP_SAMPLES)))
    return params.MIN_SAMPLES + hops * params.PATCH_HOP_SAMPLES


def num_patches(num_samples: int) -> int:
    """How many 96-frame patches a clip of `num_samples` 16 kHz samples gives (at least 1)."""
    return 1 + (padded_length(num_samples) - params.MIN_SAMPLES) // params.PATCH_HOP_SAMPLES


def patch_start_seconds(count: int) -> np.ndarray:
    """Where each of `count` patches starts in its clip: 0, 0.48, 0.96, ... seconds."""
    return np.arange(count) * (params.PATCH_HOP_SAMPLES / params.SAMPLE_RATE)


def pad_waveform(samples: np.ndarray) -> np.ndarray:
    """Mono samples with the reference's zero padding appended (float64)."""
    samples = np.asarray(samples, dtype=np.float64)
    out = np.zeros(padded_length(len(samples)), dtype=np.float64)
    out[: len(samples)] = samples
    return out


def log_mel(padded: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram (frames, 64), float64, of already padded 16 kHz mono samples."""
    return np.log(stft_magnitude(padded) @ mel_matrix() + params.LOG_OFFSET)


def waveform_to_log_mel(samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> np.ndarray:
    """The reference's `log_mel_spectrogram` output of one clip (padded first): float64 (frames, 64)."""
    return log_mel(pad_waveform(to_mono_16k(samples, sample_rate)))


def log_mel_to_patches(spectrogram: np.ndarray) -> np.ndarray:
    """(frames, 64) -> (N, 96, 64) patches every 48 frames, complete ones only (a view)."""
    return frame(spectrogram, params.PATCH_FRAMES, params.PATCH_HOP_FRAMES)


def waveform_to_patches(samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> np.ndarray:
    """YAMNet input patches of one clip: float32 (N, 96, 64), N = `num_patches(len at 16 kHz)`."""
    patches = log_mel_to_patches(waveform_to_log_mel(samples, sample_rate))
    return np.ascontiguousarray(patches, dtype=np.float32)
