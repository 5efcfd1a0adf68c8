"""Serving: the prediction service and its durable prediction log."""

from ._compact import CompactionReport, compact
from ._log import (
    LogClosedError,
    LogOverloaded,
    LogWriteError,
    PredictionLog,
    read_feedback,
    read_predictions,
)
from ._records import LogRecordError
from ._segments import CorruptSegmentError

__all__ = [
    "CompactionReport",
    "CorruptSegmentError",
    "LogClosedError",
    "LogOverloaded",
    "LogRecordError",
    "LogWriteError",
    "PredictionLog",
    "compact",
    "read_feedback",
    "read_predictions",
]
