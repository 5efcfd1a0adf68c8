"""What an auditor asks that crosses the records: trace a prediction, export the event log,
keep logs only as long as the retention settings say, erase a person."""

from modelcycle.records._erasure import ErasureReport, declared_subject_keys, erase_subject
from modelcycle.records._events import (
    EVENT_TYPES,
    RetentionReport,
    apply_retention,
    export_events,
)
from modelcycle.records._reproduce import (
    Difference,
    Reproduction,
    check_recorded_parts,
    comparable_config,
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
    "EVENT_TYPES",
    "Difference",
    "ErasureReport",
    "Hop",
    "HopStatus",
    "Reproduction",
    "RetentionReport",
    "Trace",
    "apply_retention",
    "check_recorded_parts",
    "comparable_config",
    "compare",
    "declared_subject_keys",
    "erase_subject",
    "export_events",
    "find_prediction",
    "parent_registration",
    "recompute_fingerprints",
    "rerun_config",
    "trace_prediction",
    "trace_version",
]
