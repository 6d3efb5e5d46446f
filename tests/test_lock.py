"""The lock in requirements/ against setup.cfg and against the environment the tests run in.

utils/setup.sh installs requirements/lock-py<XY>-linux-<arch>.txt, made by utils/lock.sh from
setup.cfg's ranges. These checks keep the three in step without a network: every range in setup.cfg
is satisfied by the lock's pin, the known-bad releases stay excluded, and this environment is the
lock (so a green suite means the locked environment works).
"""

from __future__ import annotations

import configparser
import os
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCKS = REPO_ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# Releases known to break us, each excluded in setup.cfg with a comment saying why.
KNOWN_BAD = {"filelock": "4.3.1"}
# The torch builds each architecture's lock pins (utils/lock.sh, torch_pins).
TORCH_BY_ARCH = {"x86_64": ("2.14.1", "0.29.1"), "aarch64": ("2.9.1", "0.24.1")}


def _pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for line in lock.read_text(encoding="utf-8").splitlines() if (m := PIN.match(line))}


def _declared(arch: str) -> list[Requirement]:
    """setup.cfg's install_requires and test extra whose markers hold on Linux/``arch``, Python 3.11."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    lines = config["options"]["install_requires"].splitlines() + config["options.extras_require"]["test"].splitlines()
    environment = {"platform_machine": arch, "sys_platform": "linux", "python_version": "3.11", "extra": "test"}
    requirements = [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]


def _this_lock() -> Path:
    arch = {"arm64": "aarch64"}.get(platform.machine(), platform.machine())
    return LOCKS / f"lock-py{sys.version_info[0]}{sys.version_info[1]}-{sys.platform}-{arch}.txt"


@pytest.mark.parametrize("arch", sorted(TORCH_BY_ARCH))
def test_every_range_in_setup_cfg_holds_for_the_lock(arch: str) -> None:
    pins = _pins(LOCKS / f"lock-py311-linux-{arch}.txt")
    declared = _declared(arch)
    assert len(declared) > 15
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in pins]
    outside = [f"{r} (lock: {pins[canonicalize_name(r.name)]})" for r in declared
               if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not missing and not outside, f"run bash utils/lock.sh: missing {missing}, out of range {outside}"
    assert (pins["torch"], pins["torchvision"]) == TORCH_BY_ARCH[arch]


def test_known_bad_releases_are_excluded_in_setup_cfg_and_not_locked() -> None:
    declared = {canonicalize_name(r.name): r for r in _declared("x86_64")}
    for name, bad in KNOWN_BAD.items():
        assert name in declared and not declared[name].specifier.contains(bad), f"setup.cfg must exclude {name} {bad}"
        for lock in LOCKS.glob("lock-*.txt"):
            assert Version(_pins(lock)[name]) < Version(bad), lock.name
    comment = re.search(r"#[^\n]*\n\s*filelock<", (REPO_ROOT / "setup.cfg").read_text(encoding="utf-8"))
    assert comment, "each exclusion in setup.cfg carries a one-line comment saying why"


@pytest.mark.skipif(bool(os.environ.get("REGUIDE_UNLOCKED")), reason="environment installed from ranges (REGUIDE_UNLOCKED)")
def test_this_environment_is_the_lock() -> None:
    lock = _this_lock()
    if not lock.is_file():
        pytest.skip(f"no lock for this interpreter / platform ({lock.name})")
    differ = {}
    for name, pinned in _pins(lock).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(pinned):
            differ[name] = (pinned, installed)
    assert not differ, f"(lock, installed) differ, run bash utils/setup.sh: {differ}"
