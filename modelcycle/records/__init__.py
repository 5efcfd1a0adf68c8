"""What an auditor asks that crosses the records: trace a prediction, export the event log,
keep logs only as long as the retention settings say, erase a person."""

from modelcycle.records._reproduce import (
    Difference,
    Reproduction,
    compare,
    parent_registration,
    rerun_config,
)
from modelcycle.records._trace import (
    Hop,
    HopStatus,
    Trace,
    find_prediction,
    recompute_fingerprints,
    trace_prediction,
    trace_version,
)

__all__ = [
    "Difference",
    "Hop",
    "HopStatus",
    "Reproduction",
    "Trace",
    "compare",
    "find_prediction",
    "parent_registration",
    "recompute_fingerprints",
    "rerun_config",
    "trace_prediction",
    "trace_version",
]
