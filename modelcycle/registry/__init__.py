"""The model registry and the incident log, in one SQL database: versions, the champion
alias, the append-only audit log, incidents."""

from modelcycle.registry._audit import CHAIN_START, ChainReport
from modelcycle.registry._incidents import (
    Incident,
    IncidentLog,
    IncidentNote,
    IncidentStatus,
    Recorded,
    Severity,
)
from modelcycle.registry._records import (
    AuditEntry,
    ModelRecord,
    ModelVersion,
    Move,
    Registration,
    VersionStatus,
)
from modelcycle.registry._rollouts import (
    Deprecation,
    Experiment,
    ExperimentMode,
    ExperimentMove,
    ExperimentStatus,
    Rollouts,
)
from modelcycle.registry._sql import SQLStore, UTCDateTime, metadata
from modelcycle.registry._verify import VerifiedRun, open_run, version_problems
from modelcycle.registry._versions import CHAMPION, SKIPPED_PROMOTION, Registry

__all__ = [
    "CHAIN_START",
    "CHAMPION",
    "SKIPPED_PROMOTION",
    "AuditEntry",
    "ChainReport",
    "Deprecation",
    "Experiment",
    "ExperimentMode",
    "ExperimentMove",
    "ExperimentStatus",
    "Incident",
    "IncidentLog",
    "IncidentNote",
    "IncidentStatus",
    "ModelRecord",
    "ModelVersion",
    "Move",
    "Recorded",
    "Registration",
    "Registry",
    "Rollouts",
    "SQLStore",
    "Severity",
    "UTCDateTime",
    "VerifiedRun",
    "VersionStatus",
    "metadata",
    "open_run",
    "version_problems",
]
