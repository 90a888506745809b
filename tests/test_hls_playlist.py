"""HLS playlists and MPEG-TS heads as bytes and text: what `hls` and `mpegts` read from them, and
what they refuse (the fetcher then hands the format to yt-dlp's downloader)."""

from __future__ import annotations

import pytest

from audiosetdl.download.hls import HlsUnsupported, audio_rendition_url, is_master, parse_media_playlist
from audiosetdl.download.index import ByteSpan
from audiosetdl.download.mpegts import PTS_WRAP, TS_HEAD_BYTES, first_audio_pes, pts_delta
from tests.media import HlsSpec, MediaLibrary
from tests.media_fixtures import SIGNAL_60S

URL = "https://manifest.example/api/hls/playlist/index.m3u8"
VOD = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n{body}#EXT-X-ENDLIST\n"


def test_segments_times_and_relative_urls():
    playlist = parse_media_playlist(VOD.format(body="#EXTINF:5.0,\nseg0.ts\n#EXTINF:4.5,\n/abs/seg1.ts\n"
                                                    "#EXTINF:6,\nhttps://cdn.example/seg2.ts\n"), URL)
    assert [s.resource.url for s in playlist.segments] == [
        "https://manifest.example/api/hls/playlist/seg0.ts", "https://manifest.example/abs/seg1.ts",
        "https://cdn.example/seg2.ts"]
    assert [s.start_s for s in playlist.segments] == [0.0, 5.0, 9.5]
    assert playlist.duration_s == 15.5 and playlist.init is None
    assert playlist.covering(5.2, 9.0) == range(1, 2)
    assert playlist.covering(5.05, 9.45) == range(0, 3)  # within the selection slack of both boundaries


def test_byteranges_follow_each_other_and_the_map_has_its_own():
    body = ('#EXT-X-MAP:URI="media.mp4",BYTERANGE="700@0"\n#EXTINF:6.0,\n#EXT-X-BYTERANGE:1000@700\nmedia.mp4\n'
            "#EXTINF:6.0,\n#EXT-X-BYTERANGE:900\nmedia.mp4\n")
    playlist = parse_media_playlist(VOD.format(body=body), URL)
    assert playlist.init is not None and playlist.init.span == ByteSpan(0, 700)
    assert [s.resource.span for s in playlist.segments] == [ByteSpan(700, 1700), ByteSpan(1700, 2600)]


@pytest.mark.parametrize("text, why", [
    (VOD.format(body='#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:6,\na.ts\n'), "encrypted"),
    ("#EXTM3U\n#EXTINF:6,\na.ts\n", "live"),
    (VOD.format(body="#EXTINF:6,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:6,\nb.ts\n"), "discontinuity"),
    (VOD.format(body="a.ts\n"), "without #EXTINF"),
    ("<html>", "not an M3U8"),
])
def test_what_the_hls_path_refuses(text, why):
    with pytest.raises(HlsUnsupported, match=why):
        parse_media_playlist(text, URL)


def test_key_method_none_is_no_encryption():
    playlist = parse_media_playlist(VOD.format(body="#EXT-X-KEY:METHOD=NONE\n#EXTINF:6,\na.ts\n"), URL)
    assert len(playlist.segments) == 1


def test_master_playlist_picks_the_audio_rendition():
    master = ("#EXTM3U\n"
              '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",DEFAULT=NO,URI="audio/low.m3u8"\n'
              '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",DEFAULT=YES,URI="audio/main.m3u8"\n'
              '#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.4d401e,mp4a.40.2",AUDIO="a"\nvideo/480.m3u8\n')
    assert is_master(master)
    assert audio_rendition_url(master, URL) == "https://manifest.example/api/hls/playlist/audio/main.m3u8"


def test_master_playlist_without_renditions_prefers_audio_only_variants():
    master = ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS=\"avc1.4d401e,mp4a.40.2\"\nv300.m3u8\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=48000,CODECS=\"mp4a.40.5\"\na48.m3u8\n"
              "#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\na128.m3u8\n")
    assert audio_rendition_url(master, URL).endswith("/a128.m3u8")
    video_only = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=900000\nhi.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=200000\nlo.m3u8\n"
    assert audio_rendition_url(video_only, URL).endswith("/lo.m3u8")
    assert not is_master(VOD.format(body="#EXTINF:6,\na.ts\n"))


def test_ts_heads_give_the_first_pts_and_the_adts_facts(media_library: MediaLibrary):
    """ffmpeg's MPEG-TS: PTS from 1.4 s (126000 ticks), each segment's on the AAC frame grid."""
    media = media_library.hls(HlsSpec(SIGNAL_60S, segment_type="mpegts"))
    first = [first_audio_pes((media.folder / name).read_bytes()[:TS_HEAD_BYTES]) for name in media.segment_names()[:3]]
    assert first[0].pts == 126_000
    assert {(a.codec, a.aac_object_type, a.sample_rate) for a in first} == {("aac", 2, 44_100)}
    for audio in first[1:]:
        frames = pts_delta(audio.pts, first[0].pts) * 44_100 / (90_000 * 1024)
        assert abs(frames - round(frames)) * 1024 * 90_000 / 44_100 <= 1  # rounded to the tick


def test_pts_delta_across_the_wrap():
    assert pts_delta(100, PTS_WRAP - 50) == 150
    assert pts_delta(500, 100) == 400
