"""fetch-metadata against a loopback mirror: resume, checks, and nothing left half-written."""

import shutil

import pytest

from audiosetdl.cli import main
from audiosetdl.fetch import METADATA_FILES, FetchError, fetch_metadata
from tests.mediaserver import MediaServer

NAMES = ["eval_segments.csv", "balanced_train_segments.csv", "class_labels_indices.csv", "ontology.json"]


@pytest.fixture
def mirror(shared_audioset, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    with MediaServer() as server:
        for name in NAMES:
            shutil.copy(shared_audioset / name, source / name)
            server.add(name.rsplit(".", 1)[0], source / name)
        yield server, source


def test_fetch_resumes_and_verifies(mirror, tmp_path):
    server, source = mirror
    server.fail("eval_segments", "reset", times=1)  # the first transfer dies half way
    results = fetch_metadata(tmp_path / "meta", mirror=f"{server.base_url}/media", include_unbalanced=False,
                             progress=False)
    assert dict(results) == {name: "downloaded" for name in NAMES}
    for name in NAMES:
        assert (tmp_path / "meta" / name).read_bytes() == (source / name).read_bytes()
    ranges = [r.range_header for r in server.requests("eval_segments")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert not list((tmp_path / "meta").glob("*.partial"))

    again = fetch_metadata(tmp_path / "meta", mirror=f"{server.base_url}/media", include_unbalanced=False)
    assert dict(again) == {name: "present" for name in NAMES}


def test_truncated_csv_is_refused(mirror, tmp_path):
    server, source = mirror
    text = (source / "eval_segments.csv").read_text().splitlines(keepends=True)
    (source / "eval_segments.csv").write_text("".join(text[:-5]))  # a complete transfer of an incomplete file
    server.add("eval_segments", source / "eval_segments.csv")
    with pytest.raises(FetchError, match=r"20366 rows, but its header says num_segs=20371"):
        fetch_metadata(tmp_path / "meta", mirror=f"{server.base_url}/media", include_unbalanced=False, progress=False)
    assert not (tmp_path / "meta" / "eval_segments.csv").exists()


def test_missing_file_error_via_cli(mirror, tmp_path, capsys):
    server, _ = mirror
    code = main(["fetch-metadata", str(tmp_path / "meta"), "--mirror", f"{server.base_url}/media"])
    assert code == 2  # unbalanced_train_segments.csv is not on this mirror
    assert "unbalanced_train_segments.csv after 1 attempt(s): HTTP Error 404" in capsys.readouterr().err


def test_urls_are_the_public_ones_over_https():
    from audiosetdl.vggish.params import MODELS_BASE_URL

    urls = {f.name: f.base_url + f.name for f in METADATA_FILES}
    assert urls["eval_segments.csv"] == "https://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/eval_segments.csv"
    assert urls["ontology.json"] == "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
    assert all(url.startswith("https://") for url in [*urls.values(), MODELS_BASE_URL]), urls
