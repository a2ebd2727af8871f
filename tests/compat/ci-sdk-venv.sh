#!/usr/bin/env bash
# Makes (or reuses) a venv holding E2B's official code-interpreter SDK for Python at one
# version, from PyPI, on the sandbox SDK e2b==2.63.0 (which it allows: e2b>=2.55.1,<3).
#
#   tests/compat/ci-sdk-venv.sh VERSION DIR     → DIR/bin/python has e2b-code-interpreter==VERSION
set -euo pipefail
v="$1"
venv="$2"
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('e2b-code-interpreter') == '$v'" 2>/dev/null; then
  rm -rf "$venv"
  timeout 600 python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install -q "e2b-code-interpreter==$v" "e2b==2.63.0"
fi
