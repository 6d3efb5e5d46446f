"""Write (or --check) the generated task YAMLs under tasks_yaml/ and reguide_tasks/lmms/process_results_variants.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reguide_tasks.lmms.task_yamls import (
    VARIANTS_MODULE,
    write_process_results_variants,
    write_task_yamls,
)

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks_yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    stale = write_task_yamls(TASKS_DIR, check=args.check)
    if write_process_results_variants(VARIANTS_MODULE, check=args.check):
        stale.append(str(VARIANTS_MODULE.relative_to(TASKS_DIR.parent)))
    for rel in stale:
        print(("stale: " if args.check else "wrote: ") + rel)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
