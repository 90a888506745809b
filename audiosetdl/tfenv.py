"""TensorFlow's start-up, in one place: its C++ log lines stay quiet unless asked for, and the device
a model runs on is told in one line of our own.

Every path that uses TensorFlow gets it from `import_tensorflow()` (the VGGish model, the TFRecord
reader and writer, the TensorFlow front end; new models should too), and says where its model runs
with `log.info("VGGish on %s", device_description(device))`: "CPU (2 threads)", "GPU 0 (NVIDIA ...)".

Quiet, the default, means: `TF_CPP_MIN_LOG_LEVEL=3`, set before the first import (it hides
TensorFlow's own ERROR lines too, such as "failed call to cuInit ... (303)" on a machine without a
GPU); and file descriptor 2 caught while TensorFlow loads and finds its devices, because absl writes
the lines logged before its initialisation ("All log messages before absl::InitializeLog() ...",
"oneDNN custom operations are on", "Could not find cuda drivers") to stderr whatever the level
(TensorFlow 2.21: no variable silences them). What was caught comes back on stderr, less those log
lines; if the import fails, all of it comes back. TensorFlow's own settings (oneDNN, threads) are
not changed: `TF_ENABLE_ONEDNN_OPTS=0` would hide oneDNN's line by turning oneDNN off.

TensorFlow talks as it always does when the `audiosetdl` logger is at DEBUG (`--log-level DEBUG`)
or when the user set one of `USER_VARIABLES` (then those settings are theirs, untouched).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from types import ModuleType

log = logging.getLogger(__name__)

QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3"}
USER_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")
# A C++ log line (absl's and TensorFlow's format: "I0000 00:00:1796143309.856086    7228 port.cc:153] ...").
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
ABSL_PREINIT_LINE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

_lock = threading.Lock()


def verbose() -> bool:
    """TensorFlow's own logging is wanted: `--log-level DEBUG`, or the user set its variables."""
    return (logging.getLogger("audiosetdl").isEnabledFor(logging.DEBUG)
            or any(name in os.environ for name in USER_VARIABLES))


def import_tensorflow() -> ModuleType:
    """`tensorflow`, imported (once) quietly unless `verbose()`; see the module docstring."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        if verbose():
            import tensorflow as tf

            return tf
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        return _import_catching_stderr()


def _import_catching_stderr() -> ModuleType:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to keep quiet
        import tensorflow as tf

        return tf
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs too (CUDA, cuInit)
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", "replace")
            kept = text if failed else without_cpp_log_lines(text)
            if kept.strip():
                sys.stderr.write(kept)
                sys.stderr.flush()
    return tf


def without_cpp_log_lines(text: str) -> str:
    """`text` less the C++ log lines and absl's pre-initialisation warning (lines of ours or Python's stay)."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not CPP_LOG_LINE.match(line) and line.rstrip("\n") != ABSL_PREINIT_LINE)


def device_description(device: str) -> str:
    """'/GPU:0' -> 'GPU 0 (NVIDIA H100 80GB HBM3)'; '/CPU:0' -> 'CPU (2 threads)', with a hint when a GPU
    driver is installed but TensorFlow sees no GPU."""
    tf = import_tensorflow()
    spec = tf.DeviceSpec.from_string(device)
    if (spec.device_type or "").upper() == "GPU":
        gpus = tf.config.list_physical_devices("GPU")
        index = spec.device_index or 0
        name = "unknown"
        if index < len(gpus):
            name = tf.config.experimental.get_device_details(gpus[index]).get("device_name", name)
        return f"GPU {index} ({name})"
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    text = f"CPU ({threads} threads)"
    if shutil.which("nvidia-smi") and not tf.config.list_physical_devices("GPU"):
        text += "; a GPU driver is installed but TensorFlow sees no GPU (--log-level DEBUG shows why)"
    return text
