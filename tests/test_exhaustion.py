"""Retry budgets across reruns: a segment whose transient failure (here a server answering an HTML
page instead of audio) comes back after its retries in each of two runs is `exhausted`, and the
next rerun makes no request at all unless --retry-failed; outages never exhaust. Real yt-dlp
(generic extractor), real ffmpeg, the loopback media server, through the CLI."""

from __future__ import annotations

import json

from audiosetdl.ledger import read_ledger
from tests.media import Shape
from tests.mediaserver import MediaServer
from tests.test_download_e2e import download, make_run

GARBAGE = (b"<!DOCTYPE html><html><body>Sorry, something went wrong.</body></html>\n" * 3000)[:200_000]


def test_exhausted_after_two_runs_then_zero_requests(tmp_path, media_60s):
    rows = [("garbage0001", 5.0, 15.0), ("outage00001", 5.0, 15.0), ("goodvideo01", 5.0, 15.0)]
    run = make_run(tmp_path, rows)
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(GARBAGE)
    with MediaServer() as server:
        server.add("garbage0001", garbage, "audio/mp4")
        server.add("outage00001", media_60s[Shape.DASH_M4A].path)
        server.add("goodvideo01", media_60s[Shape.DASH_M4A].path)
        server.fail("outage00001", "503")  # every request: an outage, never "exhausted"
        for _ in range(2):
            assert download(run, server, "--retries", "1") == 0
        attempts = [r for r in read_ledger(run.ledger_path(0)) if r.ytid == "garbage0001"]
        assert [(r.reason, r.final) for r in attempts] == [("decode_error", False), ("decode_error", True)] * 2
        assert "not audio" in attempts[-1].message
        assert max(r.bytes for r in attempts) <= 64 * 1024  # the head only: garbage is not read to its end

        server.reset_counters()
        assert download(run, server, "--retries", "1") == 0
        assert server.requests("garbage0001") == []  # exhausted: skipped
        assert server.requests("outage00001")  # an outage is retried on every run
        state = json.loads(run.task_state_path(0).read_text())
        assert state["skipped_exhausted"] == 1 and state["done_before"] == 1

        server.clear_failures()  # the outage is over
        assert download(run, server, "--retries", "0") == 0
        assert [r.outcome for r in read_ledger(run.ledger_path(0)) if r.ytid == "outage00001"][-1] == "ok"
        server.reset_counters()
        assert download(run, server, "--retries", "0") == 0
        assert server.requests() == []  # every segment ok or exhausted: not one request

        assert download(run, server, "--retries", "0", "--retry-failed") == 0
        assert server.requests("garbage0001")  # --retry-failed tries it again


def test_a_ledger_written_before_these_fields_still_resumes(tmp_path):
    """Ledgers from before client/format_id/method/notes/final: read, resumed, and tallied."""
    from audiosetdl.config import DownloadOptions
    from audiosetdl.download.resume import plan_resume
    from audiosetdl.ledger import LedgerWriter, ledger_frame
    from audiosetdl.plan import load_plan, load_task

    run = make_run(tmp_path, [("oldledger01", 0.0, 10.0), ("oldledger02", 0.0, 10.0)])
    old = ('{"ytid":"oldledger01","subset":"eval","start":0.0,"end":10.0,"outcome":"failed","reason":"decode_error",'
           '"permanent":false,"message":"x","attempt":4,"bytes":10,"seconds":1.0,"timestamp":1.0,"padded":0.0}\n'
           '{"ytid":"oldledger02","subset":"eval","start":0.0,"end":10.0,"outcome":"failed","reason":"private",'
           '"permanent":true,"message":"Private video","attempt":1,"bytes":0,"seconds":1.0,"timestamp":2.0,"padded":0.0}\n')
    run.ledger_path(0).parent.mkdir(parents=True, exist_ok=True)
    run.ledger_path(0).write_text(old)
    frame = ledger_frame(run.ledger_path(0))
    assert list(frame.client.fillna("")) == ["", ""]  # the new columns are there, empty
    with LedgerWriter(run.ledger_path(0)) as writer:
        todo, summary = plan_resume(run, 0, load_task(run, load_plan(run), 0), DownloadOptions(), writer)
    assert [(s.ytid, attempt) for s, attempt in todo] == [("oldledger01", 2)]  # no `final`: not exhausted
    assert summary.skipped_permanent == 1
