#!/usr/bin/env bash
# Makes (or reuses) a venv holding E2B's official Python SDK at one version, from PyPI.
#
#   tests/compat/py-sdk-venv.sh VERSION DIR     → DIR/bin/python has e2b==VERSION
#
# Used by tests/compat/run.sh and by scripts/test (the Rust SDK's cross-SDK template test).
set -euo pipefail
v="$1"
venv="$2"
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('e2b') == '$v'" 2>/dev/null; then
  rm -rf "$venv"
  timeout 600 python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install -q "e2b==$v"
fi
