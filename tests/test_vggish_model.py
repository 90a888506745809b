"""The VGGish network, checkpoint loading, postprocessing, model files and smoke test.

The model runs on a checkpoint with the official names, shapes and V1 format but random
weights (tests/vggish_fixtures.py), compared with the float64 reference in
tests/vggish_reference.py.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from audiosetdl.vggish import features, modelfiles, params
from audiosetdl.vggish.model import CheckpointError, Embedder, VGGish, read_checkpoint
from audiosetdl.vggish.postprocess import PCAParams, PCAParamsError, dequantize, postprocess, quantize
from audiosetdl.vggish.smoke import SUCCESS_LINE, SmokeStats, smoke_test
from tests import vggish_reference as reference
from tests.vggish_fixtures import VGGishTestModels, audio_like_signals, write_v1_checkpoint


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    """12 examples: two each of tone, noises, chirp, clicks, silence."""
    return np.concatenate([features.waveform_to_examples(x) for x in audio_like_signals(seconds=2.0).values()])


@pytest.fixture(scope="module")
def reference_embeddings(examples, vggish_models: VGGishTestModels) -> np.ndarray:
    return reference.embed(examples, vggish_models.weights)


# --- checkpoint ----------------------------------------------------------------------------


def test_checkpoint_reads_all_18_official_variables(vggish_models: VGGishTestModels):
    weights = read_checkpoint(vggish_models.checkpoint)
    assert set(weights) == set(params.checkpoint_variables()) and len(weights) == 18
    assert sum(w.size for w in weights.values()) == params.NUM_PARAMETERS == 72_141_184
    for name, value in weights.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, vggish_models.weights[name], err_msg=name)


def test_wrong_shape_names_the_variable_and_both_shapes(tmp_path: Path):
    weights = {
        "vggish/conv1/weights": np.zeros((3, 3, 1, 64), np.float32),
        "vggish/conv1/biases": np.zeros(64, np.float32),
        "vggish/conv2/weights": np.zeros((3, 3, 64, 96), np.float32),
        "vggish/conv2/biases": np.zeros(128, np.float32),
    }
    path = write_v1_checkpoint(tmp_path / "bad.ckpt", weights)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "vggish/conv2/weights" in message
    assert "[3, 3, 64, 96]" in message and "[3, 3, 64, 128]" in message
    assert "audiosetdl fetch-models" in message


def test_missing_variable_is_named(tmp_path: Path):
    path = write_v1_checkpoint(tmp_path / "partial.ckpt", {"vggish/conv1/weights": np.zeros((3, 3, 1, 64), np.float32)})
    with pytest.raises(CheckpointError, match=r"vggish/conv1/biases is missing"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [None, b"not a checkpoint at all"])
def test_missing_or_garbage_checkpoint_says_how_to_fix(tmp_path: Path, content: bytes | None):
    path = tmp_path / params.CHECKPOINT_FILENAME
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="audiosetdl fetch-models"):
        read_checkpoint(path)


# --- the network ---------------------------------------------------------------------------


def test_layer_shapes(vggish_models: VGGishTestModels):
    import tensorflow as tf

    model = VGGish(vggish_models.weights)
    activations: dict = {}
    out = model.forward(tf.zeros([2, 96, 64]), activations)
    assert {layer: tuple(t.shape) for layer, t in activations.items()} == {
        "conv1": (2, 48, 32, 64),
        "conv2": (2, 24, 16, 128),
        "conv3/conv3_1": (2, 24, 16, 256),
        "conv3/conv3_2": (2, 12, 8, 256),
        "conv4/conv4_1": (2, 12, 8, 512),
        "conv4/conv4_2": (2, 6, 4, 512),
        "fc1/fc1_1": (2, 4096),
        "fc1/fc1_2": (2, 4096),
        "fc2": (2, 128),
    }
    assert tuple(out.shape) == (2, 128)
    reference_shapes: dict = {}
    reference.embed(np.zeros((1, 96, 64)), vggish_models.weights, activations=reference_shapes)
    assert reference_shapes["conv4/conv4_2"] == (1, 6, 4, 512)


def test_embeddings_match_float64_reference(vggish_embedder: Embedder, examples, reference_embeddings):
    ours = vggish_embedder.embed(examples)
    assert ours.shape == (12, 128) and ours.dtype == np.float32
    relative = np.linalg.norm(ours - reference_embeddings) / np.linalg.norm(reference_embeddings)
    assert relative < 1e-3
    # The final layer has no ReLU: the fixture's embeddings take both signs.
    assert (ours < 0).any() and (ours > 0).any()


def test_postprocessed_bytes_match_reference(vggish_embedder: Embedder, vggish_models, examples, reference_embeddings):
    ours = vggish_embedder.postprocess(vggish_embedder.embed(examples))
    theirs = reference.postprocess(reference_embeddings, vggish_models.eigen_vectors, vggish_models.means)
    assert ours.dtype == np.uint8 and ours.shape == (12, 128)
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert (difference == 0).mean() >= 0.99
    assert difference.max() <= 1
    # The fixture is meaningful: bytes span the range and some values clip.
    assert ours.min() == 0 and ours.max() == 255 and len(np.unique(ours)) > 150


def test_batching_does_not_change_results(vggish_models: VGGishTestModels, vggish_embedder: Embedder, examples):
    one_at_a_time = Embedder.from_weights(vggish_models.weights, vggish_embedder.pca, batch_size=1, device="/CPU:0")
    batched = vggish_embedder.embed(examples[:11])  # batch 8: one full, one partial batch
    # Kernels differ by batch size, so float32 rounding does too (about 1e-6 of the scale).
    np.testing.assert_allclose(one_at_a_time.embed(examples[:11]), batched, rtol=0, atol=1e-5 * np.abs(batched).max())
    assert vggish_embedder.embed(np.zeros((0, 96, 64))).shape == (0, 128)
    with pytest.raises(ValueError, match="96, 64"):
        vggish_embedder.embed(np.zeros((2, 64, 96)))


def test_embed_waveform_is_front_end_then_model(vggish_embedder: Embedder):
    clip = audio_like_signals(seconds=2.5)["chirp"]
    np.testing.assert_array_equal(
        vggish_embedder.embed_waveform(clip), vggish_embedder.embed(features.waveform_to_examples(clip))
    )


def test_embedder_from_models_dir_uses_environment(vggish_models: VGGishTestModels, monkeypatch):
    monkeypatch.setenv(params.MODELS_DIR_ENV, str(vggish_models.directory))
    embedder = Embedder.from_models_dir(batch_size=4)
    assert embedder.batch_size == 4
    np.testing.assert_array_equal(embedder.pca.eigen_vectors, vggish_models.eigen_vectors)


# --- postprocessing ------------------------------------------------------------------------


def identity_pca() -> PCAParams:
    return PCAParams(np.eye(128), np.zeros((128, 1)))


def test_quantize_clips_and_truncates():
    values = np.array([-5.0, -2.0, -1.99, 0.0, 1.0, 1.9999, 2.0, 7.0])
    # (v + 2) * 255 / 4: 0, 0, 0.6375, 127.5, 191.25, 254.998, 255, 255
    np.testing.assert_array_equal(quantize(values), [0, 0, 0, 127, 191, 254, 255, 255])


def test_truncation_not_rounding_just_below_a_step():
    step = 4.0 / 255.0
    below = np.array([k * step - 2.0 - 1e-9 for k in range(1, 256)])
    np.testing.assert_array_equal(quantize(below), np.arange(0, 255))


def test_postprocess_applies_pca_means_then_rotation():
    rng = np.random.default_rng(3)
    eigen = np.linalg.qr(rng.standard_normal((128, 128)))[0]
    means = rng.standard_normal((128, 1))
    pca = PCAParams(eigen, means)
    x = rng.standard_normal((5, 128)).astype(np.float32)
    expected = quantize((eigen @ (x.astype(np.float64).T - means)).T)
    np.testing.assert_array_equal(postprocess(x, pca), expected)
    np.testing.assert_array_equal(postprocess(x, pca), reference.postprocess(x, eigen, means))
    assert postprocess(np.full((1, 128), 100.0), identity_pca()).tolist() == [[255] * 128]


def test_dequantize_is_the_youtube8m_formula_and_lands_in_the_bin():
    q = np.arange(256, dtype=np.uint8)
    got = dequantize(q)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, q.astype(np.float64) * 4 / 255 + 4 / 512 - 2, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(quantize(got[:-1]), q[:-1])  # each value maps back to its own byte


def test_pca_params_file_errors(tmp_path: Path, vggish_models: VGGishTestModels):
    assert PCAParams.load(vggish_models.pca_params).means.shape == (128, 1)
    wrong_keys = tmp_path / "keys.npz"
    np.savez(wrong_keys, eigen=np.eye(128))
    with pytest.raises(PCAParamsError, match="pca_eigen_vectors"):
        PCAParams.load(wrong_keys)
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, pca_eigen_vectors=np.eye(128), pca_means=np.zeros(128))
    with pytest.raises(PCAParamsError, match=r"pca_means has shape \(128,\), expected \(128, 1\)"):
        PCAParams.load(wrong_shape)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"nope")
    with pytest.raises(PCAParamsError, match="garbage.npz"):
        PCAParams.load(garbage)
    with pytest.raises(PCAParamsError, match="audiosetdl fetch-models"):
        Embedder(vggish_models.checkpoint, garbage)


# --- model files ---------------------------------------------------------------------------


def test_models_dir_precedence(monkeypatch, tmp_path: Path):
    monkeypatch.delenv(params.MODELS_DIR_ENV, raising=False)
    assert modelfiles.models_dir() == Path("~/.cache/audiosetdl/models").expanduser()
    monkeypatch.setenv(params.MODELS_DIR_ENV, str(tmp_path / "env"))
    assert modelfiles.models_dir() == tmp_path / "env"
    assert modelfiles.models_dir(tmp_path / "flag") == tmp_path / "flag"


def test_locate_models_missing_says_how_to_fix(tmp_path: Path, vggish_models: VGGishTestModels):
    with pytest.raises(modelfiles.ModelFilesError, match="audiosetdl fetch-models"):
        modelfiles.locate_models(tmp_path)
    found = modelfiles.locate_models(vggish_models.directory)
    assert found.checkpoint == vggish_models.checkpoint and found.pca_params == vggish_models.pca_params


@dataclass
class RangeServer:
    """A loopback HTTP server for the model files that honours Range (http.server does not)."""

    files: dict[str, bytes]
    cut_first_response_at: int | None = None
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def __enter__(self) -> "RangeServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                range_header = self.headers.get("Range")
                owner.requests.append((name, range_header))
                if name not in owner.files:
                    self.send_error(404)
                    return
                body = owner.files[name]
                if not owner.honour_range:
                    range_header = None
                start = int(range_header.removeprefix("bytes=").rstrip("-")) if range_header else 0
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if range_header else 200)
                if range_header:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if owner.cut_first_response_at is not None and len(owner.requests) == 1:
                    payload = payload[: owner.cut_first_response_at]
                    self.close_connection = True
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/audioset/"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


SMALL_SIZES = {params.CHECKPOINT_FILENAME: (1, 10 << 20), params.PCA_PARAMS_FILENAME: (1, 10 << 20)}


def test_fetch_models_downloads_and_resumes(tmp_path: Path):
    rng = np.random.default_rng(0)
    files = {
        params.CHECKPOINT_FILENAME: rng.bytes(3 << 20),
        params.PCA_PARAMS_FILENAME: rng.bytes(70_000),
    }
    with RangeServer(files, cut_first_response_at=(1 << 20) + 12345) as server:
        got = modelfiles.fetch_models(tmp_path / "models", base_url=server.url, sizes=SMALL_SIZES)
    assert got.checkpoint.read_bytes() == files[params.CHECKPOINT_FILENAME]
    assert got.pca_params.read_bytes() == files[params.PCA_PARAMS_FILENAME]
    checkpoint_requests = [r for r in server.requests if r[0] == params.CHECKPOINT_FILENAME]
    assert checkpoint_requests[0] == (params.CHECKPOINT_FILENAME, None)
    assert checkpoint_requests[1][1] is not None and checkpoint_requests[1][1] != "bytes=0-", "resumed, not restarted"
    assert not list((tmp_path / "models").glob("*" + modelfiles.PARTIAL_SUFFIX))

    with RangeServer(files) as server:  # already there: nothing fetched again
        modelfiles.fetch_models(tmp_path / "models", base_url=server.url, sizes=SMALL_SIZES)
    assert server.requests == []


def test_fetch_models_renames_a_partial_that_was_already_whole(tmp_path: Path):
    files = {params.CHECKPOINT_FILENAME: b"c" * 5000, params.PCA_PARAMS_FILENAME: b"p" * 3000}
    partial = tmp_path / (params.CHECKPOINT_FILENAME + modelfiles.PARTIAL_SUFFIX)
    partial.write_bytes(files[params.CHECKPOINT_FILENAME])  # downloaded, then killed before the rename
    with RangeServer(files) as server:
        got = modelfiles.fetch_models(tmp_path, base_url=server.url, sizes=SMALL_SIZES)
    assert got.checkpoint.read_bytes() == files[params.CHECKPOINT_FILENAME]
    assert server.requests[0] == (params.CHECKPOINT_FILENAME, "bytes=5000-")  # answered 416
    assert got.pca_params.read_bytes() == files[params.PCA_PARAMS_FILENAME]
    assert not partial.exists()


def test_fetch_models_restarts_when_the_server_ignores_range(tmp_path: Path):
    files = {params.CHECKPOINT_FILENAME: b"c" * 5000, params.PCA_PARAMS_FILENAME: b"p" * 3000}
    for name in files:
        (tmp_path / (name + modelfiles.PARTIAL_SUFFIX)).write_bytes(b"old" * 100)
    with RangeServer(files, honour_range=False) as server:
        got = modelfiles.fetch_models(tmp_path, base_url=server.url, sizes=SMALL_SIZES)
    assert got.checkpoint.read_bytes() == files[params.CHECKPOINT_FILENAME]
    assert got.pca_params.read_bytes() == files[params.PCA_PARAMS_FILENAME]


def test_fetch_models_rejects_implausible_sizes_and_missing_files(tmp_path: Path):
    files = {params.CHECKPOINT_FILENAME: b"x" * 1000, params.PCA_PARAMS_FILENAME: b"y" * 1000}
    with RangeServer(files) as server:
        with pytest.raises(modelfiles.ModelFilesError, match="expected"):
            modelfiles.fetch_models(tmp_path, base_url=server.url)  # the official sizes
    assert not (tmp_path / params.CHECKPOINT_FILENAME).exists()
    with RangeServer({}) as server:
        with pytest.raises(modelfiles.ModelFilesError, match="404"):
            modelfiles.fetch_models(tmp_path, base_url=server.url, sizes=SMALL_SIZES)
    assert len(server.requests) == 1, "a 404 is not retried"


# --- smoke test ----------------------------------------------------------------------------


def test_smoke_test_reports_mismatch_with_random_weights(vggish_models: VGGishTestModels):
    ok, report = smoke_test(vggish_models.directory)
    assert not ok
    assert "MISMATCH" in report and SUCCESS_LINE not in report
    assert "examples: (3, 96, 64)" in report


def test_smoke_test_passes_when_statistics_match(vggish_models: VGGishTestModels, vggish_embedder: Embedder):
    from audiosetdl.vggish.smoke import smoke_signal

    embeddings = vggish_embedder.embed(features.waveform_to_examples(smoke_signal()))
    quantized = vggish_embedder.postprocess(embeddings)
    measured = SmokeStats(embeddings.mean(), embeddings.std(), quantized.mean(), quantized.std())
    ok, report = smoke_test(vggish_models.directory, expected=measured)
    assert ok, report
    assert report.endswith(SUCCESS_LINE)


def test_smoke_test_without_models_says_how_to_fix(tmp_path: Path):
    ok, report = smoke_test(tmp_path)
    assert not ok and "audiosetdl fetch-models" in report
