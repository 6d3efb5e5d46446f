"""What lmms-eval sees: the functions the task YAMLs name, the per-document records and their
aggregations, the batched two-stage runner, the runtime patches of lmms-eval and ``reguide-eval``."""
