"""Runs -> reports: results and samples of many runs read back into tables (markdown, CSV, LaTeX),
confidence intervals, plots, and the parser audit (``reguide-report``, ``reguide-audit``)."""
