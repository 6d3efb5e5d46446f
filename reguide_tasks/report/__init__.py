"""Runs -> reports: results and samples of many runs read back into tables (markdown, CSV, LaTeX),
confidence intervals, plots, and the parser audit (``reguide-report``, ``reguide-audit``).

Modules, each importing only those above it: ``files`` (lmms-eval output files, ReportError),
``columns`` (column vocabulary), ``labels`` (model labels), ``runs`` (which runs), ``samples``
(per-document scores), ``tables`` (rows and tables), ``render`` (Markdown / CSV / LaTeX), ``plots``
(matplotlib; imported by ``make`` only, when plotting), ``make`` (``make_report``), ``audit``, and the
command lines ``cli`` / ``audit_cli``. The bootstrap CIs live in :mod:`reguide_tasks.metrics.bootstrap`.
"""
