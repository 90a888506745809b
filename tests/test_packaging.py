"""Packaging metadata that installs without setuptools' deprecation warnings."""

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression():
    """A TOML table as project.license is deprecated (refused after 2027-02-18); the SPDX string needs setuptools 77."""
    meta = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "MIT"
    assert not [c for c in meta["project"].get("classifiers", []) if c.startswith("License ::")]  # not both (PEP 639)
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools).group(1)) >= 77
