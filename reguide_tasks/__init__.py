"""reguide-tasks: LVLM out-of-distribution detection (ReGuide, ICLR 2025) on lmms-eval."""

__version__ = "0.1.0"
