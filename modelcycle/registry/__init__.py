"""The model registry and the incident log, in one SQL database: versions, the champion
alias, the append-only audit log, incidents."""

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
    Registration,
    VersionStatus,
)
from modelcycle.registry._sql import SQLStore, UTCDateTime, metadata
from modelcycle.registry._versions import CHAMPION, Registry

__all__ = [
    "CHAMPION",
    "AuditEntry",
    "Incident",
    "IncidentLog",
    "IncidentNote",
    "IncidentStatus",
    "ModelRecord",
    "ModelVersion",
    "Recorded",
    "Registration",
    "Registry",
    "SQLStore",
    "Severity",
    "UTCDateTime",
    "VersionStatus",
    "metadata",
]
