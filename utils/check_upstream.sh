#!/usr/bin/env bash
# Drift check for maintainers (not run in CI): does the project still work with today's newest
# releases within setup.cfg's ranges, i.e. what a plain `pip install` outside our lock gets?
#
#   bash utils/check_upstream.sh [VENV_DIR]     # default: a fresh folder under /tmp, removed after
#
# Builds a throwaway virtual environment from the unpinned ranges (nothing reused from .venv),
# runs the demo and a quick subset of the tests there, and prints which packages differ from the
# lock. Exit 0: everything passed (re-lock with utils/lock.sh when you want the newer releases);
# exit 1: something broke, and the packages that differ are the suspects (exclude the culprit in
# setup.cfg with a one-line comment, as for filelock, then re-lock).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK_TESTS=(tests/test_replay.py tests/test_scoring.py tests/test_prompts.py tests/test_task_yamls.py tests/test_packaging.py)
if [ -n "${1:-}" ]; then VENV=$1; else VENV=$(mktemp -d)/venv; trap 'rm -rf "$(dirname "$VENV")"' EXIT; fi
PY=$(python3 -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
LOCK="requirements/lock-$PY-linux-$(uname -m | sed 's/arm64/aarch64/').txt"
LOG="$VENV.log"

diff_from_lock() {
  "$VENV/bin/python" - "$LOCK" <<'PY'
import re, subprocess, sys
from pathlib import Path

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pin = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")
lock = {}
if Path(sys.argv[1]).is_file():
    lock = {norm(m[1]): m[2] for line in open(sys.argv[1]) if (m := pin.match(line))}
freeze = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
                        capture_output=True, text=True).stdout.splitlines()
now = {norm(m[1]): m[2] for line in freeze if (m := pin.match(line))}
now = {k: v for k, v in now.items() if k not in {"pip", "setuptools", "wheel"} or k in lock}
rows = [(name, lock.get(name, "-"), now.get(name, "-")) for name in sorted(lock.keys() | now.keys())
        if lock.get(name) != now.get(name)]
print(f"packages that differ from {sys.argv[1]}: {len(rows)}")
for name, locked, current in rows:
    print(f"  {name:32s} lock {locked:22s} now {current}")
PY
}

step() {  # step NAME COMMAND...: run, log, stop with the diff on failure
  echo "check_upstream: $1"
  if ! "${@:2}" >>"$LOG" 2>&1; then
    echo "check_upstream: FAILED at '$1' (log: $LOG); last lines:" >&2
    tail -n 15 "$LOG" >&2
    diff_from_lock >&2
    trap - EXIT  # keep the venv and the log for a look
    exit 1
  fi
}

mkdir -p "$(dirname "$VENV")"; : >"$LOG"
step "fresh venv at $VENV" python3 -m venv "$VENV"
step "newest pip and setuptools" "$VENV/bin/python" -m pip install -q -U pip setuptools
step "install setup.cfg's ranges, newest releases" "$VENV/bin/python" -m pip install -q -e '.[test]'
step "demo" env VENV="$VENV" bash utils/demo.sh "$(dirname "$VENV")/demo"
step "quick tests" "$VENV/bin/python" -m pytest -q -x -p no:cacheprovider "${QUICK_TESTS[@]}"
echo "check_upstream: passed with today's releases"
diff_from_lock
