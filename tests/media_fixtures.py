"""Pytest fixtures for test media and the loopback media server.

Owns: the session's media cache (`media_library`, generated once per session under
tmp_path_factory, or in ``$AUDIOSETDL_TEST_MEDIA_CACHE`` to keep it across sessions), the
60 s and 300 s files in every shape (`media_60s`, `media_300s`), the 60 s DASH shapes with 10-s
fragments (`media_60s_10s_fragments`; the others have 5-s ones), and a started `media_server`
per test. Import the fixtures you use into a test module:

    from tests.media_fixtures import media_60s, media_library, media_server  # noqa: F401
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.media import MediaFile, MediaLibrary, Shape, SignalSpec
from tests.mediaserver import MediaServer

SIGNAL_60S = SignalSpec(duration_s=60.0)
SIGNAL_300S = SignalSpec(duration_s=300.0)


@pytest.fixture(scope="session")
def media_library(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    shared = os.environ.get("AUDIOSETDL_TEST_MEDIA_CACHE")
    root = Path(shared) if shared else tmp_path_factory.mktemp("media")
    return MediaLibrary(root)


@pytest.fixture(scope="session")
def media_60s(media_library: MediaLibrary) -> dict[Shape, MediaFile]:
    """A 60 s signal in every shape (about 5 s to encode on two cores)."""
    return media_library.shapes(SIGNAL_60S)


@pytest.fixture(scope="session")
def media_60s_10s_fragments(media_library: MediaLibrary) -> dict[Shape, MediaFile]:
    """The 60 s signal as DASH m4a and webm with 10-s fragments / clusters (YouTube's may be that long)."""
    return media_library.shapes(SIGNAL_60S, shapes=(Shape.DASH_M4A, Shape.DASH_WEBM), fragment_s=10.0)


@pytest.fixture(scope="session")
def media_300s(media_library: MediaLibrary) -> dict[Shape, MediaFile]:
    """A 300 s signal in the two DASH shapes, YouTube's usual audio (about 6 s to encode)."""
    return media_library.shapes(SIGNAL_300S, shapes=(Shape.DASH_M4A, Shape.DASH_WEBM))


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


@pytest.fixture(scope="session")
def master16(media_library: MediaLibrary) -> Path:
    return media_library.master_at(SIGNAL_60S, 16_000)


@pytest.fixture
def fake():
    from tests.ytdlp_test_extractor import FakeYoutubeIE

    return FakeYoutubeIE()


@pytest.fixture
def fetcher(fake):
    from audiosetdl.download.fetcher import ClipFetcher, FetchSettings
    from tests.ytdlp_test_extractor import youtubedl_with_fake

    with ClipFetcher(FetchSettings(), youtubedl_with_fake(fake)) as f:
        yield f
