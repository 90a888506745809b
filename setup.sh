#!/usr/bin/env bash
# setup.sh: make a fresh Debian/Ubuntu machine ready to run audiosetdl and its tests.
#
#   1. system packages (ffmpeg, sox, libsndfile, flac) through apt-get when running as root;
#      otherwise it prints the apt-get line to run and stops if any is missing;
#   2. a virtualenv in .venv (override with AUDIOSETDL_VENV) with the package installed in
#      editable mode, with its test extras.
#
# Idempotent: packages already present are not reinstalled, and the pip step is skipped while
# pyproject.toml is unchanged since the last successful install. GPU nodes: after this, run
#   .venv/bin/pip install -e '.[gpu]'     (TensorFlow with its CUDA libraries)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${AUDIOSETDL_VENV:-.venv}
PYTHON=${PYTHON:-python3}
PKGS=(ffmpeg sox libsox-fmt-all libsndfile1 flac)
say() { printf '[setup] %s\n' "$*"; }

# --- system packages --------------------------------------------------------------------
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then PKGS+=(python3-venv); fi
missing=()
for pkg in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    say "missing system packages (${missing[*]}) and no apt-get: install them with your package manager"
    exit 1
  elif [ "$(id -u)" != 0 ]; then
    say "missing system packages: ${missing[*]}"
    say "run as root:  apt-get update && apt-get install -y ${missing[*]}   (then run ./setup.sh again)"
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "system packages present"
fi

# --- virtualenv + package ---------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.audiosetdl-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c 'import audiosetdl' 2>/dev/null; then
  say "package already installed in $VENV"
else
  say "installing audiosetdl and its dependencies into $VENV (TensorFlow is large: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
say "ready: $VENV/bin/audiosetdl --help"
