"""The neighbour memories (of mean frames, and of a network's learned vectors): their scores against a
float64 computation, their files, their blend with the networks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from audiosetdl.config import TrainOptions
from audiosetdl.labels import DataError, data, metrics, neighbours
from audiosetdl.labels.model import as_batch, learned_vectors, load_classifier, predict
from audiosetdl.labels.neighbours import NeighbourMemory, NeighbourParams
from audiosetdl.labels.train import learned_memory_plan, member_configs, neighbour_params
from tests.labels_fixtures import SYNTH_CLASSES


def _reference(train_frames, train_lengths, train_labels, frames, lengths, k, temperature):
    """Per query in float64: standardised mean frames, cosine similarity, the k best, softmax-weighted labels."""
    def pooled(batch, counts):
        values = batch.astype(np.float64) * 4 / 255 + 4 / 512 - 2
        return np.stack([values[i, :counts[i]].mean(axis=0) for i in range(len(batch))])

    memory = pooled(train_frames, train_lengths)
    centre, spread = memory.mean(axis=0), memory.std(axis=0)

    def unit(vectors):
        standard = (vectors - centre) / spread
        return standard / np.linalg.norm(standard, axis=1, keepdims=True)

    keys, out = unit(memory), []
    for query in unit(pooled(frames, lengths)):
        similarity = keys @ query
        best = np.argsort(-similarity)[:k]
        weights = np.exp((similarity[best] - similarity[best].max()) / temperature)
        out.append((weights / weights.sum()) @ train_labels[best].astype(np.float64))
    return np.array(out)


def _random_set(count, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (count, 10, 128)).astype(np.uint8)
    lengths = rng.integers(1, 11, count)
    frames[np.arange(10)[None, :] >= lengths[:, None]] = 0
    return frames, lengths, (rng.random((count, 7)) < 0.3).astype(np.uint8)


def test_scores_match_a_float64_computation():
    train_frames, train_lengths, train_labels = _random_set(300, seed=1)
    frames, lengths, _ = _random_set(40, seed=2)
    params = NeighbourParams(k=15, temperature=0.1, weight=0.3)
    memory = NeighbourMemory.build(train_frames, as_batch(train_frames, train_lengths)[1], train_labels, params)
    scores = memory.scores(frames, as_batch(frames, lengths)[1])
    expected = _reference(train_frames, train_lengths, train_labels, frames, lengths, 15, 0.1)
    assert scores.dtype == np.float32 and scores.shape == (40, 7)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_blocks_of_one_clip_give_the_same_scores(monkeypatch):
    """Memory is bounded by working in blocks (unbal_train's 2M clips); the block size changes nothing."""
    train_frames, train_lengths, train_labels = _random_set(200, seed=4)
    frames, lengths, _ = _random_set(30, seed=5)
    train_mask, mask = as_batch(train_frames, train_lengths)[1], as_batch(frames, lengths)[1]
    params = NeighbourParams(k=10, temperature=0.1, weight=0.3)
    whole = NeighbourMemory.build(train_frames, train_mask, train_labels, params)
    expected = whole.scores(frames, mask)
    monkeypatch.setattr(neighbours, "BLOCK_BYTES", 1)
    blocked = NeighbourMemory.build(train_frames, train_mask, train_labels, params)
    np.testing.assert_array_equal(blocked.keys, whole.keys)
    np.testing.assert_allclose(blocked.scores(frames, mask), expected, rtol=1e-5, atol=1e-6)  # BLAS: gemv vs gemm


def test_k_is_capped_at_the_training_clips_and_bad_parameters_fail_before_training():
    frames, lengths, labels = _random_set(5, seed=3)
    memory = NeighbourMemory.build(frames, as_batch(frames, lengths)[1], labels, NeighbourParams(100, 0.1, 0.3))
    assert memory.params.k == 5
    assert neighbour_params(dataclasses.replace(TrainOptions(), neighbours=0)) is None
    with pytest.raises(DataError, match="weight"):
        neighbour_params(dataclasses.replace(TrainOptions(), neighbour_weight=1.5))


def test_the_model_directory_keeps_both_memories_and_blends_them(synth_model, synth_dataset):
    classifier = load_classifier(synth_model.directory)
    assert (synth_model.directory / "neighbours.npz").is_file()
    assert (synth_model.directory / "learned_neighbours.npz").is_file()
    assert classifier.neighbours is not None and classifier.neighbours.params == NeighbourParams(100, 0.1, 0.3)
    assert classifier.learned is not None and classifier.learned.params == NeighbourParams(100, 0.1, 0.2)
    assert classifier.learned_member == 1  # ("multi", "feature"): the first feature member
    assert len(classifier.neighbours.keys) == len(classifier.learned.keys) == 320  # training records, not held-out ones
    assert classifier.learned.keys.shape[1] == 32 and classifier.learned.projection is None  # 32 units < 128 dims
    evaluation = data.load([synth_dataset["eval"]], SYNTH_CLASSES)
    frames, mask = as_batch(evaluation.frames, evaluation.lengths)
    networks = np.mean([predict(member, frames, mask) for member in classifier.members], axis=0)
    remembered = classifier.neighbours.scores(frames, mask)
    learned = classifier.learned.vector_scores(learned_vectors(classifier.members[1], frames, mask))
    np.testing.assert_array_equal(classifier.learned_scores(frames, mask), learned)
    np.testing.assert_allclose(classifier.scores(evaluation.frames, evaluation.lengths),
                               0.5 * networks + 0.3 * remembered + 0.2 * learned, rtol=1e-5, atol=1e-6)
    assert metrics.compute(evaluation.labels, remembered).mean_ap > 0.9  # the synthetic classes are separable
    assert metrics.compute(evaluation.labels, learned).mean_ap > 0.9
    card = (synth_model.directory / "README.md").read_text()
    assert "100 most similar training clips" in card and "member 2's pooled hidden vector" in card


def _projected_reference(train_vectors, train_labels, vectors, dims, k, temperature):
    """In float64: standardise by the training vectors, project on their `dims` leading principal axes
    (singular vectors), unit length, cosine similarity, the k best, softmax-weighted labels."""
    centre, spread = train_vectors.mean(axis=0), train_vectors.std(axis=0)
    axes = np.linalg.svd((train_vectors - centre) / spread, full_matrices=False)[2][:dims].T

    def unit(values):
        projected = ((values - centre) / spread) @ axes
        return projected / np.linalg.norm(projected, axis=1, keepdims=True)

    keys, out = unit(train_vectors), []
    for query in unit(vectors):
        similarity = keys @ query
        best = np.argsort(-similarity)[:k]
        weights = np.exp((similarity[best] - similarity[best].max()) / temperature)
        out.append((weights / weights.sum()) @ train_labels[best].astype(np.float64))
    return np.array(out)


def _vectors(count, seed, dims=24):
    """Vectors whose dimensions have distinct spreads (well-separated principal axes), and labels."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dims)) * np.linspace(3.0, 0.2, dims) + rng.standard_normal(dims)
    return vectors.astype(np.float32), (rng.random((count, 5)) < 0.3).astype(np.uint8)


def test_projected_memory_matches_a_float64_computation_and_blocks_change_nothing(monkeypatch):
    train_vectors, train_labels = _vectors(400, seed=7)
    queries, _ = _vectors(50, seed=8)
    params = NeighbourParams(k=12, temperature=0.1, weight=0.2)
    memory = NeighbourMemory.from_vectors(train_vectors, train_labels, params, dims=6)
    assert memory.keys.shape == (400, 6) and memory.projection.shape == (24, 6)
    expected = _projected_reference(train_vectors.astype(np.float64), train_labels, queries.astype(np.float64),
                                    6, 12, 0.1)
    np.testing.assert_allclose(memory.vector_scores(queries), expected, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(neighbours, "BLOCK_BYTES", 16 * 24 * 7)  # covariance summed 7 rows at a time
    blocked = NeighbourMemory.from_vectors(train_vectors, train_labels, params, dims=6)
    np.testing.assert_allclose(np.abs(blocked.projection), np.abs(memory.projection), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blocked.vector_scores(queries), memory.vector_scores(queries), rtol=1e-5, atol=1e-6)


def test_projected_memory_survives_its_file(tmp_path):
    train_vectors, train_labels = _vectors(60, seed=9)
    params = NeighbourParams(k=5, temperature=0.2, weight=0.2)
    memory = NeighbourMemory.from_vectors(train_vectors, train_labels, params, dims=4)
    memory.save(tmp_path, neighbours.LEARNED_NEIGHBOURS_FILENAME)
    loaded = NeighbourMemory.load(tmp_path, params, neighbours.LEARNED_NEIGHBOURS_FILENAME)
    np.testing.assert_array_equal(loaded.projection, memory.projection)
    np.testing.assert_array_equal(loaded.vector_scores(train_vectors[:9]), memory.vector_scores(train_vectors[:9]))


def test_learned_memory_options_are_checked_before_training(caplog):
    options = TrainOptions()
    assert learned_memory_plan(options, member_configs(options, 527)) == (NeighbourParams(100, 0.1, 0.2), 0)
    with pytest.raises(DataError, match="add up to 1.1"):
        learned_memory_plan(dataclasses.replace(options, learned_neighbour_weight=0.8), member_configs(options, 527))
    with pytest.raises(DataError, match="learned_neighbour_dims"):
        learned_memory_plan(dataclasses.replace(options, learned_neighbour_dims=-1), member_configs(options, 527))
    no_feature = dataclasses.replace(options, pooling=("attention",), ensemble=2)
    assert learned_memory_plan(no_feature, member_configs(no_feature, 527)) == (None, 0)
    assert "no feature member" in caplog.text
    off = dataclasses.replace(options, learned_neighbours=0, neighbour_weight=1.0)
    assert learned_memory_plan(off, member_configs(off, 527)) == (None, 0)


def test_real_neighbours_beat_chance(shared_audioset):
    """A memory of a fifth of the released bal_train files, scored on a tenth of the eval files."""
    memory_set = data.load(sorted((shared_audioset / "bal_train").glob("*.tfrecord"))[::5], 527)
    eval_set = data.load(sorted((shared_audioset / "eval").glob("*.tfrecord"))[::10], 527)
    memory = NeighbourMemory.build(memory_set.frames, memory_set.mask, memory_set.labels, NeighbourParams(100, 0.1, 0.3))
    figures = metrics.compute(eval_set.labels, memory.scores(eval_set.frames, eval_set.mask))
    assert figures.mean_ap > 0.08 and figures.mean_auc > 0.8  # chance: ~0.006 and 0.5
