"""The VGGish front end against the float64 reference, and the numpy and TensorFlow versions against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiosetdl.vggish import features, params
from tests import vggish_reference as reference
from tests.vggish_fixtures import audio_like_signals

LOG_MEL_ATOL = 2e-3  # the bound; the numpy front end is far inside it


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    return audio_like_signals(seconds=2.0)


def test_mel_matrix_matches_reference_loops():
    np.testing.assert_allclose(features.mel_matrix(), reference.mel_weights(), rtol=0, atol=1e-12)


def test_mel_matrix_shape_and_reference_quirks():
    mel = features.mel_matrix()
    assert mel.shape == (257, 64)
    assert np.all(mel[0] == 0.0), "the DC bin's row is zeroed"
    assert np.all(mel >= 0.0) and mel.max() <= 1.0
    # Triangles are not area-normalised: every band peaks close to 1 ...
    assert np.all(mel.max(axis=0) > 0.5)
    # ... and nothing lands above 7500 Hz (bin 240 is exactly 7500 Hz: 240 * 8000 / 256).
    assert np.all(mel[241:] == 0.0)
    assert not mel.flags.writeable


def test_window_is_periodic_hann():
    window = features.periodic_hann()
    assert window.shape == (400,)
    assert window[0] == 0.0 and window[200] == pytest.approx(1.0)
    assert window[1] == pytest.approx(window[399])  # periodic: symmetric about n = 200, not 199.5


@given(st.integers(min_value=0, max_value=200_000))
def test_frame_counts_follow_the_no_padding_formula(num_samples: int):
    expected = max(0, 1 + math.floor((num_samples - 400) / 160))
    assert features.num_frames(num_samples) == expected
    assert features.num_examples(num_samples) == expected // 96


@pytest.mark.parametrize(
    "num_samples, frames, examples",
    [
        (0, 0, 0),
        (399, 0, 0),
        (400, 1, 1 // 96),
        (15_599, 95, 0),  # just under 0.975 s: no example at all
        (15_600, 96, 1),
        (16_000, 98, 1),
        (160_000, 998, 10),  # a 10 s AudioSet clip
    ],
)
def test_short_clips_and_tails(num_samples: int, frames: int, examples: int):
    samples = np.random.default_rng(num_samples).uniform(-0.5, 0.5, num_samples)
    assert features.waveform_to_log_mel(samples).shape == (frames, 64)
    out = features.waveform_to_examples(samples)
    assert out.shape == (examples, 96, 64)
    assert out.dtype == np.float32


def test_log_mel_matches_float64_reference(signals):
    for name, samples in signals.items():
        ours = features.waveform_to_log_mel(samples)
        theirs = reference.log_mel(samples)
        assert ours.shape == theirs.shape, name
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9, err_msg=name)


def test_examples_match_float64_reference(signals):
    for name, samples in signals.items():
        ours = features.waveform_to_examples(samples)
        theirs = reference.examples(samples)
        assert ours.shape == theirs.shape == (2, 96, 64), name
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=LOG_MEL_ATOL, err_msg=name)


def test_silence_is_log_of_the_offset():
    out = features.waveform_to_examples(np.zeros(16_000))
    np.testing.assert_allclose(out, np.float32(np.log(params.LOG_OFFSET)))


@settings(max_examples=15, deadline=None)
@given(
    num_samples=st.integers(min_value=15_600, max_value=40_000),
    amplitude=st.floats(min_value=1e-5, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_numpy_front_end_matches_reference_on_random_audio(num_samples: int, amplitude: float, seed: int):
    samples = amplitude * np.random.default_rng(seed).uniform(-1.0, 1.0, num_samples)
    np.testing.assert_allclose(
        features.waveform_to_examples(samples), reference.examples(samples), rtol=0, atol=LOG_MEL_ATOL
    )


def test_int16_is_scaled_like_the_reference_wav_reader():
    rng = np.random.default_rng(1)
    as_int16 = rng.integers(-32768, 32767, 20_000, dtype=np.int16)
    np.testing.assert_array_equal(
        features.waveform_to_examples(as_int16), features.waveform_to_examples(as_int16 / 32768.0)
    )
    with pytest.raises(TypeError, match="int16"):
        features.waveform_to_examples(as_int16.astype(np.int32))


def test_channels_are_averaged(signals):
    left, right = signals["chirp"], signals["white_noise"]
    stereo = np.stack([left, right], axis=1)  # (samples, channels), as soundfile reads
    np.testing.assert_allclose(
        features.waveform_to_examples(stereo), features.waveform_to_examples((left + right) / 2), atol=1e-6
    )


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_other_rates_are_resampled_to_16k(rate: int):
    seconds = 2.0
    tone = lambda sr: 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(int(seconds * sr)) / sr)  # noqa: E731
    resampled = features.waveform_to_examples(tone(rate), rate)
    native = features.waveform_to_examples(tone(params.SAMPLE_RATE))
    assert resampled.shape == native.shape
    # Away from the 1 kHz tone's bands, both are down at the log offset; near it they agree.
    assert np.median(np.abs(resampled - native)) < 0.05
    assert np.abs(resampled - native)[:, 5:-5, :].mean() < 0.2


# --- TensorFlow front end ------------------------------------------------------------------


def test_tf_log_mel_matches_numpy_batched(signals):
    names = list(signals)
    batch = np.stack([signals[name] for name in names]).astype(np.float32)
    got = features.log_mel_tf(batch).numpy()
    assert got.shape == (len(names), features.num_frames(batch.shape[1]), 64)
    assert got.dtype == np.float32
    for row, clip, name in zip(got, batch, names):
        want = reference.log_mel(clip.astype(np.float64))
        np.testing.assert_allclose(row, want, rtol=0, atol=LOG_MEL_ATOL, err_msg=name)
        np.testing.assert_allclose(row, features.waveform_to_log_mel(signals[name]), rtol=0, atol=LOG_MEL_ATOL)


def test_tf_examples_match_numpy_and_padding_only_adds_examples(signals):
    short = signals["chirp"][:20_000].astype(np.float32)  # 1 example
    long = signals["white_noise"][:32_000].astype(np.float32)  # 2 examples
    batch = np.stack([np.pad(short, (0, len(long) - len(short))), long])
    got = features.examples_tf(batch).numpy()
    assert got.shape == (2, 2, 96, 64)
    keep_short = features.num_examples(len(short))
    assert keep_short == 1
    np.testing.assert_allclose(got[0, :keep_short], features.waveform_to_examples(short), atol=LOG_MEL_ATOL)
    np.testing.assert_allclose(got[1], features.waveform_to_examples(long), atol=LOG_MEL_ATOL)


def test_tf_front_end_handles_too_short_input():
    assert features.log_mel_tf(np.zeros((3, 399), np.float32)).shape == (3, 0, 64)
    assert features.examples_tf(np.zeros((2, 15_599), np.float32)).shape == (2, 0, 96, 64)
    with pytest.raises(ValueError, match="batch"):
        features.log_mel_tf(np.zeros(16_000, np.float32))
