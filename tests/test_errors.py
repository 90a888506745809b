"""The failure taxonomy: every reason from YouTube's real texts, the ordering traps, HTTP and
socket failures from a real yt-dlp and urllib against the loopback server, and end to end
through a real YoutubeDL with the test extractor."""

from __future__ import annotations

import http.client
import random
import socket
import urllib.error
import urllib.request

import pytest
import yt_dlp
from hypothesis import given
from hypothesis import strategies as st
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, PostProcessingError

from audiosetdl.download.classify import classify, clean_message, reason_for_http_status
from audiosetdl.download.errors import POOL_PAUSE_REASONS, ClipError, Failure, Reason, retry_delay_s
from tests.mediaserver import MediaServer
from tests.ytdlp_test_extractor import (
    REFUSALS,
    FakeYoutubeIE,
    Refusal,
    SilentLogger,
    audio_format,
    youtubedl_with_fake,
)

YTID = "-Xy_z012345"  # 11 characters, leading "-", like 392 of eval's IDs


def as_ytdlp_raises(message: str, ytid: str = YTID) -> DownloadError:
    """What YoutubeDL.extract_info raises for an expected refusal (without running it)."""
    inner = ExtractorError(message, expected=True, video_id=ytid, ie="youtube")
    return DownloadError(f"ERROR: {inner}", (type(inner), inner, None))


# --------------------------------------------------------------------------------------------
# The codes and their properties


def test_reason_codes_are_exactly_these():
    assert [r.value for r in Reason] == [
        "unavailable", "private", "removed", "account_terminated", "copyright", "geo_blocked",
        "age_restricted", "members_only", "live_or_premiere", "drm", "bot_check", "rate_limited",
        "format_unavailable", "network", "http_error", "too_short", "decode_error", "unknown"]
    assert Reason("bot_check") is Reason.BOT_CHECK and Reason.BOT_CHECK == "bot_check"


def test_which_reasons_are_permanent_and_which_pause_the_pool():
    permanent = {r.value for r in Reason if r.permanent}
    assert permanent == {"unavailable", "private", "removed", "account_terminated", "copyright",
                         "geo_blocked", "age_restricted", "members_only", "drm", "too_short"}
    assert {r.value for r in Reason if r.pauses_pool} == {"bot_check", "rate_limited"} == set(POOL_PAUSE_REASONS)
    assert not any(r.permanent for r in POOL_PAUSE_REASONS)


def test_failure_and_clip_error():
    failure = Failure.of(Reason.TOO_SHORT, "video ends at 4.2 s")
    assert failure == Failure(Reason.TOO_SHORT, True, "video ends at 4.2 s")
    with pytest.raises(AttributeError):
        failure.reason = Reason.UNKNOWN  # type: ignore[misc]
    error = ClipError(failure)
    assert error.failure is failure and str(error) == "too_short: video ends at 4.2 s"
    assert classify(error) is failure
    # A ClipError somewhere in the chain still decides.
    try:
        try:
            raise ClipError.of(Reason.DECODE_ERROR, "no audio stream")
        except ClipError as inner:
            raise RuntimeError("while cutting") from inner
    except RuntimeError as outer:
        assert classify(outer).reason is Reason.DECODE_ERROR


# --------------------------------------------------------------------------------------------
# YouTube's texts


FIELD_NOTES_TABLE = [  # the substrings of the field notes' table, as given there
    ("Video unavailable", Reason.UNAVAILABLE),
    ("Private video", Reason.PRIVATE),
    ("removed by the uploader", Reason.REMOVED),
    ("removed for violating YouTube's Community Guidelines", Reason.REMOVED),
    ("removed for violating YouTube's Terms of Service", Reason.REMOVED),
    ("account associated with this video has been terminated", Reason.ACCOUNT_TERMINATED),
    ("due to a copyright claim", Reason.COPYRIGHT),
    ("who has blocked it on copyright grounds", Reason.COPYRIGHT),
    ("not made this video available in your country", Reason.GEO_BLOCKED),
    ("Sign in to confirm your age", Reason.AGE_RESTRICTED),
    ("Join this channel to get access to members-only content", Reason.MEMBERS_ONLY),
    ("This live event will begin in", Reason.LIVE_OR_PREMIERE),
    ("Premieres in", Reason.LIVE_OR_PREMIERE),
    ("This video is DRM protected", Reason.DRM),
    ("Sign in to confirm you\u2019re not a bot", Reason.BOT_CHECK),
    ("The following content is not available on this app", Reason.BOT_CHECK),
    ("The current session has been rate-limited by YouTube", Reason.RATE_LIMITED),
    ("HTTP Error 429: Too Many Requests", Reason.RATE_LIMITED),
    ("requiring a captcha challenge", Reason.RATE_LIMITED),
    ("All player responses are invalid. Your IP is likely being blocked", Reason.NETWORK),
    ("Requested format is not available", Reason.FORMAT_UNAVAILABLE),
]


@pytest.mark.parametrize("text,reason", FIELD_NOTES_TABLE, ids=[r.value + ":" + t[:24] for t, r in FIELD_NOTES_TABLE])
def test_each_field_notes_substring(text, reason):
    assert classify(as_ytdlp_raises(text)).reason is reason
    assert classify(ExtractorError(text, expected=True)).reason is reason


@pytest.mark.parametrize("name", list(REFUSALS))
def test_each_full_refusal_text(name):
    refusal = REFUSALS[name]
    failure = classify(as_ytdlp_raises(refusal.message))
    assert failure.reason.value == refusal.reason
    assert failure.permanent == Reason(refusal.reason).permanent
    assert failure.message == refusal.message  # prefix and ID gone, the rest as YouTube said it


def test_the_catalogue_covers_every_reason_youtube_can_give():
    covered = {r.reason for r in REFUSALS.values()}
    ours_only = {"too_short", "decode_error", "http_error", "unknown"}  # not YouTube's words
    assert covered | ours_only == {r.value for r in Reason}


@pytest.mark.parametrize("text,reason", [
    # The rate-limit and captcha texts begin with "Video unavailable".
    (REFUSALS["rate_limited"].message, Reason.RATE_LIMITED),
    (REFUSALS["captcha"].message, Reason.RATE_LIMITED),
    # Removals, terminations and copyright claims too.
    (REFUSALS["account_terminated"].message, Reason.ACCOUNT_TERMINATED),
    (REFUSALS["copyright_claim"].message, Reason.COPYRIGHT),
    (REFUSALS["removed_terms"].message, Reason.REMOVED),
    # A per-country copyright block is a geo block.
    (REFUSALS["copyright_blocked_in_country"].message, Reason.GEO_BLOCKED),
    # Both "Sign in to confirm ..." texts carry the same cookie hint.
    (REFUSALS["age_restricted"].message, Reason.AGE_RESTRICTED),
    (REFUSALS["bot_check"].message, Reason.BOT_CHECK),
    # The straight apostrophe too, and case does not matter.
    ("Sign in to confirm you're not a bot", Reason.BOT_CHECK),
    ("SIGN IN TO CONFIRM YOU\u2019RE NOT A BOT", Reason.BOT_CHECK),
    # "Private video" asks to sign in as well; it is not a bot check.
    (REFUSALS["private"].message, Reason.PRIVATE),
    # The unavailable text is only the fallback.
    ("Video unavailable. This video is private", Reason.PRIVATE),
    ("Video unavailable. This video is DRM protected", Reason.DRM),
])
def test_ordering_traps(text, reason):
    assert classify(as_ytdlp_raises(text)).reason is reason


def test_geo_restricted_error_is_geo_blocked_whatever_its_text():
    error = GeoRestrictedError("This video is not available from your location due to geo restriction",
                               countries=["DE"])
    assert classify(error).reason is Reason.GEO_BLOCKED
    assert classify(DownloadError("ERROR: [youtube] x: something else", (type(error), error, None))).reason \
        is Reason.GEO_BLOCKED


# --------------------------------------------------------------------------------------------
# Messages


def test_message_loses_the_prefix_and_the_id():
    text = f"ERROR: [youtube] {YTID}: Video unavailable. See https://youtu.be/{YTID}"
    assert clean_message(text) == "Video unavailable. See https://youtu.be/<id>"
    assert classify(DownloadError(text)).message == "Video unavailable. See https://youtu.be/<id>"
    assert clean_message(f"\x1b[0;31mERROR:\x1b[0m [youtube] {YTID}: Private video") == "Private video"
    assert clean_message(f"unable to fetch {YTID}", ytid=YTID) == "unable to fetch <id>"
    assert clean_message("[generic] Unable to download webpage: HTTP Error 404: Not Found") == \
        "Unable to download webpage: HTTP Error 404: Not Found"


def test_message_loses_yt_dlps_bug_report_boilerplate():
    error = ExtractorError("Something broke", video_id=YTID, ie="youtube")  # not expected
    assert "please report" in str(error)
    assert classify(error).message == "Something broke"


def test_unknown_and_decode_errors():
    assert classify(ValueError("boom")) == Failure(Reason.UNKNOWN, False, "boom")
    assert classify(RuntimeError()).message == "RuntimeError"
    assert classify(PostProcessingError("ffmpeg exited with code 1")).reason is Reason.DECODE_ERROR
    assert classify(RuntimeError("x.m4a: Invalid data found when processing input")).reason is Reason.DECODE_ERROR


# --------------------------------------------------------------------------------------------
# HTTP and sockets


@pytest.mark.parametrize("status,reason", [(404, Reason.UNAVAILABLE), (410, Reason.UNAVAILABLE),
                                           (429, Reason.RATE_LIMITED), (500, Reason.NETWORK),
                                           (502, Reason.NETWORK), (503, Reason.NETWORK),
                                           (403, Reason.HTTP_ERROR), (401, Reason.HTTP_ERROR),
                                           (416, Reason.HTTP_ERROR)])
def test_http_status_table(status, reason):
    assert reason_for_http_status(status) is reason


@pytest.fixture
def one_file(media_server: MediaServer, tmp_path) -> MediaServer:
    path = tmp_path / "a.m4a"
    path.write_bytes(bytes(range(256)) * 400)  # 102,400 bytes
    for ytid in ("-http_fault", "-sock_fault"):
        media_server.add(ytid, path, "audio/mp4")
    return media_server


@pytest.mark.parametrize("mode,reason", [("404", Reason.UNAVAILABLE), ("410", Reason.UNAVAILABLE),
                                         ("429", Reason.RATE_LIMITED), ("503", Reason.NETWORK),
                                         ("500", Reason.NETWORK), ("403", Reason.HTTP_ERROR)])
def test_http_status_through_yt_dlp_generic_extractor(one_file, mode, reason):
    one_file.fail("-http_fault", mode)
    ydl = yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": SilentLogger()}, auto_init=False)
    ydl.add_info_extractor(yt_dlp.extractor.generic.GenericIE())
    with pytest.raises(DownloadError) as caught:
        ydl.extract_info(one_file.url_for("-http_fault"), download=False)
    failure = classify(caught.value)
    assert failure.reason is reason and failure.permanent == reason.permanent
    assert failure.message.startswith(f"Unable to download webpage: HTTP Error {mode}")
    assert "-http_fault" not in failure.message


@pytest.mark.parametrize("mode,reason", [("404", Reason.UNAVAILABLE), ("429", Reason.RATE_LIMITED),
                                         ("503", Reason.NETWORK), ("403", Reason.HTTP_ERROR)])
def test_http_status_through_urllib(one_file, mode, reason):
    one_file.fail("-http_fault", mode)
    request = urllib.request.Request(one_file.url_for("-http_fault"), headers={"Range": "bytes=0-99"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert classify(caught.value).reason is reason


def _read_range(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Range": "bytes=0-99999"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


@pytest.mark.parametrize("mode", ["reset", "truncate", "slow_start"])
def test_broken_transfers_are_transient_network_failures(one_file, mode):
    one_file.fail("-sock_fault", mode, times=1, slow_start_s=1.0)
    with pytest.raises((OSError, http.client.HTTPException)) as caught:
        _read_range(one_file.url_for("-sock_fault"), timeout=0.3)
    failure = classify(caught.value)
    assert (failure.reason, failure.permanent) == (Reason.NETWORK, False)
    assert len(_read_range(one_file.url_for("-sock_fault"), timeout=5)) == 100_000  # then it serves


def test_socket_level_errors_are_network():
    for error in (ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out"),
                  ConnectionRefusedError(111, "Connection refused"), http.client.RemoteDisconnected("x"),
                  socket.gaierror(-3, "Temporary failure in name resolution"),
                  urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))):
        assert classify(error).reason is Reason.NETWORK, error


def test_yt_dlp_download_errors_that_only_carry_text():
    # yt-dlp's HTTP downloader reports with no exception attached (exc_info of Nones).
    for text in ("ERROR: Got error: 487633 bytes read, 487634 more expected",
                 "ERROR: Got error: ('Connection broken: ConnectionResetError(104, ...)')",
                 "ERROR: Got error: HTTP Error 503: Service Unavailable"):
        assert classify(DownloadError(text, (None, None, None))).reason is Reason.NETWORK, text
    assert classify(DownloadError("ERROR: unable to download video data: HTTP Error 404: Not Found")).reason \
        is Reason.UNAVAILABLE


# --------------------------------------------------------------------------------------------
# End to end through a real YoutubeDL


def test_every_refusal_end_to_end():
    fake = FakeYoutubeIE()
    ydl = youtubedl_with_fake(fake)
    for number, (name, refusal) in enumerate(REFUSALS.items()):
        ytid = f"-e2e{number:07d}"
        fake.refuse(ytid, name)
        with pytest.raises(DownloadError) as caught:
            ydl.extract_info(FakeYoutubeIE.watch_url(ytid), download=False)
        assert str(caught.value).startswith(f"ERROR: [youtube] {ytid}: "), name
        failure = classify(caught.value)
        assert failure.reason.value == refusal.reason, name
        assert failure.message.startswith(refusal.message), name
        assert ytid not in failure.message
        if refusal.geo_countries:
            assert isinstance(caught.value.exc_info[1], GeoRestrictedError)
            assert caught.value.exc_info[1].countries == list(refusal.geo_countries)
            assert "This video is available in United States, Canada." in failure.message
    assert len(fake.extractions) == len(REFUSALS)


def test_unscripted_ids_are_unavailable_and_free_text_is_unknown():
    fake = FakeYoutubeIE()
    fake.refuse("-freetext01", Refusal("Something YouTube never said before", "unknown"))
    ydl = youtubedl_with_fake(fake)
    for ytid, reason in (("-noscript01", Reason.UNAVAILABLE), ("-freetext01", Reason.UNKNOWN)):
        with pytest.raises(DownloadError) as caught:
            ydl.extract_info(f"https://youtu.be/{ytid}", download=False)
        assert classify(caught.value).reason is reason


def test_served_video_resolves_and_a_missing_format_is_format_unavailable(one_file):
    fake = FakeYoutubeIE()
    url = one_file.url_for("-http_fault")
    fake.serve("-served0001", [audio_format(url, "m4a", filesize=102_400)], duration=60.0)
    info = youtubedl_with_fake(fake).extract_info(FakeYoutubeIE.watch_url("-served0001"), download=False)
    assert (info["format_id"], info["url"], info["ext"], info["duration"]) == ("140", url, "m4a", 60.0)
    assert "User-Agent" in info["http_headers"]
    assert one_file.requests() == []  # resolving fetched nothing, as with YouTube
    with pytest.raises(DownloadError) as caught:
        youtubedl_with_fake(fake, {"format": "251"}).extract_info(
            FakeYoutubeIE.watch_url("-served0001"), download=False)
    failure = classify(caught.value)
    assert failure.reason is Reason.FORMAT_UNAVAILABLE and not failure.permanent
    assert failure.message.startswith("Requested format is not available")


# --------------------------------------------------------------------------------------------
# Retry delays


@given(attempt=st.integers(0, 200), base=st.floats(0.01, 10), cap=st.floats(0.1, 600), seed=st.integers(0, 2**32))
def test_retry_delay_is_full_jitter_under_the_capped_exponential(attempt, base, cap, seed):
    delay = retry_delay_s(attempt, base_s=base, cap_s=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 1000))


def test_retry_delays_spread_and_grow():
    rng = random.Random(1)
    first = [retry_delay_s(0, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(2000)]
    fifth = [retry_delay_s(4, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(2000)]
    capped = [retry_delay_s(30, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(2000)]
    assert max(first) <= 1.0 and sum(first) / 2000 == pytest.approx(0.5, abs=0.05)
    assert max(fifth) <= 16.0 and sum(fifth) / 2000 == pytest.approx(8.0, abs=0.6)
    assert max(capped) <= 60.0 and sum(capped) / 2000 == pytest.approx(30.0, abs=2.0)
    assert len(set(first)) == 2000  # jittered, not synchronised
    with pytest.raises(ValueError):
        retry_delay_s(-1)
