"""TensorFlow stays quiet: no C++ log lines before our own messages unless asked for (`--log-level DEBUG`,
or TensorFlow's own variables set by the user), model files checked before TensorFlow loads, and the
device said in one line of ours. Each command runs in a fresh process, where TensorFlow is imported for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiosetdl.tfenv import ABSL_PREINIT_LINE, CPP_LOG_LINE, USER_VARIABLES, without_cpp_log_lines

REPO = Path(__file__).resolve().parents[1]
# main() in a fresh process, then whether it imported TensorFlow
CLI_THEN_TF_IMPORTED = ("import sys; from audiosetdl.cli import main; rc = main(sys.argv[1:]); "
                        "print('tensorflow imported:', 'tensorflow' in sys.modules); sys.exit(rc)")


def run_fresh(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES}
    clean["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**clean, **(env or {})})


def cpp_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if CPP_LOG_LINE.match(line) or line == ABSL_PREINIT_LINE]


@pytest.fixture
def tone(tmp_path) -> Path:
    path = tmp_path / "tone.wav"
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000), 16000)
    return path


def test_log_lines_are_recognised():
    text = (f"{ABSL_PREINIT_LINE}\n"
            "I0000 00:00:1796143309.856086    7228 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
            "E0000 00:00:1796143317.922516    7228 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
            "W1201 16:48:33.324000 12 external/local_xla/xla/tsl/x.cc:7] something\n"
            "/venv/lib/python3.11/site-packages/x.py:3: UserWarning: kept\n"
            "I0000 is not a log line\n")
    assert without_cpp_log_lines(text) == "/venv/lib/python3.11/site-packages/x.py:3: UserWarning: kept\nI0000 is not a log line\n"


def test_embed_without_models_answers_before_tensorflow(tone, tmp_path):
    res = run_fresh("-c", CLI_THEN_TF_IMPORTED, "embed", str(tone), "--out", str(tmp_path / "x"),
                    "--models", str(tmp_path / "none"))
    assert res.returncode == 2
    assert res.stdout.strip() == "tensorflow imported: False"
    (line,) = res.stderr.splitlines()  # our message alone
    assert line.startswith(f"audiosetdl embed: error: VGGish model files not found: {tmp_path / 'none'}")
    assert "audiosetdl fetch-models" in line
    assert not (tmp_path / "x").exists(), "nothing written"


@pytest.mark.slow
def test_embed_is_quiet_unless_debug(vggish_models, tone, tmp_path):
    argv = ["-m", "audiosetdl", "embed", str(tone), "--out", str(tmp_path / "x"),
            "--models", str(vggish_models.directory), "--device", "/CPU:0"]
    quiet = run_fresh(*argv)
    assert quiet.returncode == 0, quiet.stderr
    assert cpp_lines(quiet.stderr) == [], quiet.stderr
    assert re.search(r" INFO audiosetdl\.vggish\.model: VGGish on CPU \(\d+ threads\)", quiet.stderr), quiet.stderr
    assert quiet.stdout.strip().startswith(f"1 files embedded (2 frames) into {tmp_path / 'x'}")

    loud = run_fresh(*argv, "--log-level", "DEBUG")
    assert loud.returncode == 0, loud.stderr
    assert cpp_lines(loud.stderr), loud.stderr  # TensorFlow's own start-up lines come through
    assert "VGGish on CPU" in loud.stderr


def test_users_own_tensorflow_settings_are_left_alone():
    """TF_CPP_MIN_LOG_LEVEL set by the user reaches TensorFlow: its lines come through; by default none do."""
    code = ("import os; from audiosetdl import tfenv; tf = tfenv.import_tensorflow(); tf.constant(1.0) + 1; "
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")
    default = run_fresh("-c", code)
    assert default.returncode == 0, default.stderr
    assert (default.stdout.strip(), default.stderr) == ("3", "")
    own = run_fresh("-c", code, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip() == "0" and cpp_lines(own.stderr), own.stderr
