#!/usr/bin/env bash
# Re-make the locks in requirements/ from setup.cfg's ranges (install_requires + the test extra):
# one lock per supported platform, every package pinned with its hashes, resolved against the
# package index as it is today. utils/setup.sh installs the lock of the machine it runs on.
#
#   bash utils/lock.sh            # re-resolve everything to today's newest releases in the ranges
#   bash utils/lock.sh --check    # exit 1 if a lock no longer matches setup.cfg (nothing written)
#
# The lock tool is uv (pinned below), installed on first use into .tools/ (git-ignored).
# After re-locking: bash utils/setup.sh --test && .venv/bin/python -m pytest -q -n 2 --dist loadfile tests, then commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PY_VERSION=3.11  # the Python the project is tested with (CI's); setup.sh refuses others by default

if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv .tools
  .tools/bin/python -m pip install -q "uv==$UV_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
fi

# torch / torchvision per architecture: the builds that install and run on the CPU there
# (x86_64: PyPI's 2.14.1 build; aarch64: 2.9.1, PyPI's newest CPU build for that architecture).
torch_pins() {
  case "$1" in
    x86_64) printf 'torch==2.14.1\ntorchvision==0.29.1\n' ;;
    aarch64) printf 'torch==2.9.1\ntorchvision==0.24.1\n' ;;
  esac
}

compile() {  # compile ARCH OUTPUT [extra uv options...]
  local arch=$1 out=$2 pins; shift 2
  pins=$(mktemp); torch_pins "$arch" >"$pins"
  .tools/bin/uv pip compile setup.cfg --extra test --quiet --custom-compile-command "bash utils/lock.sh" \
    --python-version "$PY_VERSION" --python-platform "$arch-manylinux_2_28" \
    --constraint "$pins" --output-file "$out" "$@"
  rm -f "$pins"
}
pins_of() { grep -E '^[A-Za-z0-9]' "$1" | sed 's/ .*//' | sort; }

status=0
for arch in x86_64 aarch64; do
  lock="requirements/lock-py${PY_VERSION/./}-linux-$arch.txt"
  if [ "${1:-}" = "--check" ]; then
    # Stale = setup.cfg asks for something the lock does not pin, or pins it out of range. A newer
    # release upstream is not staleness: that is drift (utils/check_upstream.sh).
    tmp=$(mktemp)
    if ! compile "$arch" "$tmp" --constraint "$lock" || [ "$(pins_of "$tmp")" != "$(pins_of "$lock")" ]; then
      echo "lock: $lock does not match setup.cfg; run: bash utils/lock.sh" >&2; status=1
    fi
    rm -f "$tmp"
  else
    # --upgrade: today's newest releases within the ranges, not the previous lock's pins.
    compile "$arch" "$lock" --upgrade --generate-hashes
    echo "lock: wrote $lock ($(pins_of "$lock" | wc -l) packages)"
  fi
done
exit $status
