"""The extract stage on a real run directory: TFRecords per key in the released schema, batched
inference that matches per-clip inference, too-short clips, and reruns that skip or rewrite keys."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiosetdl import tfrecords
from audiosetdl.config import ExtractOptions, PlanOptions
from audiosetdl.embed import embed_paths
from audiosetdl.extract import run_task
from audiosetdl.ledger import OK, Attempt, LedgerWriter, read_ledger
from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir
from audiosetdl.vggish import waveform_to_examples

ROWS = [  # (ytid, start, end, labels)
    ("aa000000001", 30.0, 40.0, ("/m/09x0r", "/m/04rlf")),
    ("aa000000001", 0.0, 10.0, ("/m/04rlf",)),
    ("-a000000002", 5.0, 15.0, ("/m/0l15bq",)),
    ("aa000000003", 0.0, 0.5, ("/m/09x0r",)),  # too short for one example
    ("bb000000004", 0.0, 3.3, ("/m/032s66", "/m/09x0r")),
    ("cc000000005", 0.0, 10.0, ("/m/09x0r",)),
]


def signal(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * seed) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def run(tmp_path, shared_audioset) -> RunDir:
    return make_run(tmp_path, shared_audioset / "class_labels_indices.csv")


def make_run(tmp_path, labels: Path | None) -> RunDir:
    """ROWS planned into 2 tasks (with the class index `labels`, else with --no-labels), and their clips."""
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, s, e, labels) for y, s, e, labels in ROWS], "t"))
    if labels is not None:
        shutil.copy(labels, tmp_path)
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=2, labels=labels is not None)))
    plan = load_plan(run)
    for task in plan.tasks:
        with LedgerWriter(run.ledger_path(task.index)) as ledger:
            for i, segment in enumerate(load_task(run, plan, task.index)):
                if segment.ytid == "cc000000005":
                    continue  # its download failed: no clip
                path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
                path.parent.mkdir(parents=True, exist_ok=True)
                samples = signal(segment.end - segment.start, int(segment.start) + len(segment.ytid) + i)
                soundfile.write(str(path), samples, 16000, subtype="PCM_16", format="FLAC")
                ledger.append(Attempt(segment.ytid, segment.subset, segment.start, segment.end, OK))
    return run


def all_records(run: RunDir) -> dict[str, list]:
    return {p.stem: list(tfrecords.read(p)) for p in sorted((run.root / "embeddings" / "eval").glob("*.tfrecord"))}


def test_extract_writes_released_schema(run, vggish_models, vggish_embedder, shared_audioset):
    options = ExtractOptions(models=str(vggish_models.directory), batch_size=4)
    plan = load_plan(run)
    summaries = [run_task(run, t.index, options, progress=False) for t in plan.tasks]
    assert sum(s.keys_written for s in summaries) == 4  # aa, -a, bb, cc (cc: no clip, marker only)
    assert sum(s.too_short for s in summaries) == 1
    records = all_records(run)
    assert set(records) == {"aa", "-a", "bb"}
    assert [(r.video_id, r.start) for r in records["aa"]] == [("aa000000001", 0.0), ("aa000000001", 30.0)]
    index = ClassIndex.load(shared_audioset / "class_labels_indices.csv").index_of
    first = records["aa"][1]
    assert first.labels == tuple(sorted([index["/m/09x0r"], index["/m/04rlf"]]))
    assert first.embedding.shape == (10, 128) and first.embedding.dtype == np.uint8
    assert records["bb"][0].embedding.shape == (3, 128)
    assert json.loads(run.embeddings_marker("eval", "cc").read_text())["records"] == 0
    too_short = [r for t in plan.tasks for r in read_ledger(run.ledger_path(t.index)) if r.reason == "too_short"]
    assert [(r.ytid, r.permanent) for r in too_short] == [("aa000000003", True)]

    # Batched across clips == one clip at a time, within quantization noise.
    for record in [r for rs in records.values() for r in rs]:
        path = run.clip_path("eval", record.video_id, record.start, record.end)
        samples, _ = soundfile.read(str(path), dtype="int16")
        alone = vggish_embedder.postprocess(vggish_embedder.embed(waveform_to_examples(samples / 32768.0)))
        diff = np.abs(alone.astype(int) - record.embedding.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.99

    # The YouTube-8M starter code can read what we write.
    serialized = next(iter(tfrecords.read_serialized(run.embeddings_path("eval", "aa"))))
    assert tfrecords.youtube8m_problems(serialized) == []


def test_rerun_skips_unchanged_keys_and_rewrites_changed_ones(run, vggish_models):
    options = ExtractOptions(models=str(vggish_models.directory), batch_size=8)
    plan = load_plan(run)
    for task in plan.tasks:
        run_task(run, task.index, options, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in (run.root / "embeddings").rglob("*.tfrecord")}
    again = [run_task(run, t.index, options, progress=False) for t in plan.tasks]
    assert sum(s.keys_written for s in again) == 0 and sum(s.keys_unchanged for s in again) == 4
    assert stamp == {p: p.stat().st_mtime_ns for p in (run.root / "embeddings").rglob("*.tfrecord")}

    # cc's clip arrives later: only its key is rewritten.
    path = run.clip_path("eval", "cc000000005", 0.0, 10.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal(10, 9), 16000, subtype="PCM_16", format="FLAC")
    again = [run_task(run, t.index, options, progress=False) for t in plan.tasks]
    assert sum(s.keys_written for s in again) == 1
    assert [r.video_id for r in tfrecords.read(run.embeddings_path("eval", "cc"))] == ["cc000000005"]
    assert stamp == {p: p.stat().st_mtime_ns for p in stamp}


def test_no_yt8m_id_and_missing_labels(run, vggish_models):
    options = ExtractOptions(models=str(vggish_models.directory), yt8m_id=False)
    task = load_plan(run).task_of_key()[("eval", "bb")]
    run_task(run, task, options, progress=False)
    serialized = next(iter(tfrecords.read_serialized(run.embeddings_path("eval", "bb"))))
    assert any("id" in problem for problem in tfrecords.youtube8m_problems(serialized))
    run.labels_path.unlink()
    with pytest.raises(Exception, match="fetch-metadata"):
        run_task(run, task, options, progress=False)


def test_no_labels_plan_gives_records_without_labels(tmp_path, vggish_embedder):
    run = make_run(tmp_path, None)  # no class index anywhere: planned with --no-labels
    for task in load_plan(run).tasks:
        run_task(run, task.index, ExtractOptions(), embedder=vggish_embedder, progress=False)
    records = [r for rs in all_records(run).values() for r in rs]
    assert len(records) == 4 and all(r.labels == () for r in records)


def test_missing_models_say_what_to_run(run, tmp_path):
    with pytest.raises(Exception, match="fetch-models"):
        run_task(run, 0, ExtractOptions(models=str(tmp_path / "nothing")), progress=False)


def test_embed_arbitrary_files(tmp_path, vggish_models):
    wav = tmp_path / "dog bark.wav"
    soundfile.write(str(wav), signal(2.5 * 44100 / 16000, 3), 44100)  # 2.5 s at 44.1 kHz: resampled on decode
    out = tmp_path / "out"
    assert embed_paths([wav], out, ExtractOptions(models=str(vggish_models.directory)), progress=False).records == 1
    (record,) = tfrecords.read(out / "shard-00000.tfrecord")
    assert record.video_id == "dog bark.wav" and record.embedding.shape == (2, 128) and record.labels == ()
