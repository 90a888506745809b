"""HLS audio end to end on loopback (method "hls"): a media playlist served with its segment files
by MediaServer (ffmpeg's HLS muxer: AAC-LC in fMP4 or MPEG-TS segments, one file per segment or
one file with EXT-X-BYTERANGE), clips checked to the sample against the master, the server's log
checked for which segment files were fetched and that every request was bounded."""

from __future__ import annotations

import shutil

import pytest

from audiosetdl.download.fetcher import ClipFetcher, FetchSettings
from tests.media import HlsMedia, HlsSpec, MediaLibrary
from tests.media_fixtures import SIGNAL_60S
from tests.mediaserver import MediaServer
from tests.test_fetcher import CLIP_S, check_clip, check_requests
from tests.ytdlp_test_extractor import FakeYoutubeIE, hls_audio_format, youtubedl_with_fake

SEGMENT_S = 6.0


@pytest.fixture(scope="module")
def hls_60s(media_library: MediaLibrary) -> dict[tuple[str, bool], HlsMedia]:
    return {(kind, single): media_library.hls(HlsSpec(SIGNAL_60S, segment_type=kind, segment_s=SEGMENT_S,
                                                      single_file=single))
            for kind in ("fmp4", "mpegts") for single in (False, True)}


def serve_hls(server: MediaServer, fake: FakeYoutubeIE, ytid: str, media: HlsMedia) -> str:
    base = server.add_folder(ytid, media.folder)
    fake.serve(ytid, [hls_audio_format(base + media.playlist.name)], duration=60.0)
    return FakeYoutubeIE.watch_url(ytid)


def fetched_names(server: MediaServer, ytid: str) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in server.requests(ytid)]


def expected_segments(media: HlsMedia, start: float) -> set[int]:
    """Segments whose playlist span meets [start - 0.15, start + 10 + 0.15] (the preroll, the
    resampler margins and the selection slack): nothing else may be fetched."""
    bounds, clock = [], 0.0
    for line in media.playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            d = float(line[8:].split(",")[0])
            bounds.append((clock, clock + d))
            clock += d
    return {i for i, (a, b) in enumerate(bounds) if b > start - 0.15 and a < start + CLIP_S + 0.15}


@pytest.mark.parametrize("kind", ["fmp4", "mpegts"])
@pytest.mark.parametrize("start, padded", [
    (0.0, 0.0),  # the stream's start: the priming frame
    (5.98, 0.0),  # just before a segment boundary: three segments
    (31.337, 0.0),
    (55.0, 5.0),  # the video ends 5 s in
])
def test_hls_clips_are_sample_exact_and_fetch_only_covering_segments(media_server, fake, fetcher, hls_60s, master16,
                                                                     kind, start, padded, tmp_path):
    media = hls_60s[(kind, False)]
    ytid = f"-hls{kind}"[:11]
    url = serve_hls(media_server, fake, ytid, media)
    result = fetcher.fetch(url, ytid, start, start + CLIP_S, tmp_path / "c.flac")
    assert result.method == "hls" and result.format_id == "234"
    check_clip(result, start, master16, expect_padded_s=padded)
    check_requests(media_server, ytid, result, FetchSettings().max_request_bytes)
    names = fetched_names(media_server, ytid)
    segments = media.segment_names()
    wanted = {segments[i] for i in expected_segments(media, start)}
    head = {"init.mp4"} if kind == "fmp4" else ({segments[0]} if segments[0] not in wanted else set())
    assert set(names) == {media.playlist.name, *wanted, *head}
    assert len(names) == len(set(names))  # every resource once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.flac"]


@pytest.mark.parametrize("kind", ["fmp4", "mpegts"])
def test_hls_byterange_segments_in_one_file(media_server, fake, fetcher, hls_60s, master16, kind, tmp_path):
    """EXT-X-BYTERANGE: every segment a bounded range of one media file, only the covering ones."""
    media = hls_60s[(kind, True)]
    ytid = f"-hlsbr{kind}"[:11]
    url = serve_hls(media_server, fake, ytid, media)
    result = fetcher.fetch(url, ytid, 23.456, 33.456, tmp_path / "c.flac")
    assert result.method == "hls"
    check_clip(result, 23.456, master16)
    check_requests(media_server, ytid, result, FetchSettings().max_request_bytes)
    media_requests = [r for r in media_server.requests(ytid) if not r.path.endswith(".m3u8")]
    fetched = sum(r.bytes_sent for r in media_requests)
    assert fetched < 0.5 * media.media_bytes  # 2-3 segments of 10, plus the init / segment 0's head
    assert all(r.range_header and r.status == 206 for r in media_requests)


def test_hls_requests_never_exceed_the_limit(media_server, fake, hls_60s, master16, tmp_path):
    url = serve_hls(media_server, fake, "-hlssmall01", hls_60s[("mpegts", False)])
    with ClipFetcher(FetchSettings(max_request_bytes=30_000), youtubedl_with_fake(fake)) as small:
        result = small.fetch(url, "-hlssmall01", 12.0, 22.0, tmp_path / "c.flac")
    check_clip(result, 12.0, master16)
    check_requests(media_server, "-hlssmall01", result, 30_000)


def test_a_master_playlist_leads_to_its_audio_rendition(media_server, fake, fetcher, hls_60s, master16, tmp_path):
    """The format's URL is a master playlist: the fetcher follows its audio rendition."""
    folder = tmp_path / "hls"
    shutil.copytree(hls_60s[("fmp4", False)].folder, folder)
    (folder / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="main",DEFAULT=YES,URI="audio.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.4d401e,mp4a.40.2",AUDIO="aac"\nvideo-480.m3u8\n')
    fake.serve("-hlsmaster1", [hls_audio_format(media_server.add_folder("-hlsmaster1", folder) + "master.m3u8")],
               duration=60.0)
    result = fetcher.fetch(FakeYoutubeIE.watch_url("-hlsmaster1"), "-hlsmaster1", 40.0, 50.0, tmp_path / "c.flac")
    assert result.method == "hls"
    check_clip(result, 40.0, master16)
    names = fetched_names(media_server, "-hlsmaster1")
    assert names[:3] == ["master.m3u8", "audio.m3u8", "init.mp4"] and "video-480.m3u8" not in names
