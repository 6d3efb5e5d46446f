"""Task hooks for lmms-eval: everything lives in reguide_tasks.lmms.hooks (tested there)."""

from reguide_tasks.lmms.hooks import *  # noqa: F401,F403
from reguide_tasks.lmms.hooks import resolve_hook as __getattr__  # noqa: F401  (aggregate_<metric>, process_results variants)
