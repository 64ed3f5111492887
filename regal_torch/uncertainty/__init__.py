"""How good a round's predictions are and how their uncertainty is made honest: accuracy
metrics (metrics.py), uncertainty metrics and one variance factor fitted on the validation
molecules (calibration.py), per-molecule variance from nearby validation errors
(local_calibration.py), split-conformal intervals (conformal.py)."""
