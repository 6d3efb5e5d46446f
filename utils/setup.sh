#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv holding exactly the tested environment
# (requirements/lock-py<XY>-linux-<arch>.txt, every package pinned with hashes, torch included),
# then this package, editable, on top. Idempotent: a second run only checks; a changed lock
# re-syncs. Re-make the locks with utils/lock.sh.
#
#   PYTHON=python3.11 bash utils/setup.sh   # the interpreter for .venv (default python3)
#   REGUIDE_UNLOCKED=1 bash utils/setup.sh  # no lock for this Python / platform: resolve setup.cfg's
#                                           # ranges instead (an environment nobody has tested)
#   bash utils/setup.sh --test              # also what the tests need outside Python: Debian's
#                                           # chromium, in which a test renders the HTML report
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
quiet_pip() { grep -v "^WARNING: Location" || true; }  # the machine's local indexes warn per package

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
py_tag=$(.venv/bin/python -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
lock="requirements/lock-$py_tag-$(uname -s | tr 'A-Z' 'a-z')-$(uname -m | sed 's/arm64/aarch64/').txt"
stamp=.venv/.reguide-installed

if [ -n "${REGUIDE_UNLOCKED:-}" ]; then
  echo "setup: REGUIDE_UNLOCKED set: resolving setup.cfg's ranges, not a lock (untested versions)" >&2
  .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | quiet_pip
  rm -f "$stamp"
elif [ ! -f "$lock" ]; then
  echo "setup: no lock for this interpreter / platform ($lock). Locks exist for:" >&2
  ls requirements/lock-*.txt | sed 's/^/  /' >&2
  echo "Use a Python of those (PYTHON=python3.11 bash utils/setup.sh, after rm -rf .venv), or" \
       "REGUIDE_UNLOCKED=1 bash utils/setup.sh to install from setup.cfg's ranges." >&2
  exit 1
else
  want="$(sha256sum "$lock" setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # Exactly the lock (hashes checked; --no-deps: the lock is the whole resolution, as pip-sync
    # installs it), then the package alone, built with the lock's setuptools; pip check confirms
    # that every installed package's requirements hold.
    .venv/bin/python -m pip install -q --no-deps --require-hashes -r "$lock" 2>&1 | quiet_pip
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | quiet_pip
    .venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check >&2; exit 1; }
    echo "$want" >"$stamp"
  fi
fi
.venv/bin/python -c "import torch, torchvision, lmms_eval, reguide_tasks, sklearn" \
  || { rm -f "$stamp"; echo "setup: the environment does not import; see the pip output above" >&2; exit 1; }
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium (headless) for the HTML report test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "setup: could not install chromium: the HTML rendering test will be skipped" >&2
  else
    echo "setup: no chromium, and no apt-get as root to install it: the HTML rendering test will be skipped" >&2
  fi
fi
echo "setup: ready (.venv, ${REGUIDE_UNLOCKED:+unlocked}${REGUIDE_UNLOCKED:-$lock})"
