"""Shared pytest fixtures. Feature-specific fixtures live in tests/*_fixtures.py modules."""

from pathlib import Path

import pytest
import submitit  # noqa: F401 (imported first, on purpose: see below)

# Importing submitit runs logging.config.dictConfig, which closes every existing logging handler. If
# TensorFlow (absl) was imported earlier, absl's handler then closes the stream it was made with:
# pytest's own capture of stderr whenever the import happens inside a test using capsys, which
# breaks the session ("I/O operation on closed file"). Outside pytest that stream is sys.stderr,
# which absl never closes. Importing submitit before anything imports TensorFlow avoids it.

# Fixture modules, registered once for the whole session (session-scoped media, checkpoint and
# SLURM cluster are then built once, whichever test modules use them).
pytest_plugins = ["tests.media_fixtures", "tests.vggish_fixtures", "tests.yamnet_fixtures", "tests.slurm_fixtures",
                  "tests.labels_fixtures"]

SHARED_AUDIOSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset"


@pytest.fixture(scope="session")
def shared_audioset() -> Path:
    """The real AudioSet files beside the checkout (../shared/data/audioset); skip when absent."""
    if not (SHARED_AUDIOSET / "eval_segments.csv").exists():
        pytest.skip(f"real AudioSet files not found at {SHARED_AUDIOSET}")
    return SHARED_AUDIOSET
