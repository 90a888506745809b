"""The YAMNet weights file, network, class map and smoke test.

The network runs on an HDF5 file with the official layout, layer names and shapes but random
weights (tests/yamnet_fixtures.py), compared with the float64 reference in
tests/yamnet_reference.py, and with the reference's own Keras layers given the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.yamnet import features, params
from audiosetdl.yamnet.classmap import ABSENT_CLASSES, ClassMapError, load_class_map
from audiosetdl.yamnet.model import Embedder, fold_batch_norm
from audiosetdl.yamnet.smoke import SUCCESS_LINE, check_outputs, smoke_signals, smoke_test
from audiosetdl.yamnet.weightsfile import WeightsError, expected_weights, read_weights
from tests import yamnet_reference as reference
from tests.vggish_fixtures import audio_like_signals
from tests.yamnet_fixtures import YAMNetTestModels, write_class_map, write_keras_h5


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    """Two or three patches each of tone, noises, chirp, clicks and silence (1.5 s clips)."""
    return np.concatenate([features.waveform_to_patches(x) for x in audio_like_signals(seconds=1.5).values()])


@pytest.fixture(scope="module")
def reference_outputs(patches, yamnet_weights):
    return reference.forward(patches, yamnet_weights)


# --- the weights file ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["weights", "model_weights", "split_layer_names"])
def test_weights_file_reads_all_110_official_weights(tmp_path: Path, yamnet_weights, layout):
    path = write_keras_h5(tmp_path / "yamnet.h5", yamnet_weights, under_model_weights=layout == "model_weights",
                          split_layer_names=layout == "split_layer_names")
    weights = read_weights(path)
    assert list(weights) == list(expected_weights()) and len(weights) == 110
    assert sum(w.size for w in weights.values()) == params.NUM_PARAMETERS == 3_751_369
    for name, value in weights.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, yamnet_weights[name], err_msg=name)


def test_official_names_and_shapes():
    shapes = expected_weights()
    assert shapes["layer1/conv/kernel"] == (3, 3, 1, 32)
    assert shapes["layer2/depthwise_conv/depthwise_kernel"] == (3, 3, 32, 1)
    assert shapes["layer14/pointwise_conv/kernel"] == (1, 1, 1024, 1024)
    assert shapes["layer14/pointwise_conv/bn/moving_variance"] == (1024,)
    assert shapes["logits/kernel"] == (1024, 521) and shapes["logits/bias"] == (521,)
    assert not any("gamma" in name for name in shapes)  # batch norm without scale


def test_wrong_shape_names_the_weight_and_both_shapes(tmp_path: Path, yamnet_weights):
    bad = dict(yamnet_weights)
    bad["layer7/pointwise_conv/kernel"] = np.zeros((1, 1, 256, 500), np.float32)
    with pytest.raises(WeightsError) as caught:
        read_weights(write_keras_h5(tmp_path / "bad.h5", bad))
    message = str(caught.value)
    assert "layer7/pointwise_conv/kernel" in message and "[1, 1, 256, 500]" in message
    assert "[1, 1, 256, 512]" in message and "fetch-models" in message


def test_missing_layer_is_named(tmp_path: Path, yamnet_weights):
    partial = {k: v for k, v in yamnet_weights.items() if not k.startswith("logits/")}
    with pytest.raises(WeightsError, match=r"logits/kernel is missing"):
        read_weights(write_keras_h5(tmp_path / "partial.h5", partial))


@pytest.mark.parametrize("content", [None, b"not an hdf5 file"])
def test_missing_or_garbage_file_says_how_to_fix(tmp_path: Path, content):
    path = tmp_path / "yamnet.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match="fetch-models DIR --model yamnet"):
        read_weights(path)


def test_hdf5_without_keras_layout_is_refused(tmp_path: Path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsError, match="not a Keras HDF5 weights file"):
        read_weights(tmp_path / "other.h5")


# --- the network ---------------------------------------------------------------------------


def test_embeddings_and_scores_match_float64_reference(yamnet_embedder: Embedder, patches, reference_outputs):
    embeddings, scores = yamnet_embedder.embed(patches)
    ref_embeddings, ref_logits, ref_scores = reference_outputs
    assert embeddings.shape == (len(patches), 1024) and scores.shape == (len(patches), 521)
    assert embeddings.dtype == scores.dtype == np.float32
    # The fixture's weights keep activations alive and scores away from 0 and 1.
    assert np.abs(ref_embeddings).mean() > 0.1 and 0.05 < ref_scores.mean() < 0.95
    assert ref_logits.std() > 0.3
    scale = np.abs(ref_embeddings).max()
    np.testing.assert_allclose(embeddings, ref_embeddings, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=2e-6)


def test_batching_does_not_change_results(yamnet_weights, yamnet_embedder: Embedder, patches):
    one_at_a_time = Embedder.from_weights(yamnet_weights, batch_size=1, device="/CPU:0")
    batched = yamnet_embedder.embed(patches[:11])  # batch 8: one full, one partial batch
    for ours, alone in zip(batched, one_at_a_time.embed(patches[:11])):
        # float32 rounding only: on AVX-512 oneDNN picks kernels by batch size, which sum in another
        # order (1.1e-6 seen on values of 0.88); the same bound as the float64 reference's above
        np.testing.assert_allclose(ours, alone, rtol=0, atol=2e-6 * max(np.abs(alone).max(), 1.0))
    empty = yamnet_embedder.embed(np.zeros((0, 96, 64)))
    assert empty[0].shape == (0, 1024) and empty[1].shape == (0, 521)
    with pytest.raises(ValueError, match=r"\(N, 96, 64\)"):
        yamnet_embedder.embed(np.zeros((2, 64, 96)))


def test_frames_are_front_end_then_model(yamnet_embedder: Embedder):
    clip = audio_like_signals(seconds=2.0)["chirp"]
    frames = yamnet_embedder.frames(clip)
    assert len(frames.starts) == features.num_patches(len(clip)) == 4
    np.testing.assert_allclose(frames.starts, [0.0, 0.48, 0.96, 1.44])
    embeddings, scores = yamnet_embedder.embed(features.waveform_to_patches(clip))
    np.testing.assert_array_equal(frames.embeddings, embeddings)
    np.testing.assert_array_equal(frames.scores, scores)
    assert len(yamnet_embedder.frames(np.zeros(0)).scores) == 1  # the reference pads even nothing


def test_batch_norm_folding_is_the_same_function():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 1))
    bn = {"beta": rng.standard_normal(4), "moving_mean": rng.standard_normal(4),
          "moving_variance": rng.uniform(0.1, 2, 4)}
    folded, bias = fold_batch_norm(kernel, bn, depthwise=True)
    x = rng.standard_normal((1, 5, 5, 4))
    want = (reference.depthwise(x, kernel, 1) - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-4) + bn["beta"]
    np.testing.assert_allclose(reference.depthwise(x, folded.astype(np.float64), 1) + bias, want, atol=1e-5)


# --- the class map -------------------------------------------------------------------------


def test_class_map_has_521_rows_mapped_to_audioset_by_mid(yamnet_models: YAMNetTestModels, shared_audioset):
    class_map = load_class_map(yamnet_models.class_map)
    audioset = ClassIndex.load(shared_audioset / "class_labels_indices.csv")
    assert len(class_map) == 521 and len(audioset) == 527
    indices = class_map.audioset_indices(audioset)
    assert np.all(np.diff(indices) > 0)  # AudioSet's order, six gaps
    assert sorted(set(range(527)) - set(indices.tolist())) == [1, 2, 12, 32, 33, 277]
    assert {audioset.mids[i]: audioset.names[i] for i in (1, 2, 12, 32, 33, 277)} == ABSENT_CLASSES
    # Rows of the released yamnet_class_map.csv (tensorflow/models, read 2026-12):
    released = {0: ("/m/09x0r", "Speech"), 1: ("/m/0ytgt", "Child speech, kid speaking"),
                10: ("/t/dd00135", "Children shouting"), 29: ("/t/dd00005", "Child singing"),
                271: ("/t/dd00031", "Happy music"), 494: ("/m/028v0c", "Silence"),
                495: ("/m/01v_m0", "Sine wave"), 514: ("/m/0chx_", "White noise"),
                520: ("/m/07hvw1", "Field recording")}
    assert {i: (class_map.mids[i], class_map.names[i]) for i in released} == released
    scores = np.random.default_rng(0).random((3, 521)).astype(np.float32)
    wide = class_map.scores_to_audioset(scores, audioset)
    assert wide.shape == (3, 527) and np.isnan(wide[:, [1, 2, 12, 32, 33, 277]]).all()
    np.testing.assert_array_equal(wide[:, indices], scores)


def test_bad_class_maps_are_refused(tmp_path: Path, yamnet_models: YAMNetTestModels, shared_audioset):
    lines = yamnet_models.class_map.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ClassMapError, match="520 classes, expected 521"):
        load_class_map(short)
    with pytest.raises(ClassMapError, match="cannot read"):
        load_class_map(tmp_path / "missing.csv")
    # A class map that keeps a class YAMNet dropped (and so lacks another) does not fit AudioSet.
    audioset_labels = shared_audioset / "class_labels_indices.csv"
    swapped = tmp_path / "swapped.csv"
    write_class_map(swapped, audioset_labels)
    text = swapped.read_text().replace("/m/0ytgt,", "/m/05zppz,")
    swapped.write_text(text)
    with pytest.raises(ClassMapError, match="without a YAMNet column"):
        load_class_map(swapped).audioset_indices(ClassIndex.load(audioset_labels))


# --- smoke test ----------------------------------------------------------------------------


def test_smoke_signals_are_the_reference_tests_inputs():
    signals = smoke_signals()
    assert all(len(x) == 48_000 for x in signals.values())
    np.random.seed(51773)  # as yamnet_test.py seeds it
    np.testing.assert_array_equal(signals["uniform noise"], np.random.uniform(-1.0, 1.0, 48_000))
    assert not signals["zeros"].any() and features.num_patches(48_000) == 6


class _Scripted:
    """Scores with one chosen class on top of each smoke input, as the official model gives them."""

    def __init__(self, class_map, winners):
        self.class_map = class_map
        self.winners = [(smoke_signals()[name], winner) for (name, _), winner in zip(params.SMOKE_EXPECTED, winners)]

    def frames(self, samples):
        from audiosetdl.yamnet.model import Frames

        n = features.num_patches(len(samples))
        scores = np.full((n, 521), 0.01, np.float32)
        winner = next(winner for signal, winner in self.winners if np.array_equal(signal, samples))
        scores[:, self.class_map.names.index(winner)] = 0.9
        return Frames(features.patch_start_seconds(n), np.zeros((n, 1024), np.float32), scores)


def test_smoke_check_passes_when_the_expected_classes_win(yamnet_models: YAMNetTestModels):
    class_map = load_class_map(yamnet_models.class_map)
    good = _Scripted(class_map, ["Silence", "White noise", "Sine wave"])
    ok, lines = check_outputs(good, class_map)
    assert ok and len(lines) == 3 and all("6 patches (expected 6)" in line for line in lines)
    ok, lines = check_outputs(_Scripted(class_map, ["Silence", "Speech", "Sine wave"]), class_map)
    assert not ok and "'White noise' NOT in the top 10" in lines[1]


def test_smoke_test_runs_the_files_and_reports(yamnet_models: YAMNetTestModels, tmp_path: Path):
    ok, report = smoke_test(yamnet_models.directory, device="/CPU:0")
    assert report.splitlines()[0] == "Testing the YAMNet install" and len(report.splitlines()) == 5
    assert ok == (report.splitlines()[-1] == SUCCESS_LINE)  # random weights: whichever, said clearly
    ok, report = smoke_test(tmp_path)
    assert not ok and "FAILED" in report and "fetch-models DIR --model yamnet" in report


def test_network_matches_keras_layers_as_the_reference_builds_them(yamnet_embedder: Embedder, yamnet_weights,
                                                                   patches):
    """The reference's own building blocks (Keras Conv2D, DepthwiseConv2D, BatchNormalization with
    center, no scale, epsilon 1e-4; 'same' padding; no bias), given the same weights by name."""
    import keras

    official = {}  # Keras layer (Keras 3 forbids '/' in names) -> the reference's layer name

    def conv_bn_relu(x, layer, block):
        official[layer.replace("/", "_")] = layer
        official[layer.replace("/", "_") + "_bn"] = layer + "/bn"
        x = block(name=layer.replace("/", "_"), padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(name=layer.replace("/", "_") + "_bn", center=True, scale=False,
                                            epsilon=1e-4)(x)
        return keras.layers.ReLU()(x)

    x = inputs = keras.Input((96, 64))
    x = keras.layers.Reshape((96, 64, 1))(x)
    for name, kind, stride, filters in params.LAYERS:
        if kind == params.CONV:
            x = conv_bn_relu(x, f"{name}/conv", lambda **kw: keras.layers.Conv2D(filters, 3, strides=stride, **kw))
        else:
            x = conv_bn_relu(x, f"{name}/depthwise_conv",
                             lambda **kw: keras.layers.DepthwiseConv2D(3, strides=stride, **kw))
            x = conv_bn_relu(x, f"{name}/pointwise_conv", lambda **kw: keras.layers.Conv2D(filters, 1, **kw))
    embeddings = keras.layers.GlobalAveragePooling2D()(x)
    official["logits"] = "logits"
    logits = keras.layers.Dense(521, name="logits")(embeddings)
    model = keras.Model(inputs, [embeddings, keras.layers.Activation("sigmoid")(logits)])
    assigned = 0
    for layer in model.layers:
        for variable in layer.weights:
            weight = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else variable.name
            variable.assign(yamnet_weights[f"{official[layer.name]}/{weight}"])
            assigned += 1
    assert assigned == 110
    keras_embeddings, keras_scores = (np.asarray(t) for t in model(patches, training=False))
    embeddings, scores = yamnet_embedder.embed(patches)
    np.testing.assert_allclose(embeddings, keras_embeddings, rtol=0, atol=2e-6 * np.abs(keras_embeddings).max())
    np.testing.assert_allclose(scores, keras_scores, rtol=0, atol=2e-6)
