"""What a benchmark is and where its documents come from: benchmark specs, document sets (the authors'
subsets, full OpenOOD lists, JSONL files), image loading and the pre-flight image check, and the
authors' release files shipped as package data. Pure: imports neither lmms_eval nor torch."""
