"""`extract --model yamnet` and `embed --model yamnet`: the documented schema, written and read back;
batched across clips == one clip alone; `fetch-models --model yamnet` and `smoke-test --model yamnet`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from audiosetdl import tfrecords, yamnet_tfrecords
from audiosetdl.cli import main
from audiosetdl.config import ExtractOptions
from audiosetdl.embed import embed_paths
from audiosetdl.extract import run_task
from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.plan import load_plan
from audiosetdl.rundir import RunDir
from audiosetdl.yamnet import features, modelfiles, params
from audiosetdl.yamnet.model import Embedder
from tests import test_extract
from tests.test_vggish_model import RangeServer
from tests.yamnet_fixtures import YAMNetTestModels

signal = test_extract.signal


@pytest.fixture
def run(tmp_path, shared_audioset) -> RunDir:
    """The extract tests' run directory: six segments (one 0.5 s, one without a clip) in two tasks."""
    return test_extract.make_run(tmp_path, shared_audioset / "class_labels_indices.csv")


def yamnet_records(run: RunDir) -> dict[str, list]:
    return {p.stem: list(yamnet_tfrecords.read(p)) for p in sorted((run.root / "yamnet" / "eval").glob("*.tfrecord"))}


def test_extract_yamnet_writes_the_documented_schema(run, yamnet_models: YAMNetTestModels, shared_audioset):
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory), batch_size=7)
    plan = load_plan(run)
    summaries = [run_task(run, t.index, options, progress=False) for t in plan.tasks]
    assert sum(s.keys_written for s in summaries) == 4 and sum(s.too_short for s in summaries) == 0
    assert not (run.root / "embeddings").exists(), "VGGish's files are not touched"
    records = yamnet_records(run)
    assert set(records) == {"aa", "-a", "bb"}
    assert [(r.video_id, r.start, r.num_frames) for r in records["aa"]] == [
        ("aa000000001", 0.0, 20), ("aa000000001", 30.0, 20), ("aa000000003", 0.0, 1)]  # 10 s: 20; 0.5 s: 1
    assert records["bb"][0].num_frames == features.num_patches(round(3.3 * 16000)) == 6
    index = ClassIndex.load(shared_audioset / "class_labels_indices.csv").index_of
    assert records["aa"][1].labels == tuple(sorted([index["/m/09x0r"], index["/m/04rlf"]]))
    assert json.loads(run.embeddings_marker("eval", "cc", model="yamnet").read_text())["records"] == 0

    # The raw protobuf, as documented: AudioSet context, two aligned feature lists of float32 bytes.
    serialized = next(iter(tfrecords.read_serialized(run.embeddings_path("eval", "bb", model="yamnet"))))
    example = tf.train.SequenceExample.FromString(serialized)
    assert set(example.context.feature) == {"video_id", "start_time_seconds", "end_time_seconds", "labels", "id"}
    lists = example.feature_lists.feature_list
    assert set(lists) == {"yamnet_embedding", "yamnet_scores"}
    assert [len(f.bytes_list.value[0]) for f in lists["yamnet_embedding"].feature] == [4096] * 6
    assert [len(f.bytes_list.value[0]) for f in lists["yamnet_scores"].feature] == [2084] * 6
    parsed = yamnet_tfrecords.parse_sequence_example(tf.constant(serialized))
    np.testing.assert_array_equal(parsed["embedding"].numpy(), records["bb"][0].embedding)
    np.testing.assert_array_equal(parsed["scores"].numpy(), records["bb"][0].scores)

    # Batched across clips (batch 7 splits clips) == each clip alone, the reference's way.
    embedder = Embedder(yamnet_models.weights_path, batch_size=64)
    for record in [r for rs in records.values() for r in rs]:
        samples, _ = soundfile.read(str(run.clip_path("eval", record.video_id, record.start, record.end)),
                                    dtype="int16")
        alone = embedder.frames(samples)
        assert record.embedding.dtype == np.float32
        np.testing.assert_allclose(record.embedding, alone.embeddings, rtol=0, atol=1e-5)
        np.testing.assert_allclose(record.scores, alone.scores, rtol=0, atol=1e-6)


def test_float16_option_and_reruns(run, yamnet_models: YAMNetTestModels):
    task = load_plan(run).task_of_key()[("eval", "bb")]
    full = ExtractOptions(model="yamnet", models=str(yamnet_models.directory))
    run_task(run, task, full, progress=False)
    path = run.embeddings_path("eval", "bb", model="yamnet")
    (as_float32,) = yamnet_tfrecords.read(path)
    stamp = path.stat().st_mtime_ns
    assert run_task(run, task, full, progress=False).keys_written == 0 and path.stat().st_mtime_ns == stamp

    half = ExtractOptions(model="yamnet", models=str(yamnet_models.directory), yamnet_dtype="float16")
    assert run_task(run, task, half, progress=False).keys_written >= 1, "another float type is another output"
    (as_float16,) = yamnet_tfrecords.read(path)
    assert as_float16.embedding.dtype == as_float16.scores.dtype == np.float16
    np.testing.assert_array_equal(as_float16.embedding, as_float32.embedding.astype(np.float16))
    np.testing.assert_array_equal(as_float16.scores, as_float32.scores.astype(np.float16))
    assert path.stat().st_size < 0.6 * len(yamnet_tfrecords.serialize(as_float32))
    serialized = next(iter(tfrecords.read_serialized(path)))
    parsed = yamnet_tfrecords.parse_sequence_example(tf.constant(serialized), dtype="float16")
    np.testing.assert_array_equal(parsed["embedding"].numpy(), as_float16.embedding)
    np.testing.assert_array_equal(parsed["scores"].numpy(), as_float16.scores)


def test_record_checks_and_bad_frames():
    ok = yamnet_tfrecords.YAMNetRecord("x", 0.0, 1.0, (3, 1), np.zeros((2, 1024), np.float32),
                                       np.zeros((2, 521), np.float32))
    assert ok.labels == (1, 3)
    with pytest.raises(ValueError, match="share float32 or float16"):
        yamnet_tfrecords.YAMNetRecord("x", 0, 1, (), np.zeros((2, 1024), np.float32), np.zeros((2, 521), np.float16))
    with pytest.raises(ValueError, match=r"\(N, 1024\) and \(N, 521\)"):
        yamnet_tfrecords.YAMNetRecord("x", 0, 1, (), np.zeros((2, 1024), np.float32), np.zeros((3, 521), np.float32))
    example = tf.train.SequenceExample.FromString(yamnet_tfrecords.serialize(ok))
    example.feature_lists.feature_list["yamnet_scores"].feature[0].bytes_list.value[0] = b"\0" * 100
    with pytest.raises(ValueError, match="yamnet_scores frames of"):
        yamnet_tfrecords.parse(example.SerializeToString())
    vggish = tfrecords.serialize(tfrecords.EmbeddingRecord("v", 0.0, 1.0, (), np.zeros((1, 128), np.uint8)))
    with pytest.raises(ValueError, match="not a YAMNet record"):
        yamnet_tfrecords.parse(vggish)


def test_embed_files_with_yamnet(tmp_path: Path, yamnet_models: YAMNetTestModels):
    wav = tmp_path / "dog bark.wav"
    soundfile.write(str(wav), signal(1.2, 3), 16000)
    out = tmp_path / "out"
    argv = ["embed", str(wav), "--out", str(out), "--model", "yamnet", "--models", str(yamnet_models.directory)]
    assert main(argv) == 0
    (record,) = yamnet_tfrecords.read(out / "shard-00000.tfrecord")
    assert record.video_id == "dog bark.wav" and record.num_frames == 2 and record.labels == ()
    assert record.end == pytest.approx(1.2)
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory))
    assert embed_paths([wav], tmp_path / "again", options, progress=False).records == 1


def test_cli_checks_yamnet_files_first(tmp_path: Path, capsys):
    assert main(["smoke-test", "--model", "yamnet", "--models", str(tmp_path)]) == 1
    assert "fetch-models DIR --model yamnet" in capsys.readouterr().out
    csv = tmp_path / "eval_segments.csv"
    csv.write_text("# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=1, num_segs=1, num_unique_labels=1,"
                   " num_positive_labels=1\n# YTID, start_seconds, end_seconds, positive_labels\n"
                   'aa000000001, 0.000, 10.000, "/m/09x0r"\n')
    argv = ["run", str(csv), "--out", str(tmp_path / "run"), "--model", "yamnet", "--models", str(tmp_path)]
    assert main(argv) == 2
    assert "YAMNet model files not found" in capsys.readouterr().err


SMALL_SIZES = {params.WEIGHTS_FILENAME: (1, 64 << 20), params.CLASS_MAP_FILENAME: (1, 1 << 20)}


def test_fetch_models_yamnet_downloads_resumes_and_checks(tmp_path: Path, yamnet_models: YAMNetTestModels):
    files = {params.WEIGHTS_FILENAME: yamnet_models.weights_path.read_bytes(),
             params.CLASS_MAP_FILENAME: yamnet_models.class_map.read_bytes()}
    with RangeServer(files, cut_first_response_at=(1 << 20) + 99) as server:
        urls = {name: server.url + name for name in files}
        got = modelfiles.fetch_models(tmp_path / "m", urls=urls, sizes=SMALL_SIZES)
    assert got.weights.read_bytes() == files[params.WEIGHTS_FILENAME]
    assert got.class_map.read_bytes() == files[params.CLASS_MAP_FILENAME]
    weights_requests = [r for r in server.requests if r[0] == params.WEIGHTS_FILENAME]
    assert weights_requests[0][1] is None and weights_requests[1][1] == f"bytes={(1 << 20) + 99}-", "resumed"
    assert modelfiles.locate_models(tmp_path / "m") == got

    broken = {params.WEIGHTS_FILENAME: files[params.WEIGHTS_FILENAME], params.CLASS_MAP_FILENAME: b"index,mid\n"}
    with RangeServer(broken) as server:
        urls = {name: server.url + name for name in files}
        with pytest.raises(modelfiles.ModelFilesError, match="yamnet_class_map.csv"):
            modelfiles.fetch_models(tmp_path / "n", urls=urls, sizes={**SMALL_SIZES, params.CLASS_MAP_FILENAME: (1, 99)})
    assert not (tmp_path / "n" / params.CLASS_MAP_FILENAME).exists()
    with RangeServer({**files, params.WEIGHTS_FILENAME: b"x" * 1000}) as server:  # official sizes: 15 MB or more
        with pytest.raises(modelfiles.ModelFilesError, match=r"yamnet.h5 has 1000 bytes, expected 15005476\.\."):
            modelfiles.fetch_models(tmp_path / "o", urls={name: server.url + name for name in files})
    assert not (tmp_path / "o" / params.WEIGHTS_FILENAME).exists()


def test_official_sources():
    assert modelfiles.OFFICIAL_URLS[params.WEIGHTS_FILENAME] == "https://storage.googleapis.com/audioset/yamnet.h5"
    assert modelfiles.OFFICIAL_URLS[params.CLASS_MAP_FILENAME].endswith(
        "tensorflow/models/master/research/audioset/yamnet/yamnet_class_map.csv")
