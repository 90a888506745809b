"""The loopback media server (range semantics, counting, throttling, faults, shutdown) and the
test media it serves (YouTube-like layouts, content that locates itself in time)."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yt_dlp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.media import (
    MediaFile,
    Shape,
    clip_byte_budget,
    decode,
    estimate_time_s,
    locate_s,
    mp4_boxes,
    mp4_sidx_references,
    similarity,
    webm_elements,
)
from tests.mediaserver import FAULT_MODES, MediaServer, is_open_ended_range, parse_range
from tests.ytdlp_test_extractor import SilentLogger

SIZE = 200_000
DASH_ID = "-dashm4a_01"  # YouTube IDs may start with "-"


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = np.random.default_rng(7).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("blob") / "blob.m4a"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def served(media_server: MediaServer, blob: tuple[Path, bytes]) -> tuple[MediaServer, bytes]:
    media_server.add("-blob000001", blob[0], "audio/mp4")
    return media_server, blob[1]


def fetch(server: MediaServer, ytid: str, range_header: str | None = None, method: str = "GET",
          timeout: float = 5.0) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        path = server.url_for(ytid).split(str(server.port), 1)[1]
        conn.request(method, path, headers={"Range": range_header} if range_header else {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Range semantics


def test_whole_file_without_range(served):
    server, data = served
    response, body = fetch(server, "-blob000001")
    assert response.status == 200
    assert body == data
    assert response.getheader("Content-Length") == str(SIZE)
    assert response.getheader("Accept-Ranges") == "bytes"
    assert response.getheader("Content-Type") == "audio/mp4"
    assert response.getheader("Content-Range") is None


def test_bounded_range_is_206_with_content_range(served):
    server, data = served
    response, body = fetch(server, "-blob000001", "bytes=1000-1999")
    assert response.status == 206
    assert body == data[1000:2000]
    assert response.getheader("Content-Range") == f"bytes 1000-1999/{SIZE}"
    assert response.getheader("Content-Length") == "1000"


def test_open_ended_range_runs_to_the_end(served):
    server, data = served
    response, body = fetch(server, "-blob000001", f"bytes={SIZE - 300}-")
    assert response.status == 206
    assert body == data[-300:]
    assert response.getheader("Content-Range") == f"bytes {SIZE - 300}-{SIZE - 1}/{SIZE}"


def test_suffix_range_and_clamped_last_byte(served):
    server, data = served
    response, body = fetch(server, "-blob000001", "bytes=-10")
    assert (response.status, body) == (206, data[-10:])
    response, body = fetch(server, "-blob000001", f"bytes={SIZE - 5}-{SIZE + 1000}")
    assert (response.status, body) == (206, data[-5:])
    assert response.getheader("Content-Range") == f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}"


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_range_is_416(served, range_header):
    server, _ = served
    response, _ = fetch(server, "-blob000001", range_header)
    assert response.status == 416
    assert response.getheader("Content-Range") == f"bytes */{SIZE}"


@pytest.mark.parametrize("range_header", ["bytes=5-2", "items=0-10", "bytes=0-1,5-6", "bytes=-", "garbage"])
def test_a_range_the_server_does_not_understand_is_ignored(served, range_header):
    server, data = served
    response, body = fetch(server, "-blob000001", range_header)
    assert (response.status, body) == (200, data)


@settings(max_examples=40, deadline=None)
@given(first=st.integers(0, SIZE + 50), length=st.integers(1, 5000), open_ended=st.booleans())
def test_parse_range_matches_slicing(first, length, open_ended):
    header = f"bytes={first}-" if open_ended else f"bytes={first}-{first + length - 1}"
    span = parse_range(header, SIZE)
    if first >= SIZE:
        assert span == "unsatisfiable"
        return
    last = SIZE - 1 if open_ended else min(first + length - 1, SIZE - 1)
    assert span == (first, last)
    assert is_open_ended_range(header) == open_ended


def test_head_has_headers_and_no_body(served):
    server, _ = served
    response, body = fetch(server, "-blob000001", "bytes=0-99", method="HEAD")
    assert (response.status, body) == (206, b"")
    assert response.getheader("Content-Length") == "100"
    record = server.requests("-blob000001")[-1]
    assert (record.method, record.bytes_sent, record.completed) == ("HEAD", 0, True)


def test_unknown_id_and_wrong_extension_are_404(served):
    server, _ = served
    assert fetch(server, "-nosuchid01")[0].status == 404
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/media/-blob000001.webm")
    assert conn.getresponse().status == 404
    conn.close()
    assert [r.status for r in server.requests("-nosuchid01")] == [404]
    assert [r.status for r in server.requests("-blob000001")] == [404]


def test_url_forms(served):
    server, _ = served
    assert server.url_for("-blob000001") == f"http://127.0.0.1:{server.port}/media/-blob000001.m4a"
    assert server.url_template("webm").format(ytid="abc") == f"http://127.0.0.1:{server.port}/media/abc.webm"


# --------------------------------------------------------------------------------------------
# Counting


def test_requests_are_counted_per_id_with_range_as_sent(served, blob):
    server, _ = served
    server.add("otherid0001", blob[0], "audio/mp4")
    fetch(server, "-blob000001", "bytes=0-99")
    fetch(server, "-blob000001", "bytes=100-")
    fetch(server, "otherid0001")
    ours = server.requests("-blob000001")
    assert [(r.method, r.range_header, r.status, r.bytes_sent) for r in ours] == [
        ("GET", "bytes=0-99", 206, 100), ("GET", "bytes=100-", 206, SIZE - 100)]
    assert all(r.completed and r.finished for r in ours)
    assert server.bytes_sent("-blob000001") == SIZE
    assert [r.range_header for r in server.open_ended_requests("-blob000001")] == ["bytes=100-"]
    assert [r.range_header for r in server.open_ended_requests("otherid0001")] == [None]
    server.reset_counters()
    assert server.requests() == []


def test_counting_is_thread_safe(served):
    server, data = served

    def worker(i: int) -> None:
        for j in range(5):
            a = (i * 5 + j) * 100
            assert fetch(server, "-blob000001", f"bytes={a}-{a + 99}")[1] == data[a:a + 100]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = server.requests("-blob000001")
    assert len(records) == 40
    assert sum(r.bytes_sent for r in records) == 4000
    assert not server.open_ended_requests()


# --------------------------------------------------------------------------------------------
# Latency and throttling


def test_latency_is_added_to_every_request(served):
    server, _ = served
    server.latency = 0.2
    began = time.monotonic()
    fetch(server, "-blob000001", "bytes=0-9", method="HEAD")
    assert time.monotonic() - began >= 0.2


def test_open_ended_requests_are_throttled_and_bounded_ones_are_not(served):
    server, data = served
    server.open_ended_rate = 100_000  # bytes/s
    began = time.monotonic()
    assert fetch(server, "-blob000001", "bytes=0-49999")[1] == data[:50_000]
    bounded_s = time.monotonic() - began
    began = time.monotonic()
    assert fetch(server, "-blob000001", f"bytes={SIZE - 50_000}-")[1] == data[-50_000:]
    open_ended_s = time.monotonic() - began
    assert bounded_s < 0.3
    assert 0.5 <= open_ended_s < 2.0  # 50 kB at 100 kB/s


# --------------------------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize("mode,status", [("404", 404), ("410", 410), ("403", 403), ("429", 429),
                                         ("500", 500), (503, 503)])
def test_status_faults_then_recovery(served, mode, status):
    server, data = served
    server.fail("-blob000001", mode, times=2)
    assert fetch(server, "-blob000001", method="HEAD")[0].status == status
    assert fetch(server, "-blob000001", "bytes=0-9")[0].status == status
    response, body = fetch(server, "-blob000001", "bytes=0-9")
    assert (response.status, body) == (206, data[:10])
    assert [r.fault for r in server.requests("-blob000001")] == [str(mode), str(mode), None]


def test_a_fault_without_times_is_permanent_until_cleared(served):
    server, _ = served
    server.fail("-blob000001", "503")
    assert [fetch(server, "-blob000001")[0].status for _ in range(3)] == [503] * 3
    server.clear_failures("-blob000001")
    assert fetch(server, "-blob000001")[0].status == 200


def test_reset_cuts_the_connection_mid_body(served):
    server, _ = served
    server.fail("-blob000001", "reset", times=1)
    with pytest.raises(ConnectionResetError):
        fetch(server, "-blob000001", "bytes=0-99999")
    record = server.requests("-blob000001")[0]
    assert (record.status, record.bytes_sent, record.completed, record.fault) == (206, 50_000, False, "reset")
    assert fetch(server, "-blob000001", "bytes=0-9")[0].status == 206


def test_truncate_sends_less_than_content_length(served):
    server, _ = served
    server.fail("-blob000001", "truncate", times=1)
    with pytest.raises(http.client.IncompleteRead) as caught:
        fetch(server, "-blob000001", "bytes=0-99999")
    assert len(caught.value.partial) == 50_000
    assert server.requests("-blob000001")[0].completed is False


def test_slow_start_delays_the_first_byte(served):
    server, data = served
    server.fail("-blob000001", "slow_start", times=1, slow_start_s=0.3)
    began = time.monotonic()
    assert fetch(server, "-blob000001", "bytes=0-9")[1] == data[:10]
    assert time.monotonic() - began >= 0.3
    with pytest.raises(TimeoutError):  # a client with a shorter timeout gives up
        server.fail("-blob000001", "slow_start", times=1, slow_start_s=1.0)
        fetch(server, "-blob000001", "bytes=0-9", timeout=0.2)


def test_unknown_fault_mode_is_refused(served):
    server, _ = served
    assert set(FAULT_MODES) == {"404", "410", "403", "429", "500", "503", "reset", "truncate", "slow_start"}
    with pytest.raises(ValueError):
        server.fail("-blob000001", "418")


# --------------------------------------------------------------------------------------------
# Shutdown


def test_close_interrupts_throttled_transfers_and_idle_connections(blob):
    server = MediaServer(open_ended_rate=10_000).start()  # the whole blob would take 20 s
    server.add("-blob000001", blob[0], "audio/mp4")
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    idle.request("HEAD", "/media/-blob000001.m4a")
    idle.getresponse().read()  # a keep-alive connection, now idle in the server
    errors: list[BaseException] = []

    def slow_reader() -> None:
        try:
            fetch(server, "-blob000001", timeout=10)
        except (OSError, http.client.HTTPException) as e:
            errors.append(e)

    reader = threading.Thread(target=slow_reader)
    reader.start()
    time.sleep(0.3)
    began = time.monotonic()
    server.close()
    assert time.monotonic() - began < 2.0
    reader.join(5)
    assert not reader.is_alive() and errors  # the reader saw the cut, did not hang
    assert not [t for t in threading.enumerate() if t.name.startswith("MediaServer:")]
    idle.close()


# --------------------------------------------------------------------------------------------
# yt-dlp's generic extractor sees a direct media link


@pytest.mark.parametrize("shape", [Shape.DASH_M4A, Shape.DASH_WEBM])
def test_generic_extractor_returns_a_direct_format(media_server, media_60s, shape):
    media: MediaFile = media_60s[shape]
    url = media_server.add("-generic001", media.path, media.content_type)
    with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": SilentLogger()}) as ydl:
        info = ydl.extract_info(url, download=False)
    assert info["extractor"] == "generic" and info["id"] == "-generic001"
    (fmt,) = info["formats"]
    assert fmt["url"] == url and fmt["ext"] == media.ext and fmt["vcodec"] == "none"
    assert "User-Agent" in fmt["http_headers"]
    # Its one probe is a GET without Range whose body it never reads (how much of it went out
    # before the client closed depends on socket buffers: anything up to the whole file).
    (probe,) = media_server.requests("-generic001")
    assert probe.method == "GET" and probe.range_header is None and probe.is_open_ended


# --------------------------------------------------------------------------------------------
# The media: YouTube-like layouts


def test_dash_m4a_has_one_sidx_up_front_indexing_every_fragment(media_60s):
    media = media_60s[Shape.DASH_M4A]
    boxes = mp4_boxes(media.path)
    assert [b.kind for b in boxes[:4]] == ["ftyp", "moov", "sidx", "moof"]
    assert boxes[2].offset + boxes[2].size < 64 * 1024
    assert {b.kind for b in boxes[3:]} == {"moof", "mdat"}
    first_fragment, refs = mp4_sidx_references(media.path)
    assert first_fragment == boxes[3].offset
    assert first_fragment + sum(r.size_bytes for r in refs) == media.size_bytes
    assert len(refs) == 12 and all(4.9 <= r.duration_s <= 5.1 for r in refs[:-1])


def test_dash_webm_has_cues_before_the_first_cluster(media_60s):
    media = media_60s[Shape.DASH_WEBM]
    kinds = [e.kind for e in webm_elements(media.path)]
    assert kinds[:2] == ["EBML", "Segment"]
    assert kinds.index("Cues") < kinds.index("Cluster")
    cues = webm_elements(media.path)[kinds.index("Cues")]
    assert cues.offset + cues.size < 64 * 1024
    assert 12 <= kinds.count("Cluster") <= 14  # one per ~5 s


def test_plain_shapes_have_no_fragments(media_60s):
    kinds = [b.kind for b in mp4_boxes(media_60s[Shape.PLAIN_M4A].path)]
    assert kinds.index("moov") < kinds.index("mdat") and "moof" not in kinds and "sidx" not in kinds
    assert media_60s[Shape.MP3].path.read_bytes()[:3] in (b"ID3", b"\xff\xfb")


@pytest.mark.parametrize("shape", list(Shape))
def test_bytes_for_ten_seconds_follow_the_bitrate(media_60s, shape):
    budget = clip_byte_budget(media_60s[shape])
    assert budget == media_60s[shape].bytes_for_seconds(10.0)
    assert 0.6 * 160_000 <= budget <= 1.15 * 160_000  # 128 kb/s target (Opus runs under it)


# --------------------------------------------------------------------------------------------
# The media: a cut says which time range it holds


@pytest.mark.parametrize("shape", list(Shape))
def test_a_cut_over_http_locates_itself(media_server, media_library, media_60s, shape):
    media = media_60s[shape]
    url = media_server.add("-locate0001", media.path, media.content_type)
    samples = decode(url, 16_000, start_s=30.0, duration_s=10.0)
    assert abs(len(samples) - 160_000) <= 160  # Opus: ffmpeg's -ss may lose its 7.5 ms pre-skip
    assert estimate_time_s(samples, 16_000, media.signal) == pytest.approx(30.0, abs=0.1)
    master_16k = media_library.master_at(media.signal, 16_000)
    found = locate_s(samples, 16_000, master_16k, approx_start_s=30.0)
    if shape is Shape.DASH_M4A:
        # AAC in ffmpeg's fragmented MP4 carries no edit list: a decode starts with the 1024
        # priming samples (23.2 ms at 44.1 kHz), so everything lands that much late.
        assert found - 30.0 == pytest.approx(-1024 / 44_100, abs=1.5 / 16_000)
    elif shape is Shape.DASH_WEBM:
        assert found - 30.0 == pytest.approx(0.0, abs=0.010)  # -ss on Opus: within ~8 ms
    else:
        assert found - 30.0 == pytest.approx(0.0, abs=1.5 / 16_000)
    assert similarity(samples, 16_000, master_16k, found) > 0.85
    # ffmpeg seeking over HTTP asks for open-ended ranges: what YouTube throttles.
    assert media_server.open_ended_requests("-locate0001")
