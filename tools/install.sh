#!/usr/bin/env bash
# Install v2gtool and its test tools into ./.venv.
#   tools/install.sh           the project (editable, with the gpiod backend) + pytest, hypothesis, mypy, ruff
#   tools/install.sh --peers   also (as root) the system packages and the independent peers the
#                              interop tests run: tshark, a Java runtime, open-plc-utils, and the
#                              PyPI `iso15118` stack in ./.venv-peers and `pyslac` in ./.venv-peers-slac
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,gpio]'
if [ "${1:-}" = "--peers" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends \
    tshark default-jre-headless iproute2 openssl plc-utils-extra \
    zsh fish nftables apparmor man-db groff-base systemd >/dev/null
  [ -x .venv-peers/bin/python ] || "$PY" -m venv .venv-peers
  # iso15118 0.31.2 imports aiofile without declaring it.
  .venv-peers/bin/pip install -q --disable-pip-version-check "iso15118==0.31.2" aiofile
  # pyslac pins environs <10, iso15118 >=14.1: a venv of its own.
  [ -x .venv-peers-slac/bin/python ] || "$PY" -m venv .venv-peers-slac
  .venv-peers-slac/bin/pip install -q --disable-pip-version-check "pyslac==0.8.3" "marshmallow<4"
fi
