"""The prompts the model is sent: the baseline, stage-1 and stage-2 templates (``tasks_yaml/templates``)
rendered for a class list. Pure: imports neither lmms_eval nor torch."""
