"""Numbers from scores: OoD detection metrics (AUROC, FPR@95 by both rules, AUPR-In/Out) and the
statistics built on them. Pure numpy + scikit-learn; imports neither lmms_eval nor torch."""
