"""Loading TFRecords into arrays, the networks' masking of padded frames, and model directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosetdl import tfrecords
from audiosetdl.labels import DataError, ModelDirError, data
from audiosetdl.labels.model import POOLINGS, Dequantize, ModelConfig, as_batch, build, load_classifier, predict
from audiosetdl.vggish.postprocess import dequantize
from tests.labels_fixtures import SYNTH_CLASSES, synthetic_records


def test_load_pads_masks_and_multi_hots(tmp_path):
    records = synthetic_records(30, seed=3, short_every=4)
    tfrecords.write(tmp_path / "b.tfrecord", records[10:])
    tfrecords.write(tmp_path / "a.tfrecord", records[:10])
    loaded = data.load([tmp_path], SYNTH_CLASSES)
    assert list(loaded.ids) == [r.video_id for r in records]  # sorted file order
    assert loaded.frames.shape == (30, data.MAX_FRAMES, 128) and loaded.frames.dtype == np.uint8
    for row, record in enumerate(records):
        n = record.num_frames
        assert loaded.lengths[row] == n
        np.testing.assert_array_equal(loaded.frames[row, :n], record.embedding)
        assert not loaded.frames[row, n:].any()
        np.testing.assert_array_equal(loaded.mask[row], np.arange(10) < n)
        assert tuple(np.flatnonzero(loaded.labels[row])) == record.labels
    assert (loaded.lengths < 10).sum() == sum(r.num_frames < 10 for r in records) > 0


def test_load_real_released_files(shared_audioset):
    files = sorted((shared_audioset / "eval").glob("*.tfrecord"))[:40]
    loaded = data.load(files, 527)
    assert len(loaded) == sum(1 for _ in tfrecords.read_serialized(files))
    assert loaded.labels.sum(axis=1).min() >= 1 and 1 <= loaded.lengths.min() and loaded.lengths.max() == 10


def test_load_names_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.load([tmp_path / "missing.tfrecord"], 5)
    with pytest.raises(DataError, match="no \\*.tfrecord"):
        data.load([tmp_path], 5)
    good = tmp_path / "good.tfrecord"
    tfrecords.write(good, synthetic_records(5, seed=4))
    corrupt = tmp_path / "corrupt.tfrecord"
    corrupt.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(DataError, match="corrupt.tfrecord"):
        data.load([good, corrupt], SYNTH_CLASSES)
    with pytest.raises(DataError, match="outside the 2 classes"):
        data.load([good], 2)


def test_holdout_is_seeded_and_disjoint():
    labelled = data.LabelledSet(np.array([f"id{i}" for i in range(100)]), np.zeros(100), np.zeros((100, 10, 128), np.uint8),
                                np.full(100, 10), np.zeros((100, 3), np.uint8))
    train, held = data.split_holdout(labelled, 0.2, seed=5)
    again, held_again = data.split_holdout(labelled, 0.2, seed=5)
    assert len(held) == 20 and len(train) == 80 and not set(train.ids) & set(held.ids)
    assert list(held.ids) == list(held_again.ids)
    assert list(held.ids) != list(data.split_holdout(labelled, 0.2, seed=6)[1].ids)


def test_dequantize_layer_is_the_released_recipe():
    values = np.arange(256, dtype=np.uint8)
    out = np.asarray(Dequantize()(values.astype(np.float32)))
    np.testing.assert_allclose(out, dequantize(values), atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_frames_do_not_change_the_scores(pooling):
    model = build(ModelConfig(num_classes=7, pooling=pooling, hidden_units=16, hidden_layers=2), prior=0.1)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 128), dtype=np.uint8)
    alone = predict(model, *as_batch([clip]))
    padded = np.concatenate([clip, rng.integers(0, 256, (6, 128), dtype=np.uint8)])[None]  # garbage after frame 4
    np.testing.assert_allclose(predict(model, *as_batch(padded, np.array([4]))), alone, rtol=1e-5, atol=1e-6)
    whole = predict(model, *as_batch(padded))
    assert not np.allclose(whole, alone)  # the mask, not chance, made them equal
    assert alone.shape == (1, 7) and 0 < alone.min() and alone.max() < 1


def test_batches_of_variable_length_clips():
    frames, mask = as_batch([np.zeros((3, 128), np.uint8), np.ones((12, 128), np.uint8)])
    assert frames.shape == (2, 12, 128) and mask.sum(axis=1).tolist() == [3, 12]
    with pytest.raises(ValueError, match="uint8"):
        as_batch(np.zeros((2, 10, 128), np.float32))
    with pytest.raises(ValueError, match="at least one frame"):
        as_batch(np.zeros((1, 10, 128), np.uint8), np.array([0]))


def test_model_directory_round_trip(synth_model, synth_dataset):
    classifier = load_classifier(synth_model.directory)
    assert classifier.classes.names[0] == "Class 0" and len(classifier.members) == 2
    evaluation = data.load([synth_dataset["eval"]], SYNTH_CLASSES)
    scores = classifier.scores(evaluation.frames, evaluation.lengths)
    assert scores.shape == (len(evaluation), SYNTH_CLASSES) and scores.dtype == np.float32
    single = classifier.scores([evaluation.frames[0, :evaluation.lengths[0]]])
    np.testing.assert_allclose(single[0], scores[0], rtol=1e-5, atol=1e-6)
    card = (synth_model.directory / "README.md").read_text()
    assert "averaged: multi-level attention (Yu et al. 2018); feature-level attention (Kong et al. 2019), each" in card
    assert "evaluation set" in card and "mAP **" in card


def test_load_classifier_names_what_is_missing(tmp_path, synth_model):
    with pytest.raises(ModelDirError, match="config.json"):
        load_classifier(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in synth_model.directory.iterdir():
        if path.name != "member-01.weights.h5":
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ModelDirError, match="member-01.weights.h5"):
        load_classifier(copy)


def test_mixed_ensemble_members_keep_their_networks(tmp_path, synth_model):
    classifier = load_classifier(synth_model.directory)
    assert [config.pooling for config in classifier.configs] == ["multi", "feature"]
    assert "feature_attention" in [layer.name for layer in classifier.members[1].layers]
    # a directory written before ensembles could mix networks: one "model", a member count
    old = tmp_path / "old"
    old.mkdir()
    for path in synth_model.directory.iterdir():
        if path.name != "member-01.weights.h5":
            (old / path.name).write_bytes(path.read_bytes())
    document = json.loads((old / "config.json").read_text())
    document["model"], document["members"] = document["members"][0], 1
    del document["neighbours"], document["learned_neighbours"]
    (old / "config.json").write_text(json.dumps(document))
    loaded = load_classifier(old)
    assert [config.pooling for config in loaded.configs] == ["multi"]
    frames = np.zeros((2, 10, 128), np.uint8)
    np.testing.assert_allclose(loaded.scores(frames), predict(classifier.members[0], *as_batch(frames)), rtol=1e-6)


def test_the_gru_mask_ends_at_the_pooling(recwarn):
    model = build(ModelConfig(num_classes=5, pooling="recurrent", hidden_units=8, hidden_layers=2))
    out = model({"frames": np.zeros((2, 10, 128), np.float32), "mask": np.ones((2, 10), np.float32)})
    assert getattr(out, "_keras_mask", None) is None  # a mask on the scores would weight the loss
    assert not [w for w in recwarn if "does not support masking" in str(w.message)]
