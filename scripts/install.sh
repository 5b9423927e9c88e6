#!/usr/bin/env bash
# Install everything toto_robot needs into .venv (or $VENV). Idempotent: `make` only calls it
# when setup.py, requirements/*.txt or this script changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# 1. System libraries for headless MuJoCo rendering (Mesa's EGL and OSMesa, software rasteriser).
missing=()
ldconfig -p | grep -q 'libEGL.so.1 ' || missing+=(libegl1)
ldconfig -p | grep -q 'libEGL_mesa.so.0 ' || missing+=(libegl-mesa0)
ldconfig -p | grep -q 'libGL.so.1 ' || missing+=(libgl1)
ldconfig -p | grep -q 'libOSMesa.so' || missing+=(libosmesa6)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] || missing+=(libgl1-mesa-dri)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install] apt-get install ${missing[*]} (headless MuJoCo rendering)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "[install] WARNING: headless rendering needs these Debian packages: ${missing[*]}" >&2
    echo "[install]          run: sudo apt-get install ${missing[*]}   (rendering tests will fail without them)" >&2
  fi
fi

# 2. The virtual environment and pinned Python packages.
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel
"${PIP[@]}" install -q -r requirements/base.txt -r requirements/ros.txt
"${PIP[@]}" install -q --no-deps -r requirements/assets.txt
"${PIP[@]}" install -q --no-deps -r requirements/nodeps.txt
# torchvision from PyPI links CUDA torch and breaks beside the CPU wheel; nothing here needs it.
"${PIP[@]}" uninstall -q -y torchvision 2>/dev/null || true
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import torch, mujoco, rclpy, toto_robot; print('[install] ok: torch', torch.__version__, '| mujoco', mujoco.__version__)"
