"""The command line: clear errors, config files (flags win), and the shipped default config."""

import subprocess
import sys
from pathlib import Path

import pytest

from audiosetdl import config
from audiosetdl.cli import main
from audiosetdl.plan import load_plan
from audiosetdl.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
ROWS = ['--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"', 'abcdefghijk, 0.000, 10.000, "/m/09x0r"',
        'bbcdefghijk, 0.000, 10.000, "/m/09x0r"', 'cbcdefghijk, 0.000, 10.000, "/m/09x0r"']


def csv_file(tmp_path: Path, rows: list[str], name: str = "eval_segments.csv") -> Path:
    path = tmp_path / name
    path.write_text("# a\n# b\n# YTID, start_seconds, end_seconds, positive_labels\n" + "\n".join(rows) + "\n")
    return path


def test_malformed_line_is_named(tmp_path, capsys):
    path = csv_file(tmp_path, ROWS[:2] + ['abc, 0.000, 10.000, "/m/09x0r"'])
    assert main(["plan", str(path), "--out", str(tmp_path / "run"), "--no-labels"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: bad YouTube ID 'abc'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "plan.json").exists()


def test_skip_bad_rows_flag(tmp_path, capsys):
    path = csv_file(tmp_path, ROWS + ['abc, 0.000, 10.000, "/m/09x0r"'])
    assert main(["plan", str(path), "--out", str(tmp_path / "run"), "--skip-bad-rows", "--no-labels"]) == 0
    out = capsys.readouterr().out
    assert "1 bad rows skipped" in out and f"skipped {path}:8" in out
    assert load_plan(RunDir(tmp_path / "run")).summary["bad_rows_skipped"] == 1


def test_unknown_class_suggests(shared_audioset, tmp_path, capsys):
    code = main(["plan", str(shared_audioset / "eval_segments.csv"), "--out", str(tmp_path / "r"), "--classes", "Clappin"])
    assert code == 2
    assert "unknown class 'Clappin'" in capsys.readouterr().err


def test_config_file_and_flags_win(tmp_path):
    path = csv_file(tmp_path, ROWS)
    cfg = tmp_path / "site.yaml"
    cfg.write_text("plan:\n  tasks: 3\n  limit: 3\n  labels: false\n")
    assert main(["plan", str(path), "--out", str(tmp_path / "a"), "--config", str(cfg)]) == 0
    plan = load_plan(RunDir(tmp_path / "a"))
    assert (plan.options["tasks"], plan.options["limit"], plan.summary["segments"]) == (3, 3, 3)
    assert main(["plan", str(path), "--out", str(tmp_path / "b"), "--config", str(cfg), "--tasks", "2", "--limit", "0"]) == 0
    plan = load_plan(RunDir(tmp_path / "b"))
    assert (plan.options["tasks"], plan.summary["segments"]) == (2, 4)


@pytest.mark.parametrize("text, message", [
    ("plan:\n  taks: 3\n", "unknown option plan.taks (did you mean 'tasks'?)"),
    ("plam:\n  tasks: 3\n", "unknown section 'plam' (did you mean 'plan'?)"),
    ("plan:\n  tasks: many\n", "plan.tasks: expected int, found 'many'"),
    ("plan:\n  with_descendants: 1\n", "expected true or false"),
    ("plan: [1, 2\n", "not valid YAML"),
])
def test_bad_config_is_explained(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert main(["plan", str(csv_file(tmp_path, ROWS)), "--out", str(tmp_path / "r"), "--config", str(cfg),
                 "--no-labels"]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and message in err


def test_shipped_default_config_is_complete_and_loads():
    shipped = (REPO / "configs" / "default.yaml").read_text()
    assert shipped == config.render_default_config(), "regenerate: audiosetdl config > configs/default.yaml"
    loaded = config.load_config(REPO / "configs" / "default.yaml")
    for cls in config.ALL_OPTION_CLASSES:
        assert config.options_from(cls, None, loaded) == cls()


def test_every_flag_has_a_config_key():
    """Each option of each command comes from the option dataclasses, so YAML can set it."""
    from audiosetdl.cli import build_parser

    parser = build_parser()
    fields = {f for cls in config.ALL_OPTION_CLASSES for f in cls.__dataclass_fields__}
    structural = {"help", "config", "log_level", "csv", "out", "split", "dir", "mirror", "no_unbalanced",
                  "version", "command", "func", "run", "task", "all", "stages", "audio",
                  "resume", "dry_run", "json", "watch", "plot", "tfrecords", "model", "eval"}
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            assert action.dest in fields | structural, f"{name}: --{action.dest} is not a config option"


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("audiosetdl")
    result = subprocess.run([str(exe), "plan", "--help"], capture_output=True, text=True, check=True)
    assert "--with-descendants" in result.stdout and "(default: 1)" in result.stdout
    result = subprocess.run([str(exe), "split", str(csv_file(tmp_path, ROWS)), "--split", "2"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == [str(tmp_path / "eval_segments.csv.01"), str(tmp_path / "eval_segments.csv.02")]


def test_smoke_test_without_models_says_what_to_run(tmp_path, capsys):
    assert main(["smoke-test", "--models", str(tmp_path / "none")]) == 1
    assert "audiosetdl fetch-models" in capsys.readouterr().out


def test_run_refuses_early_without_models(tmp_path, capsys):
    path = csv_file(tmp_path, ROWS)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--models", str(tmp_path / "none")]) == 2
    assert "fetch-models" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing planned or downloaded


def test_plan_and_run_refuse_without_class_index(tmp_path, capsys):
    path = csv_file(tmp_path, ROWS)
    for argv in (["plan", str(path), "--out", str(tmp_path / "run")],
                 ["run", str(path), "--out", str(tmp_path / "run"), "--stages", "download"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: {tmp_path / 'class_labels_indices.csv'} not found" in err
        assert "audiosetdl fetch-metadata DIR" in err and "--metadata DIR" in err and "--no-labels" in err
        assert not (tmp_path / "run").exists()  # nothing planned, nothing downloaded
    assert main(["plan", str(path), "--out", str(tmp_path / "run"), "--no-labels"]) == 0
    assert "note: --no-labels: records will be written without labels" in capsys.readouterr().out
    assert load_plan(RunDir(tmp_path / "run")).options["labels"] is False


def test_submit_checks_the_plan_can_be_extracted(tmp_path, capsys):
    """Before anything is submitted: the run's class index, then the model files."""
    (tmp_path / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/03l9g,"Bell"\n')
    path = csv_file(tmp_path, ROWS)
    run = RunDir(tmp_path / "run")
    assert main(["plan", str(path), "--out", str(run.root)]) == 0
    run.labels_path.unlink()
    assert main(["submit", str(run.root), "--models", str(tmp_path / "none")]) == 2
    assert f"{run.labels_path} is missing, so labels cannot be written" in capsys.readouterr().err
    assert main(["plan", str(path), "--out", str(tmp_path / "bare"), "--no-labels"]) == 0
    assert main(["submit", str(tmp_path / "bare"), "--models", str(tmp_path / "none")]) == 2
    assert "VGGish model files not found" in capsys.readouterr().err
    assert not (run.slurm_dir / "jobs.json").exists() and not (tmp_path / "bare" / "slurm" / "jobs.json").exists()


def test_config_file_values_get_the_choices_flags_get():
    from audiosetdl.config import TrainOptions, options_from

    assert options_from(TrainOptions, None, {"train": {"pooling": ["average", "feature"]}}).pooling == \
        ("average", "feature")
    with pytest.raises(config.ConfigError, match=r"config train.pooling: 'atention' is not one of feature, attention"):
        options_from(TrainOptions, None, {"train": {"pooling": ["feature", "atention"]}})
    with pytest.raises(config.ConfigError, match="config train.lr_schedule: 'linear' is not one of cosine, constant"):
        options_from(TrainOptions, None, {"train": {"lr_schedule": "linear"}})
