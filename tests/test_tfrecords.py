"""AudioSet-schema TFRecords: round trips, tf.data parsing, YouTube-8M compatibility, and the real released files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from audiosetdl import tfrecords
from audiosetdl.rundir import TEMP_MARK
from audiosetdl.tfrecords import EmbeddingRecord


def make_record(video_id: str = "-0xzrMun0Rs", frames: int = 10, seed: int = 0, **overrides) -> EmbeddingRecord:
    rng = np.random.default_rng(seed)
    fields = dict(
        video_id=video_id,
        start=30.0,
        end=40.0,
        labels=(137, 57),
        embedding=rng.integers(0, 256, (frames, 128), dtype=np.uint8),
    )
    fields.update(overrides)
    return EmbeddingRecord(**fields)


# --- records -------------------------------------------------------------------------------


def test_record_keeps_labels_ascending_and_checks_embedding():
    assert make_record(labels=(300, 0, 5)).labels == (0, 5, 300)
    with pytest.raises(ValueError, match="repeated"):
        make_record(labels=(5, 5))
    with pytest.raises(ValueError, match="uint8"):
        make_record(embedding=np.zeros((3, 128), np.float32))
    with pytest.raises(ValueError, match="128"):
        make_record(embedding=np.zeros((3, 127), np.uint8))


def test_sequence_example_has_the_audioset_schema():
    example = tfrecords.to_sequence_example(make_record(frames=3))
    context = example.context.feature
    assert context["video_id"].bytes_list.value == [b"-0xzrMun0Rs"]
    assert context["id"].bytes_list.value == [b"-0xzrMun0Rs"]
    assert list(context["start_time_seconds"].float_list.value) == [30.0]
    assert list(context["end_time_seconds"].float_list.value) == [40.0]
    assert list(context["labels"].int64_list.value) == [57, 137]
    frames = example.feature_lists.feature_list["audio_embedding"].feature
    assert len(frames) == 3 and all(len(f.bytes_list.value[0]) == 128 for f in frames)
    without_id = tfrecords.to_sequence_example(make_record(), include_id=False)
    assert "id" not in without_id.context.feature


@settings(max_examples=40, deadline=None)
@given(
    video_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=11, max_size=11),
    start=st.floats(min_value=0, max_value=30_000, allow_nan=False),
    duration=st.floats(min_value=0.1, max_value=10),
    labels=st.sets(st.integers(min_value=0, max_value=526), max_size=8),
    frames=st.integers(min_value=0, max_value=10),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_serialize_parse_round_trip(video_id, start, duration, labels, frames, seed):
    record = make_record(video_id, frames, seed, start=start, end=start + duration, labels=tuple(labels))
    back = tfrecords.parse(tfrecords.serialize(record))
    assert back.video_id == video_id and back.labels == tuple(sorted(labels))
    np.testing.assert_array_equal(back.embedding, record.embedding)
    # Times are stored as float32, as in the released files.
    assert back.start == float(np.float32(start)) and back.end == float(np.float32(start + duration))


def test_float32_times_quirk():
    back = tfrecords.parse(tfrecords.serialize(make_record(start=417.3, end=427.3)))
    assert back.start == 417.29998779296875
    assert back.end == float(np.float32(427.3))


def test_write_then_read_file_round_trip(tmp_path: Path):
    records = [make_record(f"vid{i:08d}", frames=1 + i % 9, seed=i) for i in range(25)]
    path = tmp_path / "embeddings" / "ab.tfrecord"
    assert tfrecords.write(path, records) == 25
    assert [p.name for p in path.parent.iterdir()] == ["ab.tfrecord"], "no temporary file left"
    back = list(tfrecords.read(path))
    assert [r.video_id for r in back] == [r.video_id for r in records]
    assert all(a == b for a, b in zip(back, records))
    # Several files read in order.
    second = tmp_path / "cd.tfrecord"
    tfrecords.write(second, records[:3])
    assert len(list(tfrecords.read([path, second]))) == 28
    assert list(tfrecords.read([])) == []


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path):
    path = tmp_path / "ab.tfrecord"

    def records():
        yield make_record()
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        tfrecords.write(path, records())
    assert not path.exists()
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


def test_to_dataframe_from_paths_and_records(tmp_path: Path):
    records = [make_record(f"vid{i:08d}", frames=i + 1, seed=i) for i in range(4)]
    path = tmp_path / "x.tfrecord"
    tfrecords.write(path, records)
    for frame in (tfrecords.to_dataframe(path), tfrecords.to_dataframe([path]), tfrecords.to_dataframe(records)):
        assert list(frame.columns) == ["video_id", "start", "end", "labels", "num_frames", "embedding"]
        assert frame["num_frames"].tolist() == [1, 2, 3, 4]
        assert frame["labels"].iloc[0] == (57, 137)
        assert frame["embedding"].iloc[3].shape == (4, 128)


def test_tf_data_parse_function(tmp_path: Path):
    records = [make_record(f"vid{i:08d}", frames=i + 1, seed=i, labels=(i, 500)) for i in range(3)]
    path = tmp_path / "x.tfrecord"
    tfrecords.write(path, records, include_id=False)
    dataset = tf.data.TFRecordDataset(str(path)).map(tfrecords.parse_sequence_example)
    for record, parsed in zip(records, dataset):
        assert parsed["video_id"].numpy().decode() == record.video_id
        assert parsed["start"].dtype == tf.float32 and float(parsed["start"]) == 30.0
        assert parsed["labels"].numpy().tolist() == list(record.labels)
        assert parsed["embedding"].dtype == tf.uint8
        np.testing.assert_array_equal(parsed["embedding"].numpy(), record.embedding)


def test_youtube8m_reader_accepts_our_records(tmp_path: Path):
    record = make_record(frames=5)
    serialized = tfrecords.serialize(record)
    assert tfrecords.youtube8m_problems(serialized) == []
    parsed = tfrecords.parse_youtube8m(tf.constant(serialized))
    assert parsed["id"].numpy() == record.video_id.encode()
    np.testing.assert_allclose(parsed["features"].numpy(), tfrecords.dequantize(record.embedding), atol=1e-6)
    np.testing.assert_allclose(
        parsed["features"].numpy(), record.embedding.astype(np.float64) * 4 / 255 + 4 / 512 - 2, atol=1e-6
    )
    without_id = tfrecords.serialize(record, include_id=False)
    assert tfrecords.youtube8m_problems(without_id) == ["context feature 'id' (one bytes value) is missing"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        tfrecords.parse_youtube8m(tf.constant(without_id))


def test_malformed_records_are_named():
    example = tfrecords.to_sequence_example(make_record(frames=2))
    example.feature_lists.feature_list["audio_embedding"].feature.add().bytes_list.value.append(b"short")
    with pytest.raises(ValueError, match=r"\[5, 128\] bytes"):
        tfrecords.from_sequence_example(example)
    del example.context.feature["video_id"]
    with pytest.raises(ValueError, match="video_id"):
        tfrecords.from_sequence_example(example)


# --- the released AudioSet files -----------------------------------------------------------


def released_files(shared_audioset: Path, subset: str) -> list[Path]:
    files = sorted((shared_audioset / subset).glob("*.tfrecord"))
    if not files:
        pytest.skip(f"no released {subset} TFRecords under {shared_audioset}")
    return files


@pytest.mark.parametrize("subset", ["bal_train", "eval"])
def test_sample_of_released_files(shared_audioset: Path, subset: str):
    files = random.Random(subset).sample(released_files(shared_audioset, subset), 60)
    serialized = list(tfrecords.read_serialized(files))
    assert serialized
    for raw in serialized:
        record = tfrecords.parse(raw)
        assert len(record.video_id) == 11
        assert record.video_id[:2] in {f.stem for f in files}
        assert 1 <= record.num_frames <= 10 and record.embedding.dtype == np.uint8
        assert list(record.labels) == sorted(set(record.labels)) and all(0 <= l < 527 for l in record.labels)
        assert 0 <= record.start < record.end <= record.start + 10.0 + 1e-3
        assert record.start == float(np.float32(record.start)), "float32 times"
        # Re-serialising without `id` gives the released bytes' content back.
        assert tfrecords.parse(tfrecords.serialize(record, include_id=False)) == record
        example = tf.train.SequenceExample.FromString(raw)
        assert set(example.context.feature) == {"video_id", "start_time_seconds", "end_time_seconds", "labels"}
        assert tfrecords.youtube8m_problems(raw) == ["context feature 'id' (one bytes value) is missing"]
    batch = next(iter(tf.data.TFRecordDataset([str(f) for f in files]).map(tfrecords.parse_sequence_example)))
    assert batch["embedding"].shape[1] == 128


def test_released_start_time_reads_back_as_float32(shared_audioset: Path):
    # eval_segments.csv: "Arg6lz6Wryw, 417.300, 427.300"; the TFRecord holds float32 times.
    path = shared_audioset / "eval" / "Ar.tfrecord"
    if not path.exists():
        pytest.skip(f"{path} not found")
    (record,) = [r for r in tfrecords.read(path) if r.video_id == "Arg6lz6Wryw"]
    assert record.start == 417.29998779296875 and record.end == float(np.float32(427.3))
    assert record.num_frames == 10


def test_all_eval_records(shared_audioset: Path):
    files = released_files(shared_audioset, "eval")
    frame = tfrecords.to_dataframe(files)
    assert len(frame) == 20_371
    assert frame["num_frames"].between(1, 10).all()
    assert frame["video_id"].str.len().eq(11).all()
    assert (frame["video_id"].str[:2] != "").all()
    assert frame["labels"].map(lambda labels: list(labels) == sorted(labels) and len(labels) > 0).all()
    assert frame["video_id"].nunique() == len(frame)  # one segment per video in eval
    assert (frame["end"] - frame["start"]).le(10.0 + 1e-3).all()
