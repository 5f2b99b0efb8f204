"""Experiment trackers (TensorBoard, Weights & Biases, MLflow, CSV) fed from the run records.

``--logger NAME`` (``train.loggers``) logs each epoch live (``live.py``); ``mmbench sync``
replays finished records (``sync.py``); both read ``history.jsonl`` through ``replay.py``.
Importing this package imports no tracker library.
"""

from mmbench.trackers.names import LOGGERS, check_loggers, logger_names

__all__ = ["LOGGERS", "check_loggers", "logger_names"]
