"""The download stage end to end: real yt-dlp, real ffmpeg, the real clip fetcher, against the
loopback media server. Through the CLI with yt-dlp's generic extractor (`--url-template`), and
through a test-only YouTube extractor that answers like YouTube (formats, or its refusals)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosetdl.audio import clip_is_valid
from audiosetdl.cli import main
from audiosetdl.config import DownloadOptions, PlanOptions
from audiosetdl.ledger import read_ledger
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import TEMP_MARK, RunDir
from tests.media import Shape, clip_byte_budget
from tests.mediaserver import MediaServer
from tests.ytdlp_test_extractor import FakeYoutubeIE, audio_format, youtubedl_with_fake

fetcher = pytest.importorskip("audiosetdl.download.fetcher", reason="the clip fetcher is not there yet")
REPO = Path(__file__).resolve().parents[1]


def make_run(tmp_path: Path, rows: list[tuple[str, float, float]], tasks: int = 1) -> RunDir:
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, s, e, ("/m/09x0r",)) for y, s, e in rows], "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=tasks, labels=False)))
    return run


def ledger(run: RunDir) -> dict[str, list]:
    records = {}
    for task in load_plan(run).tasks:
        for r in read_ledger(run.ledger_path(task.index)):
            records.setdefault(r.ytid, []).append(r)
    return records


def download(run: RunDir, server: MediaServer, *extra: str) -> int:
    return main(["download", str(run.root), "--url-template", server.url_template("m4a"), "--max-rate", "0",
                 "--workers", "2", "--retries", "2", "--log-level", "WARNING", *extra])


def test_cli_downloads_retries_explains_and_resumes_with_zero_requests(tmp_path, media_60s):
    rows = [("-leadingdsh", 12.0, 22.0), ("retried0001", 0.0, 10.0), ("gone0000001", 5.0, 15.0),
            ("toolate0001", 55.0, 65.0), ("throttled01", 20.0, 30.0)]
    run = make_run(tmp_path, rows)
    with MediaServer() as server:
        for ytid, _, _ in rows:
            if ytid != "gone0000001":
                server.add(ytid, media_60s[Shape.DASH_M4A].path)
        server.fail("retried0001", "503", times=1)
        assert download(run, server) == 0
        records = ledger(run)
        assert [(r.outcome, r.reason) for r in records["retried0001"]] == [("failed", "network"), ("ok", "")]
        assert [(r.outcome, r.reason, r.permanent) for r in records["gone0000001"]] == [("failed", "unavailable", True)]
        late = records["toolate0001"][-1]
        assert late.outcome == "ok" and abs(late.padded - 5.0) < 0.05  # the video ends at 60 s
        plan = load_plan(run)
        for segment in load_task(run, plan, 0):
            path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
            assert path.exists() == (segment.ytid != "gone0000001")
            if path.exists():
                assert clip_is_valid(path, segment)
        assert json.loads(run.task_state_path(0).read_text())["state"] == "finished"

        before = len(server.requests())
        assert download(run, server) == 0
        assert len(server.requests()) == before  # a rerun over a finished task makes no request


def test_youtube_refusal_end_to_end_and_bounded_bytes(tmp_path, media_60s):
    """Through the YouTube-like extractor: no open-ended request, bytes within the bound, and a
    YouTube refusal classified with its own text."""
    media = media_60s[Shape.DASH_M4A]
    rows = [("-private001", 0.0, 10.0), ("okvideo0001", 20.0, 30.0), ("okvideo0002", 41.5, 51.5)]
    run = make_run(tmp_path, rows)
    with MediaServer() as server:
        for ytid in ("okvideo0001", "okvideo0002"):
            server.add(ytid, media.path)

        def factory(worker_index: int):  # runs in the forked worker
            fake = FakeYoutubeIE()
            fake.refuse("-private001", "private")
            for ytid in ("okvideo0001", "okvideo0002"):
                fake.serve(ytid, [audio_format(server.url_for(ytid), "m4a", filesize=media.size_bytes)],
                           duration=media.duration_s)
            return fetcher.ClipFetcher(fetcher.FetchSettings(), ydl=youtubedl_with_fake(fake))

        from audiosetdl.download.stage import run_task

        summary = run_task(run, 0, DownloadOptions(workers=2, max_rate=0), fetcher_factory=factory, progress=False)
        assert summary.ok == 2 and summary.failed == {"private": 1}
        records = ledger(run)
        refusal = records["-private001"][-1]
        assert (refusal.reason, refusal.permanent) == ("private", True)
        assert "Private video" in refusal.message and "-private001" not in refusal.message
        assert not server.open_ended_requests()
        for ytid in ("okvideo0001", "okvideo0002"):
            assert records[ytid][-1].bytes == server.bytes_sent(ytid)
            assert server.bytes_sent(ytid) <= 2.5 * clip_byte_budget(media) + 64 * 1024


KILL_SCRIPT = """
import sys
from audiosetdl.cli import main
sys.exit(main(["download", sys.argv[1], "--url-template", sys.argv[2], "--max-rate", "0", "--workers", "2",
               "--log-level", "WARNING"]))
"""


def test_sigkill_mid_task_then_rerun(tmp_path, media_60s):
    rows = [(f"k{i:010d}", float(i % 5) * 10, float(i % 5) * 10 + 10) for i in range(16)]
    run = make_run(tmp_path, rows)
    with MediaServer(latency=0.15) as server:
        for ytid, _, _ in rows:
            server.add(ytid, media_60s[Shape.DASH_M4A].path)
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run.root), server.url_template("m4a")],
                                cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and len(list((run.root / "audio").rglob("*.flac"))) < 3:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        finished = [p for p in (run.root / "audio").rglob("*.flac") if TEMP_MARK not in p.name]
        assert 0 < len(finished) < len(rows), "kill the task mid-way"
        plan = load_plan(run)
        for segment in load_task(run, plan, 0):
            path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
            if path.exists():
                assert clip_is_valid(path, segment)  # nothing half-written under a final name
        server.latency = 0.0
        assert download(run, server) == 0
        assert not [p for p in (run.root / "audio").rglob("*") if TEMP_MARK in p.name]
        assert {y for y, rs in ledger(run).items() if rs[-1].outcome == "ok"} == {y for y, _, _ in rows}


def test_429_pauses_the_pool_then_resumes(tmp_path, media_60s):
    rows = [("limited0001", 0.0, 10.0), ("after000001", 10.0, 20.0), ("after000002", 20.0, 30.0)]
    run = make_run(tmp_path, rows)
    with MediaServer() as server:
        for ytid, _, _ in rows:
            server.add(ytid, media_60s[Shape.DASH_M4A].path)
        server.fail("limited0001", "429", times=1)
        began = time.monotonic()
        assert download(run, server, "--workers", "1", "--cooldown", "1.5", "--retries", "0") == 0
        assert time.monotonic() - began >= 1.5
        records = ledger(run)
        assert [(r.outcome, r.reason) for r in records["limited0001"]] == [("failed", "rate_limited"), ("ok", "")]
        assert json.loads(run.task_state_path(0).read_text())["cooldowns"] == 1
        assert all(rs[-1].outcome == "ok" for rs in records.values())
