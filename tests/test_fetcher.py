"""ClipFetcher end to end on loopback: YouTube-like formats from FakeYoutubeIE, bytes from
MediaServer, clips checked to the sample against the lossless master, requests checked in the
server's log (bounded ranges only, bytes per clip), failures classified, nothing left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.fetcher import ClipFetcher, ClipResult, FetchSettings
from audiosetdl.download.index import INDEX_PROBE_BYTES, index_probe_bytes
from tests.media import (
    MediaFile,
    MediaSpec,
    Shape,
    clip_byte_budget,
    head_before_media,
    locate_s,
    similarity,
)
from tests.media_fixtures import SIGNAL_60S
from tests.mediaserver import MediaServer, is_open_ended_range, parse_range
from tests.ytdlp_test_extractor import FakeYoutubeIE, audio_format, youtubedl_with_fake
from tests.test_ranges import absolute_offset_m4a, with_edit_list

RATE = 16_000
CLIP_S = 10.0
BYTES_PER_CLIP_LIMIT = 2.5  # x the bytes of 10 s at the stream's average bitrate, plus the index probe
# Media bytes per clip (the file's head before its first fragment, header and index, left out), x the
# bytes of 10 s at the stream's average bitrate, for fragments up to 10 s: fMP4 fetches only the
# samples the decode needs, WebM the blocks from the first covering cluster's start.
MEDIA_BYTES_LIMIT = {Shape.DASH_M4A: 1.5, Shape.DASH_WEBM: 2.5}
MAX_REQUESTS_PER_CLIP = 4  # the index probe included


def serve(server: MediaServer, fake: FakeYoutubeIE, ytid: str, media: MediaFile | Path, ext: str | None = None,
          **format_fields) -> str:
    """Register the file under `ytid` on both servers; returns its watch URL."""
    path = media.path if isinstance(media, MediaFile) else media
    ext = ext or (media.ext if isinstance(media, MediaFile) else path.suffix.lstrip("."))
    url = server.add(ytid, path)
    fake.serve(ytid, [audio_format(url, ext, filesize=path.stat().st_size, **format_fields)], duration=60.0)
    return FakeYoutubeIE.watch_url(ytid)


def check_clip(result: ClipResult, start: float, master16: Path, *, expect_padded_s: float = 0.0) -> np.ndarray:
    """16 kHz mono 16-bit, exactly 10 s of samples, starting exactly at `start`, zeros only at the end."""
    info = soundfile.info(str(result.path))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (RATE, 1, round(CLIP_S * RATE), "PCM_16")
    samples, _ = soundfile.read(str(result.path), dtype="float32")
    assert result.padded_seconds == pytest.approx(expect_padded_s, abs=0.025)
    real = samples[:len(samples) - round(result.padded_seconds * RATE)]
    assert not samples[len(real):].any()
    found = locate_s(real[:2 * RATE], RATE, master16, start)
    assert round((found - start) * RATE) == 0, f"clip starts {(found - start) * RATE:+.1f} samples off"
    assert similarity(real, RATE, master16, start) > 0.99
    return samples


def media_bytes(server: MediaServer, ytid: str, media: MediaFile) -> int:
    """Bytes the server sent for `ytid` from the file's first fragment on (header and index left out)."""
    head = head_before_media(media.path)
    total = 0
    for r in server.requests(ytid):
        first, last = parse_range(r.range_header, media.size_bytes)
        total += max(0, first + r.bytes_sent - max(first, head))
    return total


def check_requests(server: MediaServer, ytid: str, result: ClipResult, max_request_bytes: int) -> None:
    records = server.requests(ytid)
    assert records, "no request reached the server"
    assert not [r.range_header for r in records if r.is_open_ended]
    for r in records:
        first, last = parse_range(r.range_header, 1 << 62)
        assert last - first + 1 <= max_request_bytes
    assert result.requests == len(records)
    assert result.bytes_fetched == sum(r.bytes_sent for r in records)


# --------------------------------------------------------------------------------------------
# The index path: sample-exact, few bytes, bounded requests


@pytest.mark.parametrize("shape", [Shape.DASH_M4A, Shape.DASH_WEBM])
@pytest.mark.parametrize("fragment_s", [5.0, 10.0])
@pytest.mark.parametrize("start, padded", [
    (0.0, 0.0),  # the stream's own start: AAC priming / Opus pre-skip at the front
    (4.98, 0.0),  # starts just before a fragment boundary: spans three 5-s fragments, two 10-s ones
    (12.5, 0.0),  # starts mid-fragment
    (31.337, 0.0),
    (55.0, 5.0),  # the video ends after 5 s: padded at the end
])
def test_index_clips_are_sample_exact_and_cheap(media_server, fake, fetcher, media_60s, media_60s_10s_fragments,
                                                master16, shape, fragment_s, start, padded, tmp_path):
    media = (media_60s if fragment_s == 5.0 else media_60s_10s_fragments)[shape]
    assert media.spec.fragment_s == fragment_s
    ytid = "-" + shape.value.replace("_", "")[:10]
    url = serve(media_server, fake, ytid, media)
    result = fetcher.fetch(url, ytid, start, start + CLIP_S, tmp_path / f"{ytid}.flac")
    assert result.method == "index"
    assert result.format_id == {Shape.DASH_M4A: "140", Shape.DASH_WEBM: "251"}[shape]
    check_clip(result, start, master16, expect_padded_s=padded)
    check_requests(media_server, ytid, result, FetchSettings().max_request_bytes)
    assert result.requests <= MAX_REQUESTS_PER_CLIP
    assert media_bytes(media_server, ytid, media) <= MEDIA_BYTES_LIMIT[shape] * clip_byte_budget(media)
    assert result.bytes_fetched <= BYTES_PER_CLIP_LIMIT * clip_byte_budget(media) + INDEX_PROBE_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ytid}.flac"]


def test_an_index_larger_than_the_probe_takes_one_more_request(media_server, fake, fetcher, media_library, master16,
                                                               tmp_path):
    """0.1-s fragments: 600 sidx entries (7 KiB) behind the moov, more than the 4 KiB probe a 60-s
    video gets; the rest of the index comes in one more request, and the clip is still exact."""
    media = media_library.get(MediaSpec(signal=SIGNAL_60S, shape=Shape.DASH_M4A, fragment_s=0.1))
    head = head_before_media(media.path)
    assert head > index_probe_bytes(60.0)  # the case under test
    url = serve(media_server, fake, "-bigindex01", media)
    result = fetcher.fetch(url, "-bigindex01", 20.5, 30.5, tmp_path / "c.flac")
    assert result.method == "index"
    check_clip(result, 20.5, master16)
    ranges = [parse_range(r.range_header, media.size_bytes) for r in media_server.requests("-bigindex01")]
    assert ranges[0] == (0, index_probe_bytes(60.0) - 1)
    assert ranges[1][0] == index_probe_bytes(60.0) and ranges[1][1] >= head - 1  # the rest of the index at once
    limit = MEDIA_BYTES_LIMIT[Shape.DASH_M4A]
    assert media_bytes(media_server, "-bigindex01", media) <= limit * clip_byte_budget(media)


@pytest.mark.parametrize("limit", [
    40_000,
    700,  # the moov fits in the first request, the sidx behind it needs one more
])
def test_requests_never_exceed_the_limit(media_server, fake, media_60s, master16, limit, tmp_path):
    media = media_60s[Shape.DASH_M4A]
    url = serve(media_server, fake, "-smallreqs1", media)
    with ClipFetcher(FetchSettings(max_request_bytes=limit), youtubedl_with_fake(fake)) as fetcher:
        result = fetcher.fetch(url, "-smallreqs1", 20.5, 30.5, tmp_path / "c.flac")
    check_clip(result, 20.5, master16)
    check_requests(media_server, "-smallreqs1", result, limit)
    assert result.requests >= clip_byte_budget(media) // limit
    assert result.bytes_fetched <= BYTES_PER_CLIP_LIMIT * clip_byte_budget(media) + INDEX_PROBE_BYTES


def test_format_headers_and_bounded_ranges_go_with_every_media_request(media_server, fake, media_60s, tmp_path):
    """Media requests go through the YoutubeDL's opener (its cookies and proxy apply) with the
    format's own http_headers."""
    media = media_60s[Shape.DASH_WEBM]
    url = media_server.add("-headers001", media.path)
    headers = {"User-Agent": "audiosetdl-test/1.0", "X-Goog-Test": "yes"}
    fake.serve("-headers001", [audio_format(url, "webm", filesize=media.size_bytes, http_headers=headers)])
    ydl = youtubedl_with_fake(fake)
    sent = []
    real_urlopen = ydl.urlopen
    ydl.urlopen = lambda request: sent.append(request) or real_urlopen(request)
    with ClipFetcher(FetchSettings(), ydl) as fetcher:
        fetcher.fetch(FakeYoutubeIE.watch_url("-headers001"), "-headers001", 5.0, 15.0, tmp_path / "c.flac")
    assert len(sent) == 2
    for request in sent:
        assert {k: request.headers.get(k) for k in headers} == headers
        first, last = parse_range(request.headers["Range"], 1 << 62)
        assert not is_open_ended_range(request.headers["Range"]) and last >= first


def test_segment_past_the_end_is_all_padding(media_server, fake, fetcher, media_60s, tmp_path):
    """Deciding that a clip is too short is the extract stage's call: the fetcher says how much it padded."""
    url = serve(media_server, fake, "-pastend001", media_60s[Shape.DASH_M4A])
    result = fetcher.fetch(url, "-pastend001", 70.0, 80.0, tmp_path / "c.flac")
    assert result.padded_seconds == CLIP_S
    assert not soundfile.read(str(result.path), dtype="int16")[0].any()
    assert result.requests == 1  # the index alone said so


def test_id_starting_with_dash_and_a_relative_destination(media_server, fake, media_60s, master16, tmp_path,
                                                          monkeypatch):
    """Every path ffmpeg sees must not read as an option: here ffmpeg writes the kept original too."""
    monkeypatch.chdir(tmp_path)
    ytid = "--9xQ_-Zk0a"
    url = serve(media_server, fake, ytid, media_60s[Shape.MP3])
    dest = Path(f"{ytid}_12000_22000.flac")
    with ClipFetcher(FetchSettings(keep_original=True), youtubedl_with_fake(fake)) as fetcher:
        result = fetcher.fetch(url, ytid, 12.0, 22.0, dest)
    assert result.path == dest and dest.exists() and dest.with_suffix(".mp3").exists()
    check_clip(result, 12.0, master16)
    assert fake.extractions == [ytid]


def test_fragments_with_absolute_data_offsets(media_server, fake, fetcher, media_library, master16, tmp_path):
    """ffmpeg's default fMP4 (no +dash) addresses sample data by absolute file offsets: the cut
    must move them, or the decoder reads the wrong bytes."""
    path = absolute_offset_m4a(media_library.master(SIGNAL_60S), tmp_path / "absolute.m4a")
    url = serve(media_server, fake, "-absolute01", path, "m4a")
    result = fetcher.fetch(url, "-absolute01", 17.321, 27.321, tmp_path / "c.flac")
    assert result.method == "index"
    check_clip(result, 17.321, master16)


def test_the_edit_list_decides_where_mp4_audio_starts(media_server, fake, fetcher, media_60s, master16, tmp_path):
    """An edit list saying presentation starts 441 samples later than AAC's usual 1024 moves the clip
    by exactly 160 samples at 16 kHz: the container's delay information wins over the default.
    (441 at 44.1 kHz is a whole number of 16 kHz samples; half-sample shifts would make the chirp's
    periodicity, not the noise, decide the correlation peak.)"""
    path = with_edit_list(media_60s[Shape.DASH_M4A].path, tmp_path / "elst.m4a", media_time=1024 + 441)
    url = serve(media_server, fake, "-editlist01", path, "m4a")
    result = fetcher.fetch(url, "-editlist01", 20.0, 30.0, tmp_path / "c.flac")
    samples, _ = soundfile.read(str(result.path), dtype="float32")
    assert round((locate_s(samples[:2 * RATE], RATE, master16, 20.01) - 20.0) * RATE) == 160


def test_opus_pre_skip_decides_where_webm_audio_starts(media_server, fake, fetcher, media_60s, master16, tmp_path):
    """OpusHead's pre-skip raised by 480 samples (10 ms): the clip moves by exactly 160 samples."""
    data = bytearray(media_60s[Shape.DASH_WEBM].path.read_bytes())
    head = data.index(b"OpusHead")
    pre_skip = int.from_bytes(data[head + 10:head + 12], "little")
    data[head + 10:head + 12] = (pre_skip + 480).to_bytes(2, "little")
    path = tmp_path / "preskip.webm"
    path.write_bytes(bytes(data))
    url = serve(media_server, fake, "-preskip001", path, "webm")
    result = fetcher.fetch(url, "-preskip001", 20.0, 30.0, tmp_path / "c.flac")
    samples, _ = soundfile.read(str(result.path), dtype="float32")
    assert round((locate_s(samples[:2 * RATE], RATE, master16, 20.01) - 20.0) * RATE) == 160


# --------------------------------------------------------------------------------------------
# The fallback: no readable index, still only bounded requests


@pytest.mark.parametrize("shape", [Shape.PLAIN_M4A, Shape.MP3])
def test_fallback_without_an_index(media_server, fake, fetcher, media_60s, master16, shape, tmp_path):
    media = media_60s[shape]
    ytid = "-fallback" + shape.ext
    url = serve(media_server, fake, ytid, media)
    result = fetcher.fetch(url, ytid, 23.456, 33.456, tmp_path / "c.flac")
    assert result.method == "fallback"
    check_clip(result, 23.456, master16)
    check_requests(media_server, ytid, result, FetchSettings().max_request_bytes)
    assert result.bytes_fetched <= media.size_bytes  # never a byte twice


def test_keep_original(media_server, fake, media_60s, tmp_path):
    urls = {shape: serve(media_server, fake, f"-keep{shape.ext}", media_60s[shape])
            for shape in (Shape.DASH_WEBM, Shape.MP3)}
    with ClipFetcher(FetchSettings(keep_original=True), youtubedl_with_fake(fake)) as fetcher:
        for shape, url in urls.items():
            dest = tmp_path / f"{shape.value}.flac"
            fetcher.fetch(url, f"-keep{shape.ext}", 40.0, 50.0, dest)
            original = dest.with_suffix(f".{shape.ext}")
            assert original.exists()
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                    "default=nw=1:nk=1", str(original)], capture_output=True, text=True, check=True)
            assert float(probe.stdout) >= CLIP_S - 0.5
    assert not [p.name for p in tmp_path.iterdir() if ".part-" in p.name]


# --------------------------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("mode, reason, permanent", [
    ("404", Reason.UNAVAILABLE, True),
    ("429", Reason.RATE_LIMITED, False),
    ("503", Reason.NETWORK, False),
    ("reset", Reason.NETWORK, False),  # RST half way through the body
    ("truncate", Reason.NETWORK, False),  # FIN before Content-Length
])
def test_media_failures_are_classified_and_leave_nothing(media_server, fake, fetcher, media_60s, mode, reason,
                                                         permanent, tmp_path):
    url = serve(media_server, fake, "-failing001", media_60s[Shape.DASH_M4A])
    media_server.fail("-failing001", mode)
    with pytest.raises(ClipError) as caught:
        fetcher.fetch(url, "-failing001", 10.0, 20.0, tmp_path / "out" / "c.flac")
    assert caught.value.failure.reason is reason
    assert caught.value.failure.permanent is permanent
    assert caught.value.requests == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_after_the_index_leaves_no_partial_file(media_server, fake, media_60s, tmp_path):
    """The connection dies while the fragments come in: the scratch cut and the kept original go too."""
    url = serve(media_server, fake, "-midfail001", media_60s[Shape.DASH_WEBM])
    ydl = youtubedl_with_fake(fake)
    real_urlopen = ydl.urlopen

    def urlopen_then_break(request):  # the server starts failing once the index probe is answered
        response = real_urlopen(request)
        media_server.fail("-midfail001", "reset")
        return response

    ydl.urlopen = urlopen_then_break
    with ClipFetcher(FetchSettings(keep_original=True), ydl) as fetcher:
        with pytest.raises(ClipError) as caught:
            fetcher.fetch(url, "-midfail001", 30.0, 40.0, tmp_path / "c.flac")
    assert caught.value.failure.reason is Reason.NETWORK
    assert caught.value.requests == 2 and caught.value.bytes_fetched > index_probe_bytes(60.0)
    assert list(tmp_path.iterdir()) == []


def test_youtube_refusal_end_to_end(media_server, fake, fetcher, tmp_path):
    fake.refuse("-privvid001", "private")
    with pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url("-privvid001"), "-privvid001", 0.0, 10.0, tmp_path / "c.flac")
    assert caught.value.failure.reason is Reason.PRIVATE and caught.value.failure.permanent
    assert caught.value.failure.message.startswith("Private video")
    assert caught.value.bytes_fetched == 0 and media_server.requests() == []
    assert list(tmp_path.iterdir()) == []


def test_no_reachable_audio_format(fake, fetcher, tmp_path):
    """SABR-only: formats without a URL (yt-dlp lists them, nothing can download them)."""
    sabr = {k: v for k, v in audio_format("https://example.invalid/", "m4a").items() if k != "url"}
    fake.serve("-sabronly01", [sabr])
    with pytest.raises(ClipError) as caught:
        fetcher.fetch(FakeYoutubeIE.watch_url("-sabronly01"), "-sabronly01", 0.0, 10.0, tmp_path / "c.flac")
    assert caught.value.failure.reason is Reason.FORMAT_UNAVAILABLE


# --------------------------------------------------------------------------------------------
# Video


@pytest.fixture(scope="module")
def dash_video(tmp_path_factory) -> Path:
    """30 s of H.264 test pattern as a DASH video-only fMP4 with a global sidx (2 s fragments)."""
    path = tmp_path_factory.mktemp("video") / "video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-movflags",
                    "+dash+global_sidx+skip_trailer", "-frag_duration", "2000000", "-f", "mp4", str(path)], check=True)
    return path


@pytest.mark.slow
def test_video_segment(media_server, fake, media_60s, dash_video, master16, tmp_path):
    audio = media_60s[Shape.DASH_M4A]
    audio_url = media_server.add("-withvideo1", audio.path)
    video_url = media_server.add("-videoonly1", dash_video, "video/mp4")
    fake.serve("-withvideo1", [
        audio_format(audio_url, "m4a", filesize=audio.size_bytes),
        {"format_id": "160", "url": video_url, "ext": "mp4", "vcodec": "avc1.42c00c", "acodec": "none",
         "height": 120, "width": 160, "container": "mp4_dash", "protocol": "http"},
    ], duration=30.0)
    dest = tmp_path / "c.flac"
    with ClipFetcher(FetchSettings(video=True), youtubedl_with_fake(fake)) as fetcher:
        result = fetcher.fetch(FakeYoutubeIE.watch_url("-withvideo1"), "-withvideo1", 12.5, 22.5, dest)
    check_clip(result, 12.5, master16)
    assert not media_server.open_ended_requests()
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration",
                            "-of", "compact", str(dest.with_suffix(".mp4"))], capture_output=True, text=True,
                           check=True).stdout
    assert "codec_name=h264|codec_type=video" in probe and "codec_type=audio" in probe
    duration = float(probe.split("format|duration=")[1].split()[0])
    assert duration == pytest.approx(CLIP_S, abs=0.1)
    assert result.bytes_fetched == media_server.bytes_sent()
