"""VGGish front end: waveform -> log-mel spectrogram -> non-overlapping 0.96 s examples.

Owns the exact reference computation (tensorflow/models research/audioset/vggish,
`mel_features.py` and `vggish_input.py`) in two implementations that agree:

* numpy (`waveform_to_examples`, `waveform_to_log_mel`, ...): computed in float64 like the
  reference, returned as float32. Needs no TensorFlow.
* TensorFlow (`log_mel_tf`, `examples_tf`): batched over clips, runs on GPU when the caller
  places it there. TensorFlow is imported only when these are first called.

The computation, constants in `params`: frames of 400 samples every 160 with no centring or
padding (n = 1 + floor((N - 400) / 160)); periodic Hann window; magnitude (not power) of a
512-point real FFT; 64 HTK-mel triangles between 125 and 7500 Hz, built in mel space with no
area normalisation and the DC bin's row zeroed; log(mel + 0.01); examples of 96 frames with
no overlap, an incomplete tail dropped (a clip shorter than about 0.975 s gives none).

Input conventions, as the reference: integer samples are scaled to [-1, 1) (int16 / 32768);
a 2-D array is (samples, channels) and is averaged to mono; any other rate is resampled to
16 kHz. The resampler is soxr (`soxr.resample`, quality "HQ"), chosen because it is a small
self-contained wheel with a bounded, documented passband; the reference used resampy, and
resamplers differ enough to move embeddings by a few percent (resampy 0.2 -> 0.3 moved the
reference's own smoke test past 10%). Feed 16 kHz audio to get reference-exact features: the
download stage produces 16 kHz clips, so this path is only for callers with other audio.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from audiosetdl.tfenv import import_tensorflow
from audiosetdl.vggish import params

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

RESAMPLER = "soxr"
RESAMPLER_QUALITY = "HQ"


# --- shared pieces -----------------------------------------------------------------------


def num_frames(num_samples: int, window: int = params.STFT_WINDOW_SAMPLES, hop: int = params.STFT_HOP_SAMPLES) -> int:
    """How many whole windows fit with no padding: 1 + floor((N - window) / hop), at least 0."""
    if num_samples < window:
        return 0
    return 1 + (num_samples - window) // hop


def num_examples(num_samples: int) -> int:
    """How many 96-frame examples a clip of `num_samples` 16 kHz samples gives."""
    return num_frames(num_frames(num_samples), params.EXAMPLE_FRAMES, params.EXAMPLE_HOP_FRAMES)


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return params.MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(hertz, dtype=np.float64) / params.MEL_BREAK_FREQUENCY_HZ)


def periodic_hann(length: int = params.STFT_WINDOW_SAMPLES) -> np.ndarray:
    """0.5 - 0.5 cos(2 pi n / length), n = 0..length-1 (periodic, not symmetric)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


@functools.lru_cache(maxsize=1)
def _mel_matrix_cached() -> np.ndarray:
    nyquist = params.SAMPLE_RATE / 2.0
    bin_mels = hertz_to_mel(np.linspace(0.0, nyquist, params.NUM_SPECTROGRAM_BINS))
    edges = np.linspace(
        hertz_to_mel(params.MEL_MIN_HZ), hertz_to_mel(params.MEL_MAX_HZ), params.NUM_MEL_BINS + 2
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # The reference zeroes the DC bin's row; with a 125 Hz lower edge it is zero anyway.
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def mel_matrix() -> np.ndarray:
    """(257, 64) float64 weights taking |FFT| bins to mel bands (a read-only array)."""
    return _mel_matrix_cached()


# --- numpy implementation ----------------------------------------------------------------


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Scale integers to [-1, 1), average channels, resample to 16 kHz; float64 (N,)."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        if samples.dtype != np.int16:
            raise TypeError(f"integer samples must be int16 (got {samples.dtype}); pass floats in [-1, 1]")
        samples = samples * params.INT16_SCALE
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise ValueError(f"expected (samples,) or (samples, channels), got shape {samples.shape}")
    if sample_rate != params.SAMPLE_RATE:
        samples = resample_to_16k(samples, sample_rate)
    return samples


def resample_to_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample mono float samples to 16 kHz with soxr (see the module docstring)."""
    try:
        import soxr
    except ImportError as exc:  # pragma: no cover - soxr is a dependency
        raise ImportError(
            f"audio at {sample_rate} Hz needs resampling to {params.SAMPLE_RATE} Hz, which needs "
            "the 'soxr' package (pip install soxr); or pass 16 kHz audio"
        ) from exc
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    return np.asarray(soxr.resample(samples, sample_rate, params.SAMPLE_RATE, quality=RESAMPLER_QUALITY), dtype=np.float64)


def frame(data: np.ndarray, window: int, hop: int) -> np.ndarray:
    """View `data` (N, ...) as (num_frames, window, ...) without copying; no padding."""
    count = num_frames(data.shape[0], window, hop)
    if count == 0:
        return np.zeros((0, window) + data.shape[1:], dtype=data.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(data, window, axis=0)[::hop][:count]
    # sliding_window_view puts the window axis last; move it next to the frame axis.
    return np.moveaxis(windows, -1, 1)


def stft_magnitude(samples: np.ndarray) -> np.ndarray:
    """|rfft(512)| of periodic-Hann-windowed 400-sample frames every 160 samples: (frames, 257)."""
    frames = frame(np.asarray(samples, dtype=np.float64), params.STFT_WINDOW_SAMPLES, params.STFT_HOP_SAMPLES)
    return np.abs(np.fft.rfft(frames * periodic_hann(), n=params.FFT_LENGTH, axis=-1))


def waveform_to_log_mel(samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram (frames, 64), float64, of one clip."""
    mono = to_mono_16k(samples, sample_rate)
    return np.log(stft_magnitude(mono) @ mel_matrix() + params.LOG_OFFSET)


def log_mel_to_examples(log_mel: np.ndarray) -> np.ndarray:
    """Cut (frames, 64) into non-overlapping (N, 96, 64) examples, dropping the incomplete tail."""
    return frame(log_mel, params.EXAMPLE_FRAMES, params.EXAMPLE_HOP_FRAMES)


def waveform_to_examples(samples: np.ndarray, sample_rate: int = params.SAMPLE_RATE) -> np.ndarray:
    """VGGish input examples of one clip: float32 (N, 96, 64), N = whole 0.96 s examples."""
    examples = log_mel_to_examples(waveform_to_log_mel(samples, sample_rate))
    return np.ascontiguousarray(examples, dtype=np.float32)


# --- TensorFlow implementation -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tf_front_end():
    tf = import_tensorflow()

    mel = tf.constant(mel_matrix(), dtype=tf.float64)
    window = tf.constant(periodic_hann(), dtype=tf.float64)

    # The FFT and mel product run in float64: in float32 the FFT's rounding noise (about 1e-7
    # of a frame's energy) reaches 1e-3 in the log of quiet bands of loud, tonal frames. The
    # front end costs well under 1% of the network, on CPU or GPU.
    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.float32)],
    )
    def log_mel(waveforms: tf.Tensor) -> tf.Tensor:
        frames = tf.signal.frame(
            tf.cast(waveforms, tf.float64), params.STFT_WINDOW_SAMPLES, params.STFT_HOP_SAMPLES, pad_end=False
        )
        spectrum = tf.abs(tf.signal.rfft(frames * window, fft_length=[params.FFT_LENGTH]))
        return tf.cast(tf.math.log(tf.tensordot(spectrum, mel, axes=1) + params.LOG_OFFSET), tf.float32)

    return log_mel


def log_mel_tf(waveforms: "tf.Tensor | np.ndarray") -> "tf.Tensor":
    """Batched log-mel: float32 (batch, samples) at 16 kHz -> float32 (batch, frames, 64).

    Clips in a batch share a length; a shorter clip padded with anything at its end gives the
    same frames as alone, plus extra ones past `num_frames(its length)` to be dropped.
    """
    tf = import_tensorflow()

    waveforms = tf.convert_to_tensor(waveforms, dtype=tf.float32)
    if waveforms.shape.rank != 2:
        raise ValueError(f"expected (batch, samples), got shape {waveforms.shape}")
    if waveforms.shape[1] is not None and waveforms.shape[1] < params.STFT_WINDOW_SAMPLES:
        return tf.zeros([tf.shape(waveforms)[0], 0, params.NUM_MEL_BINS], tf.float32)
    return _tf_front_end()(waveforms)


def examples_tf(waveforms: "tf.Tensor | np.ndarray") -> "tf.Tensor":
    """Batched examples: float32 (batch, samples) -> float32 (batch, examples, 96, 64).

    Use `num_examples(length)` to keep only a padded clip's own examples.
    """
    tf = import_tensorflow()

    log_mel = log_mel_tf(waveforms)
    if log_mel.shape[1] is not None and log_mel.shape[1] < params.EXAMPLE_FRAMES:
        return tf.zeros([tf.shape(log_mel)[0], 0, params.EXAMPLE_FRAMES, params.NUM_MEL_BINS], tf.float32)
    return tf.signal.frame(log_mel, params.EXAMPLE_FRAMES, params.EXAMPLE_HOP_FRAMES, axis=1, pad_end=False)
