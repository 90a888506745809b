"""`audiosetdl label`: YAMNet's own classes per file and per frame (random-weight fixture), the JSON
schema, CSV rows, --top / --threshold / --classes, the heat map, failures and missing models."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiosetdl.audio import decode_any
from audiosetdl.cli import main
from audiosetdl.config import EmbedOptions, ExtractOptions, LabelOptions
from audiosetdl.labels.label import label_paths
from audiosetdl.yamnet import Embedder, load_class_map


@pytest.fixture
def sounds(tmp_path) -> list[Path]:
    t = np.arange(int(3.2 * 16000)) / 16000
    sine = tmp_path / "in" / "sine.wav"
    noise = tmp_path / "in" / "noise" / "white.flac"
    noise.parent.mkdir(parents=True)
    soundfile.write(str(sine), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    soundfile.write(str(noise), np.random.default_rng(0).uniform(-0.5, 0.5, len(t) // 2).astype(np.float32), 16000)
    return [sine, noise]


def test_label_cli_json_csv_plot(sounds, tmp_path, yamnet_models, capsys):
    (tmp_path / "in" / "broken.mp3").write_bytes(b"ID3 no frames here")
    out_json, out_csv, png = tmp_path / "l.json", tmp_path / "l.csv", tmp_path / "l.png"
    argv = ["label", str(tmp_path / "in"), "--model", "yamnet", "--models", str(yamnet_models.directory),
            "--top", "3", "--json", str(out_json), "--csv", str(out_csv), "--plot", str(png)]
    assert main(argv) == 1  # one file failed; the others are labelled
    printed = capsys.readouterr().out
    assert "failed:" in printed and "broken.mp3" in printed and "sine.wav:" in printed
    doc = json.loads(out_json.read_text())
    assert doc["model"] == "yamnet" and doc["top"] == 3 and doc["frame_hop_seconds"] == 0.48
    assert len(doc["categories"]) == 521 and doc["categories"][0] == {"mid": "/m/09x0r", "name": "Speech"}
    files = {f["id"]: f for f in doc["files"]}
    assert sorted(files) == ["broken.mp3", "noise/white.flac", "sine.wav"]
    assert "ffmpeg could not decode" in files["broken.mp3"]["error"]
    sine = files["sine.wav"]
    assert sine["duration_seconds"] == pytest.approx(3.2)
    assert len(sine["frame_scores"]) == len(sine["frame_start_seconds"]) == 6  # 1 + ceil((3.2 - 0.975) / 0.48)
    assert len(sine["frame_scores"][0]) == 521 and sine["frame_start_seconds"][:2] == [0.0, 0.48]

    # Scores are YAMNet's, computed independently; predictions are the 3 best mean scores.
    classes = load_class_map(yamnet_models.class_map)
    frames = Embedder(yamnet_models.weights_path).frames(decode_any(sounds[0]))
    np.testing.assert_allclose(sine["frame_scores"], frames.scores, atol=2e-6)
    mean = frames.scores.mean(axis=0)
    assert [p["name"] for p in sine["predictions"]] == [name for name, _ in classes.top(mean, 3)]
    assert [p["score"] for p in sine["predictions"]] == sorted((p["score"] for p in sine["predictions"]), reverse=True)

    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["id"], r["rank"]) for r in rows] == [("noise/white.flac", "1"), ("noise/white.flac", "2"),
                                                    ("noise/white.flac", "3"), ("sine.wav", "1"), ("sine.wav", "2"),
                                                    ("sine.wav", "3")]
    assert rows[3]["name"] == sine["predictions"][0]["name"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_top_threshold_and_classes(sounds, yamnet_models):
    options = ExtractOptions(model="yamnet", models=str(yamnet_models.directory))
    everything = label_paths(sounds, options, EmbedOptions(), LabelOptions(top=521), progress=False)
    clip = everything.files[0].clip
    cut = float(np.sort(clip)[-4])  # exactly four classes reach it
    high = label_paths(sounds, options, EmbedOptions(), LabelOptions(top=10, threshold=cut), progress=False)
    assert len(high.predictions(high.files[0])) == 4
    assert all(s >= cut for _, s in high.predictions(high.files[0]))
    only = label_paths(sounds[:1], options, EmbedOptions(), LabelOptions(top=5, classes=("dog", "/m/09x0r", "Sine wave")),
                       progress=False)
    assert only.names == ("Speech", "Dog", "Sine wave") and only.files[0].frames.shape == (6, 3)
    assert {only.names[i] for i, _ in only.predictions(only.files[0])} == {"Speech", "Dog", "Sine wave"}
    speech = everything.mids.index("/m/09x0r")
    np.testing.assert_allclose(only.files[0].clip[0], clip[speech], atol=1e-6)


def test_missing_models_say_how_to_get_them(sounds, tmp_path, capsys):
    assert main(["label", str(sounds[0]), "--model", "yamnet", "--models", str(tmp_path / "none")]) == 2
    assert "audiosetdl fetch-models DIR --model yamnet" in capsys.readouterr().err
    assert main(["label", str(sounds[0]), "--models", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "--classifier DIR" in err and "audiosetdl train" in err and "fetch-models --model yamnet" in err
    assert main(["label", str(sounds[0]), "--model", "yamnet", "--classes", "no such class",
                 "--models", str(tmp_path / "none")]) == 2


def test_label_with_a_trained_vggish_classifier(sounds, tmp_path, vggish_models, shared_audioset):
    model = pytest.importorskip("audiosetdl.labels.model",
                                reason="audiosetdl.labels (`audiosetdl train`, branch labels) is not in this checkout")
    from audiosetdl.metadata.ontology import ClassIndex

    classes = ClassIndex.load(shared_audioset / "class_labels_indices.csv")
    config = model.ModelConfig(num_classes=len(classes), hidden_units=32, hidden_layers=1)
    directory = model.Classifier([config], classes, [model.build(config)]).save(
        tmp_path / "clf", shared_audioset / "class_labels_indices.csv", "test card")
    labels = label_paths(sounds, ExtractOptions(models=str(vggish_models.directory)), EmbedOptions(),
                         LabelOptions(classifier=str(directory)), progress=False)
    assert labels.files[0].clip.shape == (527,) and labels.files[0].frames.shape == (3, 527)
