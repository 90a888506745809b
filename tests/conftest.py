"""Shared pytest fixtures. Feature-specific fixtures live in tests/*_fixtures.py modules."""

from pathlib import Path

import pytest

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
