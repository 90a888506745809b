"""`audiosetdl train`: seeded data order, learning on synthetic records, what the model directory holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosetdl import cli
from audiosetdl.labels import DataError, data
from audiosetdl.labels.train import BalancedSampler, ShuffledSampler, find_class_index
from tests.labels_fixtures import SYNTH_OPTIONS


def test_balanced_sampler_is_seeded_and_balanced():
    rng = np.random.default_rng(0)
    labels = np.zeros((1000, 4), np.uint8)
    labels[:900, 0] = 1  # a common class ...
    labels[900:990, 1] = 1
    labels[990:, 2] = 1  # ... a rare one; class 3 has no record and is never asked for
    order = BalancedSampler(labels, np.random.default_rng(1)).batch(3000)
    assert np.array_equal(order, BalancedSampler(labels, np.random.default_rng(1)).batch(3000))
    assert not np.array_equal(order, BalancedSampler(labels, np.random.default_rng(2)).batch(3000))
    per_class = labels[order].sum(axis=0)
    assert per_class[:3].tolist() == [1000, 1000, 1000] and per_class[3] == 0
    assert len(set(order[labels[order, 2] == 1])) == 10  # the rare class's records, each in turn
    del rng


def test_shuffled_sampler_passes_are_permutations():
    sampler = ShuffledSampler(10, np.random.default_rng(3))
    first, second = sampler.batch(10), sampler.batch(10)
    assert sorted(first) == sorted(second) == list(range(10)) and list(first) != list(second)
    assert sorted(np.concatenate([sampler.batch(4) for _ in range(5)])) == sorted(list(range(10)) * 2)


def test_trained_model_learns_and_records_its_figures(synth_model):
    assert synth_model.holdout.mean_ap > 0.9 and synth_model.evaluation.mean_ap > 0.9
    assert synth_model.evaluation.mean_auc > 0.95
    document = json.loads((synth_model.directory / "config.json").read_text())
    assert [member["pooling"] for member in document["members"]] == ["multi", "feature"]
    assert document["training"]["records"] == 320 and document["training"]["held_out"] == 80
    assert document["evaluation"]["mAP"] == pytest.approx(synth_model.evaluation.mean_ap)
    assert document["training"]["options"]["seed"] == 0


def test_same_seed_same_model(synth_dataset, tmp_path, capsys):
    from audiosetdl.labels.model import load_classifier

    args = ["train", str(synth_dataset["train"]), "--steps", "8", "--hidden-units", "16", "--batch-size", "32",
            "--log-every", "0", "--pooling", "attention", "--ensemble", "1"]
    scores = []
    for name in ("a", "b"):
        assert cli.main(args + ["--out", str(tmp_path / name)]) == 0
        frames = np.random.default_rng(0).integers(0, 256, (5, 10, 128), dtype=np.uint8)
        scores.append(load_classifier(tmp_path / name).scores(frames))
        bar = capsys.readouterr().err
        assert "train: 100%" in bar and "8/8" in bar  # the progress bar over the members' steps
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-7)


def test_train_errors_name_the_input(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    (tmp_path / "x.tfrecord").write_bytes(b"")
    with pytest.raises(DataError, match="class_labels_indices.csv"):
        find_class_index(None, [tmp_path / "x.tfrecord"])


@pytest.mark.slow
def test_real_bal_train_subset_beats_chance(shared_audioset, tmp_path):
    """A few hundred steps on a fifth of the released bal_train files: far above chance on eval files."""
    from audiosetdl.labels.train import train
    from audiosetdl.config import TrainOptions
    import dataclasses

    train_files = sorted((shared_audioset / "bal_train").glob("*.tfrecord"))[::5]
    eval_files = sorted((shared_audioset / "eval").glob("*.tfrecord"))[::10]
    options = dataclasses.replace(TrainOptions(), **{**SYNTH_OPTIONS, "hidden_units": 128, "steps": 150,
                                                     "batch_size": 128})
    result = train(train_files, tmp_path / "m", options, eval_sources=eval_files)
    assert result.evaluation.mean_ap > 0.08 and result.evaluation.mean_auc > 0.85  # chance: ~0.006 and 0.5


def test_frame_dropout_hides_real_frames_only_and_never_all_of_a_clip():
    from audiosetdl.labels.train import _drop_frames

    mask = data.mask_from_lengths(np.array([1, 2, 10] * 200))
    kept = _drop_frames(mask, 0.5, np.random.default_rng(0))
    assert (kept <= mask).all() and (kept.sum(axis=1) >= 1).all()
    assert kept[0::3].sum() == 200  # a one-frame clip always keeps its frame
    assert 0.4 < kept[2::3].mean() < 0.6  # about half of a full clip's frames are hidden
    np.testing.assert_array_equal(_drop_frames(mask, 0.5, np.random.default_rng(0)), kept)  # seeded


def test_bf16_training_learns_and_saves_a_float32_model(synth_dataset, tmp_path):
    """--precision bf16 trains under Keras's mixed_bfloat16 policy; what is saved and scored is the
    float32 network (float32 weights, float32 scores that do not tie), and it learns as fp32 does."""
    import dataclasses

    import keras

    from audiosetdl.config import TrainOptions
    from audiosetdl.labels.model import load_classifier
    from audiosetdl.labels.train import train

    assert TrainOptions().precision == "fp32"
    options = dataclasses.replace(TrainOptions(), **{**SYNTH_OPTIONS, "pooling": ("feature", "attention"),
                                                     "ensemble": 2, "precision": "bf16"})
    result = train([synth_dataset["train"]], tmp_path / "m", options, eval_sources=[synth_dataset["eval"]])
    assert result.evaluation.mean_ap > 0.9 and result.evaluation.mean_auc > 0.95
    assert keras.config.dtype_policy().name == "float32"  # the mixed policy does not outlive the build
    classifier = load_classifier(tmp_path / "m")
    assert classifier.info["training"]["options"]["precision"] == "bf16"
    assert "bf16 arithmetic" in (tmp_path / "m" / "README.md").read_text()  # the model card says so
    for member in classifier.members:
        assert {weight.dtype for weight in member.weights} == {"float32"}
        assert all(layer.compute_dtype == "float32" for layer in member.layers)
    frames = np.random.default_rng(0).integers(0, 256, (64, 10, 128), dtype=np.uint8)
    scores = classifier.scores(frames)
    assert scores.dtype == np.float32 and len(np.unique(scores)) > 0.99 * scores.size


def test_bf16_build_keeps_the_probabilities_in_float32():
    """Under mixed_bfloat16 the per-frame layers compute in bfloat16, but the sigmoids, attention and
    output do not (bfloat16 keeps 8 bits: scores would tie, and 1 - 1e-7 would round to 1)."""
    from audiosetdl.labels.model import ModelConfig, build

    for pooling in ("attention", "feature", "multi"):
        model = build(ModelConfig(num_classes=5, pooling=pooling, hidden_units=16, hidden_layers=2),
                      prior=0.01, compute_dtype="bfloat16")
        assert model.get_layer("fc1").compute_dtype == "bfloat16"
        assert model.get_layer("dequantize").compute_dtype == "float32"
        frames = np.random.default_rng(1).integers(0, 256, (8, 10, 128)).astype(np.float32)
        out = model({"frames": frames, "mask": np.ones((8, 10), np.float32)})
        low_bits = np.asarray(out, np.float32).view(np.uint32) & 0xFFFF
        assert out.dtype == "float32" and (low_bits != 0).mean() > 0.9  # not bfloat16 values in float32 clothing
