"""Player-client fallback against YouTube as it is in 2026, offline: a client whose media URL serves
the first MiB and then 403s (partial PO-token enforcement), a client whose formats yt-dlp skips for
a missing PO token or SABR, and one that serves. Real yt-dlp (its extractor_args reach the test
extractor as they reach YouTube's), real ffmpeg, the loopback media server."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosetdl.config import DEFAULT_PLAYER_CLIENTS, DownloadOptions, PlanOptions
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.fetcher import ClipFetcher, FetchSettings
from audiosetdl.ledger import read_ledger
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir
from audiosetdl.status import report, report_lines
from audiosetdl.status_plot import plot
from tests.media import MediaFile, Shape
from tests.mediaserver import MediaServer
from tests.test_fetcher import check_clip
from tests.ytdlp_test_extractor import FakeYoutubeIE, Skipped, audio_format, youtubedl_with_fake

MIB = 1024 * 1024
START = 200.0  # ~3.2 MB into a 300-s m4a: past what a PO-token-less URL serves


@pytest.fixture(scope="module")
def m4a_300(media_300s) -> MediaFile:
    return media_300s[Shape.DASH_M4A]


@pytest.fixture(scope="module")
def master16_300(media_library, m4a_300) -> Path:
    return media_library.master_at(m4a_300.spec.signal, 16_000)


def served(server: MediaServer, name: str, media: MediaFile) -> dict:
    url = server.add(name, media.path)
    return audio_format(url, media.ext, filesize=media.path.stat().st_size)


def test_a_403_past_the_first_mib_falls_back_to_the_next_client(media_server, fake, m4a_300, master16_300, tmp_path):
    ytid = "-clientfb01"
    media_server.forbid_past(f"{ytid}~default", MIB)
    fake.serve_clients(ytid, {"default": [served(media_server, f"{ytid}~default", m4a_300)],
                              "web_safari": Skipped("pot"),
                              "tv": [served(media_server, f"{ytid}~tv", m4a_300)]}, duration=300.0)
    charges = []  # each re-resolve asks the run's egress budget for one more request
    with ClipFetcher(FetchSettings(charge=lambda: charges.append(1)), youtubedl_with_fake(fake)) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url(ytid), ytid, START, START + 10, tmp_path / "c.flac")
    check_clip(result, START, master16_300)
    assert len(charges) == 2
    assert (result.client, result.method, result.format_id) == ("tv", "index", "140")
    assert [c for _, c in fake.clients_asked] == ["default", "web_safari", "tv"]
    refused = media_server.requests(f"{ytid}~default")
    assert refused[0].status == 206 and refused[-1].status == 403  # the index read fine; the fragment did not
    assert "default/index: http_error" in result.message and "web_safari: format_unavailable" in result.message
    assert result.notes == ("web_safari https formats skipped: they need a GVS PO Token",)
    assert result.requests == len(media_server.requests())  # every client's media requests are charged


def test_a_video_that_fails_on_every_client_keeps_the_first_clients_reason(media_server, fake, m4a_300, tmp_path):
    ytid = "-allfail001"
    media_server.forbid_past(f"{ytid}~default", MIB)
    media_server.forbid_past(f"{ytid}~tv", MIB)
    fake.serve_clients(ytid, {"default": [served(media_server, f"{ytid}~default", m4a_300)],
                              "web_safari": Skipped("sabr"), "web_embedded": Skipped("pot"),
                              "tv": [served(media_server, f"{ytid}~tv", m4a_300)]}, duration=300.0)
    with ClipFetcher(FetchSettings(), youtubedl_with_fake(fake)) as fetcher, pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url(ytid), ytid, START, START + 10, tmp_path / "c.flac")
    error = caught.value
    assert error.failure.reason is Reason.HTTP_ERROR and not error.failure.permanent
    assert error.client == ",".join(DEFAULT_PLAYER_CLIENTS)
    assert error.failure.message.startswith("every player client failed: default/index: http_error (HTTP")
    assert "web_safari: format_unavailable" in error.failure.message
    assert "default/ytdlp: " in error.failure.message  # yt-dlp's own downloader was the last resort
    assert set(error.notes) == {"web_safari https formats skipped: SABR only (no URL)",
                                "web_embedded https formats skipped: they need a GVS PO Token"}
    assert list(tmp_path.iterdir()) == []


def test_a_refusal_about_the_video_is_not_retried_with_other_clients(fake, tmp_path):
    fake.refuse("-private001", "private")
    with ClipFetcher(FetchSettings(), youtubedl_with_fake(fake)) as fetcher, pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url("-private001"), "-private001", 0.0, 10.0, tmp_path / "c.flac")
    assert caught.value.failure.reason is Reason.PRIVATE and caught.value.client == "default"
    assert fake.clients_asked == [("-private001", "default")]


def test_player_clients_option_sets_the_order(media_server, fake, media_60s, tmp_path):
    media = media_60s[Shape.DASH_WEBM]
    fake.serve_clients("-ordered001", {"tv": Skipped("sabr"), "web_embedded": [served(media_server, "-ordered001", media)]},
                       duration=60.0)
    settings = FetchSettings(player_clients=("tv", "web_embedded"))
    with ClipFetcher(settings, youtubedl_with_fake(fake)) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url("-ordered001"), "-ordered001", 3.0, 13.0, tmp_path / "c.flac")
    assert [c for _, c in fake.clients_asked] == ["tv", "web_embedded"]
    assert (result.client, result.method) == ("web_embedded", "index")


def test_the_ledger_and_status_name_client_method_and_skipped_formats(media_server, fake, m4a_300, tmp_path):
    """Through the download stage: each ledger line says which client and method made the clip
    or met the failure; `status` tallies them, and the PO-token notes."""
    from audiosetdl.download.stage import run_task

    ids = ["-ledgercl01", "-ledgercl02"]
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, START, START + 10, ("/m/09x0r",)) for y in ids], "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=1, labels=False)))
    media_server.forbid_past(f"{ids[0]}~default", MIB)
    fake.serve_clients(ids[0], {"default": [served(media_server, f"{ids[0]}~default", m4a_300)],
                                "web_safari": [served(media_server, f"{ids[0]}~safari", m4a_300)]}, duration=300.0)
    fake.serve_clients(ids[1], {client: Skipped("pot") for client in DEFAULT_PLAYER_CLIENTS}, duration=300.0)

    def factory(worker_index: int):
        return ClipFetcher(FetchSettings(), ydl=youtubedl_with_fake(fake))

    summary = run_task(run, 0, DownloadOptions(workers=1, max_rate=0, retries=0), fetcher_factory=factory,
                       progress=False)
    assert summary.ok == 1 and dict(summary.failed) == {"format_unavailable": 1}
    records = {r.ytid: r for r in read_ledger(run.ledger_path(0))}
    ok, failed = records[ids[0]], records[ids[1]]
    assert (ok.outcome, ok.client, ok.method, ok.format_id) == ("ok", "web_safari", "index", "140")
    assert ok.message.startswith("default/index: http_error")
    assert (failed.reason, failed.client, failed.final) == ("format_unavailable", ",".join(DEFAULT_PLAYER_CLIENTS), True)
    assert "need a GVS PO Token" in failed.notes and "GVS PO Token" in failed.message

    doc = report(run)
    by_client = {(row["client"], row["method"]): row for row in doc["by_client"]}
    assert by_client[("web_safari", "index")]["ok"] == 1
    assert by_client[(",".join(DEFAULT_PLAYER_CLIENTS), "")]["failed"] == 1
    assert doc["notes"] == {f"{c} https formats skipped: they need a GVS PO Token": 1 for c in DEFAULT_PLAYER_CLIENTS}
    text = "\n".join(report_lines(doc))
    assert "web_safari" in text and "need a GVS PO Token" in text
    assert plot(run, doc, tmp_path / "status.png").stat().st_size > 10_000  # with its clients panel
