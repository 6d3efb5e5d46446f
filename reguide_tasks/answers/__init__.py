"""Reading a model's answers: the one key-matching policy, free text -> parsed answer, stage-1 text ->
filtered suggestions, parsed answer -> OoD score. Pure functions that never raise on a model's text;
imports neither lmms_eval nor torch."""
