"""`audiosetdl embed`: inputs (directories, lists, IDs that cannot collide), exact chunked framing of
long files, failures that never stop the run, resume over the manifest, shards and formats."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from audiosetdl import tfrecords, yamnet_tfrecords
from audiosetdl.audio import decode_any, stream_any, stream_audio
from audiosetdl.cli import main
from audiosetdl.config import EmbedOptions, ExtractOptions
from audiosetdl.embed import embed_paths
from audiosetdl.embed_output import INPUTS_DIR, LEGACY_MANIFEST, MANIFEST
from audiosetdl.extract_models import VGGishAdapter, YAMNetAdapter
from audiosetdl.inputs import EmbedError, InputError, resolve_inputs
from audiosetdl.pipeline import run_batched, stream_inputs


def signal(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def write(path: Path, seconds: float, seed: int, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal(seconds, seed, rate), rate)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "audio"
    write(root / "a" / "x.wav", 2.5, 1, 44100)  # resampled on decode
    write(root / "b" / "x.wav", 3.0, 2)  # same name, another folder
    write(root / "b" / "c" / "y.FLAC", 1.5, 3)  # extensions match case-insensitively
    write(root / "short.wav", 0.5, 4)  # under one VGGish example
    (root / "bad.wav").write_bytes(b"RIFF not really a wave file")
    (root / "b" / "notes.txt").write_text("not audio")
    return root


def shard_records(out: Path) -> dict:
    return {r.video_id: r for r in tfrecords.read(sorted(out.glob("shard-*.tfrecord")))}


@pytest.mark.parametrize("adapter", [VGGishAdapter, YAMNetAdapter])
@pytest.mark.parametrize("seconds", [0.3, 0.975, 1.0, 2.07, 5.3])
def test_chunked_framing_is_exactly_whole_framing(adapter, seconds):
    samples = signal(seconds, 7)
    whole = adapter.features(samples)
    for chunk in (15_600, 16_001, 40_000, len(samples) + 1):
        parts = list(stream_inputs((samples[i: i + chunk] for i in range(0, len(samples), chunk)), adapter))
        chunked = np.concatenate(parts)
        assert chunked.shape == whole.shape, (chunk, seconds)
        np.testing.assert_array_equal(chunked, whole)  # bit for bit: every step is local to its frame


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_clip_format_fast_path_gives_ffmpegs_samples(tmp_path, suffix):
    path = write(tmp_path / f"clip{suffix}", 2.3, 6)
    fast = np.concatenate(list(stream_audio(path, 5000)))
    assert np.array_equal(fast, np.concatenate(list(stream_any(path, 7000))))
    assert np.array_equal(fast, decode_any(path)) and len(fast) == round(2.3 * 16000)


def test_inputs_ids_globs_and_lists(tree, tmp_path):
    inputs = resolve_inputs([tree], EmbedOptions().glob)
    assert [i.id for i in inputs] == ["a/x.wav", "b/c/y.FLAC", "b/x.wav", "bad.wav", "short.wav"]
    assert [i.id for i in resolve_inputs([tree / "b" / "x.wav"], ("*.wav",))] == ["x.wav"]
    assert [i.id for i in resolve_inputs([tree], ("*.flac",))] == ["y.FLAC"]
    listing = tmp_path / "list.txt"
    listing.write_text("# inputs\naudio/a/x.wav\n\naudio/missing.wav\n")
    with pytest.raises(InputError, match=r"list.txt:4: audio/missing.wav"):
        resolve_inputs([], ("*.wav",), str(listing))
    listing.write_text(f"audio/a/x.wav\n{tree / 'b'}\n")
    assert [i.id for i in resolve_inputs([tree / "a" / "x.wav"], ("*.wav",), str(listing))] == ["a/x.wav", "b/x.wav"]


def test_embed_tree_failures_shards_and_resume(tree, tmp_path, vggish_models, vggish_embedder):
    out = tmp_path / "out"
    options = ExtractOptions(batch_size=3, decode_threads=2, models=str(vggish_models.directory))
    summary = embed_paths([tree], out, options, EmbedOptions(shard_size=2), embedder=vggish_embedder, progress=False)
    assert (summary.records, summary.frames, summary.shards) == (3, 2 + 3 + 1, 2)
    assert summary.too_short == ["short.wav"] and summary.exit_status == 1
    (failed,) = summary.failed
    assert failed["id"] == "bad.wav" and "bad.wav" in failed["reason"] and "ffmpeg" in failed["reason"]
    records = shard_records(out)
    assert sorted(records) == ["a/x.wav", "b/c/y.FLAC", "b/x.wav"]
    assert records["b/x.wav"].end == pytest.approx(3.0) and records["b/x.wav"].labels == ()
    for video_id, record in records.items():  # batched across files == one file at a time
        alone = vggish_embedder.postprocess(vggish_embedder.embed(VGGishAdapter.features(decode_any(tree / video_id))))
        assert np.abs(alone.astype(int) - record.embedding.astype(int)).max() <= 1
    manifest = json.loads((out / MANIFEST).read_text())
    assert [s["records"] for s in manifest["shards"]] == [2, 1]
    assert manifest["failed"][0]["id"] == "bad.wav"
    held = {s["file"]: json.loads((out / s["inputs"]).read_text())["inputs"] for s in manifest["shards"]}  # by shard
    assert {e["id"]: e["frames"] for entries in held.values() for e in entries} == \
        {video_id: len(record.embedding) for video_id, record in records.items()}
    assert all(sorted(e["id"] for e in held[name]) == [r.video_id for r in tfrecords.read(out / name)] for name in held)

    # A rerun skips everything embedded (the failed file is tried again), shard files untouched.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    (out / "shard-00009.tfrecord").write_bytes(b"left by a killed run")  # before its `_inputs` file
    (out / INPUTS_DIR / "shard-00008.json").write_text('{"inputs": []}')  # its shard deleted by hand
    again = embed_paths([tree], out, options, EmbedOptions(shard_size=2), embedder=vggish_embedder, progress=False)
    assert (again.unchanged, again.records, len(again.failed)) == (4, 0, 1)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == stamps
    assert sorted(p.name for p in (out / INPUTS_DIR).iterdir()) == ["shard-00000.json", "shard-00001.json"]

    # A changed file: its shard goes, its inputs are embedded again; no ID is written twice.
    changed = tree / "b" / "x.wav"
    write(changed, 4.0, 9)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = embed_paths([tree], out, options, EmbedOptions(shard_size=2), embedder=vggish_embedder, progress=False)
    assert third.records in (1, 2) and third.unchanged == 4 - third.records
    ids = [r.video_id for r in tfrecords.read(sorted(out.glob("shard-*.tfrecord")))]
    assert sorted(ids) == ["a/x.wav", "b/c/y.FLAC", "b/x.wav"]
    assert shard_records(out)["b/x.wav"].embedding.shape == (4, 128)

    with pytest.raises(EmbedError, match="choose another --out"):
        embed_paths([tree], out, ExtractOptions(model="yamnet"), EmbedOptions(), progress=False)


def test_long_file_in_chunks_matches_whole(tmp_path, yamnet_models):
    wav = write(tmp_path / "long.wav", 7.3, 5)
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory), batch_size=4)
    small = embed_paths([wav], tmp_path / "small", options, EmbedOptions(chunk_seconds=1.3), progress=False)
    whole = embed_paths([wav], tmp_path / "whole", options, EmbedOptions(chunk_seconds=60), progress=False)
    assert small.frames == whole.frames == 15  # 1 + ceil((7.3 s - 0.975 s) / 0.48 s)
    (a,) = yamnet_tfrecords.read(tmp_path / "small" / "shard-00000.tfrecord")
    (b,) = yamnet_tfrecords.read(tmp_path / "whole" / "shard-00000.tfrecord")
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=0, atol=1e-5)


def test_the_bar_shows_audio_decoded_while_a_long_file_is_still_running(tmp_path, yamnet_models, monkeypatch):
    """The bar counts files, so a long file alone would show 0/1 until it ends: beside it, the audio
    decoded so far, redrawn from the decoding threads."""
    import io

    from tqdm import tqdm

    from audiosetdl import embed

    drawn = []
    monkeypatch.setattr(embed.AudioProgress, "REDRAW_S", 0.0)
    original = embed.AudioProgress.add

    def add(self, count):
        original(self, count)
        drawn.append((self.bar.n, str(self.bar)))  # files finished, and what the bar shows, at each chunk

    monkeypatch.setattr(embed.AudioProgress, "add", add)
    monkeypatch.setattr(embed, "tqdm", lambda **kw: tqdm(**{**kw, "file": io.StringIO(), "disable": False}))
    wav = write(tmp_path / "long.wav", 7.3, 5)
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory), batch_size=4)
    embed_paths([wav], tmp_path / "out", options, EmbedOptions(chunk_seconds=2.0), progress=False)
    assert len(drawn) == 4  # 2 + 2 + 2 + 1.3 s
    assert all(finished == 0 for finished, _ in drawn)  # all drawn before the file was done
    assert "0:00:02 of audio decoded" in drawn[0][1] and "0:00:07 of audio decoded" in drawn[-1][1]


def test_npz_and_parquet_layouts(tmp_path, yamnet_models):
    files = [write(tmp_path / "in" / "one.wav", 1.2, 1), write(tmp_path / "in" / "two.wav", 2.0, 2)]
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory))
    embed_paths(files, tmp_path / "npz", options, EmbedOptions(format="npz"), progress=False)
    data = np.load(tmp_path / "npz" / "shard-00000.npz")
    assert list(data["video_id"]) == ["one.wav", "two.wav"] and list(data["offsets"]) == [0, 2, 6]
    assert data["embedding"].shape == (6, 1024) and data["scores"].shape == (6, 521)
    np.testing.assert_allclose(data["frame_start_seconds"], [0, 0.48, 0, 0.48, 0.96, 1.44])
    np.testing.assert_allclose(data["end_seconds"], [1.2, 2.0])
    embed_paths(files, tmp_path / "pq", options, EmbedOptions(format="parquet"), progress=False)
    frame = pd.read_parquet(tmp_path / "pq")  # the directory reads as a dataset: `_manifest.json` is skipped
    assert list(frame["video_id"]) == ["one.wav"] * 2 + ["two.wav"] * 4 and list(frame["frame"]) == [0, 1, 0, 1, 2, 3]
    scores = np.stack(frame["scores"])  # another run: batches may be composed in another order
    assert scores.dtype == np.float32 and frame["start_seconds"].iloc[5] == pytest.approx(1.44)
    np.testing.assert_allclose(scores, data["scores"], rtol=0, atol=1e-6)
    assert np.stack(frame["embedding"]).shape == (6, 1024)


def test_an_output_directory_of_the_one_manifest_layout_is_taken_over_without_embedding_again(tmp_path,
                                                                                          vggish_models):
    files = [write(tmp_path / "in" / f"f{i}.wav", 1.5, i) for i in range(3)]
    out, options = tmp_path / "out", ExtractOptions(models=str(vggish_models.directory))
    embed_paths(files, out, options, EmbedOptions(shard_size=2), progress=False)
    manifest = json.loads((out / MANIFEST).read_text())
    for shard in manifest["shards"]:  # as the releases before `_inputs` wrote it: every input in one file
        shard["inputs"] = json.loads((out / shard["inputs"]).read_text())["inputs"]
    (out / LEGACY_MANIFEST).write_text(json.dumps(manifest))
    (out / MANIFEST).unlink()
    for journal in (out / INPUTS_DIR).iterdir():
        journal.unlink()
    again = embed_paths(files, out, options, EmbedOptions(shard_size=2), progress=False)
    assert (again.unchanged, again.records, again.shards) == (3, 0, 2)
    assert not (out / LEGACY_MANIFEST).exists() and len(list((out / INPUTS_DIR).iterdir())) == 2
    assert [s["records"] for s in json.loads((out / MANIFEST).read_text())["shards"]] == [2, 1]


def test_cli_embed_exit_status_and_list(tree, tmp_path, vggish_models, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tree / 'bad.wav'}\n{tree / 'b'}\n")
    argv = ["embed", "--from-list", str(listing), "--out", str(tmp_path / "o"), "--models", str(vggish_models.directory)]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "2 files embedded" in printed and "1 failed" in printed and "bad.wav: ffmpeg could not decode" in printed
    assert sorted(shard_records(tmp_path / "o")) == ["b/c/y.FLAC", "b/x.wav"]
    assert main(["embed", str(tmp_path / "nope.wav"), "--out", str(tmp_path / "o2")]) == 2
    assert "nope.wav: no such file" in capsys.readouterr().err


def test_pipeline_routes_rows_and_isolates_a_failure_mid_file():
    def inputs(source):
        for part in range(3):
            if source == "bad" and part == 2:
                raise ValueError("bad: broke after two chunks")
            yield np.full((5 + part, 1), float(len(source) * 10 + part))

    sources = ["a", "bad", "cccc", "dd"]
    calls = []

    def model(batch):
        calls.append(len(batch))
        return batch * 2

    done = {d.source: d for d in run_batched(sources, inputs, model, batch_size=4, threads=2, width=1, prefetch=2)}
    assert sorted(done) == sorted(sources) and done["bad"].rows is None and "broke" in str(done["bad"].error)
    for source in ("a", "cccc", "dd"):
        expected = np.concatenate([np.full((5 + p, 1), 2.0 * (len(source) * 10 + p)) for p in range(3)])
        np.testing.assert_array_equal(done[source].rows, expected)
    assert all(n == 4 for n in calls[:-1]) and sum(calls) == 3 * 18 + 11  # full batches spanning files


def test_numpy_blas_runs_on_one_thread_while_the_pipeline_runs():
    import threadpoolctl

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # what numpy has on a 2-core machine
        assert blas_threads() == {2}
        seen = []

        def inputs(source):
            seen.append(blas_threads())
            yield np.ones((3, 1), np.float32)

        done = list(run_batched(["a", "b"], inputs, lambda batch: batch, batch_size=2, threads=2, width=1))
        assert len(done) == 2 and seen == [{1}, {1}]
        assert blas_threads() == {2}  # given back when the run ends


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_decoding_threads_run_nicer_than_the_model_and_the_caller_keeps_its_priority():
    import os
    import threading

    from audiosetdl.pipeline import DECODE_NICENESS

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    caller = niceness()
    seen, in_model = [], []

    def inputs(source):
        seen.append(niceness())
        yield np.ones((3, 1), np.float32)

    def model(batch):
        in_model.append(niceness())
        return batch

    assert len(list(run_batched(["a", "b", "c"], inputs, model, batch_size=2, threads=2, width=1))) == 3
    assert set(seen) == {min(19, caller + DECODE_NICENESS)} and set(in_model) == {caller} and niceness() == caller


def test_a_killed_embed_leaves_whole_shards_and_resumes_and_a_second_run_meanwhile_is_refused(tmp_path, vggish_models):
    files = [write(tmp_path / "in" / f"f{i}.wav", 2.0 + 0.1 * i, i) for i in range(8)]
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "audiosetdl", "embed", str(tmp_path / "in"), "--out", str(out), "--shard-size", "1",
            "--decode-threads", "1", "--batch-size", "1", "--models", str(vggish_models.directory)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / MANIFEST).exists() and json.loads((out / MANIFEST).read_text())["shards"]:
            break
        time.sleep(0.05)
    with pytest.raises(EmbedError, match=f"in use by process {process.pid} .*two runs cannot share one --out"):
        embed_paths([tmp_path / "in"], out, ExtractOptions(models=str(vggish_models.directory)), progress=False)
    process.kill()
    assert process.wait() == -9, "killed while running"  # (and its lock goes with it: the rerun below takes it)
    written = json.loads((out / MANIFEST).read_text())["shards"]
    assert written and all(len(list(tfrecords.read(out / s["file"]))) == 1 for s in written)  # whole shards only
    again = embed_paths([tmp_path / "in"], out, ExtractOptions(models=str(vggish_models.directory)), progress=False)
    assert again.unchanged >= len(written) and again.unchanged + again.records == len(files)
    ids = [r.video_id for r in tfrecords.read(sorted(out.glob("shard-*.tfrecord")))]
    assert sorted(ids) == [f"f{i}.wav" for i in range(8)]
