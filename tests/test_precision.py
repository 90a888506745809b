"""`--precision`: exact fp32 by default (TensorFloat-32 off, on CPU and GPU alike), tf32 and bf16 on request.

Both models run on the fixtures' official-layout random weights. TensorFlow's TF32 switch is what a
GPU consults for float32 matmuls and convolutions, so the tests check the switch itself: building a
model with the default precision turns it off even when something turned it on before.
"""

from __future__ import annotations

import numpy as np
import pytest

from audiosetdl import precision
from audiosetdl.cli_parser import build_parser
from audiosetdl.config import EmbedOptions, ExtractOptions, options_from
from audiosetdl.embed import _signature
from audiosetdl.extract_models import VGGishAdapter, YAMNetAdapter
from audiosetdl.vggish import features as vggish_features
from audiosetdl.vggish.model import Embedder as VGGishEmbedder
from audiosetdl.vggish.postprocess import PCAParams
from audiosetdl.yamnet import features as yamnet_features
from audiosetdl.yamnet.model import Embedder as YAMNetEmbedder
from tests.vggish_fixtures import VGGishTestModels, audio_like_signals

tf = pytest.importorskip("tensorflow")


@pytest.fixture
def tf32_restored():
    """Leave the process's TF32 switch off (the default every other test expects) whatever a test does."""
    yield
    tf.config.experimental.enable_tensor_float_32_execution(False)


def _vggish(models: VGGishTestModels, mode: str | None = None) -> VGGishEmbedder:
    pca = PCAParams(models.eigen_vectors, models.means)
    if mode is None:
        return VGGishEmbedder.from_weights(models.weights, pca, batch_size=8, device="/CPU:0")
    return VGGishEmbedder.from_weights(models.weights, pca, batch_size=8, device="/CPU:0", precision=mode)


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    return np.concatenate([vggish_features.waveform_to_examples(x) for x in audio_like_signals(2.0).values()])


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    return np.concatenate([yamnet_features.waveform_to_patches(x) for x in audio_like_signals(1.5).values()])


@pytest.mark.parametrize("command", [["extract", "run-dir"], ["embed", "in.wav", "--out", "out"],
                                     ["label", "in.wav"], ["run", "eval.csv", "--out", "run-dir"]], ids=lambda c: c[0])
def test_fp32_is_the_default_of_every_command_that_embeds(command: list[str]):
    args = build_parser().parse_args(command)
    assert options_from(ExtractOptions, args).precision == "fp32" == ExtractOptions().precision
    forced = build_parser().parse_args(command + ["--precision", "bf16"])
    assert options_from(ExtractOptions, forced).precision == "bf16"


def test_an_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="fp32, tf32, bf16"):
        precision.check("fp16")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["extract", "run-dir", "--precision", "fp16"])


def test_building_either_model_at_fp32_turns_tensorfloat32_off(vggish_models, yamnet_weights, tf32_restored):
    for build in (lambda: _vggish(vggish_models), lambda: YAMNetEmbedder.from_weights(yamnet_weights, batch_size=8)):
        tf.config.experimental.enable_tensor_float_32_execution(True)  # as TensorFlow has it on a new process
        embedder = build()
        assert embedder.precision == "fp32"
        assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_tf32_turns_it_on_and_computes_fp32_on_a_cpu(vggish_models, examples, tf32_restored):
    exact = _vggish(vggish_models).embed(examples)
    allowed = _vggish(vggish_models, "tf32")
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    if not tf.config.list_physical_devices("GPU"):  # TF32 is a GPU's arithmetic: a CPU ignores the switch
        np.testing.assert_array_equal(allowed.embed(examples), exact)


def test_bf16_vggish_runs_in_bfloat16_and_returns_float32_close_to_fp32(vggish_models, examples):
    exact = _vggish(vggish_models).embed(examples)
    half = _vggish(vggish_models, "bf16")
    assert {v.dtype for v in half.model.variables} == {tf.bfloat16}
    got = half.embed(examples)
    assert got.dtype == np.float32 and got.shape == exact.shape
    difference = np.abs(got - exact).max() / np.abs(exact).max()
    assert 0 < difference < 0.05  # bfloat16 really ran (an 8-bit mantissa differs), and stayed close
    bytes_exact, bytes_half = half.postprocess(exact), half.postprocess(got)
    assert np.abs(bytes_exact.astype(int) - bytes_half.astype(int)).max() <= 16


def test_bf16_yamnet_embeddings_and_scores_stay_close_to_fp32(yamnet_weights, patches):
    embeddings, scores = YAMNetEmbedder.from_weights(yamnet_weights, batch_size=8).embed(patches)
    half = YAMNetEmbedder.from_weights(yamnet_weights, batch_size=8, precision="bf16")
    assert {v.dtype for v in half.model.variables} == {tf.bfloat16}
    half_embeddings, half_scores = half.embed(patches)
    assert half_embeddings.dtype == half_scores.dtype == np.float32
    assert 0 < np.abs(half_embeddings - embeddings).max() < 0.05 * np.abs(embeddings).max()
    assert np.abs(half_scores - scores).max() < 0.05


def test_precision_is_part_of_what_outputs_are_checked_against():
    """A rerun at another precision must not take fp32 outputs for its own (and fp32 keeps the
    fingerprints that outputs made before the option existed carry)."""
    fp32, bf16 = ExtractOptions(), ExtractOptions(precision="bf16")
    assert VGGishAdapter.signature(fp32) == "" and VGGishAdapter.signature(bf16) == "precision bf16"
    assert YAMNetAdapter.signature(fp32) == "yamnet float32"
    assert YAMNetAdapter.signature(bf16) == "yamnet float32 precision bf16"
    assert "precision" not in _signature(fp32, EmbedOptions())
    assert _signature(bf16, EmbedOptions())["precision"] == "bf16"
