"""`audiosetdl run`, the main job: plan -> download -> extract on this machine, then a rerun that
does nothing. Real yt-dlp and ffmpeg against the loopback server, real TensorFlow with a test
checkpoint (official names and shapes, random weights)."""

import shutil

import pytest

from audiosetdl import tfrecords
from audiosetdl.cli import main
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan
from audiosetdl.rundir import RunDir
from tests.media import Shape
from tests.mediaserver import MediaServer

pytest.importorskip("audiosetdl.download.fetcher")


@pytest.mark.slow
def test_run_plans_downloads_extracts_and_resumes(tmp_path, media_60s, vggish_models, shared_audioset, capsys):
    rows = [("-aaaaaaaaa1", 0.0, 10.0, ("/m/09x0r",)), ("-aaaaaaaaa2", 30.0, 40.0, ("/m/04rlf", "/m/09x0r")),
            ("bbbbbbbbbb1", 50.0, 60.0, ("/m/0l15bq",)), ("ccccccccccc", 5.0, 15.0, ("/m/09x0r",))]
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(*row) for row in rows], "t"))
    shutil.copy(shared_audioset / "class_labels_indices.csv", tmp_path)
    run = RunDir(tmp_path / "run")
    with MediaServer() as server:
        for ytid, *_ in rows[:3]:
            server.add(ytid, media_60s[Shape.DASH_WEBM].path)  # ccccccccccc is not there: 404
        argv = ["run", str(csv), "--out", str(run.root), "--tasks", "2", "--url-template", server.url_template("webm"),
                "--max-rate", "0", "--workers", "2", "--models", str(vggish_models.directory), "--batch-size", "8",
                "--log-level", "WARNING"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "plan created" in out and "unavailable" in out
        records = {r.video_id: r for p in sorted((run.root / "embeddings" / "eval").glob("*.tfrecord"))
                   for r in tfrecords.read(p)}
        assert sorted(records) == ["-aaaaaaaaa1", "-aaaaaaaaa2", "bbbbbbbbbb1"]
        assert all(r.embedding.shape == (10, 128) for r in records.values())
        assert len(list((run.root / "embeddings" / "eval").glob("*.done.json"))) == len(load_plan(run).task_of_key())

        requests = len(server.requests())
        stamps = {p: p.stat().st_mtime_ns for p in (run.root / "embeddings").rglob("*")}
        assert main(argv) == 0
        assert "plan unchanged" in capsys.readouterr().out
        assert len(server.requests()) == requests  # nothing fetched again
        assert stamps == {p: p.stat().st_mtime_ns for p in (run.root / "embeddings").rglob("*")}
