"""The YAMNet front end: padding and patch counts, log-mel and patches against the float64
reference, and the pieces the reference takes from tf.signal against tf.signal itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiosetdl.yamnet import features, params
from tests import yamnet_reference as reference
from tests.vggish_fixtures import audio_like_signals


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    """Six 2.3 s signals (not a whole number of hops: the last patch holds padding)."""
    return audio_like_signals(seconds=2.3)


# --- padding at the edges ------------------------------------------------------------------

# 0.975 s = 15,600 samples is the first patch (96 frames of 400 samples every 160). Beyond it
# the reference pads up to whole 0.48 s (7,680-sample) hops: 1 s = 16,000 samples is 400
# past the first patch, one more hop, 2 patches; 10 s is 144,400 past it, ceil(18.8) = 19
# more hops, 20 patches (VGGish, which does not pad, gives 10 examples; unpadded 50% overlap
# would give 19).
@pytest.mark.parametrize("seconds, samples, padded, patches", [
    (0.0, 0, 15_600, 1),
    (0.5, 8_000, 15_600, 1),
    (0.975, 15_600, 15_600, 1),
    (1.0, 16_000, 23_280, 2),
    (1.455, 23_280, 23_280, 2),  # exactly one hop past the first patch
    (10.0, 160_000, 161_520, 20),
])
def test_padding_gives_the_reference_patch_counts(seconds, samples, padded, patches):
    assert round(seconds * params.SAMPLE_RATE) == samples
    assert features.padded_length(samples) == padded == reference.padded_length(samples)
    assert features.num_patches(samples) == patches
    clip = 0.1 * np.sin(np.arange(samples) / 7.0)
    assert features.waveform_to_patches(clip).shape == (patches, 96, 64)
    assert len(reference.patches(clip)) == patches


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2_000_000))
def test_padding_rule_matches_integer_arithmetic(num_samples: int):
    """The reference's float32 ceil agrees with exact integers at any AudioSet length (<= 2 min)."""
    assert features.padded_length(num_samples) == reference.padded_length(num_samples)
    padded = features.padded_length(num_samples)
    assert padded >= num_samples and padded - max(num_samples, 15_600) < 7_680


def test_pad_waveform_appends_zeros_only():
    clip = np.arange(1, 16_001, dtype=np.float64)
    padded = features.pad_waveform(clip)
    assert len(padded) == 23_280
    np.testing.assert_array_equal(padded[:16_000], clip)
    assert not padded[16_000:].any()


def test_patch_starts_every_0_48_s():
    np.testing.assert_allclose(features.patch_start_seconds(4), [0.0, 0.48, 0.96, 1.44])


# --- numerics against the float64 reference -----------------------------------------------


@pytest.fixture(scope="module")
def tf_mel() -> np.ndarray:
    """tf.signal's float32 mel matrix, the constant the reference multiplies by."""
    import tensorflow as tf

    return tf.signal.linear_to_mel_weight_matrix(64, 257, 16000.0, 125.0, 7500.0).numpy().astype(np.float64)


def test_log_mel_matches_reference(signals, tf_mel):
    for name, clip in signals.items():
        ours = features.waveform_to_log_mel(clip)
        assert ours.shape == (1 + (features.padded_length(len(clip)) - 400) // 160, 64), name
        np.testing.assert_allclose(ours, reference.log_mel(clip, tf_mel), rtol=0, atol=1e-9, err_msg=name)
        # With the formula's float64 triangles instead of TensorFlow's float32 ones: ~1e-4 apart.
        np.testing.assert_allclose(ours, reference.log_mel(clip), rtol=0, atol=2e-4, err_msg=name)


def test_patches_match_reference_and_overlap_by_half(signals, tf_mel):
    for name, clip in signals.items():
        ours = features.waveform_to_patches(clip)
        theirs = reference.patches(clip, tf_mel)
        assert ours.dtype == np.float32 and ours.shape == theirs.shape == (features.num_patches(len(clip)), 96, 64)
        # float32 out of float64: within one rounding of the reference
        np.testing.assert_allclose(ours, theirs, rtol=2 ** -23, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(ours[1:, :48], ours[:-1, 48:])


def test_silence_and_padding_are_log_of_the_offset():
    patches = features.waveform_to_patches(np.zeros(8_000))
    assert np.all(patches == np.float32(np.log(0.001)))


def test_inputs_like_vggish_int16_and_stereo(signals):
    clip = signals["chirp"]
    as_int16 = np.round(clip * 32767).astype(np.int16)
    np.testing.assert_allclose(features.waveform_to_patches(as_int16), features.waveform_to_patches(as_int16 / 32768.0))
    stereo = np.stack([clip, clip], axis=1)
    np.testing.assert_array_equal(features.waveform_to_patches(stereo), features.waveform_to_patches(clip))


# --- the reference's tf.signal pieces ------------------------------------------------------


def test_mel_matrix_is_tf_signals_and_the_htk_formula(tf_mel):
    import tensorflow as tf

    from audiosetdl.vggish.features import mel_matrix as vggish_mel

    ours = features.mel_matrix()
    np.testing.assert_array_equal(ours, tf_mel)  # the reference's constant, bit for bit
    assert not ours.flags.writeable
    # The same formula as VGGish's numpy matrix: equal when TensorFlow evaluates it in float64,
    # and within float32's rounding (amplified near the triangles' feet) as the reference has it.
    exact = tf.signal.linear_to_mel_weight_matrix(64, 257, 16000.0, 125.0, 7500.0, dtype=tf.float64).numpy()
    np.testing.assert_allclose(vggish_mel(), exact, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5)


def test_stft_magnitude_is_tf_signal_stft(signals):
    import tensorflow as tf

    from audiosetdl.vggish.features import stft_magnitude

    clip = features.pad_waveform(signals["white_noise"])
    theirs = tf.abs(tf.signal.stft(tf.constant(clip, tf.float64), frame_length=400, frame_step=160,
                                   fft_length=512)).numpy()  # periodic Hann by default, as the reference notes
    np.testing.assert_allclose(stft_magnitude(clip), theirs, rtol=0, atol=1e-9)
