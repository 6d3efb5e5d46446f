"""Numbers from scores: OoD detection metrics (AUROC, FPR@95 by both rules, AUPR-In/Out), the
statistics built on them, and the calibration of verbalized confidence on ID images (ECE, Brier
score, AURC). Pure numpy + scikit-learn; imports neither lmms_eval nor torch."""
