"""yt-dlp's own downloader as the last resort (method "ytdlp"), and the order of player clients
and methods: clips checked to the sample against the master whichever way they came."""

from __future__ import annotations

import subprocess

import pytest

from audiosetdl.download.errors import ClipError
from audiosetdl.download.fetcher import ClipFetcher, FetchSettings
from tests.media import HlsSpec, Shape
from tests.media_fixtures import SIGNAL_60S
from tests.test_fetcher import CLIP_S, check_clip
from tests.ytdlp_test_extractor import FakeYoutubeIE, audio_format, hls_audio_format, youtubedl_with_fake

CLIENTS = ("default", "web_safari")


def clip_fetcher(fake: FakeYoutubeIE) -> ClipFetcher:
    return ClipFetcher(FetchSettings(player_clients=CLIENTS), youtubedl_with_fake(fake))


@pytest.mark.parametrize("shape, start", [(Shape.DASH_M4A, 23.456), (Shape.DASH_M4A, 0.0), (Shape.DASH_WEBM, 23.456),
                                          (Shape.DASH_WEBM, 0.0)])
def test_every_client_refused_then_ytdlps_downloader(media_server, fake, media_60s, master16, shape, start, tmp_path):
    """Both clients' DASH URLs 403 on our bounded requests (partial PO-token enforcement); the
    last resort, yt-dlp's FFmpegFD with the first client's formats, makes the exact clip (AAC in
    fragmented MP4: the tfdt timeline; Opus in WebM: millisecond timestamps snapped to packets)."""
    media = media_60s[shape]
    url = media_server.add("-lastresort", media.path)
    fmt = audio_format(url, media.ext, filesize=media.size_bytes)
    fake.serve_clients("-lastresort", {client: [fmt] for client in CLIENTS}, duration=60.0)
    media_server.fail("-lastresort", "403", times=2)  # each client's index probe
    with clip_fetcher(fake) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url("-lastresort"), "-lastresort", start, start + CLIP_S,
                               tmp_path / "c.flac")
    assert (result.method, result.client, result.format_id) == ("ytdlp", "default", fmt["format_id"])
    check_clip(result, start, master16)
    assert fake.extractions == ["-lastresort"] * 2  # the last resort reuses the first client's formats
    refused, *ffmpegs = media_server.requests("-lastresort")[1:]
    assert refused.status == 403 and ffmpegs and all(r.status == 206 for r in ffmpegs)  # ffmpeg's own requests
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.flac"]


@pytest.mark.parametrize("start", [0.0, 17.321, 48.5])
def test_a_protocol_without_our_own_path_goes_to_ytdlp(media_server, fake, media_library, master16, start, tmp_path):
    """A DASH manifest (protocol http_dash_segments): no path of ours reads it; yt-dlp's downloader does."""
    manifest = media_library.dash_manifest(SIGNAL_60S)
    base = media_server.add_folder("-dashmpd001", manifest.parent)
    fake.serve("-dashmpd001", [{"format_id": "dash-0", "url": base + manifest.name, "manifest_url": base + manifest.name,
                                "protocol": "http_dash_segments", "ext": "m4a", "acodec": "mp4a.40.2",
                                "vcodec": "none", "container": "m4a_dash", "asr": 44100}], duration=60.0)
    with clip_fetcher(fake) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url("-dashmpd001"), "-dashmpd001", start, start + CLIP_S,
                               tmp_path / "c.flac")
    assert result.method == "ytdlp"
    check_clip(result, start, master16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.flac"]


def test_dash_refused_for_one_client_hls_from_the_next(media_server, fake, media_60s, media_library, master16,
                                                       tmp_path):
    """The first client's DASH URL 403s (client_fixable); the second client has only HLS: the clip
    comes from its covering segments, method "hls"."""
    media = media_60s[Shape.DASH_M4A]
    dash_url = media_server.add("-dashthenhl", media.path)
    hls = media_library.hls(HlsSpec(SIGNAL_60S, segment_type="fmp4"))
    base = media_server.add_folder("-hlsfornext", hls.folder)
    fake.serve_clients("-dashthenhl", {"default": [audio_format(dash_url, "m4a", filesize=media.size_bytes)],
                                       "web_safari": [hls_audio_format(base + hls.playlist.name)]}, duration=60.0)
    media_server.fail("-dashthenhl", "403")
    with clip_fetcher(fake) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url("-dashthenhl"), "-dashthenhl", 12.5, 22.5, tmp_path / "c.flac")
    assert (result.method, result.client) == ("hls", "web_safari")
    check_clip(result, 12.5, master16)
    assert not [r for r in media_server.requests() if r.is_open_ended]
    assert len(media_server.requests("-dashthenhl")) == 1  # the refused index probe, then nothing more there


def test_hls_that_hls_cannot_cut_is_not_cut_inexactly(media_server, fake, media_library, tmp_path):
    """HE-AAC (by the format's codec) has no exact rule in "hls", and through yt-dlp's downloader
    MPEG-TS keeps its raw PTS: refused (client_fixable), not made shifted."""
    hls = media_library.hls(HlsSpec(SIGNAL_60S, segment_type="mpegts"))
    base = media_server.add_folder("-heaac00001", hls.folder)
    fake.serve("-heaac00001", [hls_audio_format(base + hls.playlist.name, acodec="mp4a.40.5")], duration=60.0)
    with ClipFetcher(FetchSettings(), youtubedl_with_fake(fake)) as fetcher, pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url("-heaac00001"), "-heaac00001", 5.0, 15.0, tmp_path / "c.flac")
    assert caught.value.failure.reason.value == "format_unavailable" and caught.value.client_fixable
    assert caught.value.method == "ytdlp"
    assert media_server.requests("-heaac00001") == []
    assert list(tmp_path.iterdir()) == []


def test_last_resort_failing_too_names_every_attempt(media_server, fake, media_60s, tmp_path):
    media = media_60s[Shape.DASH_M4A]
    url = media_server.add("-allrefused", media.path)
    fake.serve_clients("-allrefused", {c: [audio_format(url, "m4a", filesize=media.size_bytes)] for c in CLIENTS})
    media_server.fail("-allrefused", "403")
    with clip_fetcher(fake) as fetcher, pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url("-allrefused"), "-allrefused", 5.0, 15.0, tmp_path / "c.flac")
    assert caught.value.failure.message.startswith("every player client failed")
    assert caught.value.failure.message.count("http_error") + caught.value.failure.message.count("unavailable") >= 2
    assert list(tmp_path.iterdir()) == []


def test_keep_original_whichever_way_the_clip_came(media_server, fake, media_library, tmp_path):
    """`keep_original`: the stream's own cut beside the clip, from "hls" (MPEG-TS segments, copied
    into the format's mp4) and from "ytdlp" (a DASH manifest's section)."""
    hls = media_library.hls(HlsSpec(SIGNAL_60S, segment_type="mpegts"))
    fake.serve("-keephls001", [hls_audio_format(media_server.add_folder("-keephls001", hls.folder) + hls.playlist.name)],
               duration=60.0)
    manifest = media_library.dash_manifest(SIGNAL_60S)
    mpd = media_server.add_folder("-keepmpd001", manifest.parent) + manifest.name
    fake.serve("-keepmpd001", [{"format_id": "dash-0", "url": mpd, "protocol": "http_dash_segments", "ext": "m4a",
                                "acodec": "mp4a.40.2", "vcodec": "none"}], duration=60.0)
    with ClipFetcher(FetchSettings(keep_original=True), youtubedl_with_fake(fake)) as fetcher:
        for ytid, method, ext in (("-keephls001", "hls", "mp4"), ("-keepmpd001", "ytdlp", "m4a")):
            dest = tmp_path / f"{ytid}.flac"
            assert fetcher.fetch(FakeYoutubeIE.watch_url(ytid), ytid, 20.0, 30.0, dest).method == method
            original = dest.with_suffix(f".{ext}")
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration",
                                    "-of", "default=nw=1", str(original)], capture_output=True, text=True, check=True)
            assert "codec_name=aac" in probe.stdout
            assert float(probe.stdout.split("duration=")[1].split()[0]) >= CLIP_S
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["-keephls001.flac", "-keephls001.mp4", "-keepmpd001.flac", "-keepmpd001.m4a"])
