#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with torch + torchvision (the builds this
# machine's pip index serves), lmms-eval and this package (editable) with its test extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  case "$(uname -m)" in
    aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
    *) TORCH="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $TORCH 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, torchvision" || { echo "setup: torch/torchvision did not install" >&2; exit 1; }
fi
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" | grep -iE "error|fail" || true
.venv/bin/python -c "import lmms_eval, reguide_tasks, sklearn" || { echo "setup: package install failed" >&2; exit 1; }
echo "setup: ready (.venv)"
